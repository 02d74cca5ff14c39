//! The PostgreSQL job store: [`PgJobStore`] implements `drama_jobs::JobStore`, and the
//! `*_in_tx` functions run the same operations inside a caller's transaction.
//!
//! Every operation that changes a run locks the run's root row in `job_groups` first
//! (`for no key update`, in id order when several runs are involved), then loads the rows it
//! touches, applies `drama_jobs::core` and writes all changes — inserted nodes and edges,
//! updated tasks, group counters, events and notifications — in a single statement.
//! A completion batch is therefore 3–4 statements whatever its size, a claim batch 3–6 (and
//! the promotion of deferred tasks that came due before it, see `claim::PROMOTE`).
//!
//! Notifications go to channel [`NOTIFY_CHANNEL`], one per transaction (per 100 runs it
//! touched), with a JSON payload `{"runs": [["<uuid>", <newest event id>, <flags>], ...]}`
//! (under NOTIFY's 8000 bytes; see [`parse_notification`]); read the events with
//! `events(run, after)`.

mod claim;
mod error;
mod liveness;
mod ops;
mod query;
mod rows;
mod workers;
mod write;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drama_jobs::core::Finish;
use drama_jobs::{
    CancelReport, ClaimRequest, ClaimedJob, Event, EventId, Expansion, Fence, Graph, Heartbeat,
    JobError, JobId, JobStore, JobView, Notification, NotificationStream, PruneReport,
    ResourceLimit, ResumeReport, RunFilter, RunId, RunTree, Submitted, WorkerId,
    WorkerRegistration,
};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::Value;
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tracing::warn;
use uuid::Uuid;

use error::Error;

/// The channel every job transaction notifies; the API `LISTEN`s to it for server-sent
/// events and workers for wake-ups.
pub const NOTIFY_CHANNEL: &str = "drama_jobs";

/// Deadlocks and serialization failures between concurrent transactions are retried this
/// many times.
const ATTEMPTS: u32 = 4;

/// How long a deregistration at shutdown may take; a registration left behind expires.
const DEREGISTER_LIMIT: Duration = Duration::from_secs(5);

/// The job store on a PostgreSQL pool.
///
/// Worker registration and heartbeats run on one more connection of their own, outside the
/// pool, opened by the first registration (see `liveness`): a process that never runs a
/// worker never opens it.
#[derive(Clone, Debug)]
pub struct PgJobStore {
    pool: PgPool,
    liveness: Arc<liveness::Liveness>,
}

