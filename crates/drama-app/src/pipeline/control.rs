//! Controlling runs after they started: cancel, paid resume, and the refund loop.

use std::time::Duration;

use drama_dal::{Entity, RepoError};
use drama_domain::{DramaId, UserId};
use drama_jobs::{JobId, JobState, JobView};

use super::spec::kind;
use super::usecases::{generation_error, job_error};
use crate::{App, AppError, Caller};

impl App {
    /// Cancels a run or a subtree: nothing new starts, running handlers are told to stop.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn cancel_job(&self, caller: &Caller, id: JobId) -> Result<JobView, AppError> {
        self.job(caller, id).await?;
        self.jobs
            .cancel(id, "cancelled by the user")
            .await
            .map_err(job_error)?;
        self.job(caller, id).await
    }

    /// Re-queues what failed, was skipped or was cancelled (never what completed) and debits
    /// its price in the same transaction; without enough tokens nothing is re-queued.
    ///
    /// A run that settled short of completing is active again once resumed: that starts a
    /// run as far as the quotas go, checked and re-queued in the user's turn as
    /// `App::submit` does, so cancelling runs and resuming them cannot pass `active_runs`;
    /// one that has still to write its new drama counts against `dramas` too.
    ///
    /// # Errors
    /// `NotFound`; `QuotaExceeded`, `InsufficientTokens`, and `AlreadyExists` for the new
    /// drama's id when another run is writing it or a drama holds it (nothing re-queued);
    /// `Unavailable`.
    #[tracing::instrument(skip_all, fields(job.id = %id, user.id = %caller.user))]
    pub async fn resume_job(&self, caller: &Caller, id: JobId) -> Result<JobView, AppError> {
        let view = self.job(caller, id).await?;
        let run = self
            .jobs
            .job(view.run_id)
            .await
            .map_err(job_error)?
            .ok_or_else(|| AppError::not_found(Entity::Job, id))?;
        // A completed run has nothing to re-queue; an active one is counted already.
        let starts_again = run.state.is_settled() && run.state != JobState::Completed;
        // A run that writes a new drama (from a premise, or an improvement into a new id) and
        // settled before writing it would store one more drama once resumed: the drama quota
        // and the id are checked as when it started, in the id's turn and then the user's
        // (the order every admission takes, after the drama's turn).
        let new_drama = match (&run.subject, run.kind.as_str()) {
            (Some(subject), kind::CREATE_DRAMA | kind::IMPROVE_DRAMA) if starts_again => {
                DramaId::parse(subject.as_str()).ok()
            }
            _ => None,
        };
        self.ensure_subject_there(caller, &run).await?;
        // What it re-queues, a generation request of the drama reading the active runs would
        // plan and pay for again: it waits for the drama's turn, which that request holds
        // from its read to its submit.
        let _drama_turn = match run.subject.as_deref().and_then(|s| DramaId::parse(s).ok()) {
            Some(drama) => Some(self.admission.drama(UserId(run.owner), &drama).await),
            None => None,
        };
        let _id_turn = match &new_drama {
            Some(drama) => Some(self.admission.id(drama).await),
            None => None,
        };
        let _turn = self.admission.user(caller.user).await;
        if starts_again {
            self.check_run_quota(caller.user).await?;
            if run.kind != kind::CRITIQUE_DRAMA {
                self.check_bytes_quota(caller.user, 0).await?;
            }
        }
        if let Some(drama) = &new_drama
            && !self.drama_written(run.id).await?
        {
            // The drama is still to be written, so a drama under its id now is someone
            // else's (stored while the run was settled): the write would pay for its call
            // and then fail on the id. Nothing is re-queued or charged.
            if self.store.id_taken(drama).await? {
                return Err(AppError::AlreadyExists {
                    entity: Entity::Drama,
                    id: drama.to_string(),
                });
            }
            self.check_drama_quota(caller.user).await?;
            self.ensure_not_being_written(drama).await?;
        }
        let charged = self
            .generation
            .resume_charged(caller.user, id)
            .await
            .map_err(generation_error)?;
        tracing::info!(
            queued = charged.queued,
            price = charged.price,
            "run resumed"
        );
        self.job(caller, id).await
    }

    /// Refuses (`NotFound`, naming the drama) to resume a run whose drama is gone: deleting
    /// it cancelled and refunded the run, and its tasks would pay for calls whose products
    /// have nowhere to go (a portrait reads nothing of the drama before its call). A run that
    /// writes its drama (from a premise, an improvement) and has not written it yet has no
    /// drama to find: the checks of a new drama's id apply to it instead.
    async fn ensure_subject_there(&self, caller: &Caller, run: &JobView) -> Result<(), AppError> {
        let Some(drama) = run.subject.as_deref().and_then(|s| DramaId::parse(s).ok()) else {
            return Ok(());
        };
        let writes_it = matches!(run.kind.as_str(), kind::CREATE_DRAMA | kind::IMPROVE_DRAMA);
        if writes_it && !self.drama_written(run.id).await? {
            return Ok(());
        }
        // One query that answers `NotFound` for a drama gone (or not the owner's), without
        // reading the drama itself.
        match self.store.asset_objects(caller.user, &drama).await {
            Ok(_) => Ok(()),
            Err(RepoError::NotFound { .. }) => Err(AppError::not_found(Entity::Drama, &drama)),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the run's drama-writing task completed (it is among the run's first
    /// children: ids are ordered by creation, and the portraits and cover it adds come later).
    async fn drama_written(&self, run: JobId) -> Result<bool, AppError> {
        let first = self.jobs.children(run, None, 4).await.map_err(job_error)?;
        Ok(first
            .iter()
            .any(|n| n.kind == kind::WRITE_DRAMA && n.state == JobState::Completed))
    }

    /// Credits refunds that are due; returns how many owners were credited.
    pub async fn settle_refunds(&self) -> usize {
        match self.generation.settle_refunds(100).await {
            Ok(refunds) => {
                for r in &refunds {
                    tracing::info!(user.id = %r.owner, amount = r.amount, "refund credited");
                }
                refunds.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "refunds not settled");
                0
            }
        }
    }

    /// Settles refunds every `period` until the task is dropped.
    pub async fn run_refunds(self, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.settle_refunds().await;
        }
    }
}
