//! The video handler: one paid submission per render, then polls of the provider's task.

use drama_ai::{AiError, ModelInfo, VideoDuration, VideoRequest, VideoTask};
use drama_jobs::{JobContext, JobError, Outcome};
use serde_json::{Value, json};

use super::{MediaInputs, ai_outcome, cancellable_call};
use crate::App;

/// Whether a video task's error says the provider's task is over without a video this server
/// can use: it failed or was refused, the provider no longer knows it (a 4xx for its id), or
/// its file was refused here. Anything else leaves the task worth polling again.
fn video_task_ended(e: &AiError) -> bool {
    matches!(
        e,
        AiError::VideoFailed { .. }
            | AiError::Refused { .. }
            | AiError::BadRequest { .. }
            | AiError::FileRefused { .. }
    )
}

/// The checkpoint key a video task holds while its paid submission may be out and its task
/// id is not recorded yet (its value: the attempt that sent it).
const SUBMITTING: &str = "submitting";

/// Clears the submission mark of a task (the next attempt, or a resume, may submit), retrying
/// a passing failure of the store.
async fn clear_submission_mark(app: &App, ctx: &JobContext) -> Result<(), JobError> {
    app.after_paid_call(
        "clearing the submission mark",
        JobError::is_retryable,
        || ctx.checkpoint(Value::Null),
    )
    .await
}

/// An earlier attempt left the submission mark without a task id: it sent the paid
/// submission, or was sending it, and stopped before the provider's task id was recorded.
/// The provider may be rendering, and billing, that video, and its id is lost: like a
/// submission whose answer was lost (`AiError::SubmitUncertain`), the task ends failed (and
/// refunded) instead of paying for a second render. The mark is cleared first, so that a
/// deliberate resume of the failed task submits again.
async fn submission_left_unrecorded(app: &App, ctx: &JobContext, model: &ModelInfo) -> Outcome {
    let error = AiError::SubmitUncertain {
        provider: model.provider,
        cause: "an earlier attempt stopped after sending it, before the provider's task id was \
                recorded"
            .to_owned(),
    };
    match clear_submission_mark(app, ctx).await {
        Ok(()) => Outcome::fail(&error),
        Err(e) if e.is_fence_lost() => Outcome::fail("the lease was lost"),
        // The mark stays, so the next attempt ends the task the same way.
        Err(e) => Outcome::retry(format!("{error}; its mark could not be cleared: {e}")),
    }
}

/// After a submission that failed: the mark goes. A refusal (a 4xx, the provider's error in
/// its answer, a connection never made, a cancellation before a retry was sent) took nothing,
/// so a retry may send again; a submission that may have been taken ends the task failed, and
/// a resume of it must be able to submit.
async fn submission_failed(app: &App, ctx: &JobContext, error: &AiError) -> Outcome {
    let uncertain = matches!(error, AiError::SubmitUncertain { .. });
    match clear_submission_mark(app, ctx).await {
        Ok(()) => {}
        Err(e) if e.is_fence_lost() => return Outcome::fail("the lease was lost"),
        // Left in place, the mark makes the next attempt end the task rather than submit.
        Err(e) if uncertain => {
            return Outcome::retry(format!("{error}; its mark could not be cleared: {e}"));
        }
        Err(e) => {
            tracing::warn!(error = %e, job.id = %ctx.id(), "the submission mark could not be cleared; a later attempt will not submit");
        }
    }
    if ctx.is_cancelled() && !uncertain {
        return Outcome::cancelled("cancelled");
    }
    ai_outcome(error)
}

/// A deferral of a task whose render is out at the provider: polled again after `interval`
/// (or the provider's `Retry-After`, when longer), without using an attempt.
fn put_off(error: &AiError, interval: std::time::Duration) -> Outcome {
    let delay = error
        .retry_after()
        .map_or(interval, |wait| wait.max(interval));
    Outcome::retry_after(delay, error)
}

