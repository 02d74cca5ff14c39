//! Reading and editing dramas: thin use cases over the repositories, plus the deletion of a
//! drama's stored objects.

use drama_assets::{AssetStore, Scope, keys};
use drama_dal::{DramaRepository, Page, PageRequest, StoredDrama, Version};
use drama_domain::{DomainError, Drama, DramaId, DramaSummary, EntityPatch, UserId};
use drama_jobs::RunFilter;

use crate::pipeline::job_error;
use crate::pipeline::jobs_port::JobsPort;
use crate::{App, AppError, Caller};

impl App {
    /// Refuses client text over its length bound (see [`crate::TextLimits`]).
    fn check_text(&self, sent: &impl serde::Serialize) -> Result<(), AppError> {
        let doc = serde_json::to_value(sent)
            .map_err(|e| AppError::Invalid(DomainError::field("", e.to_string())))?;
        self.limits.check_document(&doc).map_err(AppError::Invalid)
    }

    /// A drama of the caller (or, for a service caller, of `owner`).
    ///
    /// # Errors
    /// `NotFound`; `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    pub async fn get_drama(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        id: &DramaId,
    ) -> Result<StoredDrama, AppError> {
        Ok(self.store.get_complete(caller.owner(owner), id).await?)
    }

    /// Notices of every drama change from now on (any owner: callers filter by
    /// [`App::may_follow`]). One subscription per process is enough; the API fans it out.
    ///
    /// # Errors
    /// `Unavailable`.
    pub async fn drama_changes(&self) -> Result<drama_dal::DramaChangeStream, AppError> {
        Ok(self.store.drama_changes().await?)
    }

    /// Whether `caller` may see a change notice (their own dramas; a service caller, all).
    pub fn may_follow(caller: &Caller, change: &drama_dal::DramaChange) -> bool {
        caller.service || change.owner == caller.user
    }

    /// A page of summaries, newest first.
    ///
    /// # Errors
    /// `Invalid` (limit, cursor); `Unavailable`.
    #[tracing::instrument(skip_all)]
    pub async fn list_summaries(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        page: &PageRequest,
    ) -> Result<Page<DramaSummary>, AppError> {
        Ok(self.store.list_summaries(caller.owner(owner), page).await?)
    }

    /// A page of complete dramas, newest first.
    ///
    /// # Errors
    /// `Invalid` (limit, cursor); `Unavailable`.
    #[tracing::instrument(skip_all)]
    pub async fn list_dramas(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        page: &PageRequest,
    ) -> Result<Page<StoredDrama>, AppError> {
        Ok(self.store.list_complete(caller.owner(owner), page).await?)
    }

    /// Stores a complete drama sent by a client.
    ///
    /// # Errors
    /// `Invalid` naming the field; `AlreadyExists` for a taken id (or one a running
    /// generation is writing); `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %drama.id))]
    pub async fn create_drama(
        &self,
        caller: &Caller,
        drama: &Drama,
    ) -> Result<StoredDrama, AppError> {
        self.check_text(drama)?;
        drama.check_size().map_err(AppError::Invalid)?;
        let mut drama = drama.clone();
        self.make_media_urls_lasting(caller.user, drama.media_urls_mut())
            .await;
        // The id's turn, then the user's (`admission`), from the checks to the write.
        let _id_turn = self.admission.id(&drama.id).await;
        let _turn = self.admission.user(caller.user).await;
        self.ensure_not_being_written(&drama.id).await?;
        self.check_drama_quota(caller.user).await?;
        Ok(self.store.create(caller.user, &drama).await?)
    }

    /// Applies a PATCH to a drama of the caller or to one of its parts (character, episode,
    /// scene, asset), and returns the whole drama as committed.
    ///
    /// # Errors
    /// `Invalid` for text over its bound; `NotFound` (the drama, the part, or the entity the
    /// part is addressed through); `VersionConflict` when `expected` is stale; `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %drama))]
    pub async fn patch(
        &self,
        caller: &Caller,
        drama: &DramaId,
        patch: &EntityPatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, AppError> {
        let changes = patch
            .changes_json()
            .map_err(|e| AppError::Invalid(DomainError::field("", e.to_string())))?;
        self.limits
            .check_document(&changes)
            .map_err(AppError::Invalid)?;
        let mut patch = patch.clone();
        self.make_media_urls_lasting(caller.user, patch.media_urls_mut())
            .await;
        Ok(self
            .store
            .patch(caller.user, drama, &patch, expected)
            .await?)
    }

    /// Deletes a drama, its rows and its stored objects. The owner's runs on the drama that
    /// are still going are cancelled first (what has not started is refunded; a call under
    /// way finishes and is charged), since nothing they make has a drama to go to. The rows
    /// go next, in one transaction that also records every object key as an orphan; then
    /// everything under the drama's key prefix is deleted. If the bucket is unreachable now,
    /// the sweeper deletes the recorded objects later.
    ///
    /// # Errors
    /// `NotFound`; `Unavailable` (database).
    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    pub async fn delete_drama(&self, caller: &Caller, id: &DramaId) -> Result<(), AppError> {
        delete_drama_of(
            self.store.as_ref(),
            self.assets.as_ref(),
            self.jobs.as_ref(),
            caller.user,
            id,
        )
        .await
    }
}

