//! The loops of a worker process: claiming, writing finishes, heartbeats, notifications and
//! maintenance (reaping expired leases, pruning).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use drama_domain::Backoff;
use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::core::{Finish, FinishKind};
use crate::error::JobError;
use crate::ids::{Fence, JobId};
use crate::store::{ClaimRequest, ClaimedJob, JobStore, WorkerRegistration};

use super::{InFlight, Shared, bump};

pub(super) async fn claimer<S: JobStore>(
    shared: Arc<Shared<S>>,
    queue: mpsc::UnboundedSender<ClaimedJob>,
) {
    let capacity = shared.config.concurrency + shared.config.prefetch;
    let kinds = shared.registry.kinds();
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let held = shared.in_flight().len();
        // With prefetch, claim again once half of the prefetched tasks were started, not for
        // every freed slot: fewer and larger claims, each a transaction on its runs' locks.
        let low_water = shared.config.concurrency + shared.config.prefetch / 2;
        let want = if held > low_water {
            0
        } else {
            capacity.saturating_sub(held).min(shared.config.claim_batch)
        };
        if want == 0 {
            wait(&shared, shared.config.poll_interval).await;
            continue;
        }
        let request = ClaimRequest {
            worker: shared.worker_id(),
            kinds: kinds.clone(),
            limit: want,
        };
        {
            // Under the lock that the heartbeat takes to list what this worker holds.
            let _in_flight = shared.in_flight();
            shared.claims.begin();
        }
        let claimed = shared.store.claim(&request).await;
        {
            let mut in_flight = shared.in_flight();
            if let Ok(jobs) = &claimed {
                for job in jobs {
                    let earlier = in_flight.insert(
                        job.fence.job_id,
                        InFlight {
                            fence: job.fence,
                            cancel: CancellationToken::new(),
                            handler: None,
                        },
                    );
                    // An earlier attempt of the task still here: its lease lapsed, a reaper
                    // requeued the task and this claim took it again before the earlier
                    // attempt was stopped (`stop_the_retaken` looks for it by its fence, which
                    // it no longer finds). It is stopped now.
                    if let Some(earlier) = earlier.filter(|e| e.fence != job.fence) {
                        shared.retire(earlier);
                    }
                }
            }
            shared.claims.end();
        }
        match claimed {
            Ok(jobs) => {
                let full = jobs.len() == want;
                bump(&shared.stats.claimed, jobs.len() as u64);
                for job in jobs {
                    if queue.send(job).is_err() {
                        return;
                    }
                }
                if !full {
                    wait(&shared, shared.config.poll_interval).await;
                }
            }
            Err(JobError::WorkerExpired(_)) => reregister(&shared).await,
            Err(e) => {
                warn!(error = %e, "claim failed");
                wait(&shared, shared.config.poll_interval).await;
            }
        }
    }
}

async fn wait<S>(shared: &Shared<S>, timeout: Duration) {
    tokio::select! {
        () = shared.wake.notified() => {}
        () = tokio::time::sleep(timeout) => {}
        () = shared.stop.cancelled() => {}
    }
}

/// Registers again, under the same id, after the registration lapsed (an overloaded process
/// or database let its heartbeats come too late).
///
/// The handlers keep running. A task the store has not retaken in the meantime is still
/// leased under this id, so its handler completes it as if nothing happened; a task that was
/// retaken has a new claim epoch, so its handler's checkpoint and completion are refused by
/// the fence. Cancelling every handler instead — what a new id would require — throws away
/// provider calls that were already paid for, and the next attempt pays for them again.
/// Registering under the same id also makes a second caller (the claim loop and the
/// heartbeat can both notice the lapse) harmless. The handlers of tasks that were retaken are
/// then stopped ([`stop_the_retaken`]).
async fn reregister<S: JobStore>(shared: &Arc<Shared<S>>) {
    let id = shared.worker_id();
    warn!(worker = %id, in_flight = shared.in_flight().len(), "worker registration lapsed; registering again");
    let registration = WorkerRegistration {
        id,
        name: shared.config.name.clone(),
        kinds: shared.registry.kinds(),
        ttl: shared.config.lease_ttl,
    };
    if let Err(e) = shared.store.register_worker(&registration).await {
        warn!(error = %e, "could not register again");
        tokio::time::sleep(shared.config.poll_interval).await;
        return;
    }
    stop_the_retaken(shared).await;
}

