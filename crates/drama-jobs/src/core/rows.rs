//! The rows stores load for an operation and the changes they write back.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{GraphError, JobError};
use crate::graph::Expansion;
use crate::ids::{Fence, JobId, RunId, WorkerId};
use crate::state::{CostTotals, Counts, EventKind, JobState, NodeType};

/// The mutable part of a task, as stores load and write it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// The task.
    pub id: JobId,
    /// Its run.
    pub run_id: RunId,
    /// Its key.
    pub key: String,
    /// Its kind.
    pub kind: String,
    /// Enclosing groups, the run first and the parent last.
    pub ancestors: Vec<JobId>,
    /// State.
    pub state: JobState,
    /// Dependencies that have not completed (meaningful while `waiting`).
    pub deps_remaining: i32,
    /// Attempts used.
    pub attempts: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Deferrals in a row (since the last retry or resume); past
    /// [`FREE_DEFERRALS`](super::FREE_DEFERRALS) a deferral uses an attempt.
    pub deferrals: i32,
    /// Incremented by every claim; the fence.
    pub epoch: i64,
    /// Credits.
    pub cost: i64,
    /// Whether `cost` counts in the ancestors' `charged` sums.
    pub charged: bool,
    /// Whether an attempt saved a checkpoint: its provider call was accepted (a video being
    /// rendered), or the attempt kept its charge ([`JobContext::keep_charge`] writes a
    /// checkpoint: the call was billed and what it answered could not be used). Ending the task
    /// failed, skipped or cancelled then no longer refunds its cost.
    ///
    /// [`JobContext::keep_charge`]: crate::JobContext::keep_charge
    pub spent: bool,
    /// The worker holding the lease while `running`.
    pub lease_owner: Option<WorkerId>,
    /// Not claimable before this.
    pub run_after: DateTime<Utc>,
    /// Cancellation requested while running.
    pub cancel_requested: bool,
    /// The last error or the reason it was skipped or cancelled.
    pub error: Option<String>,
    /// First start.
    pub started_at: Option<DateTime<Utc>>,
    /// When it settled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Tasks that depend on this one.
    pub dependents: Vec<JobId>,
    /// Tasks this one depends on (loaded only with the whole run).
    pub prerequisites: Vec<JobId>,
}

impl TaskRow {
    /// Whether its cost is refundable in its current state: it failed, was skipped or was
    /// cancelled before its provider call was accepted (and so before any charge was kept).
    pub fn refundable(&self) -> bool {
        refundable(self.state, self.spent)
    }
}

/// Whether a task in `state` is refunded (see [`TaskRow::refundable`]). A spent task (its
/// checkpoint says the provider accepted its call: a video being rendered, a product saved)
/// is charged however it ends: the provider bills that call, and a resume continues it (polls
/// the same render, commits the saved product) at no further charge, since the resume's price
/// is what the re-queued tasks had been refunded. A task whose charge was kept (its call was
/// billed and answered what cannot be used) is spent too: keeping a charge is a checkpoint.
pub fn refundable(state: JobState, spent: bool) -> bool {
    state.is_unsuccessful() && !spent
}

/// The mutable part of a run or group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRow {
    /// The group (for the run's root, the run id).
    pub id: JobId,
    /// Its run.
    pub run_id: RunId,
    /// Its key (`""` for the root).
    pub key: String,
    /// Run or group.
    pub node_type: NodeType,
    /// Enclosing groups, the run first (empty for the root).
    pub ancestors: Vec<JobId>,
    /// Derived state.
    pub state: JobState,
    /// Descendant task counts.
    pub counts: Counts,
    /// Descendant task costs.
    pub costs: CostTotals,
    /// The run's budget (root only).
    pub budget: Option<i64>,
    /// Cancelled by a user; set on the target group and every group below it.
    pub cancel_requested: bool,
    /// First time a descendant started.
    pub started_at: Option<DateTime<Utc>>,
    /// When every descendant settled.
    pub finished_at: Option<DateTime<Utc>>,
}

/// The fixed part of a node created by a submission or an expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNode {
    /// Id.
    pub id: JobId,
    /// Run.
    pub run_id: RunId,
    /// Parent (`None` for the root).
    pub parent_id: Option<JobId>,
    /// Enclosing groups, the run first.
    pub ancestors: Vec<JobId>,
    /// Run, group or task.
    pub node_type: NodeType,
    /// Key (`""` for the root).
    pub key: String,
    /// Kind.
    pub kind: String,
    /// Payload.
    pub payload: Value,
    /// Resource class.
    pub resource_class: String,
    /// Priority.
    pub priority: i32,
    /// Remaining critical path in milliseconds; breaks priority ties.
    pub rank: i64,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Credits.
    pub cost: i64,
    /// The run's owner.
    pub owner: Uuid,
    /// The run's subject.
    pub subject: Option<String>,
    /// The run's idempotency key (root only).
    pub idempotency_key: Option<String>,
}

/// An event to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The run.
    pub run_id: RunId,
    /// The node.
    pub job_id: JobId,
    /// The node's key.
    pub key: String,
    /// What happened.
    pub kind: EventKind,
    /// The node's state afterwards.
    pub state: JobState,
    /// The task's attempts afterwards (0 for groups).
    pub attempt: i32,
    /// Reason, error, delay or counts; `null` when there is nothing to add.
    pub detail: Value,
}

