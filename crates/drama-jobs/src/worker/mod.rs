//! The worker runtime: claims tasks in batches, runs their handlers, batches completions,
//! heartbeats once per process, reaps expired leases and shuts down gracefully.

mod handlers;
mod loops;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use drama_domain::Backoff;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, info, warn};

use crate::core::{Finish, FinishKind};
use crate::error::JobError;
use crate::graph;
use crate::handler::{CheckpointSink, DEFAULT_RETRY, Registry, StoreSink};
use crate::ids::{Fence, JobId, WorkerId};
use crate::store::{ClaimedJob, JobStore, ResourceLimit, WorkerRegistration};

use handlers::dispatcher;
use loops::{claimer, completer, heartbeats, listener, maintenance};

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
    /// How often the process heartbeats (one statement for all its tasks); at most a third
    /// of `lease_ttl`.
    pub heartbeat_interval: Duration,
    /// Longest wait between claims when no notification arrives.
    pub poll_interval: Duration,
    /// How often this process looks for expired leases.
    pub reap_interval: Duration,
    /// Default backoff.
    pub retry: Backoff,
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
            retry: DEFAULT_RETRY,
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
        // The store takes a gap of more than half a lease between two heartbeats for an
        // outage and holds the worker's reaper back for a lease (`JobStore::reap_expired`):
        // a third leaves room for a late heartbeat without that.
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval * 3 > self.lease_ttl {
            return Err(bad(
                "heartbeat_interval",
                "must be positive and at most a third of lease_ttl",
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
    /// Tasks handed back without using an attempt: at shutdown, or leased without a handler
    /// (a claim whose answer was lost).
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

/// The handlers of attempts that lost their task to a later claim of it by this process
/// ([`Shared::retire`]): cancelled, no longer in `in_flight`, and aborted at shutdown if they
/// still run.
type Retired = Vec<(Fence, tokio::task::AbortHandle)>;

/// Whether a claim is under way, and how many began: what the heartbeat needs to know that
/// its list of held tasks was complete. Changed and read under the `in_flight` lock.
#[derive(Default)]
struct Claims {
    running: AtomicBool,
    begun: AtomicU64,
}

/// A look at [`Claims`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ClaimsSeen {
    running: bool,
    begun: u64,
}

impl ClaimsSeen {
    /// No claim was under way.
    fn is_quiet(self) -> bool {
        !self.running
    }
}

impl Claims {
    fn begin(&self) {
        self.running.store(true, Ordering::SeqCst);
        self.begun.fetch_add(1, Ordering::SeqCst);
    }

    fn end(&self) {
        self.running.store(false, Ordering::SeqCst);
    }

    fn look(&self) -> ClaimsSeen {
        ClaimsSeen {
            running: self.running.load(Ordering::SeqCst),
            begun: self.begun.load(Ordering::SeqCst),
        }
    }
}

struct Shared<S> {
    store: Arc<S>,
    registry: Registry,
    config: WorkerConfig,
    /// The registration's id; kept for the process's life, also when it lapses.
    worker: WorkerId,
    in_flight: Mutex<HashMap<JobId, InFlight>>,
    /// Handlers of attempts whose entry a later claim of the same task replaced.
    retired: Mutex<Retired>,
    /// Claims under way (see the heartbeat's reconciliation).
    claims: Claims,
    /// Finishes the store refused: their leases may stay, and they are never released (a
    /// release hands the attempt back, and the handler already ran). The completer writes
    /// them again on a backoff timer.
    kept: Mutex<HashMap<JobId, Finish>>,
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

    fn kept(&self) -> MutexGuard<'_, HashMap<JobId, Finish>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retired(&self) -> MutexGuard<'_, Retired> {
        self.retired.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops the attempt of `entry`, whose task this process claimed again under a new fence
    /// (its lease had lapsed and a reaper requeued it): the old handler may not have paid its
    /// provider yet, and whatever it writes is refused by its fence. Its handle is kept so that
    /// shutdown aborts it if it does not stop.
    fn retire(&self, entry: InFlight) {
        entry.cancel.cancel();
        if let Some(handler) = entry.handler {
            self.keep_retired(entry.fence, handler);
        }
    }

    fn keep_retired(&self, fence: Fence, handler: tokio::task::AbortHandle) {
        warn!(%fence, "the task was claimed again by this worker; the earlier attempt's handler is stopped");
        let mut retired = self.retired();
        retired.retain(|(_, h)| !h.is_finished());
        retired.push((fence, handler));
    }

    fn worker_id(&self) -> WorkerId {
        self.worker
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
            worker: id,
            in_flight: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            claims: Claims::default(),
            kept: Mutex::new(HashMap::new()),
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
        // Said at info level so an operator watching a slow stop sees what it waits for.
        info!(
            running = shared.in_flight().len(),
            grace_secs = shared.config.shutdown_grace.as_secs(),
            "stopping: no new claims; waiting for the running handlers"
        );
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
        if !leftovers.is_empty() {
            warn!(
                handlers = leftovers.len(),
                "handlers still running after the grace period are cancelled and their tasks released"
            );
        }
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
        // Attempts that lost their task to a later claim: cancelled already, their fences
        // refuse whatever they write, and nothing is released for them.
        for (_, handler) in shared.retired().drain(..) {
            handler.abort();
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
            for (_, h) in l.shared.retired().drain(..) {
                h.abort();
            }
        }
    }
}
