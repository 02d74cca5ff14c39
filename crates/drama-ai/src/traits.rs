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

/// How many times one wait asks the task again for a fresh file URL after its download was
/// refused (a 401/403, 404 or 410: a signed link that expired while the video waited).
const FRESH_URLS: u32 = 3;

/// Whether a download's error says that the file's link is no longer good (it expired, or was
/// withdrawn), while a poll of the task may name a new one.
fn link_expired(e: &AiError) -> bool {
    matches!(
        e,
        AiError::Unauthorized { .. }
            | AiError::BadRequest {
                status: 404 | 410,
                ..
            }
    )
}

/// Polls `task` until it is done, then downloads it.
///
/// The render is the provider's, and paid for once it was submitted: a poll or download that
/// fails on the way (a network error, a 5xx, a 429, a request timeout, an answer that cannot
/// be read) says nothing about it, so the task is asked again at the next interval, until the
/// deadline. A download whose link was refused (it expired while the video waited) asks the
/// task for a fresh link, up to three times per wait.
///
/// # Errors
/// [`AiError::VideoFailed`] or [`AiError::Refused`] (when the reason names moderation) if the
/// task fails; [`AiError::VideoDeadline`] with the task id when it is not done in time (its
/// `last_status` names the last passing failure when the task could not be reached); the
/// poll's or download's own errors when they are not passing ones.
#[tracing::instrument(skip_all, fields(provider = %model.model().provider, task_id = %task.task_id))]
pub async fn wait_for_video(
    model: &dyn VideoModel,
    task: &VideoTask,
    polling: VideoPolling,
) -> Result<GeneratedVideo, AiError> {
    let started = Instant::now();
    let provider = model.model().provider;
    let mut fresh_urls = 0;
    loop {
        let (last_status, pause) = match model.poll(&task.task_id).await {
            Ok(VideoStatus::Done { output }) => match model.download(&output).await {
                Ok(video) => return Ok(video),
                Err(e) if link_expired(&e) && fresh_urls < FRESH_URLS => {
                    fresh_urls += 1;
                    tracing::warn!(error = %e, "the video's link was refused; asking the task for a fresh one");
                    (format!("download refused: {e}"), polling.interval)
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "the video's download failed; trying again");
                    (format!("download failed: {e}"), pause_after(&e, polling))
                }
                Err(e) => return Err(e),
            },
            Ok(VideoStatus::Failed { reason }) => {
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
            Ok(status @ (VideoStatus::Pending | VideoStatus::Running { .. })) => {
                if let VideoStatus::Running { progress } = &status {
                    tracing::debug!(?progress, "video task running");
                }
                (status.word().to_owned(), polling.interval)
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "polling the video task failed; trying again");
                (format!("poll failed: {e}"), pause_after(&e, polling))
            }
            Err(e) => return Err(e),
        };
        let waited = started.elapsed();
        if waited + pause > polling.deadline {
            return Err(AiError::VideoDeadline {
                provider,
                task_id: task.task_id.clone(),
                last_status,
                waited,
            });
        }
        tokio::time::sleep(pause).await;
    }
}

/// The pause after a passing failure: the poll interval, or the provider's `Retry-After` when
/// it asks for longer.
fn pause_after(e: &AiError, polling: VideoPolling) -> Duration {
    e.retry_after()
        .map_or(polling.interval, |wait| wait.max(polling.interval))
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
