//! The writes of the generation pipeline that must commit together with a job transition.
//!
//! A handler that produced an asset must record it (the asset row, the entity's url, the
//! drama's version) and complete its job in one transaction: either both happen or neither,
//! and a worker that lost its lease (a zombie) changes nothing. Credits are debited in the
//! same transaction as the jobs they pay for are created.
//!
//! A script task priced by its tokens was debited its per-call price (the hold) with its run.
//! Its completion passes `usage_price`, what its usage came to: the task's cost drops to it
//! when it is less, and the difference is credited back (a `usage_settle` ledger row) in the
//! completing transaction. The price comes from the checkpointed product, so a completion
//! committed again settles the same amount, and a task settles at most once.

use async_trait::async_trait;
use drama_domain::{AssetId, CharacterId, Drama, DramaId, EpisodeId, Scene, SceneId, UserId};
use drama_jobs::{Expansion, Fence, Graph, JobError, JobId, RunId, Submitted};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::RepoError;
use crate::repos::{AssetObject, Version};

/// Which url field of the drama a generated asset also sets.
///
/// The one owner of this concept: the pipeline's task payloads carry it as it is (serialised
/// as `{"entity": "scene_image", "id": "s1"}`; never rename a variant that has been stored),
/// and both generation stores apply it. (`drama_legacy::UrlTarget` is another concept: where
/// an old file's url points, the bucket or elsewhere.)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "entity", content = "id", rename_all = "snake_case")]
pub enum EntityUrl {
    /// Only the asset's own `url`.
    None,
    /// `drama.url` (the cover).
    Drama,
    /// `characters[id].url` (the portrait).
    Character(CharacterId),
    /// `scenes[id].image_url` (the storyboard).
    SceneImage(SceneId),
    /// `scenes[id].video_url` (the clip).
    SceneVideo(SceneId),
    /// `episodes[id].url` (the stitched episode).
    Episode(EpisodeId),
}

/// A generated object to record on an asset.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedAsset {
    /// The asset the object belongs to.
    pub asset_id: AssetId,
    /// The url clients fetch it from.
    pub url: String,
    /// Where the bytes are and how they were made.
    pub object: AssetObject,
    /// The entity url set along with the asset's.
    pub entity_url: EntityUrl,
}

/// What happened to a generated asset when its job completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Recorded; the drama is now at this version.
    Recorded(Version),
    /// The asset (or the whole drama) was deleted while the job ran: the job completed, and
    /// the object was recorded as an orphan.
    AssetGone,
}

/// How a written drama is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DramaWrite {
    /// A new drama (its id must be free).
    Create,
    /// Replaces an existing drama of the owner.
    Replace,
}

/// Failures of the combined writes.
#[derive(Debug, thiserror::Error)]
pub enum GenerationError {
    /// The job's attempt lost its lease (it was retaken or already finished); nothing was
    /// written.
    #[error("the job's lease was lost; nothing was written")]
    FenceLost,
    /// A repository error (including `InsufficientTokens`, `AlreadyExists`, `NotFound`).
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// A job-engine error other than a lost fence.
    #[error(transparent)]
    Jobs(JobError),
}

impl From<JobError> for GenerationError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::FenceLost(_) => Self::FenceLost,
            JobError::Unavailable(m) => Self::Repo(RepoError::Unavailable(m)),
            other => Self::Jobs(other),
        }
    }
}

/// A credit returned to an owner when a run's failed, skipped or cancelled work is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refund {
    /// Who gets the tokens back.
    pub owner: UserId,
    /// How many (negative when resumed work completed after an earlier refund, in which case
    /// that much was debited again).
    pub amount: i64,
}

/// How a script task that stores what it wrote (a drama, an episode's scenes) completes:
/// what its usage came to, the nodes that follow it and their cost, and the job's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptCompletion {
    /// What the task's usage came to (see the module documentation); `None` keeps its
    /// per-call price.
    pub usage_price: Option<i64>,
    /// The nodes that follow, added only when the owner can pay `expansion_cost`.
    pub expansion: Expansion,
    /// What they cost, in tokens.
    pub expansion_cost: i64,
    /// The job's result; the store records in it whether the expansion was added.
    pub result: Value,
    /// Objects of the owner that what was stored holds from now on (a new drama's reference
    /// image): taken off the orphan list in the same transaction, so that the sweeper, which
    /// deletes a failed run's objects, keeps these.
    pub kept_objects: Vec<String>,
}

/// What a paid resume did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeCharged {
    /// The run resumed.
    pub run: RunId,
    /// Tasks queued again.
    pub queued: usize,
    /// Tokens debited for them.
    pub price: i64,
}

/// The pipeline's atomic writes. One method, one transaction.
#[async_trait]
pub trait GenerationStore: Send + Sync {
    /// Debits `cost` tokens from `owner` (nothing when 0) and submits `graph`.
    ///
    /// # Errors
    /// `InsufficientTokens` (nothing submitted); `Invalid` for a bad graph; `Unavailable`.
    async fn submit_charged(
        &self,
        owner: UserId,
        cost: i64,
        graph: &Graph,
    ) -> Result<Submitted, GenerationError>;