impl App {
    pub(super) async fn run_video(&self, ctx: JobContext) -> Outcome {
        let model = self.ai.video_model();
        let MediaInputs {
            task,
            mut references,
            hash,
        } = outcome!(self.media_inputs(&ctx, &model.model(), true).await);
        let duration = step!(
            VideoDuration::from_seconds(task.duration.unwrap_or(10)),
            ai_outcome
        );
        // A task submitted by an earlier attempt is polled, not paid for again.
        let checkpoint = ctx.last_checkpoint();
        let submitted = checkpoint
            .as_ref()
            .and_then(|c| c.get("task_id").and_then(Value::as_str).map(str::to_owned));
        let (video_task, mut usage) = match submitted {
            Some(task_id) => (VideoTask { task_id, duration }, drama_ai::Usage::default()),
            None => {
                // A provider that takes a repeat as the same task is simply asked again.
                if checkpoint.is_some_and(|c| c.get(SUBMITTING).is_some())
                    && !model.submission_is_idempotent()
                {
                    return submission_left_unrecorded(self, &ctx, &model.model()).await;
                }
                // A cancellation seen before the paid submission is honoured (and refunded).
                if ctx.is_cancelled() {
                    return Outcome::cancelled("cancelled");
                }
                let request = VideoRequest {
                    prompt: task.prompt.clone(),
                    label: task.label.clone(),
                    reference: references.drain(..).next(),
                    duration,
                };
                // Said durably, under this attempt's fence, before the request goes out: an
                // attempt that stops between the request and the checkpoint of its task id
                // (its worker killed, shut down past its grace, its lease lost) leaves this
                // mark, and the next attempt does not submit (and pay) again. An attempt that
                // lost its lease already sends nothing.
                match ctx.checkpoint(json!({ SUBMITTING: ctx.attempt() })).await {
                    Ok(()) => {}
                    Err(e) if e.is_fence_lost() => return Outcome::fail("the lease was lost"),
                    Err(e) => return Outcome::retry(e),
                }
                // A submission whose answer was lost (`AiError::SubmitUncertain`) may be a
                // render the provider took and bills; its task id is gone, so it is not
                // submitted again by this attempt nor by a later one: the error is permanent
                // and the task ends failed, refunded, for the user to resume deliberately.
                let submitted = match cancellable_call(&ctx, model.submit(&request)).await {
                    Ok(submitted) => submitted,
                    Err(e) => return submission_failed(self, &ctx, &e).await,
                };
                // The submission is paid: a failure to record it must not send the next
                // attempt to submit again. A passing failure is retried here; if one persists,
                // this attempt polls anyway, and a later one finds the mark above and ends
                // the task failed rather than paying for a second render.
                let task_id = json!({ "task_id": submitted.output.task_id });
                let saved = self
                    .after_paid_call(
                        "checkpointing the provider's task id",
                        JobError::is_retryable,
                        || ctx.checkpoint(task_id.clone()),
                    )
                    .await;
                match saved {
                    Ok(()) => {}
                    Err(e) if e.is_fence_lost() => return Outcome::fail("the lease was lost"),
                    Err(e) => {
                        tracing::warn!(error = %e, job.id = %ctx.id(), "the provider's task id could not be checkpointed; polling it in this attempt");
                    }
                }
                (submitted.output, submitted.usage)
            }
        };
        let waited = tokio::select! {
            r = drama_ai::wait_for_video(model.as_ref(), &video_task, model.polling()) => r,
            () = ctx.cancellation().cancelled() => return Outcome::cancelled("cancelled"),
        };
        let video = match waited {
            Ok(v) => v,
            Err(e) if video_task_ended(&e) => {
                // Only a task that ended without a usable video is submitted anew by the next
                // attempt (its checkpoint cleared, so a cancellation or a failure refunds it).
                let _ = ctx.checkpoint(Value::Null).await;
                return ai_outcome(&e);
            }
            Err(e) if e.is_retryable() => {
                // Still rendering (past this attempt's deadline), or out of reach for a while
                // (its polls or download failing: network, 5xx, 429, timeouts): the render is
                // the provider's and paid for. The task is put off, and its next attempt polls
                // the same task, without using an attempt: a status outage or a slow render
                // must not end a paid clip failed. The engine bounds the deferrals in a row
                // (`drama_jobs::core::FREE_DEFERRALS`, each one a whole wait here); past them a task
                // that cannot finish fails, and is charged, not refunded, since its render was
                // accepted (the checkpoint stays, and a resume polls the same task).
                return put_off(&e, model.polling().interval);
            }
            // Permanent (the key refused, a link refused after fresh ones were asked for): the
            // task fails with its checkpoint, charged, and a resume polls the same task.
            Err(e) => return ai_outcome(&e),
        };
        usage.video_seconds = usage.video_seconds.max(duration.seconds());
        let usage = serde_json::to_value(usage).unwrap_or(Value::Null);
        let kind = ctx.kind().to_owned();
        self.store_result(
            &ctx,
            &task,
            &kind,
            video.bytes,
            &video.mime_type,
            hash,
            usage,
        )
        .await
    }
}