/// While the registration had lapsed, a reaper (this process's or another's) may have taken
/// some of this process's tasks back and queued them again. Their handlers are stopped now: one
/// that has not called its provider yet would otherwise pay for a call whose result its fence
/// refuses, while the next attempt pays for the same call again.
async fn stop_the_retaken<S: JobStore>(shared: &Arc<Shared<S>>) {
    let fences: Vec<Fence> = shared.in_flight().values().map(|f| f.fence).collect();
    if fences.is_empty() {
        return;
    }
    let held: HashSet<JobId> = match shared.store.still_held(&fences).await {
        Ok(held) => held.into_iter().collect(),
        Err(e) => {
            // The fences still refuse whatever those handlers write; only the early stop is lost.
            warn!(error = %e, "could not check which tasks are still held");
            return;
        }
    };
    let in_flight = shared.in_flight();
    let mut stopped = 0_usize;
    for fence in fences.iter().filter(|f| !held.contains(&f.job_id)) {
        if let Some(entry) = in_flight.get(&fence.job_id).filter(|e| e.fence == *fence) {
            entry.cancel.cancel();
            stopped += 1;
        }
    }
    if stopped > 0 {
        warn!(
            stopped,
            "tasks were taken back while the registration had lapsed; their handlers are stopped"
        );
    }
}

/// Pauses between attempts to write a batch of finishes the store refused for a passing reason.
const COMPLETION_RETRY: Backoff =
    Backoff::doubling(Duration::from_millis(50), Duration::from_secs(5));

/// Pauses between attempts to write the finishes the store refused for good
/// ([`Shared::kept`]): a second after the refusal, doubling up to a minute.
const KEPT_RETRY: Backoff = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(60));

