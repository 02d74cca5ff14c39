//! The storage port: what the worker runtime and the application need from a job store.
//!
//! Two implementations exist: [`MemoryJobStore`](crate::MemoryJobStore) here (tests, embedded
//! mode) and `drama_postgres::jobs::PgJobStore`. Both apply the rules of [`crate::core`], and
//! both pass the scenarios of `drama_jobs::conformance`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drama_domain::JobStatus;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::core::Finish;
use crate::error::JobError;
use crate::graph::Graph;
use crate::ids::{EventId, Fence, JobId, RunId, WorkerId};
use crate::state::{CostTotals, Counts, EventKind, JobState, NodeType};

/// The result of a submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The run (the id of its root node).
    pub run_id: RunId,
    /// `false` when the idempotency key matched an existing run, which is returned instead.
    pub created: bool,
    /// Every node's id by key (the root has key `""`).
    pub ids: BTreeMap<String, JobId>,
}

/// A worker asking for work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The claiming worker (it must be registered and alive).
    pub worker: WorkerId,
    /// Kinds it has handlers for.
    pub kinds: Vec<String>,
    /// Most tasks to claim.
    pub limit: usize,
}

/// A claimed task, with everything its handler needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClaimedJob {
    /// The right to finish this attempt.
    pub fence: Fence,
    /// Key.
    pub key: String,
    /// Kind.
    pub kind: String,
    /// Payload.
    pub payload: Value,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// Attempts allowed.
    pub max_attempts: u32,
    /// The last checkpoint an earlier attempt saved.
    pub checkpoint: Option<Value>,
    /// Results of the task's dependencies, by key.
    pub dependencies: BTreeMap<String, Value>,
    /// The run's owner.
    pub owner: Uuid,
    /// The run's subject.
    pub subject: Option<String>,
    /// The enclosing group (or the run).
    pub parent_id: Option<JobId>,
    /// Resource class.
    pub resource_class: String,
    /// Cost.
    pub cost: i64,
}

/// A worker process announcing itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRegistration {
    /// Its id.
    pub id: WorkerId,
    /// A name for operators (host, pid).
    pub name: String,
    /// Kinds it handles.
    pub kinds: Vec<String>,
    /// How long the registration (and every lease it holds) lives without a heartbeat.
    pub ttl: Duration,
}

/// The store's answer to a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heartbeat {
    /// `false` when the registration expired and was reaped: the worker's leases are gone, its
    /// in-flight completions will be rejected, and it must register again.
    pub alive: bool,
    /// Tasks leased by the worker whose cancellation was requested.
    pub cancel_requested: Vec<JobId>,
    /// Tasks running under the worker's lease that it did not name as held (empty when it
    /// named none): claimed by a claim whose answer never reached it (the connection failed
    /// after the commit), so no handler runs them. The worker hands them back
    /// (`FinishKind::Release`, no attempt used); without that they would stay running for as
    /// long as it heartbeats.
    pub unheld: Vec<Fence>,
}

/// Limits of one resource class, enforced at claim time across all workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceLimit {
    /// The class.
    pub class: String,
    /// Most tasks of the class running at once.
    pub max_running: Option<u32>,
    /// Most starts per minute (a token bucket holding a minute's worth).
    pub per_minute: Option<u32>,
}

impl ResourceLimit {
    /// At most `n` running at once.
    pub fn concurrency(class: impl Into<String>, n: u32) -> Self {
        Self {
            class: class.into(),
            max_running: Some(n),
            per_minute: None,
        }
    }

    /// Adds a rate.
    pub fn per_minute(mut self, n: u32) -> Self {
        self.per_minute = Some(n);
        self
    }
}

/// What a cancellation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CancelReport {
    /// Pending tasks that ended cancelled.
    pub cancelled: usize,
    /// Running tasks whose handlers were told to stop.
    pub signalled: usize,
}

/// What a resume did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResumeReport {
    /// Tasks queued again.
    pub queued: usize,
}

/// What a prune removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PruneReport {
    /// Runs.
    pub runs: usize,
    /// Nodes (roots, groups and tasks).
    pub nodes: usize,
    /// Events.
    pub events: usize,
}