/// Everything an operation changed, for the store to write in one transaction.
#[derive(Debug, Default)]
pub struct Changes {
    /// Nodes to insert (their mutable part is in `tasks` / `groups`).
    pub new_nodes: Vec<NewNode>,
    /// Edges to insert, `(dependent, prerequisite)`.
    pub new_edges: Vec<(JobId, JobId)>,
    /// Ids in `new_nodes`.
    pub created: HashSet<JobId>,
    /// Tasks created or changed, with their final values.
    pub tasks: Vec<TaskRow>,
    /// Groups created or changed, with their final values.
    pub groups: Vec<GroupRow>,
    /// Results of tasks that completed.
    pub results: HashMap<JobId, Value>,
    /// Events in the order they happened.
    pub events: Vec<NewEvent>,
    /// Runs in which a task became ready (workers should be woken).
    pub wake: BTreeSet<RunId>,
}

impl Changes {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.new_nodes.is_empty() && self.tasks.is_empty() && self.groups.is_empty()
    }

    /// Runs in which cancellation was requested for a running task (their workers should
    /// be told at once).
    pub fn cancel_requested(&self) -> BTreeSet<RunId> {
        self.events
            .iter()
            .filter(|e| e.kind == EventKind::CancelRequested)
            .map(|e| e.run_id)
            .collect()
    }
}

/// Where a [`Workset`] loads rows from.
pub trait RowSource {
    /// A task, if loaded (or stored).
    fn task(&self, id: JobId) -> Option<TaskRow>;
    /// A run or group, if loaded (or stored).
    fn group(&self, id: JobId) -> Option<GroupRow>;
    /// Every node of a run with its type, when the whole run is available (tasks then carry
    /// their `prerequisites`); `None` otherwise.
    fn run_nodes(&self, run: RunId) -> Option<Vec<(JobId, NodeType)>>;
    /// The owner and subject of a run.
    fn run_identity(&self, run: RunId) -> Option<(Uuid, Option<String>)>;
}

/// A [`RowSource`] with nothing in it (for submissions).
pub struct EmptySource;

impl RowSource for EmptySource {
    fn task(&self, _: JobId) -> Option<TaskRow> {
        None
    }
    fn group(&self, _: JobId) -> Option<GroupRow> {
        None
    }
    fn run_nodes(&self, _: RunId) -> Option<Vec<(JobId, NodeType)>> {
        None
    }
    fn run_identity(&self, _: RunId) -> Option<(Uuid, Option<String>)> {
        None
    }
}

/// Why an operation could not run on the rows it was given.
#[derive(Debug)]
pub enum CoreError {
    /// A row the store did not load; load the whole run and run the operation again.
    NotLoaded(JobId),
    /// The operation needs the whole run loaded.
    RunNotLoaded(RunId),
    /// The operation is not allowed; report this to the caller.
    Job(JobError),
}

impl From<JobError> for CoreError {
    fn from(e: JobError) -> Self {
        Self::Job(e)
    }
}

impl From<GraphError> for CoreError {
    fn from(e: GraphError) -> Self {
        Self::Job(JobError::InvalidGraph(e))
    }
}

/// What happened to a claim candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOutcome {
    /// Now running under the worker's lease.
    Started,
    /// Cancelled instead (budget exhausted or a cancelled group).
    Cancelled,
    /// Not runnable any more; left alone.
    NotRunnable,
}

/// How a worker finished an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum FinishKind {
    /// Success, optionally adding nodes to the run.
    Complete {
        /// The result, readable by dependents.
        result: Value,
        /// Nodes and edges to add atomically.
        expansion: Option<Expansion>,
    },
    /// A retryable failure: retried after `delay` while attempts remain.
    Retry {
        /// What went wrong.
        error: String,
        /// Backoff before the next attempt.
        delay: Duration,
    },
    /// Retry after `delay` (at most [`MAX_DEFER`](super::MAX_DEFER)) without using an attempt
    /// (e.g. an HTTP 429 with Retry-After), unless the task was deferred
    /// [`FREE_DEFERRALS`](super::FREE_DEFERRALS) times in a row already.
    Defer {
        /// Why.
        reason: String,
        /// When to try again.
        delay: Duration,
    },
    /// A permanent failure: no more attempts; dependents are skipped.
    Fail {
        /// What went wrong.
        error: String,
    },
    /// The handler stopped because cancellation was requested.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// Hand the task back without using an attempt (worker shutdown).
    Release,
    /// The handler completed the task in its own transaction; check that it really did.
    VerifyExternal,
}

impl FinishKind {
    /// The same outcome with its error or reason text made storable ([`storable_text`]).
    pub fn storable(&self) -> Cow<'_, FinishKind> {
        let text = match self {
            Self::Retry { error: t, .. }
            | Self::Defer { reason: t, .. }
            | Self::Fail { error: t }
            | Self::Cancelled { reason: t } => t,
            Self::Complete { .. } | Self::Release | Self::VerifyExternal => {
                return Cow::Borrowed(self);
            }
        };
        let Cow::Owned(clean) = storable_text(text) else {
            return Cow::Borrowed(self);
        };
        let mut kind = self.clone();
        if let Self::Retry { error: t, .. }
        | Self::Defer { reason: t, .. }
        | Self::Fail { error: t }
        | Self::Cancelled { reason: t } = &mut kind
        {
            *t = clean;
        }
        Cow::Owned(kind)
    }
}

/// `text` without the characters PostgreSQL cannot store in `text` or `jsonb`: NUL (U+0000)
/// is the only one a Rust string can hold. Errors and reasons come from handlers, which often
/// pass on a provider's message verbatim; one NUL in them made the store refuse the whole
/// completion batch it was in.
pub fn storable_text(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', ""))
    } else {
        Cow::Borrowed(text)
    }
}

/// One finished attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// The attempt's fence.
    pub fence: Fence,
    /// What happened.
    pub kind: FinishKind,
}