impl PgJobStore {
    /// A store on `pool` (migrated with `drama_postgres::MIGRATOR`).
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            liveness: Arc::default(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Runs `$body` (an expression using `$conn: &mut PgConnection`) in a transaction of
/// `$store`'s pool, retrying deadlocks and serialization failures. A connection whose session
/// turned out read-only (a failover left it on a standby) is closed instead of going back to
/// the pool, so the caller's retry gets a fresh one.
macro_rules! in_tx {
    ($store:expr, |$conn:ident| $body:expr) => {
        in_tx!($store, "BEGIN", |$conn| $body)
    };
    ($store:expr, $begin:expr, |$conn:ident| $body:expr) => {{
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result: Result<_, Error> = async {
                let mut pooled = $store.pool.acquire().await?;
                let result: Result<_, Error> = async {
                    let mut tx = sqlx::Connection::begin_with(&mut *pooled, $begin).await?;
                    let out = {
                        let $conn: &mut PgConnection = &mut tx;
                        $body.await?
                    };
                    tx.commit().await?;
                    Ok(out)
                }
                .await;
                if result.as_ref().err().is_some_and(Error::is_read_only) {
                    pooled.close_on_drop();
                }
                result
            }
            .await;
            match result {
                Err(e) if e.is_transient_conflict() && attempt < ATTEMPTS => continue,
                other => break other.map_err(Error::into_job_error),
            }
        }
    }};
}

/// Begins the transactions of claims and completions, the engine's hot path. Their statements
/// filter by arrays of ids, and custom plans for those cost more to plan than to run (a
/// quarter to a third of a millisecond each, the larger part of a small batch's database
/// time); their generic plans are the same index lookups. The statements are written so that
/// their generic plans stay right (see `claim::PICK`).
const HOT_PATH_BEGIN: &str = "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan";

/// Begins a claim: [`HOT_PATH_BEGIN`], and a claim waits at most 5 seconds for a lock. A claim
/// waits for a run's lock only when it holds no other run, but for the limited classes' rows
/// while it holds the runs of its candidates; when a session stopped in the middle of a claim
/// holds a class's row (until the server ends it, `idle_in_transaction_session_timeout`), every
/// claim of the class would queue behind it, each holding its runs, and the completions and
/// cancellations of those runs would queue behind the claims. Given up, the claim lets go of
/// its runs and the worker claims again after its poll interval (55P03 is a passing error).
const CLAIM_BEGIN: &str =
    "BEGIN; SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL lock_timeout = '5s'";

/// Runs `$body` on a pooled connection outside a transaction (single-statement reads).
macro_rules! on_conn {
    ($store:expr, |$conn:ident| $body:expr) => {{
        let result: Result<_, Error> = async {
            let mut c = $store.pool.acquire().await?;
            let result = {
                let $conn: &mut PgConnection = &mut c;
                $body.await
            };
            if result.as_ref().err().is_some_and(Error::is_read_only) {
                c.close_on_drop();
            }
            result
        }
        .await;
        result.map_err(Error::into_job_error)
    }};
}

/// Submits a graph inside the caller's transaction, so that a use case writes its own rows,
/// debits credits and submits jobs atomically. Workers are notified when it commits.
///
/// # Errors
/// [`JobError::InvalidGraph`] before anything is written; database errors otherwise (roll
/// the transaction back).
#[tracing::instrument(skip_all, fields(kind = %graph.run.kind, nodes = graph.nodes.len()))]
pub async fn submit_in_tx(conn: &mut PgConnection, graph: &Graph) -> Result<Submitted, JobError> {
    ops::submit(conn, graph)
        .await
        .map_err(Error::into_job_error)
}

/// Completes a task inside the caller's transaction under its fence, optionally expanding
/// the run — so a handler can write its own rows (an asset, a drama's URL) and the
/// completion atomically, then return `Outcome::CommittedExternally`.
///
/// Call it last in the transaction (it locks the run until commit), once per transaction.
///
/// # Errors
/// [`JobError::FenceLost`] when the attempt lost its lease (the task was retaken or already
/// finished): roll the whole transaction back. [`JobError::InvalidGraph`] for an invalid
/// expansion. [`JobError::Unavailable`] for deadlocks and connection failures (retry the
/// transaction).
#[tracing::instrument(skip_all, fields(job = %fence.job_id, epoch = fence.epoch))]
pub async fn complete_in_tx(
    conn: &mut PgConnection,
    fence: &Fence,
    result: Value,
    expansion: Option<Expansion>,
) -> Result<(), JobError> {
    ops::complete(conn, fence, result, expansion)
        .await
        .map_err(Error::into_job_error)
}

/// Lowers the cost of the task running under `fence` to `actual` when that is less, inside
/// the caller's transaction, and returns how much it dropped — credit that much back in the
/// same transaction (see `Workset::settle_cost`). Settling again drops nothing.
///
/// # Errors
/// [`JobError::FenceLost`] when the attempt lost its lease; database errors.
#[tracing::instrument(skip_all, fields(job = %fence.job_id, epoch = fence.epoch, actual))]
pub async fn settle_in_tx(
    conn: &mut PgConnection,
    fence: &Fence,
    actual: i64,
) -> Result<i64, JobError> {
    ops::settle(conn, fence, actual)
        .await
        .map_err(Error::into_job_error)
}

/// Applies finished attempts inside the caller's transaction (see `JobStore::finish`).
///
/// # Errors
/// Database errors; per-item [`JobError::FenceLost`] in the result.
pub async fn finish_in_tx(
    conn: &mut PgConnection,
    items: &[Finish],
) -> Result<Vec<Result<(), JobError>>, JobError> {
    ops::finish(conn, items)
        .await
        .map_err(Error::into_job_error)
}

/// Cancels a task, group or run inside the caller's transaction.
///
/// # Errors
/// [`JobError::NotFound`]; database errors.
pub async fn cancel_in_tx(
    conn: &mut PgConnection,
    job: JobId,
    reason: &str,
) -> Result<CancelReport, JobError> {
    let (cancelled, signalled) = ops::cancel(conn, job, reason)
        .await
        .map_err(Error::into_job_error)?;
    Ok(CancelReport {
        cancelled,
        signalled,
    })
}

/// Resumes a task, group or run inside the caller's transaction.
///
/// # Errors
/// [`JobError::NotFound`]; database errors.
pub async fn resume_in_tx(conn: &mut PgConnection, job: JobId) -> Result<ResumeReport, JobError> {
    let queued = ops::resume(conn, job)
        .await
        .map_err(Error::into_job_error)?;
    Ok(ResumeReport { queued })
}

/// Resumes a task, group or run inside the caller's transaction and returns its run, how many
/// tasks were queued and their cost (see `Workset::resume_priced`) — debit it in the same
/// transaction, or roll back.
///
/// # Errors
/// [`JobError::NotFound`]; database errors.
pub async fn resume_priced_in_tx(
    conn: &mut PgConnection,
    job: JobId,
) -> Result<(RunId, usize, i64), JobError> {
    ops::resume_priced(conn, job)
        .await
        .map_err(Error::into_job_error)
}

/// Records the run's refundable cost as refunded inside the caller's transaction and returns
/// the amount to credit now (see `JobStore::take_refund`) — credit it in the same
/// transaction and the refund is exact and idempotent.
///
/// # Errors
/// [`JobError::NotFound`] for an unknown run; database errors.
pub async fn take_refund_in_tx(conn: &mut PgConnection, run: RunId) -> Result<i64, JobError> {
    ops::take_refund(conn, run)
        .await
        .map_err(Error::into_job_error)
}

/// A payload on [`NOTIFY_CHANNEL`]: `{"runs": [[run, newest event id, flags], ...]}` with flag
/// 1 for "tasks became runnable" and 2 for "cancellation was requested for running tasks".
/// Processes of the previous version sent one run per payload
/// (`{"run": .., "event": .., "wake": ..}`); both are read.
#[derive(Deserialize)]
#[serde(untagged)]
enum Payload {
    Runs {
        runs: Vec<(uuid::Uuid, i64, u8)>,
    },
    Run {
        run: uuid::Uuid,
        event: i64,
        wake: bool,
    },
}

/// Parses a payload sent on [`NOTIFY_CHANNEL`] (empty when it is not one).
pub fn parse_notification(payload: &str) -> Vec<Notification> {
    match serde_json::from_str::<Payload>(payload) {
        Ok(Payload::Runs { runs }) => runs
            .into_iter()
            .map(|(run, event, flags)| Notification {
                run_id: JobId(run),
                event_id: EventId(event),
                wake: flags & 1 != 0,
                cancel: flags & 2 != 0,
            })
            .collect(),
        Ok(Payload::Run { run, event, wake }) => vec![Notification {
            run_id: JobId(run),
            event_id: EventId(event),
            wake,
            cancel: false,
        }],
        Err(_) => Vec::new(),
    }
}

impl JobStore for PgJobStore {
    #[tracing::instrument(skip_all, fields(kind = %graph.run.kind, nodes = graph.nodes.len()))]
    async fn submit(&self, graph: &Graph) -> Result<Submitted, JobError> {
        in_tx!(self, |conn| ops::submit(conn, graph))
    }