/// A node as queries return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// Id.
    pub id: JobId,
    /// Run.
    pub run_id: RunId,
    /// Enclosing group (`None` for the root).
    pub parent_id: Option<JobId>,
    /// Run, group or task.
    pub node_type: NodeType,
    /// Key (`""` for the root).
    pub key: String,
    /// Kind.
    pub kind: String,
    /// State (derived for groups).
    pub state: JobState,
    /// The run's owner.
    pub owner: Uuid,
    /// The run's subject.
    pub subject: Option<String>,
    /// The run's idempotency key (root only).
    pub idempotency_key: Option<String>,
    /// Input.
    pub payload: Value,
    /// Output of a completed task.
    pub result: Option<Value>,
    /// The last error, or why it was skipped or cancelled.
    pub error: Option<String>,
    /// The last checkpoint.
    pub checkpoint: Option<Value>,
    /// Keys of its dependencies.
    pub dependencies: Vec<String>,
    /// Resource class.
    pub resource_class: String,
    /// Priority.
    pub priority: i32,
    /// Attempts used.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Credits.
    pub cost: i64,
    /// Not claimable before this (a retry's backoff or a deferral).
    pub run_after: Option<DateTime<Utc>>,
    /// Cancellation requested while running.
    pub cancel_requested: bool,
    /// Descendant task counts (runs and groups).
    pub counts: Option<Counts>,
    /// Descendant task costs (runs and groups).
    pub costs: Option<CostTotals>,
    /// The run's budget.
    pub budget: Option<i64>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// First started.
    pub started_at: Option<DateTime<Utc>>,
    /// Settled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

impl JobView {
    /// The client-facing status.
    pub fn coarse_status(&self) -> JobStatus {
        self.state.coarse()
    }
}

/// A run with every node and edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTree {
    /// The root first, then every group and task in creation order.
    pub nodes: Vec<JobView>,
    /// `(dependent, prerequisite)` pairs.
    pub edges: Vec<(JobId, JobId)>,
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the log; grows in commit order within a run.
    pub id: EventId,
    /// The run.
    pub run_id: RunId,
    /// The node.
    pub job_id: JobId,
    /// Its key.
    pub key: String,
    /// What happened.
    pub kind: EventKind,
    /// The node's state afterwards.
    pub state: JobState,
    /// The task's attempts afterwards.
    pub attempt: i32,
    /// When.
    pub at: DateTime<Utc>,
    /// Details (error, reason, delay, counts).
    pub detail: Value,
}

/// Which runs to list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunFilter {
    /// Only this owner's runs.
    pub owner: Option<Uuid>,
    /// Only runs about this subject.
    pub subject: Option<String>,
    /// Only runs that have not settled.
    pub active_only: bool,
    /// Most runs to return (newest first); 0 means 100.
    pub limit: usize,
}

/// Sent after every transaction that appended events: enough to read them, small enough for
/// PostgreSQL's NOTIFY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The run.
    pub run_id: RunId,
    /// Its newest event.
    pub event_id: EventId,
    /// Whether tasks became runnable (workers should claim).
    pub wake: bool,
    /// Whether cancellation was requested for running tasks of the run (workers holding
    /// them should look at once instead of at their next heartbeat).
    pub cancel: bool,
}

/// A stream of notifications.
pub type NotificationStream = BoxStream<'static, Notification>;

