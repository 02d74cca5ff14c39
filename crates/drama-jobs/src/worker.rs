//! The worker runtime: claims tasks in batches, runs their handlers, batches completions,
//! heartbeats once per process, reaps expired leases and shuts down gracefully.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt as _;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info, warn};

use crate::core::{Finish, FinishKind};
use crate::error::JobError;
use crate::graph;
use crate::handler::{
    CheckpointSink, JobContext, Outcome, Registered, Registry, RetryPolicy, StoreSink,
};
use crate::ids::{Fence, JobId, WorkerId};
use crate::store::{ClaimRequest, ClaimedJob, JobStore, ResourceLimit, WorkerRegistration};

/// How a worker process behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Shown to operators (defaults to `worker-<pid>`).
    pub name: String,
    /// Handlers running at once.
    pub concurrency: usize,
    /// Tasks claimed ahead of free handler slots. They hold leases (and count as running)
    /// while they wait, so keep this 0 for long tasks; raise it for floods of short ones.
    pub prefetch: usize,
    /// Most tasks per claim statement.
    pub claim_batch: usize,
    /// Most finished attempts per completion transaction.
    pub finish_batch: usize,
    /// How long leases live without a heartbeat: a dead process's tasks are retaken after
    /// about this long.
    pub lease_ttl: Duration,
    /// How often the process heartbeats (one statement for all its tasks).
    pub heartbeat_interval: Duration,
    /// Longest wait between claims when no notification arrives.
    pub poll_interval: Duration,
    /// How often this process looks for expired leases.
    pub reap_interval: Duration,
    /// Default backoff.
    pub retry: RetryPolicy,
    /// How long shutdown waits for running handlers before cancelling them and releasing
    /// their tasks.
    pub shutdown_grace: Duration,
    /// Limits written to the store at start (they apply to every worker).
    pub resource_limits: Vec<ResourceLimit>,
    /// Delete runs that settled longer ago than this (checked every `prune_interval`).
    pub retention: Option<Duration>,
    /// How often to prune when `retention` is set.
    pub prune_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            name: format!("worker-{}", std::process::id()),
            concurrency: 8,
            prefetch: 0,
            claim_batch: 100,
            finish_batch: 500,
            lease_ttl: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(10),
            poll_interval: Duration::from_secs(1),
            reap_interval: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            shutdown_grace: Duration::from_secs(30),
            resource_limits: Vec::new(),
            retention: None,
            prune_interval: Duration::from_secs(3600),
        }
    }
}

impl WorkerConfig {
    fn validate(&self) -> Result<(), JobError> {
        let bad = |field: &'static str, reason: &str| JobError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        if self.concurrency == 0 {
            return Err(bad("concurrency", "must be at least 1"));
        }
        if self.claim_batch == 0 || self.finish_batch == 0 {
            return Err(bad("claim_batch/finish_batch", "must be at least 1"));
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.lease_ttl {
            return Err(bad(
                "heartbeat_interval",
                "must be positive and shorter than lease_ttl",
            ));
        }
        if self.poll_interval.is_zero() || self.reap_interval.is_zero() {
            return Err(bad("poll_interval/reap_interval", "must be positive"));
        }
        Ok(())
    }
}

/// Counters of one worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Tasks claimed.
    pub claimed: u64,
    /// Attempts that ended in success.
    pub succeeded: u64,
    /// Attempts that ended in a retryable failure, a retry-after, or a panic.
    pub retried: u64,
    /// Attempts that ended in a permanent failure or cancellation.
    pub failed: u64,
    /// Handler panics (counted in `retried` too).
    pub panics: u64,
    /// Finishes the store rejected because the attempt had lost its lease.
    pub fenced_out: u64,
    /// Tasks handed back at shutdown.
    pub released: u64,
    /// Tasks whose leases this worker found expired and requeued.
    pub reaped: u64,
}

#[derive(Default)]
struct Stats {
    claimed: AtomicU64,
    succeeded: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    panics: AtomicU64,
    fenced_out: AtomicU64,
    released: AtomicU64,
    reaped: AtomicU64,
}

impl Stats {
    fn snapshot(&self) -> WorkerStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WorkerStats {
            claimed: get(&self.claimed),
            succeeded: get(&self.succeeded),
            retried: get(&self.retried),
            failed: get(&self.failed),
            panics: get(&self.panics),
            fenced_out: get(&self.fenced_out),
            released: get(&self.released),
            reaped: get(&self.reaped),
        }
    }
}

fn bump(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

/// What shutdown did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Tasks handed back to the queue without using an attempt (not started, or still
    /// running when the grace period ended).
    pub released: usize,
    /// Final counters.
    pub stats: WorkerStats,
}