pub(super) async fn completer<S: JobStore>(
    shared: Arc<Shared<S>>,
    mut rx: mpsc::UnboundedReceiver<Finish>,
) {
    let max = shared.config.finish_batch;
    // When the refused finishes are written again, and how many times they were refused since
    // the store last took them all: a refusal the store judged final may still pass (a
    // database that was read-only for a failover, a fault the store did not recognise as
    // passing), and a finish that is never written leaves its task running for as long as
    // this process heartbeats — its run never settles, its refund is never taken, and its
    // class's running slot stays taken.
    let mut kept_due: Option<tokio::time::Instant> = None;
    let mut kept_failures = 0_u32;
    loop {
        if kept_due.is_none() && !shared.kept().is_empty() {
            kept_due = Some(tokio::time::Instant::now() + KEPT_RETRY.delay(kept_failures));
        }
        let received = match kept_due {
            Some(due) => tokio::select! {
                f = rx.recv() => f,
                () = tokio::time::sleep_until(due) => {
                    kept_due = None;
                    if retry_kept(&shared).await {
                        kept_failures = 0;
                    } else {
                        kept_failures = kept_failures.saturating_add(1);
                    }
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = received else {
            // Stopping: one more try for the refused finishes before the registration goes.
            if !shared.kept().is_empty() {
                retry_kept(&shared).await;
            }
            return;
        };
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let mut failures = 0;
        let results = loop {
            match shared.store.finish(batch.clone()).await {
                Ok(results) => break Some(results),
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, items = batch.len(), "completion failed; retrying");
                    tokio::time::sleep(COMPLETION_RETRY.delay(failures)).await;
                    failures = failures.saturating_add(1);
                }
                Err(e) => {
                    warn!(error = %e, items = batch.len(), "completion batch refused; writing its items one at a time");
                    break Some(finish_one_by_one(&shared, &batch).await);
                }
            }
        };
        let mut in_flight = shared.in_flight();
        for (i, item) in batch.iter().enumerate() {
            // Only this attempt's entry: after a lapsed registration the task may have been
            // requeued and claimed again by this process, and the new attempt keeps its slot.
            if in_flight
                .get(&item.fence.job_id)
                .is_some_and(|f| f.fence == item.fence)
            {
                in_flight.remove(&item.fence.job_id);
            }
            match results.as_ref().and_then(|r| r.get(i)) {
                Some(Ok(())) if item.kind == FinishKind::Release => {
                    bump(&shared.stats.released, 1);
                }
                Some(Err(JobError::FenceLost(fence))) => {
                    bump(&shared.stats.fenced_out, 1);
                    debug!(%fence, "finish rejected: the attempt had lost its lease");
                }
                Some(Err(e)) => {
                    // Its lease may stay (see `finish_one_by_one`): held, so the heartbeat does
                    // not hand it back either, and written again later (`retry_kept`).
                    shared.kept().insert(item.fence.job_id, item.clone());
                    warn!(error = %e, job = %item.fence.job_id, "finish rejected; it will be written again later");
                }
                _ => {}
            }
        }
        drop(in_flight);
        shared.drained.notify_waiters();
        shared.wake.notify_one();
    }
}

/// Writes the finishes the store refused for good again, each as [`finish_one_by_one`] does
/// (its outcome, or else a plain failure). Those the store takes, or refuses because the
/// attempt lost its lease, are done; the others stay kept. Returns whether none is left.
async fn retry_kept<S: JobStore>(shared: &Arc<Shared<S>>) -> bool {
    let items: Vec<Finish> = shared.kept().values().cloned().collect();
    let results = finish_one_by_one(shared, &items).await;
    let mut kept = shared.kept();
    for (item, result) in items.iter().zip(results) {
        let done = match result {
            Ok(()) => true,
            Err(e) if e.is_fence_lost() => {
                bump(&shared.stats.fenced_out, 1);
                true
            }
            Err(_) => false,
        };
        if done
            && kept
                .get(&item.fence.job_id)
                .is_some_and(|k| k.fence == item.fence)
        {
            kept.remove(&item.fence.job_id);
        }
    }
    let left = kept.len();
    drop(kept);
    if left < items.len() {
        info!(
            written = items.len() - left,
            left, "finishes the store had refused were written"
        );
        shared.drained.notify_waiters();
    }
    left == 0
}

/// What a task's error says when the store refused to write its attempt's outcome. Fixed
/// text: the store's error may quote the database, which clients must not see.
const REFUSED_OUTCOME: &str = "the job store refused to record this attempt's outcome";

/// Writes the items of a batch the store refused one at a time, so one item it cannot store
/// (a result or text the database refuses) does not keep the others running: nothing would
/// ever take them back, since this process keeps heartbeating for their leases. An item the
/// store still refuses alone ends as a plain failure with fixed text; when even that is
/// refused its lease stays, which the log says. It is never released: a release hands the
/// attempt back, so a task whose failure cannot be written would run again, and pay its
/// provider again, without end (its handler already ran, and image and script tasks keep no
/// checkpoint).
async fn finish_one_by_one<S: JobStore>(
    shared: &Shared<S>,
    batch: &[Finish],
) -> Vec<Result<(), JobError>> {
    let mut results = Vec::with_capacity(batch.len());
    for item in batch {
        let mut outcome = finish_alone(shared, item.clone()).await;
        if let Err(e) = &outcome
            && !e.is_fence_lost()
        {
            warn!(error = %e, job = %item.fence.job_id, "finish refused; writing a plain failure instead");
            let failure = FinishKind::Fail {
                error: REFUSED_OUTCOME.to_owned(),
            };
            outcome = finish_alone(
                shared,
                Finish {
                    fence: item.fence,
                    kind: failure,
                },
            )
            .await;
        }
        if let Err(e) = &outcome
            && !e.is_fence_lost()
        {
            warn!(error = %e, job = %item.fence.job_id, "nothing could be written for the task; it stays running under this worker");
        }
        results.push(outcome);
    }
    results
}

/// One finish on its own: retried while the store's error is passing, like a batch.
async fn finish_alone<S: JobStore>(shared: &Shared<S>, item: Finish) -> Result<(), JobError> {
    let mut failures = 0;
    loop {
        match shared.store.finish(vec![item.clone()]).await {
            Ok(mut results) => {
                return results
                    .pop()
                    .unwrap_or_else(|| Err(JobError::Unexpected("no result for a finish".into())));
            }
            Err(e) if e.is_retryable() => {
                tokio::time::sleep(COMPLETION_RETRY.delay(failures)).await;
                failures = failures.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
}

pub(super) async fn heartbeats<S: JobStore>(shared: Arc<Shared<S>>) {
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Notifications that request cancellation for runs this worker holds poke it;
    // they are looked at no more than four times a second.
    let min_gap = Duration::from_millis(250).min(shared.config.heartbeat_interval);
    let mut last = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.poke.notified() => {
                tokio::time::sleep_until(last + min_gap).await;
            }
        }
        last = tokio::time::Instant::now();
        let worker = shared.worker_id();
        let (held, before) = {
            let in_flight = shared.in_flight();
            let mut held: Vec<JobId> = in_flight.keys().copied().collect();
            held.extend(shared.kept().keys().copied());
            (held, shared.claims.look())
        };
        match shared
            .store
            .heartbeat(worker, shared.config.lease_ttl, Some(&held))
            .await
        {
            Ok(hb) if hb.alive => {
                let in_flight = shared.in_flight();
                for id in &hb.cancel_requested {
                    if let Some(f) = in_flight.get(id) {
                        f.cancel.cancel();
                    }
                }
                // A claim that began after the list was taken may have committed before the
                // heartbeat looked: its tasks are not listed, and they are this worker's.
                let settled = before.is_quiet() && shared.claims.look() == before;
                drop(in_flight);
                if settled && !hb.unheld.is_empty() {
                    release_unheld(&shared, hb.unheld);
                }
            }
            Ok(_) => reregister(&shared).await,
            Err(e) => warn!(error = %e, "heartbeat failed"),
        }
    }
}

/// Hands back tasks that run under this worker's lease without a handler: a claim committed
/// but its answer was lost (the connection failed before the commit was acknowledged, and the
/// claim reported an error), so nothing of this process will ever run or finish them, while
/// its heartbeats keep their leases alive and a cancellation of their run never settles. A
/// release gives their attempt back. Written apart from the heartbeat loop, whose next beat
/// must not wait for a pooled connection.
fn release_unheld<S: JobStore>(shared: &Arc<Shared<S>>, unheld: Vec<Fence>) {
    warn!(
        tasks = unheld.len(),
        "tasks leased to this worker have no handler (a claim's answer was lost); releasing them"
    );
    let shared = shared.clone();
    tokio::spawn(async move {
        let items = unheld
            .into_iter()
            .map(|fence| Finish {
                fence,
                kind: FinishKind::Release,
            })
            .collect();
        match shared.store.finish(items).await {
            Ok(results) => {
                let released = results.iter().filter(|r| r.is_ok()).count();
                bump(&shared.stats.released, released as u64);
                shared.wake.notify_one();
            }
            // The next heartbeat finds them again.
            Err(e) => warn!(error = %e, "could not release the tasks without a handler"),
        }
    });
}

pub(super) async fn listener<S: JobStore>(shared: Arc<Shared<S>>) {
    loop {
        match shared.store.subscribe().await {
            Ok(mut stream) => {
                while let Some(n) = stream.next().await {
                    if n.wake {
                        shared.wake.notify_one();
                    }
                    // Only a cancellation needs a look before the next heartbeat.
                    if n.cancel
                        && shared
                            .in_flight()
                            .values()
                            .any(|f| f.fence.run_id == n.run_id)
                    {
                        shared.poke.notify_one();
                    }
                }
            }
            Err(e) => debug!(error = %e, "cannot subscribe to notifications; polling"),
        }
        tokio::time::sleep(shared.config.poll_interval).await;
    }
}

pub(super) async fn maintenance<S: JobStore>(shared: Arc<Shared<S>>) {
    let mut reap = tokio::time::interval(shared.config.reap_interval);
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        reap.tick().await;
        // The store reaps only once this worker's own registration has been alive for a
        // lease (see `JobStore::reap_expired`).
        match shared.store.reap_expired(shared.worker_id(), 1000).await {
            Ok(0) => {}
            Ok(n) => {
                bump(&shared.stats.reaped, n as u64);
                info!(
                    tasks = n,
                    "requeued tasks of workers that stopped heartbeating"
                );
                shared.wake.notify_one();
            }
            Err(e) => warn!(error = %e, "reaping expired leases failed"),
        }
        if let Some(retention) = shared.config.retention
            && last_prune.is_none_or(|t| t.elapsed() >= shared.config.prune_interval)
        {
            last_prune = Some(tokio::time::Instant::now());
            let Some(cutoff) = prune_cutoff(chrono::Utc::now(), retention) else {
                continue;
            };
            match shared.store.prune(cutoff, 1000).await {
                Ok(r) if r.runs > 0 => info!(runs = r.runs, nodes = r.nodes, "pruned settled runs"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "pruning failed"),
            }
        }
    }
}

/// Runs that settled before this are pruned; `None` when `retention` reaches back further
/// than a timestamp can (nothing is old enough). Checked: an unchecked subtraction panics
/// there, which would end this task and the reaping it also does, and a saturating one would
/// prune every settled run.
fn prune_cutoff(
    now: chrono::DateTime<chrono::Utc>,
    retention: Duration,
) -> Option<chrono::DateTime<chrono::Utc>> {
    now.checked_sub_signed(chrono::Duration::from_std(retention).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retention_longer_than_time_itself_prunes_nothing_and_does_not_panic() {
        let now = chrono::Utc::now();
        let day = 86_400;
        assert_eq!(
            prune_cutoff(now, Duration::from_secs(30 * day)),
            Some(now - chrono::Duration::days(30))
        );
        // A hundred million days is past chrono's range of dates; a trillion is past its range
        // of durations (which once read as no retention at all: every settled run pruned).
        for days in [100_000_000, 1_000_000_000_000] {
            assert_eq!(prune_cutoff(now, Duration::from_secs(days * day)), None);
        }
    }
}