    /// Whether `owner`'s drama `drama` holds the asset `asset`: a media task asks before its
    /// paid call, so that an asset deleted since the run was planned (its drama deleted, its
    /// character removed) costs no call. `false` when the drama is gone or not the owner's.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn asset_exists(
        &self,
        owner: UserId,
        drama: &DramaId,
        asset: &AssetId,
    ) -> Result<bool, GenerationError>;

    /// Records a generated asset (object, urls, version bump) and completes the job with
    /// `result`. A deleted asset or drama does not fail the job: see [`Applied::AssetGone`].
    ///
    /// # Errors
    /// `FenceLost` (nothing written); `Unavailable`.
    async fn complete_asset(
        &self,
        fence: &Fence,
        owner: UserId,
        drama: &DramaId,
        generated: &GeneratedAsset,
        result: Value,
    ) -> Result<Applied, GenerationError>;

    /// Stores the scenes written for an episode (replacing its scenes), settles the task's
    /// `usage_price` (see the module documentation), debits `expansion_cost` and completes
    /// the job with `expansion` (all three from `completion`). When the owner cannot pay for
    /// the expansion, the scenes are still stored and the job completes without it; the
    /// return value says whether the expansion was added. An episode that has scenes by the
    /// time of the commit (stored by the user or another run while the call ran) keeps them:
    /// nothing is written and no expansion paid for, only the usage is settled. A drama or
    /// episode deleted while the call ran is treated the same way: the call was billed, so
    /// the job completes charged (its result says `applied: false`) and nothing is written.
    ///
    /// # Errors
    /// `FenceLost`; `Invalid`; `Unavailable`.
    async fn complete_scenes(
        &self,
        fence: &Fence,
        owner: UserId,
        drama: &DramaId,
        episode: &EpisodeId,
        scenes: &[Scene],
        completion: ScriptCompletion,
    ) -> Result<bool, GenerationError>;

    /// Stores a written drama, then completes as [`complete_scenes`](Self::complete_scenes)
    /// does (the expansion being the portraits and cover that follow). Without enough tokens
    /// for the expansion, the drama is stored and the job completes without it.
    ///
    /// # Errors
    /// `FenceLost`; `AlreadyExists` (create: the id was taken meanwhile; nothing written);
    /// `Invalid`; `Unavailable`.
    async fn complete_drama(
        &self,
        fence: &Fence,
        owner: UserId,
        drama: &Drama,
        write: DramaWrite,
        completion: ScriptCompletion,
    ) -> Result<bool, GenerationError>;

    /// Settles the task's `usage_price` and completes the job with `result` (a script call
    /// that stores nothing, such as a critique).
    ///
    /// # Errors
    /// `FenceLost` (nothing written); `Unavailable`.
    async fn complete_script(
        &self,
        fence: &Fence,
        owner: UserId,
        usage_price: Option<i64>,
        result: Value,
    ) -> Result<(), GenerationError>;

    /// Re-queues the failed, skipped and cancelled work under `job` and debits its price
    /// from `owner` in the same transaction (a `resume_charge` ledger row). Without enough
    /// tokens nothing is re-queued.
    ///
    /// # Errors
    /// `InsufficientTokens` (nothing changed); `Jobs(NotFound)`; `Unavailable`.
    async fn resume_charged(
        &self,
        owner: UserId,
        job: JobId,
    ) -> Result<ResumeCharged, GenerationError>;

    /// Credits the refunds of up to `limit` runs whose refundable cost changed, each in the
    /// same transaction that records it as refunded (so a crash never refunds twice). A
    /// negative amount (a claw-back) that the owner's balance cannot cover is refused: nothing
    /// is taken, the run stays due and the refusal is logged. Resumes pay for their work when
    /// they re-queue it, so claw-backs only settle runs resumed before they did.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn settle_refunds(&self, limit: u32) -> Result<Vec<Refund>, GenerationError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entity_urls_keep_the_form_stored_task_payloads_carry() {
        let cases = [
            (EntityUrl::None, r#"{"entity":"none"}"#),
            (EntityUrl::Drama, r#"{"entity":"drama"}"#),
            (
                EntityUrl::Character(CharacterId::parse("c1").unwrap()),
                r#"{"entity":"character","id":"c1"}"#,
            ),
            (
                EntityUrl::SceneImage(SceneId::parse("s1").unwrap()),
                r#"{"entity":"scene_image","id":"s1"}"#,
            ),
            (
                EntityUrl::SceneVideo(SceneId::parse("s1").unwrap()),
                r#"{"entity":"scene_video","id":"s1"}"#,
            ),
            (
                EntityUrl::Episode(EpisodeId::parse("e1").unwrap()),
                r#"{"entity":"episode","id":"e1"}"#,
            ),
        ];
        for (target, json) in cases {
            assert_eq!(serde_json::to_string(&target).unwrap(), json);
            assert_eq!(serde_json::from_str::<EntityUrl>(json).unwrap(), target);
        }
    }
}