struct InFlight {
    fence: Fence,
    cancel: CancellationToken,
    handler: Option<tokio::task::AbortHandle>,
}

struct Shared<S> {
    store: Arc<S>,
    registry: Registry,
    config: WorkerConfig,
    worker: Mutex<WorkerId>,
    in_flight: Mutex<HashMap<JobId, InFlight>>,
    /// Signalled when there may be work (notification, freed capacity, retry due).
    wake: Notify,
    /// Signalled when a finish was applied (shutdown waits on it).
    drained: Notify,
    /// Signalled to check cancellations now (a notification for a run we hold).
    poke: Notify,
    stats: Stats,
    stop: CancellationToken,
    sink: Arc<dyn CheckpointSink>,
}

impl<S> Shared<S> {
    fn in_flight(&self) -> MutexGuard<'_, HashMap<JobId, InFlight>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn worker_id(&self) -> WorkerId {
        *self.worker.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts workers.
#[derive(Debug, Clone, Copy)]
pub struct Worker;

impl Worker {
    /// Registers a worker process with the store and starts claiming tasks of the registry's
    /// kinds. Keep the handle; dropping it leaves the worker running until the runtime stops.
    ///
    /// # Errors
    /// [`JobError::Invalid`] for a bad configuration or kind name; store errors from the
    /// registration.
    pub async fn start<S: JobStore>(
        store: Arc<S>,
        registry: Registry,
        config: WorkerConfig,
    ) -> Result<WorkerHandle<S>, JobError> {
        config.validate()?;
        for kind in registry.kinds() {
            graph::check_node(&graph::NodeSpec::task("k", kind, serde_json::Value::Null)).map_err(
                |e| JobError::Invalid {
                    field: "kind",
                    reason: e.to_string(),
                },
            )?;
        }
        if !config.resource_limits.is_empty() {
            store.set_resource_limits(&config.resource_limits).await?;
        }
        let id = WorkerId::new();
        store
            .register_worker(&WorkerRegistration {
                id,
                name: config.name.clone(),
                kinds: registry.kinds(),
                ttl: config.lease_ttl,
            })
            .await?;
        info!(worker = %id, name = %config.name, kinds = ?registry.kinds(), "worker started");
        let shared = Arc::new(Shared {
            sink: Arc::new(StoreSink(store.clone())),
            store,
            registry,
            config,
            worker: Mutex::new(id),
            in_flight: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            drained: Notify::new(),
            poke: Notify::new(),
            stats: Stats::default(),
            stop: CancellationToken::new(),
        });
        let (finish_tx, finish_rx) = mpsc::unbounded_channel::<Finish>();
        let (queue_tx, queue_rx) = mpsc::unbounded_channel::<ClaimedJob>();
        let span = tracing::info_span!("worker", worker = %id);
        let tasks = vec![
            tokio::spawn(completer(shared.clone(), finish_rx).instrument(span.clone())),
            tokio::spawn(heartbeats(shared.clone()).instrument(span.clone())),
            tokio::spawn(listener(shared.clone()).instrument(span.clone())),
            tokio::spawn(maintenance(shared.clone()).instrument(span.clone())),
        ];
        let dispatcher = tokio::spawn(
            dispatcher(shared.clone(), queue_rx, finish_tx.clone()).instrument(span.clone()),
        );
        let claimer = tokio::spawn(claimer(shared.clone(), queue_tx).instrument(span));
        Ok(WorkerHandle {
            shared: Some(Lifecycle {
                shared,
                claimer,
                dispatcher,
                tasks,
                finish_tx,
            }),
        })
    }
}

struct Lifecycle<S> {
    shared: Arc<Shared<S>>,
    claimer: JoinHandle<()>,
    dispatcher: JoinHandle<()>,
    tasks: Vec<JoinHandle<()>>,
    finish_tx: mpsc::UnboundedSender<Finish>,
}

/// A running worker.
pub struct WorkerHandle<S: JobStore> {
    shared: Option<Lifecycle<S>>,
}

impl<S: JobStore> std::fmt::Debug for WorkerHandle<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("worker", &self.worker_id())
            .finish_non_exhaustive()
    }
}

impl<S: JobStore> WorkerHandle<S> {
    /// The current registration (it changes if the worker lost its registration and
    /// registered again).
    pub fn worker_id(&self) -> Option<WorkerId> {
        self.shared.as_ref().map(|l| l.shared.worker_id())
    }

    /// Counters so far.
    pub fn stats(&self) -> WorkerStats {
        self.shared
            .as_ref()
            .map(|l| l.shared.stats.snapshot())
            .unwrap_or_default()
    }