/// The owner's runs on the drama that have not settled (at most a page of them: the
/// active-run quota keeps the number far below it).
async fn active_runs_of(
    jobs: &dyn JobsPort,
    owner: UserId,
    id: &DramaId,
) -> Result<Vec<drama_jobs::JobView>, AppError> {
    jobs.list_runs(&RunFilter {
        owner: Some(owner.0),
        subject: Some(id.to_string()),
        active_only: true,
        limit: 100,
    })
    .await
    .map_err(job_error)
}

/// Cancels the owner's active runs on the drama.
async fn cancel_runs_of(jobs: &dyn JobsPort, owner: UserId, id: &DramaId) -> Result<(), AppError> {
    for run in active_runs_of(jobs, owner, id).await? {
        let report = jobs
            .cancel(run.id, "the drama was deleted")
            .await
            .map_err(job_error)?;
        tracing::info!(
            job.id = %run.id,
            cancelled = report.cancelled,
            signalled = report.signalled,
            "run of a deleted drama cancelled"
        );
    }
    Ok(())
}

/// What [`App::delete_drama`] does, for a caller that has the ports but no [`App`] (the
/// legacy import deleting a drama whose source is gone): `owner`'s runs on drama `id` that are
/// still going are cancelled, the drama goes with its rows (its objects' keys recorded as
/// orphans in the same transaction), then everything under its key prefix, and a run started
/// in between is cancelled too.
///
/// # Errors
/// `NotFound` (Drama); `Unavailable` (database).
pub async fn delete_drama_of<S>(
    store: &S,
    assets: &dyn AssetStore,
    jobs: &dyn JobsPort,
    owner: UserId,
    id: &DramaId,
) -> Result<(), AppError>
where
    S: DramaRepository + ?Sized,
{
    if !active_runs_of(jobs, owner, id).await?.is_empty() {
        // Only a drama that is there has its runs cancelled: a run writing a new drama
        // under this id is not this request's to stop.
        store.get_complete(owner, id).await?;
        cancel_runs_of(jobs, owner, id).await?;
    }
    store.delete(owner, id).await?;
    // Uploads and anything else under the drama's prefix (e.g. a reference image) go too.
    match Scope::drama(id) {
        Ok(scope) => {
            let prefix = keys::scope_prefix(owner, &scope);
            if let Err(e) = assets.delete_prefix(&prefix).await {
                tracing::warn!(error = %e, "deleting the drama's objects failed; the sweeper retries");
            }
        }
        Err(e) => tracing::warn!(error = %e, "no object prefix for the drama"),
    }
    // A run started between the cancel and the delete.
    cancel_runs_of(jobs, owner, id).await
}
