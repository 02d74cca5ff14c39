//! Running handlers: a slot per handler, timeouts, panics, and what each outcome writes.

use std::sync::Arc;
use std::time::Duration;

use drama_domain::Backoff;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tracing::{Instrument as _, warn};

use crate::core::{Finish, FinishKind};
use crate::handler::{JobContext, Outcome, Registered};
use crate::ids::Fence;
use crate::store::{ClaimedJob, JobStore};

use super::{Shared, bump};

pub(super) async fn dispatcher<S: JobStore>(
    shared: Arc<Shared<S>>,
    mut queue: mpsc::UnboundedReceiver<ClaimedJob>,
    finish: mpsc::UnboundedSender<Finish>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.concurrency));
    loop {
        let job = tokio::select! {
            job = queue.recv() => job,
            () = shared.stop.cancelled() => None,
        };
        let Some(job) = job else { break };
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.ok(),
            () = shared.stop.cancelled() => None,
        };
        let Some(permit) = permit else {
            release(&shared, &finish, job.fence);
            break;
        };
        start_handler(&shared, job, permit, finish.clone());
    }
    // Claimed but never started: hand back without using an attempt. Until the claimer has
    // ended (it drops its sender then), not just what is queued now: a claim that was in
    // flight when the worker stopped may still commit, and its tasks, left running under a
    // worker that deregisters, would be retaken only when the reaper finds them, each losing
    // an attempt.
    while let Some(job) = queue.recv().await {
        release(&shared, &finish, job.fence);
    }
}

fn release<S>(_shared: &Shared<S>, finish: &mpsc::UnboundedSender<Finish>, fence: Fence) {
    let _ = finish.send(Finish {
        fence,
        kind: FinishKind::Release,
    });
}

fn start_handler<S: JobStore>(
    shared: &Arc<Shared<S>>,
    job: ClaimedJob,
    permit: tokio::sync::OwnedSemaphorePermit,
    finish: mpsc::UnboundedSender<Finish>,
) {
    let fence = job.fence;
    let Some(cancel) = shared
        .in_flight()
        .get(&fence.job_id)
        .filter(|f| f.fence == fence)
        .map(|f| f.cancel.clone())
    else {
        return;
    };
    let registered: Option<Registered> = shared.registry.get(&job.kind).cloned();
    let attempt = job.attempt;
    let class = job.resource_class.clone();
    let span =
        tracing::info_span!("job", job = %fence.job_id, key = %job.key, kind = %job.kind, attempt);
    let ctx = JobContext::new(job, cancel.clone(), shared.sink.clone());
    let (timeout, retry) = registered
        .as_ref()
        .map_or((None, None), |r| (r.options.timeout, r.options.retry));
    let handler_task = registered.map(|r| {
        let fut = r.handler.call(ctx);
        let cancel = cancel.clone();
        tokio::spawn(
            async move {
                match timeout {
                    None => fut.await,
                    Some(t) => match tokio::time::timeout(t, fut).await {
                        Ok(o) => o,
                        Err(_) => {
                            cancel.cancel();
                            Outcome::retry(format!("handler timed out after {t:?}"))
                        }
                    },
                }
            }
            .instrument(span),
        )
    });
    let handle = handler_task.as_ref().map(JoinHandle::abort_handle);
    let unlisted = match shared
        .in_flight()
        .get_mut(&fence.job_id)
        .filter(|f| f.fence == fence)
    {
        Some(f) => {
            f.handler = handle;
            None
        }
        None => handle,
    };
    // Claimed again meanwhile (its token was cancelled then): shutdown must still find it.
    if let Some(h) = unlisted {
        shared.keep_retired(fence, h);
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let outcome = match handler_task {
            None => Outcome::fail("no handler is registered for this kind"),
            Some(task) => match task.await {
                Ok(outcome) => outcome,
                Err(e) if e.is_panic() => {
                    bump(&shared.stats.panics, 1);
                    let msg = panic_message(e.into_panic());
                    Outcome::retry(format!("handler panicked: {msg}"))
                }
                // Aborted by shutdown, which releases the task itself.
                Err(_) => {
                    drop(permit);
                    return;
                }
            },
        };
        drop(permit);
        let policy = retry.unwrap_or(shared.config.retry);
        let kind = finish_kind(&shared, outcome, &policy, attempt, &class);
        let _ = finish.send(Finish { fence, kind });
    });
}

/// What a handler's outcome writes, counting it and scheduling the wake-up of a retry.
fn finish_kind<S: JobStore>(
    shared: &Arc<Shared<S>>,
    outcome: Outcome,
    policy: &Backoff,
    attempt: u32,
    class: &str,
) -> FinishKind {
    match outcome {
        Outcome::Success { result, expansion } => {
            bump(&shared.stats.succeeded, 1);
            FinishKind::Complete { result, expansion }
        }
        Outcome::Retry { error } => {
            bump(&shared.stats.retried, 1);
            // Attempts count from 1; the first retry takes the first pause.
            let delay = policy.delay(attempt.saturating_sub(1));
            schedule_wake(shared, delay);
            FinishKind::Retry { error, delay }
        }
        Outcome::RetryAfter {
            delay,
            reason,
            throttle_class,
        } => {
            bump(&shared.stats.retried, 1);
            // A provider's advice, bounded: the class is not throttled longer than the task
            // is put off.
            let delay = crate::core::defer_delay(delay);
            if throttle_class {
                let store = shared.store.clone();
                let class = class.to_owned();
                tokio::spawn(async move {
                    if let Err(e) = store.throttle_class(&class, delay).await {
                        warn!(error = %e, class, "could not throttle the resource class");
                    }
                });
            }
            schedule_wake(shared, delay);
            FinishKind::Defer { reason, delay }
        }
        Outcome::Permanent { error } => {
            bump(&shared.stats.failed, 1);
            FinishKind::Fail { error }
        }
        Outcome::Cancelled { reason } => {
            bump(&shared.stats.failed, 1);
            FinishKind::Cancelled { reason }
        }
        Outcome::CommittedExternally => {
            bump(&shared.stats.succeeded, 1);
            FinishKind::VerifyExternal
        }
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-text panic payload".to_owned())
}

fn schedule_wake<S: JobStore>(shared: &Arc<Shared<S>>, delay: Duration) {
    let shared = shared.clone();
    tokio::spawn(async move {
        tokio::select! {
            () = tokio::time::sleep(delay) => shared.wake.notify_one(),
            () = shared.stop.cancelled() => {}
        }
    });
}