    /// Tasks claimed and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.shared
            .as_ref()
            .map_or(0, |l| l.shared.in_flight().len())
    }

    /// Stops gracefully: no new claims; tasks not started yet are released at once; running
    /// handlers get `shutdown_grace` to finish, then are cancelled and their tasks released;
    /// pending completions are written; the registration is removed.
    pub async fn shutdown(mut self) -> ShutdownReport {
        let Some(l) = self.shared.take() else {
            return ShutdownReport::default();
        };
        let shared = l.shared.clone();
        shared.stop.cancel();
        shared.wake.notify_waiters();
        let _ = l.claimer.await;
        let _ = l.dispatcher.await;
        let deadline = tokio::time::Instant::now() + shared.config.shutdown_grace;
        loop {
            let drained = shared.drained.notified();
            tokio::pin!(drained);
            // Registered before looking, so a drain between the look and the wait is not lost.
            drained.as_mut().enable();
            if shared.in_flight().is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                break;
            }
        }
        // Past the grace period: stop the handlers still running and hand their tasks back.
        // (Entries without a running handler were released already, or their finish is
        // queued.)
        let leftovers: Vec<(Fence, Option<tokio::task::AbortHandle>, CancellationToken)> = shared
            .in_flight()
            .values()
            .filter(|f| f.handler.as_ref().is_some_and(|h| !h.is_finished()))
            .map(|f| (f.fence, f.handler.clone(), f.cancel.clone()))
            .collect();
        for (fence, handler, cancel) in &leftovers {
            cancel.cancel();
            if let Some(h) = handler {
                h.abort();
            }
            let _ = l.finish_tx.send(Finish {
                fence: *fence,
                kind: FinishKind::Release,
            });
        }
        drop(l.finish_tx);
        // The completer drains its queue, then ends when every sender is gone (a handler
        // that never yields keeps its sender; do not wait for it forever).
        let mut tasks = l.tasks.into_iter();
        if let Some(completer) = tasks.next() {
            let abort = completer.abort_handle();
            if tokio::time::timeout(Duration::from_secs(10), completer)
                .await
                .is_err()
            {
                warn!("pending completions were not all written; their leases will expire");
                abort.abort();
            }
        }
        for t in tasks {
            t.abort();
        }
        let worker = shared.worker_id();
        if let Err(e) = shared.store.deregister_worker(worker).await {
            warn!(error = %e, "could not remove the worker registration; it will expire");
        }
        info!(worker = %worker, "worker stopped");
        let stats = shared.stats.snapshot();
        ShutdownReport {
            released: usize::try_from(stats.released).unwrap_or(usize::MAX),
            stats,
        }
    }

    /// Stops every task at once without writing anything, as if the process died: leases stay
    /// until they expire. For tests of crash recovery.
    pub fn abort(mut self) {
        if let Some(l) = self.shared.take() {
            l.shared.stop.cancel();
            l.claimer.abort();
            l.dispatcher.abort();
            for t in l.tasks {
                t.abort();
            }
            for f in l.shared.in_flight().values() {
                if let Some(h) = &f.handler {
                    h.abort();
                }
            }
        }
    }
}