    #[tracing::instrument(skip_all, fields(runs = graphs.len()))]
    async fn submit_many(&self, graphs: &[Graph]) -> Result<Vec<Submitted>, JobError> {
        in_tx!(self, |conn| ops::submit_many(conn, graphs))
    }

    async fn register_worker(&self, worker: &WorkerRegistration) -> Result<(), JobError> {
        let worker = worker.clone();
        self.liveness
            .run(&self.pool, liveness::limit_for(worker.ttl), |conn| {
                Box::pin(async move { workers::register(conn, &worker).await })
            })
            .await
    }

    async fn heartbeat(
        &self,
        worker: WorkerId,
        ttl: Duration,
        held: Option<&[JobId]>,
    ) -> Result<Heartbeat, JobError> {
        let held: Option<Vec<Uuid>> = held.map(|h| h.iter().map(|id| id.0).collect());
        self.liveness
            .run(&self.pool, liveness::limit_for(ttl), |conn| {
                Box::pin(async move { workers::heartbeat(conn, worker, ttl, held).await })
            })
            .await
    }

    async fn deregister_worker(&self, worker: WorkerId) -> Result<(), JobError> {
        self.liveness
            .run(&self.pool, DEREGISTER_LIMIT, |conn| {
                Box::pin(workers::deregister(conn, worker))
            })
            .await
    }

    #[tracing::instrument(skip_all, fields(worker = %request.worker, limit = request.limit))]
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, JobError> {
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        // Deferred tasks that came due, made visible to the pick, in a transaction of their
        // own (see `claim::PROMOTE`).
        on_conn!(self, |conn| claim::promote_due(conn))?;
        in_tx!(self, CLAIM_BEGIN, |conn| claim::claim(conn, request))
    }

    #[tracing::instrument(skip_all, fields(items = items.len()))]
    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<Result<(), JobError>>, JobError> {
        in_tx!(self, HOT_PATH_BEGIN, |conn| ops::finish(conn, &items))
    }

    async fn checkpoint(&self, fence: &Fence, value: &Value) -> Result<(), JobError> {
        on_conn!(self, |conn| workers::checkpoint(conn, fence, value))
    }