/// A durable job store.
///
/// Every method is one transaction. Methods that change a run lock it first, so changes to one
/// run are serialised and its events are appended in commit order.
pub trait JobStore: Send + Sync + 'static {
    /// Validates and stores a graph; with an idempotency key that the owner used before,
    /// returns the existing run instead (`created == false`).
    ///
    /// # Errors
    /// [`JobError::InvalidGraph`] (nothing written), [`JobError::Unavailable`].
    fn submit(&self, graph: &Graph) -> impl Future<Output = Result<Submitted, JobError>> + Send;

    /// Submits many graphs in one transaction (bulk enqueue); results are in input order.
    ///
    /// # Errors
    /// [`JobError::InvalidGraph`] if any graph is invalid (nothing written).
    fn submit_many(
        &self,
        graphs: &[Graph],
    ) -> impl Future<Output = Result<Vec<Submitted>, JobError>> + Send;

    /// The run `owner` submitted with idempotency key `key` less than `max_age` ago, by the
    /// store's own clock. A run that took the key longer ago gives it up (it keeps everything
    /// else), so the next submission with the key starts a new run: keys name a request for
    /// a limited time.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn keyed_run(
        &self,
        owner: Uuid,
        key: &str,
        max_age: Duration,
    ) -> impl Future<Output = Result<Option<JobView>, JobError>> + Send;

    /// Registers a worker process.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn register_worker(
        &self,
        worker: &WorkerRegistration,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Extends a worker's registration (and so all its leases) by `ttl`. With `held` (the
    /// tasks the worker holds, running or with their finish not yet written), the answer
    /// names the tasks running under its lease that are not among them
    /// ([`Heartbeat::unheld`]). One look at the worker's leased tasks either way.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn heartbeat(
        &self,
        worker: WorkerId,
        ttl: Duration,
        held: Option<&[JobId]>,
    ) -> impl Future<Output = Result<Heartbeat, JobError>> + Send;

    /// Removes a worker's registration (after it released or finished its tasks).
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn deregister_worker(
        &self,
        worker: WorkerId,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Claims up to `limit` ready tasks of the given kinds, highest priority first, within the
    /// resource classes' limits.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn claim(
        &self,
        request: &ClaimRequest,
    ) -> impl Future<Output = Result<Vec<ClaimedJob>, JobError>> + Send;

    /// Applies finished attempts in one transaction; each gets its own result
    /// ([`JobError::FenceLost`] for stale fences, which change nothing).
    ///
    /// # Errors
    /// [`JobError::Unavailable`] when nothing was applied.
    fn finish(
        &self,
        items: Vec<Finish>,
    ) -> impl Future<Output = Result<Vec<Result<(), JobError>>, JobError>> + Send;

    /// Saves a checkpoint for the attempt holding `fence`; `Value::Null` clears it (the task
    /// then no longer counts as spent).
    ///
    /// # Errors
    /// [`JobError::FenceLost`] when the attempt lost its lease.
    fn checkpoint(
        &self,
        fence: &Fence,
        value: &Value,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Of these attempts, the ones still current: the task is running under the same claim
    /// epoch. A worker whose registration lapsed asks after registering again, and stops the
    /// handlers of the tasks that were taken back meanwhile before they call a paid provider
    /// (their checkpoints and completions would be refused anyway).
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn still_held(
        &self,
        fences: &[Fence],
    ) -> impl Future<Output = Result<Vec<JobId>, JobError>> + Send;

    /// Requeues (or fails) running tasks whose worker's registration expired, and removes
    /// those registrations. Returns how many tasks were affected.
    ///
    /// `reaper` is the registration of the worker that asks. It reaps only while that
    /// registration is alive and has been continuously for at least its lease: it came back
    /// to life (was created, or renewed after it had expired) and no heartbeat came more than
    /// half a lease after the one before it since then. Otherwise it does nothing and returns
    /// 0. After a store outage longer than the lease every registration has expired, live
    /// workers' too; this gives them a lease to register again before anybody takes their
    /// tasks (whose handlers may have paid a provider already).
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn reap_expired(
        &self,
        reaper: WorkerId,
        limit: usize,
    ) -> impl Future<Output = Result<usize, JobError>> + Send;

    /// Starts no task of `class` for `delay` (a provider said 429 for everyone).
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn throttle_class(
        &self,
        class: &str,
        delay: Duration,
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Sets (or, with both limits `None`, removes) resource class limits.
    ///
    /// # Errors
    /// [`JobError::Invalid`] for a malformed class name.
    fn set_resource_limits(
        &self,
        limits: &[ResourceLimit],
    ) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Cancels a task, a group or a run.
    ///
    /// # Errors
    /// [`JobError::NotFound`].
    fn cancel(
        &self,
        job: JobId,
        reason: &str,
    ) -> impl Future<Output = Result<CancelReport, JobError>> + Send;

    /// Queues again the failed, skipped and cancelled tasks of a task, group or run.
    ///
    /// # Errors
    /// [`JobError::NotFound`].
    fn resume(&self, job: JobId) -> impl Future<Output = Result<ResumeReport, JobError>> + Send;

    /// Records the run's refundable cost as refunded; returns what to refund now (the change
    /// since the last call; 0 when nothing changed, negative if resumed tasks completed).
    ///
    /// # Errors
    /// [`JobError::NotFound`].
    fn take_refund(&self, run: RunId) -> impl Future<Output = Result<i64, JobError>> + Send;

    /// One node.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn job(&self, id: JobId) -> impl Future<Output = Result<Option<JobView>, JobError>> + Send;

    /// A group's direct children in creation order, after `after`.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn children(
        &self,
        parent: JobId,
        after: Option<JobId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<JobView>, JobError>> + Send;

    /// A whole run.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn run_tree(
        &self,
        run: RunId,
    ) -> impl Future<Output = Result<Option<RunTree>, JobError>> + Send;

    /// A run's events after `after`, oldest first; with `scope`, only those of that node and
    /// its descendants.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn events(
        &self,
        run: RunId,
        after: Option<EventId>,
        scope: Option<JobId>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Event>, JobError>> + Send;

    /// Runs matching a filter, newest first.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn list_runs(
        &self,
        filter: &RunFilter,
    ) -> impl Future<Output = Result<Vec<JobView>, JobError>> + Send;

    /// Every node of the newest `runs_per_subject` runs of each subject (only `owner`'s when
    /// given): each run's root first, then its groups and tasks in creation order. For pages of
    /// entities that show their jobs; a store answers it in one query, whatever the number of
    /// subjects (this default, in one query per run).
    ///
    /// At most `max_nodes + 1` nodes are read: more than `max_nodes` tells the caller the
    /// answer was cut, and no request reads an unbounded number of rows.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn nodes_of_subjects(
        &self,
        subjects: &[String],
        owner: Option<Uuid>,
        runs_per_subject: usize,
        max_nodes: usize,
    ) -> impl Future<Output = Result<Vec<JobView>, JobError>> + Send {
        async move {
            let mut nodes = Vec::new();
            for subject in subjects {
                if nodes.len() > max_nodes {
                    break;
                }
                let runs = self
                    .list_runs(&RunFilter {
                        owner,
                        subject: Some(subject.clone()),
                        active_only: false,
                        limit: runs_per_subject,
                    })
                    .await?;
                for run in runs {
                    match self.run_tree(run.run_id).await? {
                        Some(tree) => nodes.extend(tree.nodes),
                        None => nodes.push(run),
                    }
                }
            }
            nodes.truncate(max_nodes.saturating_add(1));
            Ok(nodes)
        }
    }

    /// The first `per_parent` direct children of each of `parents`, in creation order: what
    /// lists of runs show of each run, read together (a store answers it in one query; this
    /// default, in one query per parent).
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn first_children(
        &self,
        parents: &[JobId],
        per_parent: usize,
    ) -> impl Future<Output = Result<Vec<JobView>, JobError>> + Send {
        async move {
            let mut nodes = Vec::new();
            for parent in parents {
                nodes.extend(self.children(*parent, None, per_parent).await?);
            }
            Ok(nodes)
        }
    }

    /// Every node of `runs`, at most `max_nodes + 1` (more than `max_nodes` says the answer
    /// was cut), a run's nodes in creation order: for lists of small runs read together (a
    /// store answers it in one query; this default, in one query per run).
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn nodes_of_runs(
        &self,
        runs: &[RunId],
        max_nodes: usize,
    ) -> impl Future<Output = Result<Vec<JobView>, JobError>> + Send {
        async move {
            let mut nodes = Vec::new();
            for run in runs {
                if nodes.len() > max_nodes {
                    break;
                }
                if let Some(tree) = self.run_tree(*run).await? {
                    nodes.extend(tree.nodes);
                }
            }
            nodes.truncate(max_nodes.saturating_add(1));
            Ok(nodes)
        }
    }

    /// Deletes up to `max_runs` runs that settled before `settled_before`, with their nodes,
    /// edges and events. A run whose refunds are not settled (its refundable cost differs
    /// from what was refunded or clawed back) stays: its bookkeeping is what the refund is
    /// taken from.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn prune(
        &self,
        settled_before: DateTime<Utc>,
        max_runs: usize,
    ) -> impl Future<Output = Result<PruneReport, JobError>> + Send;

    /// Notifications of every transaction that appended events, from now on.
    ///
    /// # Errors
    /// [`JobError::Unavailable`].
    fn subscribe(&self) -> impl Future<Output = Result<NotificationStream, JobError>> + Send;
}
