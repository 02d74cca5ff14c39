//! Reading and editing dramas: thin use cases over the repositories, plus the deletion of a
//! drama's stored objects.

use drama_assets::{Scope, keys};
use drama_dal::{Page, PageRequest, StoredDrama, Version};
use drama_domain::{
    AssetId, AssetOwner, AssetPatch, CharacterId, CharacterPatch, DomainError, Drama, DramaId,
    DramaPatch, DramaSummary, EpisodeId, EpisodePatch, SceneId, ScenePatch, UserId,
};

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
    /// `Invalid` naming the field; `AlreadyExists` for a taken id; `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %drama.id))]
    pub async fn create_drama(
        &self,
        caller: &Caller,
        drama: &Drama,
    ) -> Result<StoredDrama, AppError> {
        self.check_text(drama)?;
        self.check_drama_quota(caller.user).await?;
        Ok(self.store.create(caller.user, drama).await?)
    }

    /// Applies a PATCH to a drama's own fields.
    ///
    /// # Errors
    /// `NotFound`; `VersionConflict` when `expected` is stale; `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    pub async fn patch_drama(
        &self,
        caller: &Caller,
        id: &DramaId,
        patch: &DramaPatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, AppError> {
        self.check_text(patch)?;
        Ok(self
            .store
            .patch_drama(caller.user, id, patch, expected)
            .await?)
    }

    /// Applies a PATCH to a character.
    ///
    /// # Errors
    /// `NotFound` (drama or character); `VersionConflict`; `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %drama, character.id = %character))]
    pub async fn patch_character(
        &self,
        caller: &Caller,
        drama: &DramaId,
        character: &CharacterId,
        patch: &CharacterPatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, AppError> {
        self.check_text(patch)?;
        Ok(self
            .store
            .patch_character(caller.user, drama, character, patch, expected)
            .await?)
    }

    /// Applies a PATCH to an episode.
    ///
    /// # Errors
    /// `NotFound` (drama or episode); `VersionConflict`; `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %drama, episode.id = %episode))]
    pub async fn patch_episode(
        &self,
        caller: &Caller,
        drama: &DramaId,
        episode: &EpisodeId,
        patch: &EpisodePatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, AppError> {
        self.check_text(patch)?;
        Ok(self
            .store
            .patch_episode(caller.user, drama, episode, patch, expected)
            .await?)
    }

    /// Applies a PATCH to a scene of an episode.
    ///
    /// # Errors
    /// `NotFound` (drama, episode or scene); `VersionConflict`; `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %drama, scene.id = %scene))]
    pub async fn patch_scene(
        &self,
        caller: &Caller,
        drama: &DramaId,
        episode: &EpisodeId,
        scene: &SceneId,
        patch: &ScenePatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, AppError> {
        self.check_text(patch)?;
        Ok(self
            .store
            .patch_scene(caller.user, drama, episode, scene, patch, expected)
            .await?)
    }

    /// Applies a PATCH to an asset of `owner_entity`.
    ///
    /// # Errors
    /// `NotFound` (drama, owner entity or asset); `VersionConflict`; `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %drama, asset.id = %asset))]
    pub async fn patch_asset(
        &self,
        caller: &Caller,
        drama: &DramaId,
        owner_entity: &AssetOwner,
        asset: &AssetId,
        patch: &AssetPatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, AppError> {
        self.check_text(patch)?;
        Ok(self
            .store
            .patch_asset(caller.user, drama, owner_entity, asset, patch, expected)
            .await?)
    }

    /// Deletes a drama, its rows and its stored objects. The rows go first, in one
    /// transaction that also records every object key as an orphan; then everything under
    /// the drama's key prefix is deleted. If the bucket is unreachable now, the sweeper
    /// deletes the recorded objects later.
    ///
    /// # Errors
    /// `NotFound`; `Unavailable` (database).
    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    pub async fn delete_drama(&self, caller: &Caller, id: &DramaId) -> Result<(), AppError> {
        self.store.delete(caller.user, id).await?;
        // Uploads and anything else under the drama's prefix (e.g. a reference image) go too.
        match Scope::drama(id) {
            Ok(scope) => {
                let prefix = keys::scope_prefix(caller.user, &scope);
                if let Err(e) = self.assets.delete_prefix(&prefix).await {
                    tracing::warn!(error = %e, "deleting the drama's objects failed; the sweeper retries");
                }
            }
            Err(e) => tracing::warn!(error = %e, "no object prefix for the drama"),
        }
        Ok(())
    }
}
