//! Use cases that make one part's media: a character's audition, an episode's stitched video,
//! and the portrait and cover a request waits for (as the old server's synchronous routes
//! did), with what that wait needs.

use drama_dal::Entity;
use drama_domain::{
    Asset, AssetId, AssetKind, CharacterId, Drama, DramaId, EpisodeId, JobStatus, JobType, SceneId,
    UserId,
};
use drama_jobs::{JobId, JobView};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::plan::Scope;
use super::spec::kind;
use super::usecases::{GenerateOptions, SETTLE_POLL, Started, Waited};
use crate::once::Once;
use crate::{App, AppError, Caller, Precondition};

/// What a generation request asks for, as its client named it.
///
/// A keyed repeat of a paid request is answered from these names alone, before the drama is
/// read: a part deleted or edited since the first request must not turn the replay into a 404
/// or a 400, nor make the repeat write the drama. The first request resolves them against the
/// drama ([`Target::resolve`]) into the scope the planner takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A scope as the planner takes it.
    Scope(Scope),
    /// One scene (storyboard and clip), addressed through its episode.
    Scene {
        /// The episode the scene must be in.
        episode: EpisodeId,
        /// The scene.
        scene: SceneId,
    },
    /// One asset of a scene, addressed through its episode and scene.
    SceneAsset {
        /// The episode the scene must be in.
        episode: EpisodeId,
        /// The scene the asset must be in.
        scene: SceneId,
        /// The asset.
        asset: AssetId,
    },
    /// A character's audition video.
    Audition(CharacterId),
    /// A character's portrait.
    Portrait(CharacterId),
    /// The drama's cover, once every main character has a portrait.
    Cover,
    /// An episode's video stitched from its clips.
    Stitch(EpisodeId),
}

impl Target {
    /// How the request's fingerprint names what it asked for. A target that addresses a
    /// scope (a scene, an asset) is named as that scope was before targets existed, so that a
    /// key used then still names the same request.
    pub(super) fn named(&self) -> String {
        match self {
            Self::Scope(scope) => format!("{scope:?}"),
            Self::Scene { scene, .. } => format!("{:?}", Scope::Scene(scene.clone())),
            Self::SceneAsset { asset, .. } => format!("{:?}", Scope::Asset(asset.clone())),
            Self::Audition(c) => format!("Audition({c})"),
            Self::Portrait(c) => format!("Portrait({c})"),
            Self::Cover => "Cover".to_owned(),
            Self::Stitch(e) => format!("Stitch({e})"),
        }
    }

    /// The asset an earlier build named this request by (`Asset(<id>)`, resolved in the
    /// drama before the key was looked up), for the targets it did not name as they are
    /// named now; `None` for the others, or when `drama` lacks the part.
    fn former_asset(&self, drama: &Drama) -> Option<AssetId> {
        let asset = match self {
            Self::Scope(_) | Self::Scene { .. } | Self::SceneAsset { .. } => None,
            Self::Audition(c) => drama.character(c.as_str())?.audition(),
            Self::Portrait(c) => drama.character(c.as_str())?.portrait(),
            Self::Cover => drama.cover(),
            Self::Stitch(e) => drama
                .episode(e.as_str())?
                .assets
                .iter()
                .find(|a| a.kind == AssetKind::Video),
        };
        asset.map(|a| a.id.clone())
    }

    /// The scope to plan in `drama` (of id `id`), and what the run's payload adds for old
    /// clients: the job type the old server gave the request and, for an audition, the
    /// character and asset its settled result names.
    ///
    /// # Errors
    /// `NotFound` naming the missing part; `Precondition` for a cover whose main characters
    /// lack portraits (or that has none).
    pub(super) fn resolve(&self, drama: &Drama, id: &DramaId) -> Result<(Scope, Value), AppError> {
        match self {
            Self::Scope(scope) => {
                // The old server gave an episode's generation the job type `generate_image`.
                let shown = match scope {
                    Scope::Episode(_) => json!({"type": JobType::GenerateImage.as_str()}),
                    _ => json!({}),
                };
                Ok((scope.clone(), shown))
            }
            Self::Scene { episode, scene } => {
                scene_in(drama, episode, scene)?;
                Ok((Scope::Scene(scene.clone()), json!({})))
            }
            Self::SceneAsset {
                episode,
                scene,
                asset,
            } => {
                scene_in(drama, episode, scene)?
                    .assets
                    .iter()
                    .find(|a| &a.id == asset)
                    .ok_or_else(|| AppError::not_found(Entity::Asset, asset))?;
                Ok((Scope::Asset(asset.clone()), json!({})))
            }
            Self::Audition(character) => {
                let asset = character_in(drama, character)?
                    .audition()
                    .map(|a| a.id.clone())
                    .ok_or_else(|| AppError::not_found(Entity::Asset, character))?;
                // As the old server's audition job: type `generate_video`, and a settled
                // result that names the character and its video (`App::job`).
                let shown = json!({
                    "type": JobType::GenerateVideo.as_str(), "characterId": character,
                    "assetId": asset,
                });
                Ok((Scope::Asset(asset), shown))
            }
            Self::Portrait(character) => {
                let asset = character_in(drama, character)?
                    .portrait()
                    .map(|a| a.id.clone())
                    .ok_or_else(|| AppError::not_found(Entity::Asset, character))?;
                Ok((Scope::Asset(asset), json!({})))
            }
            Self::Cover => {
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
                Ok((Scope::Asset(cover), json!({})))
            }
            Self::Stitch(episode) => {
                let e = drama
                    .episode(episode.as_str())
                    .ok_or_else(|| AppError::not_found(Entity::Episode, episode))?;
                let asset = first_asset(&e.assets, AssetKind::Video, episode)?;
                Ok((Scope::Asset(asset), json!({})))
            }
        }
    }
}

