//! The provider traits the pipeline is written against (object safe, `Arc<dyn …>`).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use drama_domain::{Drama, DramaId, EpisodeId, Scene};

use crate::error::AiError;
use crate::types::{
    GeneratedAudio, GeneratedImage, GeneratedVideo, ImageRequest, ReferenceImage, VideoOutput,
    VideoRequest, VideoStatus, VideoTask, VoiceRequest,
};
use crate::usage::{Generated, ModelInfo};

/// Ask a script model for a new drama.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DramaRequest {
    /// The id the new drama gets.
    pub drama_id: DramaId,
    /// The user's premise; an episode count in it ("5 episodes") is honoured.
    pub premise: String,
    /// Images that came with the premise (e.g. a character drawing), shown to the model.
    pub references: Vec<ReferenceImage>,
}

impl DramaRequest {
    /// A request without reference images.
    pub fn new(drama_id: DramaId, premise: impl Into<String>) -> Self {
        Self {
            drama_id,
            premise: premise.into(),
            references: Vec::new(),
        }
    }
}

/// Writes and edits drama scripts with structured output.
///
/// Every returned drama passed [`Drama::validate`] and the rules of [`crate::validate`]: 1–2 main
/// characters, unique ids, the requested episode count; every returned scene has exactly one
/// storyboard (image, `depends_on` = up to 3 character ids) and one clip (video, `depends_on` =
/// the storyboard id, 10 or 15 seconds).
#[async_trait]
pub trait ScriptModel: Send + Sync {
    /// Provider and model that answer.
    fn model(&self) -> ModelInfo;

    /// Writes a drama (characters and episodes; no scenes yet) from a premise.
    async fn generate_drama(&self, request: &DramaRequest) -> Result<Generated<Drama>, AiError>;

    /// Rewrites `drama` following `feedback` into a new drama with id `new_id` and the same
    /// premise. Scenes are not carried over; write them again per episode.
    async fn improve_drama(
        &self,
        drama: &Drama,
        feedback: &str,
        new_id: &DramaId,
    ) -> Result<Generated<Drama>, AiError>;

    /// A critique of `drama` as plain text.
    async fn critique_drama(&self, drama: &Drama) -> Result<Generated<String>, AiError>;

    /// Writes the scenes of episode `episode_id` of `drama`, in the light of the episodes before
    /// it (their scenes included when written). Scene and asset ids do not collide with any id
    /// already in `drama`.
    async fn write_episode_scenes(
        &self,
        drama: &Drama,
        episode_id: &EpisodeId,
    ) -> Result<Generated<Vec<Scene>>, AiError>;
}

/// Draws 9:16 images from a prompt and reference images.
#[async_trait]
pub trait ImageModel: Send + Sync {
    /// Provider and model that draw.
    fn model(&self) -> ModelInfo;

    /// Most reference images one request may carry.
    fn max_references(&self) -> usize;

    /// Draws one image. The request's prompt is framed (9:16, style, what the references are)
    /// by [`crate::prompts::image_prompt`].
    async fn generate_image(
        &self,
        request: &ImageRequest,
    ) -> Result<Generated<GeneratedImage>, AiError>;
}

/// Renders 9:16 clips as provider tasks: submit, poll, download.
#[async_trait]
pub trait VideoModel: Send + Sync {
    /// Provider and model that render.
    fn model(&self) -> ModelInfo;

    /// How often to poll and when to give up, as configured.
    fn polling(&self) -> VideoPolling;

    /// Starts a task. The usage reports the requested seconds, which the provider bills when
    /// the task finishes.
    async fn submit(&self, request: &VideoRequest) -> Result<Generated<VideoTask>, AiError>;

    /// Whether the same request sent again is the same task, billed once: the provider
    /// derives the task from the request (or honours an idempotency key) and charges nothing
    /// for the repeat. Then a submission whose answer was lost, or whose sender stopped before
    /// recording the task id, may simply be sent again; otherwise it may be a render the
    /// provider took and bills, and it is not sent twice. The offline provider is such a
    /// provider; none of the HTTP providers promises it.
    fn submission_is_idempotent(&self) -> bool {
        false
    }

    /// The task's state now. Transient errors of the poll request itself are retried inside.
    async fn poll(&self, task_id: &str) -> Result<VideoStatus, AiError>;

    /// Fetches a finished video (or returns the bytes the task already carried).
    async fn download(&self, output: &VideoOutput) -> Result<GeneratedVideo, AiError>;
}

/// Speaks a line in a described voice.
#[async_trait]
pub trait VoiceModel: Send + Sync {
    /// Provider and model that speak.
    fn model(&self) -> ModelInfo;

    /// One audio file with the line.
    async fn speak(&self, request: &VoiceRequest) -> Result<Generated<GeneratedAudio>, AiError>;
}

/// Poll cadence and patience for video tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoPolling {
    /// Pause between polls.
    pub interval: Duration,
    /// Give up (with [`AiError::VideoDeadline`]) after this long.
    pub deadline: Duration,
}

/// Polls `task` until it is done, then downloads it.
///
/// # Errors
/// [`AiError::VideoFailed`] or [`AiError::Refused`] (when the reason names moderation) if the
/// task fails; [`AiError::VideoDeadline`] with the task id when it is not done in time; the
/// poll's or download's own errors otherwise.
#[tracing::instrument(skip_all, fields(provider = %model.model().provider, task_id = %task.task_id))]
pub async fn wait_for_video(
    model: &dyn VideoModel,
    task: &VideoTask,
    polling: VideoPolling,
) -> Result<GeneratedVideo, AiError> {
    let started = Instant::now();
    let provider = model.model().provider;
    loop {
        let status = model.poll(&task.task_id).await?;
        match status {
            VideoStatus::Done { output } => return model.download(&output).await,
            VideoStatus::Failed { reason } => {
                return Err(if crate::error::looks_like_moderation(&reason) {
                    AiError::Refused { provider, reason }
                } else {
                    AiError::VideoFailed {
                        provider,
                        task_id: task.task_id.clone(),
                        reason,
                    }
                });
            }
            VideoStatus::Pending | VideoStatus::Running { .. } => {
                let waited = started.elapsed();
                if waited + polling.interval > polling.deadline {
                    return Err(AiError::VideoDeadline {
                        provider,
                        task_id: task.task_id.clone(),
                        last_status: status.word().to_owned(),
                        waited,
                    });
                }
                if let VideoStatus::Running { progress } = status {
                    tracing::debug!(?progress, "video task running");
                }
                tokio::time::sleep(polling.interval).await;
            }
        }
    }
}

/// Submits, waits and downloads in one call, with the model's configured polling.
///
/// Prefer [`VideoModel::submit`] + [`wait_for_video`] when the task id must be stored first.
///
/// # Errors
/// As [`VideoModel::submit`] and [`wait_for_video`].
pub async fn generate_video(
    model: &dyn VideoModel,
    request: &VideoRequest,
) -> Result<Generated<GeneratedVideo>, AiError> {
    let task = model.submit(request).await?;
    let video = wait_for_video(model, &task.output, model.polling()).await?;
    Ok(task.map(|_| video))
}
