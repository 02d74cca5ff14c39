//! Per-user quotas: dramas held, bytes stored in the bucket, runs not yet settled.
//!
//! Checked before the work starts, so a refused request changes nothing. Two requests of one
//! user that race may each pass the check once (the limits bound cost; they are not money).
//! The stored bytes and objects are counted with a bound (see `usage`): a check never reads
//! more than `max_objects` entries, nor past the byte limit, whatever the user has stored.

use drama_assets::{Usage, UsageBound, keys};
use drama_domain::UserId;
use drama_jobs::RunFilter;

use crate::usage::Known;
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
    /// Objects one user may keep in the bucket: it bounds what a check of `stored_bytes`
    /// lists (1,000 objects a listing request), since many small objects weigh little.
    pub max_objects: u64,
}

impl Quotas {
    /// No limits (what [`App::new`] starts with; the server binary configures real ones).
    pub const UNLIMITED: Self = Self {
        dramas: 0,
        stored_bytes: 0,
        active_runs: 0,
        max_objects: 0,
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
    /// would exceed the byte limit, or one more object the object limit.
    ///
    /// The count stops at the limits (a user over either is refused without listing the
    /// rest) and is remembered for a few seconds: a remembered count passes a request, a
    /// refusal is always counted afresh (or from a count that stopped over a limit).
    pub(crate) async fn check_bytes_quota(
        &self,
        owner: UserId,
        adding: u64,
    ) -> Result<(), AppError> {
        let (bytes_limit, objects_limit) = (self.quotas.stored_bytes, self.quotas.max_objects);
        if bytes_limit == 0 && objects_limit == 0 {
            return Ok(());
        }
        // A generation adds an unknown amount: it may start while below the limit.
        let adding = adding.max(1);
        let check = |u: Usage| {
            exceeded("stored_bytes", bytes_limit, u.bytes + adding)
                .and_then(|()| exceeded("max_objects", objects_limit, u.objects + 1))
        };
        // A count that may overstate only passes; one that may understate only refuses.
        let verdict = |known: Known| match known {
            Known::AtMost(u) => check(u).ok().map(Ok),
            Known::AtLeast(u) => Some(check(u)),
        };
        if let Some(answer) = self.usage.get(owner).and_then(verdict) {
            return answer;
        }
        let _turn = self.usage.turn(owner).await;
        // A request of the same burst may have counted while this one waited.
        if let Some(answer) = self.usage.get(owner).and_then(verdict) {
            return answer;
        }
        let bound = UsageBound {
            bytes: if bytes_limit == 0 {
                u64::MAX
            } else {
                bytes_limit
            },
            objects: if objects_limit == 0 {
                u64::MAX
            } else {
                objects_limit
            },
        };
        let usage = self.assets.usage(&keys::user_prefix(owner), bound).await?;
        let known = if usage.complete {
            Known::AtMost(usage)
        } else {
            Known::AtLeast(usage)
        };
        self.usage.put(owner, known);
        check(usage)
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