fn character_in<'d>(
    drama: &'d Drama,
    character: &CharacterId,
) -> Result<&'d drama_domain::Character, AppError> {
    drama
        .character(character.as_str())
        .ok_or_else(|| AppError::not_found(Entity::Character, character))
}

/// The scene `scene` of the episode `episode` (NotFound naming whichever is missing).
fn scene_in<'d>(
    drama: &'d Drama,
    episode: &EpisodeId,
    scene: &SceneId,
) -> Result<&'d drama_domain::Scene, AppError> {
    drama
        .episode(episode.as_str())
        .ok_or_else(|| AppError::not_found(Entity::Episode, episode))?
        .scenes
        .iter()
        .find(|s| &s.id == scene)
        .ok_or_else(|| AppError::not_found(Entity::Scene, scene))
}

/// A single part is made again whenever it is asked for.
const ALWAYS: GenerateOptions = GenerateOptions {
    force: true,
    budget: None,
};

impl App {
    /// The answer to a keyed repeat of the generation of `target` in the drama `id`, whose
    /// key names `run`: its first answer when `run` was started by this request, refused
    /// when by another one.
    ///
    /// A run started by an earlier build, which named an audition, portrait, cover or stitch
    /// by the asset it resolved to (`Asset(<id>)`), is this request when its fingerprint is
    /// that of the same drama and options with the asset this target resolves to now: a
    /// client repeating its request across an upgrade (or reaching the other build during
    /// one) gets its run, not a refusal that makes it pay again under a new key.
    ///
    /// # Errors
    /// `Invalid` naming the key when it was used for another request.
    pub(super) async fn replay_part(
        &self,
        owner: UserId,
        id: &DramaId,
        target: &Target,
        options: GenerateOptions,
        once: &Once,
        run: &JobView,
    ) -> Result<Started, AppError> {
        if !once.started(run) && self.started_before(owner, id, target, options, run).await {
            return crate::once::replayed(run);
        }
        once.replay(run)
    }

    /// Whether an earlier build started `run` for `target` (see [`App::replay_part`]).
    async fn started_before(
        &self,
        owner: UserId,
        id: &DramaId,
        target: &Target,
        options: GenerateOptions,
        run: &JobView,
    ) -> bool {
        let Some(scope) = run.payload.get("scope").and_then(Value::as_str) else {
            return false;
        };
        let GenerateOptions { force, budget } = options;
        let former = json!({"dramaId": id, "scope": scope, "force": force, "budget": budget});
        if !crate::once::recorded_as(run, kind::GENERATE, &former) {
            return false;
        }
        // Only reading: a repeat never writes the drama. A drama gone since cannot say which
        // asset the request named, and the repeat is refused as before.
        let Ok(stored) = self.store.get_complete(owner, id).await else {
            return false;
        };
        target
            .former_asset(&stored.drama)
            .is_some_and(|asset| format!("{:?}", Scope::Asset(asset)) == scope)
    }

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
        self.generate_target(caller, id, Target::Audition(character.clone()), ALWAYS)
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
        self.generate_target(caller, id, Target::Stitch(episode.clone()), ALWAYS)
            .await
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
        let started = self
            .generate_target(caller, id, Target::Portrait(character.clone()), ALWAYS)
            .await?;
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
        let started = self
            .generate_target(caller, id, Target::Cover, ALWAYS)
            .await?;
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
