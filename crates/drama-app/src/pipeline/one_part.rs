//! Use cases that make one part's media: a character's audition, an episode's stitched video,
//! and the portrait and cover a request waits for (as the old server's synchronous routes
//! did), with what that wait needs.

use drama_dal::Entity;
use drama_domain::{
    Asset, AssetId, AssetKind, CharacterId, DramaId, EpisodeId, JobStatus, JobType,
};
use drama_jobs::{JobId, JobView};
use serde_json::json;
use tokio::time::Instant;

use super::plan::Scope;
use super::usecases::{GenerateOptions, SETTLE_POLL, Started, Waited};
use crate::{App, AppError, Caller, Precondition};

impl App {
    /// Starts the audition video of a character (after its portrait when that is missing).
    ///
    /// # Errors
    /// `NotFound` (drama or character); `InsufficientTokens`.
    pub async fn audition(
        &self,
        caller: &Caller,
        id: &DramaId,
        character: &CharacterId,
    ) -> Result<Started, AppError> {
        let drama = self.prepare(caller.user, id).await?;
        let c = drama
            .character(character.as_str())
            .ok_or_else(|| AppError::not_found(Entity::Character, character))?;
        let asset = c.audition().map(|a| a.id.clone());
        let asset = asset.ok_or_else(|| AppError::not_found(Entity::Asset, character))?;
        // As the old server's audition job: type `generate_video`, and a settled result that
        // names the character and its video (`App::job`).
        let shown = json!({
            "type": JobType::GenerateVideo.as_str(), "characterId": character, "assetId": asset,
        });
        let options = GenerateOptions {
            force: true,
            budget: None,
        };
        self.generate_shown(caller, id, Scope::Asset(asset), options, shown)
            .await
    }

    /// Starts stitching an episode's clips into its video (generating missing clips first).
    ///
    /// # Errors
    /// `NotFound` (drama or episode); `InsufficientTokens`.
    pub async fn stitch_episode(
        &self,
        caller: &Caller,
        id: &DramaId,
        episode: &EpisodeId,
    ) -> Result<Started, AppError> {
        let drama = self.prepare(caller.user, id).await?;
        let e = drama
            .episode(episode.as_str())
            .ok_or_else(|| AppError::not_found(Entity::Episode, episode))?;
        let asset = first_asset(&e.assets, AssetKind::Video, episode)?;
        self.generate(caller, id, Scope::Asset(asset), true).await
    }

    /// Generates a character's portrait now and answers when it is done (the old server's
    /// synchronous route); the work still runs as a job, visible like any other.
    ///
    /// # Errors
    /// `NotFound`; `GenerationFailed` with the provider's reason; `Unavailable`. A run that
    /// does not finish inside the synchronous wait is [`Waited::Running`].
    pub async fn portrait_now(
        &self,
        caller: &Caller,
        id: &DramaId,
        character: &CharacterId,
    ) -> Result<Waited, AppError> {
        let drama = self.prepare(caller.user, id).await?;
        let c = drama
            .character(character.as_str())
            .ok_or_else(|| AppError::not_found(Entity::Character, character))?;
        let asset = c
            .portrait()
            .map(|a| a.id.clone())
            .ok_or_else(|| AppError::not_found(Entity::Asset, character))?;
        let started = self.generate(caller, id, Scope::Asset(asset), true).await?;
        if self.wait_for(caller, started.job_id).await?.is_none() {
            return Ok(Waited::Running(started));
        }
        Ok(Waited::Done(Box::new(
            self.store.get_complete(caller.user, id).await?,
        )))
    }

    /// Generates the cover now (after the main characters' portraits exist), as the old
    /// server's synchronous route did, refusing what it refused.
    ///
    /// # Errors
    /// `Precondition` when there is no main character or one lacks a portrait; `NotFound`;
    /// `GenerationFailed`; `Unavailable`.
    pub async fn cover_now(&self, caller: &Caller, id: &DramaId) -> Result<Waited, AppError> {
        let drama = self.prepare(caller.user, id).await?;
        let mains: Vec<&drama_domain::Character> =
            drama.characters.iter().filter(|c| c.main).collect();
        if mains.is_empty() {
            return Err(AppError::Precondition(Precondition::NoMainCharacter));
        }
        let missing: Vec<String> = mains
            .iter()
            .filter(|c| c.url.is_none())
            .map(|c| c.name.clone())
            .collect();
        if !missing.is_empty() {
            return Err(AppError::Precondition(Precondition::MissingPortraits(
                missing,
            )));
        }
        let cover = drama
            .cover()
            .map(|a| a.id.clone())
            .ok_or_else(|| AppError::not_found(Entity::Asset, id))?;
        let started = self.generate(caller, id, Scope::Asset(cover), true).await?;
        let settled = self
            .wait_for(caller, started.job_id)
            .await
            .map_err(|e| match e {
                AppError::GenerationFailed(m) => {
                    AppError::GenerationFailed(format!("Failed to generate cover photo: {m}"))
                }
                other => other,
            })?;
        if settled.is_none() {
            return Ok(Waited::Running(started));
        }
        Ok(Waited::Done(Box::new(
            self.store.get_complete(caller.user, id).await?,
        )))
    }

    /// Waits until a run settles, at most the synchronous wait, looking again after each pause
    /// of [`SETTLE_POLL`]; fails with the first failure's reason, and is `None` when the run is
    /// still going.
    async fn wait_for(&self, caller: &Caller, run: JobId) -> Result<Option<JobView>, AppError> {
        let deadline = Instant::now() + self.sync_wait;
        let mut polls = 0;
        loop {
            let view = self.job(caller, run).await?;
            if view.state.is_settled() {
                return match view.coarse_status() {
                    JobStatus::Completed => Ok(Some(view)),
                    _ => Err(AppError::GenerationFailed(self.failure_reason(&view).await)),
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            tokio::time::sleep(SETTLE_POLL.delay(polls).min(left)).await;
            polls = polls.saturating_add(1);
        }
    }

    async fn failure_reason(&self, run: &JobView) -> String {
        if let Some(e) = &run.error {
            return e.clone();
        }
        match self.jobs.run_tree(run.id).await {
            Ok(Some(tree)) => tree
                .nodes
                .iter()
                .find_map(|n| n.error.clone())
                .unwrap_or_else(|| "the job did not complete".to_owned()),
            _ => "the job did not complete".to_owned(),
        }
    }
}

/// The first asset of `kind` among the assets of `holder`; NotFound names the holder.
fn first_asset(
    assets: &[Asset],
    kind: AssetKind,
    holder: impl std::fmt::Display,
) -> Result<AssetId, AppError> {
    assets
        .iter()
        .find(|a| a.kind == kind)
        .map(|a| a.id.clone())
        .ok_or_else(|| AppError::not_found(Entity::Asset, holder))
}