async fn claimer<S: JobStore>(shared: Arc<Shared<S>>, queue: mpsc::UnboundedSender<ClaimedJob>) {
    let capacity = shared.config.concurrency + shared.config.prefetch;
    let kinds = shared.registry.kinds();
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let held = shared.in_flight().len();
        let want = capacity.saturating_sub(held).min(shared.config.claim_batch);
        if want == 0 {
            wait(&shared, shared.config.poll_interval).await;
            continue;
        }
        let request = ClaimRequest {
            worker: shared.worker_id(),
            kinds: kinds.clone(),
            limit: want,
        };
        match shared.store.claim(&request).await {
            Ok(jobs) => {
                let full = jobs.len() == want;
                bump(&shared.stats.claimed, jobs.len() as u64);
                {
                    let mut in_flight = shared.in_flight();
                    for job in &jobs {
                        in_flight.insert(
                            job.fence.job_id,
                            InFlight {
                                fence: job.fence,
                                cancel: CancellationToken::new(),
                                handler: None,
                            },
                        );
                    }
                }
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

/// Registers again under a new id after the store dropped the registration: every task held
/// under the old id was (or will be) retaken, so its handlers are told to stop.
async fn reregister<S: JobStore>(shared: &Arc<Shared<S>>) {
    let old = shared.worker_id();
    warn!(worker = %old, "worker registration lost; cancelling its handlers and registering again");
    for f in shared.in_flight().values() {
        f.cancel.cancel();
    }
    let id = WorkerId::new();
    let registration = WorkerRegistration {
        id,
        name: shared.config.name.clone(),
        kinds: shared.registry.kinds(),
        ttl: shared.config.lease_ttl,
    };
    match shared.store.register_worker(&registration).await {
        Ok(()) => *shared.worker.lock().unwrap_or_else(|e| e.into_inner()) = id,
        Err(e) => {
            warn!(error = %e, "could not register again");
            tokio::time::sleep(shared.config.poll_interval).await;
        }
    }
}

async fn dispatcher<S: JobStore>(
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
    // Claimed but never started: hand back without using an attempt.
    queue.close();
    while let Ok(job) = queue.try_recv() {
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
    let (timeout, retry) = registered.as_ref().map_or((None, None), |r| {
        (r.options.timeout, r.options.retry.clone())
    });
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
    if let Some(f) = shared.in_flight().get_mut(&fence.job_id) {
        f.handler = handler_task.as_ref().map(JoinHandle::abort_handle);
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
        let policy = retry.unwrap_or_else(|| shared.config.retry.clone());
        let kind = match outcome {
            Outcome::Success { result, expansion } => {
                bump(&shared.stats.succeeded, 1);
                FinishKind::Complete { result, expansion }
            }
            Outcome::Retry { error } => {
                bump(&shared.stats.retried, 1);
                let delay = policy.delay(attempt);
                schedule_wake(&shared, delay);
                FinishKind::Retry { error, delay }
            }
            Outcome::RetryAfter {
                delay,
                reason,
                throttle_class,
            } => {
                bump(&shared.stats.retried, 1);
                if throttle_class {
                    let store = shared.store.clone();
                    let class = class.clone();
                    tokio::spawn(async move {
                        if let Err(e) = store.throttle_class(&class, delay).await {
                            warn!(error = %e, class, "could not throttle the resource class");
                        }
                    });
                }
                schedule_wake(&shared, delay);
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
        };
        let _ = finish.send(Finish { fence, kind });
    });
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

async fn completer<S: JobStore>(shared: Arc<Shared<S>>, mut rx: mpsc::UnboundedReceiver<Finish>) {
    let max = shared.config.finish_batch;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(f) => batch.push(f),
                Err(_) => break,
            }
        }
        let mut backoff = Duration::from_millis(50);
        let results = loop {
            match shared.store.finish(batch.clone()).await {
                Ok(results) => break Some(results),
                Err(e) if e.is_retryable() => {
                    warn!(error = %e, items = batch.len(), "completion failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    warn!(error = %e, items = batch.len(), "completion failed; the leases will expire");
                    break None;
                }
            }
        };
        let mut in_flight = shared.in_flight();
        for (i, item) in batch.iter().enumerate() {
            in_flight.remove(&item.fence.job_id);
            match results.as_ref().and_then(|r| r.get(i)) {
                Some(Ok(())) if item.kind == FinishKind::Release => {
                    bump(&shared.stats.released, 1);
                }
                Some(Err(JobError::FenceLost(fence))) => {
                    bump(&shared.stats.fenced_out, 1);
                    debug!(%fence, "finish rejected: the attempt had lost its lease");
                }
                Some(Err(e)) => warn!(error = %e, job = %item.fence.job_id, "finish rejected"),
                _ => {}
            }
        }
        drop(in_flight);
        shared.drained.notify_waiters();
        shared.wake.notify_one();
    }
}

async fn heartbeats<S: JobStore>(shared: Arc<Shared<S>>) {
    let mut tick = tokio::time::interval(shared.config.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Notifications for runs this worker holds arrive with every transaction of those runs;
    // checking for cancellations a few times a second is enough.
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
        match shared
            .store
            .heartbeat(worker, shared.config.lease_ttl)
            .await
        {
            Ok(hb) if hb.alive => {
                let in_flight = shared.in_flight();
                for id in hb.cancel_requested {
                    if let Some(f) = in_flight.get(&id) {
                        f.cancel.cancel();
                    }
                }
            }
            Ok(_) => reregister(&shared).await,
            Err(e) => warn!(error = %e, "heartbeat failed"),
        }
    }
}

async fn listener<S: JobStore>(shared: Arc<Shared<S>>) {
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

async fn maintenance<S: JobStore>(shared: Arc<Shared<S>>) {
    let mut reap = tokio::time::interval(shared.config.reap_interval);
    reap.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        reap.tick().await;
        match shared.store.reap_expired(1000).await {
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
            let cutoff =
                chrono::Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
            match shared.store.prune(cutoff, 1000).await {
                Ok(r) if r.runs > 0 => info!(runs = r.runs, nodes = r.nodes, "pruned settled runs"),
                Ok(_) => {}
                Err(e) => warn!(error = %e, "pruning failed"),
            }
        }
    }
}
