//! Per-user quotas: dramas held, bytes stored in the bucket, runs not yet settled.
//!
//! Checked before the work starts, so a refused request changes nothing. Two requests of one
//! user that race may each pass the check once (the limits bound cost; they are not money).

use drama_assets::keys;
use drama_domain::UserId;
use drama_jobs::RunFilter;

use crate::{App, AppError};

/// The limits; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Dramas one user may hold.
    pub dramas: u64,
    /// Bytes one user may keep in the bucket (generated media, references, library uploads).
    pub stored_bytes: u64,
    /// Runs of one user that may be pending or running at once.
    pub active_runs: u64,
}

impl Quotas {
    /// No limits (what [`App::new`] starts with; the server binary configures real ones).
    pub const UNLIMITED: Self = Self {
        dramas: 0,
        stored_bytes: 0,
        active_runs: 0,
    };
}

fn exceeded(quota: &'static str, limit: u64, used: u64) -> Result<(), AppError> {
    if limit > 0 && used > limit {
        return Err(AppError::QuotaExceeded { quota, limit, used });
    }
    Ok(())
}

impl App {
    /// Sets the per-user quotas.
    #[must_use]
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// The per-user quotas in effect.
    pub fn quotas(&self) -> Quotas {
        self.quotas
    }

    /// Refuses a new drama when `owner` already holds the most allowed.
    pub(crate) async fn check_drama_quota(&self, owner: UserId) -> Result<(), AppError> {
        if self.quotas.dramas == 0 {
            return Ok(());
        }
        let held = self.store.drama_count(owner).await?;
        exceeded("dramas", self.quotas.dramas, held + 1)
    }

    /// Refuses storing `adding` more bytes (0: any new generation) when `owner`'s objects
    /// would exceed the limit. Lists the owner's objects: one listing per check.
    pub(crate) async fn check_bytes_quota(
        &self,
        owner: UserId,
        adding: u64,
    ) -> Result<(), AppError> {
        if self.quotas.stored_bytes == 0 {
            return Ok(());
        }
        let objects = self.assets.list(&keys::user_prefix(owner)).await?;
        let stored: u64 = objects.iter().map(|o| o.size).sum();
        // A generation adds an unknown amount: it may start while below the limit.
        let needed = stored + adding.max(1);
        exceeded("stored_bytes", self.quotas.stored_bytes, needed)
    }

    /// Refuses a new run when `owner` already has the most allowed unsettled runs.
    pub(crate) async fn check_run_quota(&self, owner: UserId) -> Result<(), AppError> {
        let limit = self.quotas.active_runs;
        if limit == 0 {
            return Ok(());
        }
        let active = self
            .jobs
            .list_runs(&RunFilter {
                owner: Some(owner.0),
                subject: None,
                active_only: true,
                limit: usize::try_from(limit)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1),
            })
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))?;
        exceeded("active_runs", limit, active.len() as u64 + 1)
    }
}