    async fn still_held(&self, fences: &[Fence]) -> Result<Vec<JobId>, JobError> {
        let fences = fences.to_vec();
        // Part of registering again, so on the liveness connection like the registration.
        self.liveness
            .run(&self.pool, DEREGISTER_LIMIT, |conn| {
                Box::pin(async move { workers::still_held(conn, &fences).await })
            })
            .await
    }

    #[tracing::instrument(skip_all)]
    async fn reap_expired(&self, reaper: WorkerId, limit: usize) -> Result<usize, JobError> {
        in_tx!(self, |conn| workers::reap(conn, reaper, limit))
    }

    async fn throttle_class(&self, class: &str, delay: Duration) -> Result<(), JobError> {
        on_conn!(self, |conn| workers::throttle(conn, class, delay))
    }

    async fn set_resource_limits(&self, limits: &[ResourceLimit]) -> Result<(), JobError> {
        on_conn!(self, |conn| workers::set_limits(conn, limits))
    }

    #[tracing::instrument(skip_all, fields(job = %job))]
    async fn cancel(&self, job: JobId, reason: &str) -> Result<CancelReport, JobError> {
        let (cancelled, signalled) = in_tx!(self, |conn| ops::cancel(conn, job, reason))?;
        Ok(CancelReport {
            cancelled,
            signalled,
        })
    }

    #[tracing::instrument(skip_all, fields(job = %job))]
    async fn resume(&self, job: JobId) -> Result<ResumeReport, JobError> {
        let queued = in_tx!(self, |conn| ops::resume(conn, job))?;
        Ok(ResumeReport { queued })
    }

    #[tracing::instrument(skip_all, fields(run = %run))]
    async fn take_refund(&self, run: RunId) -> Result<i64, JobError> {
        in_tx!(self, |conn| ops::take_refund(conn, run))
    }

    async fn keyed_run(
        &self,
        owner: Uuid,
        key: &str,
        max_age: Duration,
    ) -> Result<Option<JobView>, JobError> {
        on_conn!(self, |conn| query::keyed_run(conn, owner, key, max_age))
    }

    async fn job(&self, id: JobId) -> Result<Option<JobView>, JobError> {
        on_conn!(self, |conn| query::job(conn, id))
    }

    async fn children(
        &self,
        parent: JobId,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobView>, JobError> {
        on_conn!(self, |conn| query::children(conn, parent, after, limit))
    }

    async fn run_tree(&self, run: RunId) -> Result<Option<RunTree>, JobError> {
        on_conn!(self, |conn| query::run_tree(conn, run))
    }

    async fn events(
        &self,
        run: RunId,
        after: Option<EventId>,
        scope: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Event>, JobError> {
        on_conn!(self, |conn| query::events(conn, run, after, scope, limit))
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<JobView>, JobError> {
        on_conn!(self, |conn| query::list_runs(conn, filter))
    }

    async fn nodes_of_subjects(
        &self,
        subjects: &[String],
        owner: Option<Uuid>,
        runs_per_subject: usize,
        max_nodes: usize,
    ) -> Result<Vec<JobView>, JobError> {
        on_conn!(self, |conn| query::nodes_of_subjects(
            conn,
            subjects,
            owner,
            runs_per_subject,
            max_nodes
        ))
    }

    async fn first_children(
        &self,
        parents: &[JobId],
        per_parent: usize,
    ) -> Result<Vec<JobView>, JobError> {
        on_conn!(self, |conn| query::first_children(
            conn, parents, per_parent
        ))
    }

    async fn nodes_of_runs(
        &self,
        runs: &[RunId],
        max_nodes: usize,
    ) -> Result<Vec<JobView>, JobError> {
        on_conn!(self, |conn| query::nodes_of_runs(conn, runs, max_nodes))
    }

    #[tracing::instrument(skip_all)]
    async fn prune(
        &self,
        settled_before: DateTime<Utc>,
        max_runs: usize,
    ) -> Result<PruneReport, JobError> {
        in_tx!(self, |conn| query::prune(conn, settled_before, max_runs))
    }

    async fn subscribe(&self) -> Result<NotificationStream, JobError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(|e| Error::from(e).into_job_error())?;
        listener
            .listen(NOTIFY_CHANNEL)
            .await
            .map_err(|e| Error::from(e).into_job_error())?;
        Ok(listener
            .into_stream()
            .flat_map(|n| {
                futures::stream::iter(match n {
                    Ok(n) => parse_notification(n.payload()),
                    Err(e) => {
                        warn!(error = %e, "job notification listener failed; reconnecting");
                        Vec::new()
                    }
                })
            })
            .boxed())
    }
}
