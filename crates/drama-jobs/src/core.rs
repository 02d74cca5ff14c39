//! The transition rules every store applies.
//!
//! A store loads the rows an operation touches into a [`Workset`] (lazily, through
//! [`RowSource`]), runs the operation, and writes the resulting [`Changes`] in the same
//! transaction. Because both stores run this code, the in-memory store and PostgreSQL agree on
//! every state, counter, cost and event.
//!
//! Stores serialise operations per run (PostgreSQL locks the run's root row first), so an
//! operation sees its run as of the start of the operation and nobody else changes it meanwhile.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{GraphError, JobError};
use crate::graph::{self, ExistingNode, ExistingNodes, Expansion, Graph, NodeRef};
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
    /// Incremented by every claim; the fence.
    pub epoch: i64,
    /// Credits.
    pub cost: i64,
    /// Whether `cost` counts in the ancestors' `charged` sums.
    pub charged: bool,
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

/// The existing nodes of a run, indexed for resolving an expansion.
#[derive(Default)]
struct RunIndex {
    ids: Vec<JobId>,
    keys: Vec<String>,
    types: Vec<NodeType>,
    depth: Vec<usize>,
    by_key: HashMap<String, usize>,
    prerequisites: Vec<Vec<usize>>,
}

impl RunIndex {
    fn load(
        ws: &mut Workset<'_>,
        _run: RunId,
        nodes: &[(JobId, NodeType)],
    ) -> Result<Self, CoreError> {
        let mut index = Self::default();
        let mut by_id = HashMap::with_capacity(nodes.len());
        let mut raw_prerequisites = Vec::with_capacity(nodes.len());
        for (i, (id, t)) in nodes.iter().enumerate() {
            let (key, depth, prerequisites) = if t.is_group() {
                let g = ws.group(*id)?;
                (g.key.clone(), g.ancestors.len(), Vec::new())
            } else {
                let task = ws.task(*id)?;
                (
                    task.key.clone(),
                    task.ancestors.len(),
                    task.prerequisites.clone(),
                )
            };
            by_id.insert(*id, i);
            index.ids.push(*id);
            index.by_key.insert(key.clone(), i);
            index.keys.push(key);
            index.types.push(*t);
            index.depth.push(depth);
            raw_prerequisites.push(prerequisites);
        }
        index.prerequisites = raw_prerequisites
            .into_iter()
            .map(|ps| ps.iter().filter_map(|p| by_id.get(p).copied()).collect())
            .collect();
        Ok(index)
    }
}

impl ExistingNodes for RunIndex {
    fn get(&self, key: &str) -> Option<ExistingNode> {
        self.by_key.get(key).map(|&index| ExistingNode {
            index,
            node_type: self.types[index],
            depth: self.depth[index],
        })
    }
    fn prerequisites(&self, index: usize) -> Vec<usize> {
        self.prerequisites.get(index).cloned().unwrap_or_default()
    }
    fn key(&self, index: usize) -> String {
        self.keys.get(index).cloned().unwrap_or_default()
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
    /// Retry after `delay` without using an attempt (e.g. an HTTP 429 with Retry-After).
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

/// One finished attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// The attempt's fence.
    pub fence: Fence,
    /// What happened.
    pub kind: FinishKind,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn add_duration(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(t)
}

/// Derives a group's state from its counts and cancel flag.
pub fn derive_group_state(counts: &Counts, cancel_requested: bool) -> JobState {
    if counts.is_settled() {
        if counts.completed == counts.total {
            JobState::Completed
        } else if cancel_requested {
            JobState::Cancelled
        } else if counts.failed > 0 || counts.skipped > 0 {
            JobState::Failed
        } else {
            JobState::Cancelled
        }
    } else if counts.running > 0
        || counts.completed + counts.failed + counts.skipped + counts.cancelled > 0
    {
        JobState::Running
    } else {
        JobState::Waiting
    }
}

/// The rows one operation works on, and what it changed.
pub struct Workset<'a> {
    source: &'a dyn RowSource,
    now: DateTime<Utc>,
    tasks: HashMap<JobId, TaskRow>,
    groups: HashMap<JobId, GroupRow>,
    group_state_before: HashMap<JobId, JobState>,
    changed_tasks: BTreeSet<JobId>,
    changed_groups: BTreeSet<JobId>,
    changes: Changes,
}

impl<'a> Workset<'a> {
    /// A workset reading from `source` at time `now` (the transaction's time).
    pub fn new(source: &'a dyn RowSource, now: DateTime<Utc>) -> Self {
        Self {
            source,
            now,
            tasks: HashMap::new(),
            groups: HashMap::new(),
            group_state_before: HashMap::new(),
            changed_tasks: BTreeSet::new(),
            changed_groups: BTreeSet::new(),
            changes: Changes::default(),
        }
    }

    /// The operation's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// A task, loading it on first use.
    ///
    /// # Errors
    /// [`CoreError::NotLoaded`] when the source lacks it.
    pub fn task(&mut self, id: JobId) -> Result<&mut TaskRow, CoreError> {
        if !self.tasks.contains_key(&id) {
            let row = self.source.task(id).ok_or(CoreError::NotLoaded(id))?;
            self.tasks.insert(id, row);
        }
        self.tasks.get_mut(&id).ok_or(CoreError::NotLoaded(id))
    }

    /// A group, loading it on first use.
    ///
    /// # Errors
    /// [`CoreError::NotLoaded`] when the source lacks it.
    pub fn group(&mut self, id: JobId) -> Result<&mut GroupRow, CoreError> {
        if !self.groups.contains_key(&id) {
            let row = self.source.group(id).ok_or(CoreError::NotLoaded(id))?;
            self.group_state_before.insert(id, row.state);
            self.groups.insert(id, row);
        }
        self.groups.get_mut(&id).ok_or(CoreError::NotLoaded(id))
    }

    fn touch_task(&mut self, id: JobId) {
        self.changed_tasks.insert(id);
    }

    fn event(
        &mut self,
        (run_id, job_id, key): (RunId, JobId, &str),
        kind: EventKind,
        state: JobState,
        attempt: i32,
        detail: Value,
    ) {
        self.changes.events.push(NewEvent {
            run_id,
            job_id,
            key: key.to_owned(),
            kind,
            state,
            attempt,
            detail,
        });
    }

    /// Moves a task to `to`, keeping every ancestor's counts and costs in step, and records
    /// the event.
    fn set_state(
        &mut self,
        id: JobId,
        to: JobState,
        kind: EventKind,
        detail: Value,
    ) -> Result<(), CoreError> {
        let now = self.now;
        let task = self.task(id)?;
        let from = task.state;
        task.state = to;
        let refundable =
            (i64::from(to.is_unsuccessful()) - i64::from(from.is_unsuccessful())) * task.cost;
        let mut charged = 0;
        if to == JobState::Running && !task.charged {
            task.charged = true;
            charged = task.cost;
        } else if matches!(to, JobState::Failed | JobState::Cancelled) && task.charged {
            task.charged = false;
            charged = -task.cost;
        }
        task.finished_at = to.is_settled().then_some(now);
        let (run_id, key, attempt) = (task.run_id, task.key.clone(), task.attempts);
        let ancestors = task.ancestors.clone();
        self.touch_task(id);
        for a in ancestors {
            let g = self.group(a)?;
            if from != to {
                g.counts.shift(from, to);
            }
            g.costs.refundable += refundable;
            g.costs.charged += charged;
            self.changed_groups.insert(a);
        }
        self.event((run_id, id, &key), kind, to, attempt, detail);
        Ok(())
    }

    fn check_fence(&mut self, fence: &Fence) -> Result<(), CoreError> {
        let task = self.task(fence.job_id)?;
        if task.run_id != fence.run_id
            || task.state != JobState::Running
            || task.epoch != fence.epoch
        {
            return Err(JobError::FenceLost(*fence).into());
        }
        Ok(())
    }

    fn cancelled_by_group(&mut self, id: JobId) -> Result<Option<String>, CoreError> {
        let ancestors = self.task(id)?.ancestors.clone();
        for a in ancestors.into_iter().rev() {
            let g = self.group(a)?;
            if g.cancel_requested {
                return Ok(Some(if g.key.is_empty() {
                    "the run was cancelled".to_owned()
                } else {
                    format!("group `{}` was cancelled", g.key)
                }));
            }
        }
        Ok(None)
    }

    /// Starts a ready task under `worker`'s lease, unless its run's budget or a cancelled
    /// group stops it (then it ends cancelled with the reason, and so do its dependents).
    ///
    /// # Errors
    /// [`CoreError::NotLoaded`] when a needed row is missing.
    pub fn start(&mut self, id: JobId, worker: WorkerId) -> Result<StartOutcome, CoreError> {
        let now = self.now;
        let task = self.task(id)?;
        if task.state != JobState::Ready || task.run_after > now {
            return Ok(StartOutcome::NotRunnable);
        }
        let (run_id, cost, charged) = (task.run_id, task.cost, task.charged);
        if let Some(reason) = self.cancelled_by_group(id)? {
            self.end_pending(id, JobState::Cancelled, &reason)?;
            return Ok(StartOutcome::Cancelled);
        }
        let root = self.group(run_id)?;
        if let Some(budget) = root.budget
            && !charged
            && root.costs.charged + cost > budget
        {
            let reason = format!(
                "run budget exceeded: {} charged + cost {} > budget {}",
                root.costs.charged, cost, budget
            );
            self.end_pending(id, JobState::Cancelled, &reason)?;
            return Ok(StartOutcome::Cancelled);
        }
        let task = self.task(id)?;
        task.attempts += 1;
        task.epoch += 1;
        task.lease_owner = Some(worker);
        task.cancel_requested = false;
        task.started_at.get_or_insert(now);
        self.set_state(id, JobState::Running, EventKind::Started, Value::Null)?;
        Ok(StartOutcome::Started)
    }

    /// Applies one finished attempt.
    ///
    /// # Errors
    /// [`JobError::FenceLost`] (as [`CoreError::Job`]) when the fence is stale; invalid
    /// expansions as [`JobError::InvalidGraph`].
    pub fn finish(&mut self, finish: &Finish) -> Result<(), CoreError> {
        let fence = &finish.fence;
        if let FinishKind::VerifyExternal = finish.kind {
            // A handler that committed its completion itself leaves nothing running under its
            // fence; anything else is a handler bug.
            let task = self.task(fence.job_id)?;
            if task.state == JobState::Running && task.epoch == fence.epoch {
                return self.finish(&Finish {
                    fence: *fence,
                    kind: FinishKind::Fail {
                        error: "the handler reported that it completed the job in its own \
                                transaction, but the job was still running"
                            .to_owned(),
                    },
                });
            }
            return Ok(());
        }
        self.check_fence(fence)?;
        let id = fence.job_id;
        let cancelled = {
            let own = self.task(id)?.cancel_requested;
            match self.cancelled_by_group(id)? {
                Some(r) => Some(r),
                None => own.then(|| "cancelled while running".to_owned()),
            }
        };
        match &finish.kind {
            FinishKind::Complete { result, expansion } => {
                self.complete(id, result.clone())?;
                if let Some(expansion) = expansion
                    && !expansion.is_empty()
                {
                    self.expand(id, expansion)?;
                }
            }
            FinishKind::Retry { error, delay } => {
                if let Some(reason) = cancelled {
                    self.end_running(id, JobState::Cancelled, &reason)?;
                } else {
                    let task = self.task(id)?;
                    if task.attempts >= task.max_attempts {
                        let msg = format!(
                            "{error} (attempt {} of {})",
                            task.attempts, task.max_attempts
                        );
                        self.end_running(id, JobState::Failed, &msg)?;
                    } else {
                        self.requeue(
                            id,
                            *delay,
                            false,
                            EventKind::Retrying,
                            Some(error.clone()),
                            json!({"error": error, "delay_ms": millis(*delay)}),
                        )?;
                    }
                }
            }
            FinishKind::Defer { reason, delay } => {
                if let Some(why) = cancelled {
                    self.end_running(id, JobState::Cancelled, &why)?;
                } else {
                    self.requeue(
                        id,
                        *delay,
                        true,
                        EventKind::Deferred,
                        Some(reason.clone()),
                        json!({"reason": reason, "delay_ms": millis(*delay)}),
                    )?;
                }
            }
            FinishKind::Release => {
                if let Some(why) = cancelled {
                    self.end_running(id, JobState::Cancelled, &why)?;
                } else {
                    self.requeue(
                        id,
                        Duration::ZERO,
                        true,
                        EventKind::Released,
                        None,
                        Value::Null,
                    )?;
                }
            }
            FinishKind::Fail { error } => self.end_running(id, JobState::Failed, error)?,
            FinishKind::Cancelled { reason } => {
                self.end_running(id, JobState::Cancelled, reason)?;
            }
            FinishKind::VerifyExternal => {}
        }
        Ok(())
    }

    fn complete(&mut self, id: JobId, result: Value) -> Result<(), CoreError> {
        let task = self.task(id)?;
        task.lease_owner = None;
        task.error = None;
        task.cancel_requested = false;
        let dependents = task.dependents.clone();
        self.changes.results.insert(id, result);
        self.set_state(id, JobState::Completed, EventKind::Completed, Value::Null)?;
        for d in dependents {
            self.dependency_completed(d)?;
        }
        Ok(())
    }

    fn dependency_completed(&mut self, id: JobId) -> Result<(), CoreError> {
        let now = self.now;
        let task = self.task(id)?;
        if task.state != JobState::Waiting {
            return Ok(());
        }
        task.deps_remaining -= 1;
        let run = task.run_id;
        if task.deps_remaining <= 0 {
            task.deps_remaining = 0;
            task.run_after = now;
            self.set_state(id, JobState::Ready, EventKind::Ready, Value::Null)?;
            self.changes.wake.insert(run);
        } else {
            self.touch_task(id);
        }
        Ok(())
    }

    fn requeue(
        &mut self,
        id: JobId,
        delay: Duration,
        give_back_attempt: bool,
        kind: EventKind,
        error: Option<String>,
        detail: Value,
    ) -> Result<(), CoreError> {
        let run_after = add_duration(self.now, delay);
        let task = self.task(id)?;
        task.lease_owner = None;
        task.run_after = run_after;
        if give_back_attempt {
            task.attempts = (task.attempts - 1).max(0);
        }
        if error.is_some() {
            task.error = error;
        }
        let run = task.run_id;
        self.set_state(id, JobState::Ready, kind, detail)?;
        self.changes.wake.insert(run);
        Ok(())
    }

    /// Ends a running task failed or cancelled and propagates to its dependents.
    fn end_running(&mut self, id: JobId, to: JobState, reason: &str) -> Result<(), CoreError> {
        let task = self.task(id)?;
        task.lease_owner = None;
        task.cancel_requested = false;
        task.error = Some(reason.to_owned());
        let kind = if to == JobState::Failed {
            EventKind::Failed
        } else {
            EventKind::Cancelled
        };
        self.set_state(id, to, kind, json!({"error": reason}))?;
        self.propagate(id, to)
    }

    /// Ends a pending task skipped or cancelled and propagates to its dependents.
    fn end_pending(&mut self, id: JobId, to: JobState, reason: &str) -> Result<(), CoreError> {
        let task = self.task(id)?;
        task.error = Some(reason.to_owned());
        let kind = if to == JobState::Skipped {
            EventKind::Skipped
        } else {
            EventKind::Cancelled
        };
        self.set_state(id, to, kind, json!({"reason": reason}))?;
        self.propagate(id, to)
    }

    /// Pending dependents of a task that ended unsuccessfully are skipped (failure) or
    /// cancelled (cancellation), transitively, naming the task that caused it.
    fn propagate(&mut self, origin: JobId, ended: JobState) -> Result<(), CoreError> {
        let origin_key = self.task(origin)?.key.clone();
        let (to, reason) = match ended {
            JobState::Cancelled => (
                JobState::Cancelled,
                format!("dependency `{origin_key}` was cancelled"),
            ),
            _ => (
                JobState::Skipped,
                format!("dependency `{origin_key}` did not complete ({ended})"),
            ),
        };
        let kind = if to == JobState::Skipped {
            EventKind::Skipped
        } else {
            EventKind::Cancelled
        };
        let mut queue: VecDeque<JobId> = self.task(origin)?.dependents.clone().into();
        while let Some(d) = queue.pop_front() {
            let task = self.task(d)?;
            if !task.state.is_pending() {
                continue;
            }
            task.error = Some(reason.clone());
            queue.extend(task.dependents.iter().copied());
            self.set_state(d, to, kind, json!({"reason": reason}))?;
        }
        Ok(())
    }

    /// A running task whose worker stopped heartbeating goes back to the queue (or fails when
    /// it used its last attempt).
    ///
    /// # Errors
    /// [`CoreError::NotLoaded`] when a needed row is missing.
    pub fn lease_expired(&mut self, id: JobId) -> Result<bool, CoreError> {
        let task = self.task(id)?;
        if task.state != JobState::Running {
            return Ok(false);
        }
        let worker = task.lease_owner;
        let (attempts, max) = (task.attempts, task.max_attempts);
        let own_cancel = task.cancel_requested;
        let cancelled = match self.cancelled_by_group(id)? {
            Some(r) => Some(r),
            None => own_cancel.then(|| "cancelled while running".to_owned()),
        };
        if let Some(reason) = cancelled {
            self.end_running(id, JobState::Cancelled, &reason)?;
        } else if attempts >= max {
            let msg = format!(
                "the worker holding the lease stopped responding (attempt {attempts} of {max})"
            );
            self.end_running(id, JobState::Failed, &msg)?;
        } else {
            let detail = json!({"worker": worker.map(|w| w.to_string())});
            self.requeue(
                id,
                Duration::ZERO,
                false,
                EventKind::LeaseExpired,
                None,
                detail,
            )?;
        }
        Ok(true)
    }

    fn run_nodes(&self, run: RunId) -> Result<Vec<(JobId, NodeType)>, CoreError> {
        self.source
            .run_nodes(run)
            .ok_or(CoreError::RunNotLoaded(run))
    }

    /// Cancels `target` (a task, a group or the whole run): pending tasks below it end
    /// cancelled (and their dependents elsewhere too), running ones see the cancellation.
    /// Returns how many tasks were cancelled and how many running ones were signalled.
    ///
    /// # Errors
    /// [`CoreError::RunNotLoaded`] unless the whole run is loaded; `NotFound` for an unknown
    /// target.
    pub fn cancel(
        &mut self,
        run: RunId,
        target: JobId,
        reason: &str,
    ) -> Result<(usize, usize), CoreError> {
        let nodes = self.run_nodes(run)?;
        let target_type = nodes
            .iter()
            .find(|(id, _)| *id == target)
            .map(|(_, t)| *t)
            .ok_or(CoreError::Job(JobError::NotFound(target)))?;
        let mut tasks = Vec::new();
        if target_type == NodeType::Task {
            tasks.push(target);
        } else {
            for (id, t) in &nodes {
                if t.is_group() {
                    let g = self.group(*id)?;
                    if g.id == target || g.ancestors.contains(&target) {
                        g.cancel_requested = true;
                        self.changed_groups.insert(*id);
                    }
                } else if self.task(*id)?.ancestors.contains(&target) {
                    tasks.push(*id);
                }
            }
        }
        let (mut cancelled, mut signalled) = (0, 0);
        for id in tasks {
            let task = self.task(id)?;
            match task.state {
                JobState::Waiting | JobState::Ready => {
                    self.end_pending(id, JobState::Cancelled, reason)?;
                    cancelled += 1;
                }
                JobState::Running if !task.cancel_requested => {
                    task.cancel_requested = true;
                    let (run_id, key, attempt) = (task.run_id, task.key.clone(), task.attempts);
                    self.touch_task(id);
                    self.event(
                        (run_id, id, &key),
                        EventKind::CancelRequested,
                        JobState::Running,
                        attempt,
                        json!({"reason": reason}),
                    );
                    signalled += 1;
                }
                _ => {}
            }
        }
        Ok((cancelled, signalled))
    }

    /// Queues again the failed, skipped and cancelled tasks below `target` and the tasks
    /// elsewhere that were skipped or cancelled because of them; completed tasks never run
    /// again. Returns how many tasks were queued.
    ///
    /// # Errors
    /// [`CoreError::RunNotLoaded`] unless the whole run is loaded; `NotFound` for an unknown
    /// target.
    pub fn resume(&mut self, run: RunId, target: JobId) -> Result<usize, CoreError> {
        let nodes = self.run_nodes(run)?;
        let target_type = nodes
            .iter()
            .find(|(id, _)| *id == target)
            .map(|(_, t)| *t)
            .ok_or(CoreError::Job(JobError::NotFound(target)))?;
        // Groups below the target, and above it, are no longer cancelled.
        let mut target_ancestors = Vec::new();
        if target_type == NodeType::Task {
            target_ancestors = self.task(target)?.ancestors.clone();
        } else if target_type == NodeType::Group {
            target_ancestors = self.group(target)?.ancestors.clone();
        }
        let mut seeds = Vec::new();
        for (id, t) in &nodes {
            if t.is_group() {
                let g = self.group(*id)?;
                let below = g.id == target || g.ancestors.contains(&target);
                if (below || target_ancestors.contains(id)) && g.cancel_requested {
                    g.cancel_requested = false;
                    self.changed_groups.insert(*id);
                }
            } else {
                let task = self.task(*id)?;
                let below = *id == target || task.ancestors.contains(&target);
                if below && task.state.is_unsuccessful() {
                    seeds.push(*id);
                }
            }
        }
        // Everything downstream that did not run because of a seed joins it.
        let mut reset: BTreeSet<JobId> = BTreeSet::new();
        let mut queue: VecDeque<JobId> = seeds.into();
        while let Some(id) = queue.pop_front() {
            if !reset.insert(id) {
                continue;
            }
            for d in self.task(id)?.dependents.clone() {
                let s = self.task(d)?.state;
                if matches!(s, JobState::Skipped | JobState::Cancelled) {
                    queue.push_back(d);
                }
            }
        }
        // Settle the reset tasks in dependency order: a task whose prerequisite stays failed
        // (outside the reset set) is skipped again; the others wait or are ready.
        let order = self.order_by_dependencies(&reset)?;
        let mut queued = 0;
        for id in order {
            let now = self.now;
            let prerequisites = self.task(id)?.prerequisites.clone();
            let mut remaining = 0;
            let mut blocked: Option<(JobState, String)> = None;
            for p in prerequisites {
                let pt = self.task(p)?;
                match pt.state {
                    JobState::Completed => {}
                    s if s.is_unsuccessful() => {
                        blocked.get_or_insert((s, pt.key.clone()));
                    }
                    _ => remaining += 1,
                }
            }
            let task = self.task(id)?;
            task.attempts = 0;
            task.error = None;
            task.cancel_requested = false;
            task.lease_owner = None;
            task.run_after = now;
            task.deps_remaining = remaining;
            let run_id = task.run_id;
            match blocked {
                Some((state, key)) => {
                    let (to, reason) = if state == JobState::Cancelled {
                        (
                            JobState::Cancelled,
                            format!("dependency `{key}` was cancelled"),
                        )
                    } else {
                        (
                            JobState::Skipped,
                            format!("dependency `{key}` did not complete ({state})"),
                        )
                    };
                    let task = self.task(id)?;
                    task.error = Some(reason.clone());
                    let current = task.state;
                    self.touch_task(id);
                    if current != to {
                        let kind = if to == JobState::Skipped {
                            EventKind::Skipped
                        } else {
                            EventKind::Cancelled
                        };
                        self.set_state(id, to, kind, json!({"reason": reason}))?;
                    }
                }
                None => {
                    let to = if remaining == 0 {
                        JobState::Ready
                    } else {
                        JobState::Waiting
                    };
                    self.set_state(id, to, EventKind::Resumed, Value::Null)?;
                    if to == JobState::Ready {
                        self.changes.wake.insert(run_id);
                    }
                    queued += 1;
                }
            }
        }
        Ok(queued)
    }

    fn order_by_dependencies(&mut self, set: &BTreeSet<JobId>) -> Result<Vec<JobId>, CoreError> {
        let mut indegree: BTreeMap<JobId, usize> = set.iter().map(|&id| (id, 0)).collect();
        for &id in set {
            for p in self.task(id)?.prerequisites.clone() {
                if set.contains(&p)
                    && let Some(n) = indegree.get_mut(&id)
                {
                    *n += 1;
                }
            }
        }
        let mut ready: VecDeque<JobId> = indegree
            .iter()
            .filter(|(_, n)| **n == 0)
            .map(|(id, _)| *id)
            .collect();
        let mut order = Vec::with_capacity(set.len());
        while let Some(id) = ready.pop_front() {
            order.push(id);
            for d in self.task(id)?.dependents.clone() {
                if let Some(n) = indegree.get_mut(&d) {
                    *n -= 1;
                    if *n == 0 {
                        ready.push_back(d);
                    }
                }
            }
        }
        Ok(order)
    }

    /// Records the run's refundable cost as refunded and returns the difference to what was
    /// refunded before (negative when resumed tasks completed after a refund).
    ///
    /// # Errors
    /// [`CoreError::NotLoaded`] when the run is missing.
    pub fn take_refund(&mut self, run: RunId) -> Result<i64, CoreError> {
        let g = self.group(run)?;
        let delta = g.costs.refundable - g.costs.refunded;
        if delta != 0 {
            g.costs.refunded = g.costs.refundable;
            self.changed_groups.insert(run);
        }
        Ok(delta)
    }

    /// Creates the rows of a new run. `run_id` is the id of its root.
    ///
    /// # Errors
    /// [`JobError::InvalidGraph`] for an invalid graph.
    pub fn submit(
        &mut self,
        graph: &Graph,
        run_id: RunId,
    ) -> Result<BTreeMap<String, JobId>, CoreError> {
        graph::check_run(&graph.run)?;
        let resolved = graph::resolve(&graph.nodes, &[], &graph::NoExistingNodes)?;
        let root = GroupRow {
            id: run_id,
            run_id,
            key: String::new(),
            node_type: NodeType::Run,
            ancestors: Vec::new(),
            state: JobState::Waiting,
            counts: Counts::default(),
            costs: CostTotals::default(),
            budget: graph.run.budget,
            cancel_requested: false,
            started_at: None,
            finished_at: None,
        };
        self.group_state_before.insert(run_id, JobState::Waiting);
        self.groups.insert(run_id, root);
        self.changed_groups.insert(run_id);
        self.changes.created.insert(run_id);
        self.changes.new_nodes.push(NewNode {
            id: run_id,
            run_id,
            parent_id: None,
            ancestors: Vec::new(),
            node_type: NodeType::Run,
            key: String::new(),
            kind: graph.run.kind.clone(),
            payload: graph.run.payload.clone(),
            resource_class: graph::DEFAULT_CLASS.to_owned(),
            priority: 0,
            rank: 0,
            max_attempts: 1,
            cost: 0,
            owner: graph.run.owner,
            subject: graph.run.subject.clone(),
            idempotency_key: graph.run.idempotency_key.clone(),
        });
        let ids = self.insert_nodes(run_id, &graph.nodes, &resolved, &RunIndex::default())?;
        self.event(
            (run_id, run_id, ""),
            EventKind::Submitted,
            JobState::Waiting,
            0,
            json!({"nodes": graph.nodes.len()}),
        );
        Ok(ids)
    }

    /// Adds an expansion's nodes and edges to the run of the (just completed) task `by`.
    fn expand(&mut self, by: JobId, expansion: &Expansion) -> Result<(), CoreError> {
        let run = self.task(by)?.run_id;
        let nodes = self.run_nodes(run)?;
        if nodes.len() + expansion.nodes.len() > graph::MAX_NODES_PER_RUN {
            return Err(GraphError::TooManyNodes {
                count: nodes.len() + expansion.nodes.len(),
                max: graph::MAX_NODES_PER_RUN,
            }
            .into());
        }
        let index = RunIndex::load(self, run, &nodes)?;
        let resolved = graph::resolve(&expansion.nodes, &expansion.edges, &index)?;
        for &(e, _) in &resolved.edges {
            let id = index.ids[e];
            let task = self.task(id)?;
            if !task.state.is_pending() {
                return Err(GraphError::AlreadyStarted {
                    node: task.key.clone(),
                    state: task.state,
                }
                .into());
            }
        }
        let ids = self.insert_nodes(run, &expansion.nodes, &resolved, &index)?;
        let (key, attempt) = {
            let t = self.task(by)?;
            (t.key.clone(), t.attempts)
        };
        let added: Vec<&String> = expansion.nodes.iter().map(|n| &n.key).collect();
        self.event(
            (run, by, &key),
            EventKind::Expanded,
            JobState::Completed,
            attempt,
            json!({"added": added, "edges": expansion.edges.len()}),
        );
        // Existing tasks gaining dependencies wait for them (or inherit their end).
        for &(e, n) in &resolved.edges {
            let dependent = index.ids[e];
            let prerequisite = ids[&expansion.nodes[n].key];
            self.changes.new_edges.push((dependent, prerequisite));
            self.task(prerequisite)?.dependents.push(dependent);
            let pstate = self.task(prerequisite)?.state;
            let task = self.task(dependent)?;
            task.prerequisites.push(prerequisite);
            let (dkey, dattempt, dstate) = (task.key.clone(), task.attempts, task.state);
            let pkey = expansion.nodes[n].key.clone();
            if pstate.is_unsuccessful() {
                let to = if pstate == JobState::Cancelled {
                    JobState::Cancelled
                } else {
                    JobState::Skipped
                };
                let reason = if to == JobState::Cancelled {
                    format!("dependency `{pkey}` was cancelled")
                } else {
                    format!("dependency `{pkey}` did not complete ({pstate})")
                };
                self.end_pending(dependent, to, &reason)?;
            } else if pstate != JobState::Completed {
                let task = self.task(dependent)?;
                task.deps_remaining += 1;
                self.touch_task(dependent);
                if dstate == JobState::Ready {
                    self.set_state(
                        dependent,
                        JobState::Waiting,
                        EventKind::Expanded,
                        json!({"waits_for": pkey}),
                    )?;
                } else {
                    self.event(
                        (run, dependent, &dkey),
                        EventKind::Expanded,
                        dstate,
                        dattempt,
                        json!({"waits_for": pkey}),
                    );
                }
            }
        }
        Ok(())
    }

    /// Inserts resolved nodes under `run`; returns their ids by key.
    fn insert_nodes(
        &mut self,
        run: RunId,
        specs: &[graph::NodeSpec],
        resolved: &graph::Resolved,
        index: &RunIndex,
    ) -> Result<BTreeMap<String, JobId>, CoreError> {
        let now = self.now;
        let root = self.group(run)?.clone();
        let (owner, subject) = self.run_identity(run)?;
        let ids: Vec<JobId> = specs.iter().map(|_| JobId::new()).collect();
        let mut id_of_key = BTreeMap::new();
        for (i, spec) in specs.iter().enumerate() {
            id_of_key.insert(spec.key.clone(), ids[i]);
        }
        let resolve_ref = |r: NodeRef| match r {
            NodeRef::New(i) => ids[i],
            NodeRef::Existing(e) => index.ids[e],
        };
        let mut ancestors_of: HashMap<JobId, Vec<JobId>> = HashMap::new();
        for &i in &resolved.order {
            let spec = &specs[i];
            let id = ids[i];
            let ancestors = match resolved.parent[i] {
                None => vec![root.id],
                Some(r) => {
                    let parent = resolve_ref(r);
                    let mut a = match r {
                        NodeRef::New(_) => ancestors_of.get(&parent).cloned().unwrap_or_default(),
                        NodeRef::Existing(_) => self.group(parent)?.ancestors.clone(),
                    };
                    a.push(parent);
                    a
                }
            };
            ancestors_of.insert(id, ancestors.clone());
            self.changes.created.insert(id);
            self.changes.new_nodes.push(NewNode {
                id,
                run_id: run,
                parent_id: ancestors.last().copied(),
                ancestors: ancestors.clone(),
                node_type: spec.node_type,
                key: spec.key.clone(),
                kind: spec.kind.clone(),
                payload: spec.payload.clone(),
                resource_class: spec.resource_class.clone(),
                priority: spec.priority,
                rank: resolved.rank[i],
                max_attempts: i32::try_from(spec.max_attempts).unwrap_or(i32::MAX),
                cost: spec.cost,
                owner,
                subject: subject.clone(),
                idempotency_key: None,
            });
            if spec.node_type.is_group() {
                // A group inside a cancelled group is born cancelled.
                let mut cancel = false;
                for a in &ancestors {
                    cancel |= self.group(*a)?.cancel_requested;
                }
                self.group_state_before.insert(id, JobState::Waiting);
                self.groups.insert(
                    id,
                    GroupRow {
                        id,
                        run_id: run,
                        key: spec.key.clone(),
                        node_type: NodeType::Group,
                        ancestors,
                        state: JobState::Waiting,
                        counts: Counts::default(),
                        costs: CostTotals::default(),
                        budget: None,
                        cancel_requested: cancel,
                        started_at: None,
                        finished_at: None,
                    },
                );
                self.changed_groups.insert(id);
                continue;
            }
            let prerequisites: Vec<JobId> = resolved.dependencies[i]
                .iter()
                .map(|&r| resolve_ref(r))
                .collect();
            let mut remaining = 0;
            let mut blocked: Option<(JobState, String)> = None;
            for p in &prerequisites {
                let pt = self.task(*p)?;
                pt.dependents.push(id);
                let (s, k) = (pt.state, pt.key.clone());
                self.changes.new_edges.push((id, *p));
                match s {
                    JobState::Completed => {}
                    s if s.is_unsuccessful() => {
                        if blocked
                            .as_ref()
                            .is_none_or(|(b, _)| *b == JobState::Skipped)
                        {
                            blocked = Some((s, k));
                        }
                    }
                    _ => remaining += 1,
                }
            }
            let mut state = if remaining == 0 {
                JobState::Ready
            } else {
                JobState::Waiting
            };
            let mut error = None;
            let mut cancelled_group = None;
            for a in ancestors.iter().rev() {
                let g = self.group(*a)?;
                if g.cancel_requested {
                    cancelled_group = Some(if g.key.is_empty() {
                        "the run was cancelled".to_owned()
                    } else {
                        format!("group `{}` was cancelled", g.key)
                    });
                    break;
                }
            }
            if let Some(reason) = cancelled_group {
                state = JobState::Cancelled;
                error = Some(reason);
            } else if let Some((s, k)) = blocked {
                if s == JobState::Cancelled {
                    state = JobState::Cancelled;
                    error = Some(format!("dependency `{k}` was cancelled"));
                } else {
                    state = JobState::Skipped;
                    error = Some(format!("dependency `{k}` did not complete ({s})"));
                }
            }
            for a in &ancestors {
                let g = self.group(*a)?;
                g.counts.add(state);
                g.costs.total += spec.cost;
                if state.is_unsuccessful() {
                    g.costs.refundable += spec.cost;
                }
                self.changed_groups.insert(*a);
            }
            self.tasks.insert(
                id,
                TaskRow {
                    id,
                    run_id: run,
                    key: spec.key.clone(),
                    kind: spec.kind.clone(),
                    ancestors,
                    state,
                    deps_remaining: remaining,
                    attempts: 0,
                    max_attempts: i32::try_from(spec.max_attempts).unwrap_or(i32::MAX),
                    epoch: 0,
                    cost: spec.cost,
                    charged: false,
                    lease_owner: None,
                    run_after: now,
                    cancel_requested: false,
                    error,
                    started_at: None,
                    finished_at: state.is_settled().then_some(now),
                    dependents: Vec::new(),
                    prerequisites,
                },
            );
            self.touch_task(id);
            if state == JobState::Ready {
                self.changes.wake.insert(run);
            }
        }
        Ok(id_of_key)
    }

    fn run_identity(&mut self, run: RunId) -> Result<(Uuid, Option<String>), CoreError> {
        if let Some(n) = self.changes.new_nodes.iter().find(|n| n.id == run) {
            return Ok((n.owner, n.subject.clone()));
        }
        self.source
            .run_identity(run)
            .ok_or(CoreError::NotLoaded(run))
    }

    /// Finishes the operation: derives group states (with events for changes) and returns
    /// everything to write.
    pub fn into_changes(mut self) -> Changes {
        let now = self.now;
        let mut group_events = Vec::new();
        for id in &self.changed_groups {
            let Some(g) = self.groups.get_mut(id) else {
                continue;
            };
            let state = derive_group_state(&g.counts, g.cancel_requested);
            if state != JobState::Waiting && g.started_at.is_none() {
                g.started_at = Some(now);
            }
            g.finished_at = if state.is_settled() {
                g.finished_at.or(Some(now))
            } else {
                None
            };
            g.state = state;
            // Only settling (or leaving a settled state) is worth an event: a group starts
            // running with the first task event below it.
            let before = self.group_state_before.get(id).copied();
            let settles = state.is_settled() || before.is_some_and(JobState::is_settled);
            if settles && (before != Some(state) || self.changes.created.contains(id)) {
                group_events.push(NewEvent {
                    run_id: g.run_id,
                    job_id: g.id,
                    key: g.key.clone(),
                    kind: EventKind::GroupState,
                    state,
                    attempt: 0,
                    detail: json!({"counts": g.counts}),
                });
            }
        }
        // Group state changes come after the task events that caused them.
        self.changes.events.extend(group_events);
        self.changes.tasks = self
            .changed_tasks
            .iter()
            .filter_map(|id| self.tasks.remove(id))
            .collect();
        self.changes.groups = self
            .changed_groups
            .iter()
            .filter_map(|id| self.groups.remove(id))
            .collect();
        self.changes
    }
}

/// Applies a batch of finished attempts on one workset. Stale fences (and unknown jobs) get
/// [`JobError::FenceLost`] and change nothing; an attempt whose result cannot be applied (an
/// invalid expansion) fails its task with the reason instead.
///
/// # Errors
/// [`CoreError::NotLoaded`] / [`CoreError::RunNotLoaded`]: load more and call again.
pub fn apply_finishes(
    source: &dyn RowSource,
    now: DateTime<Utc>,
    items: &[Finish],
) -> Result<(Changes, Vec<Result<(), JobError>>), CoreError> {
    let mut items: Vec<Finish> = items.to_vec();
    loop {
        let mut ws = Workset::new(source, now);
        let mut results = Vec::with_capacity(items.len());
        let mut rejected = None;
        for (i, item) in items.iter().enumerate() {
            if source.task(item.fence.job_id).is_none() {
                results.push(Err(JobError::FenceLost(item.fence)));
                continue;
            }
            match ws.finish(item) {
                Ok(()) => results.push(Ok(())),
                Err(CoreError::Job(e @ JobError::FenceLost(_))) => results.push(Err(e)),
                Err(CoreError::Job(e)) => {
                    rejected = Some((i, e));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        match rejected {
            None => return Ok((ws.into_changes(), results)),
            Some((i, e)) => {
                items[i].kind = FinishKind::Fail {
                    error: format!("the handler's result was rejected: {e}"),
                };
            }
        }
    }
}

/// Starts candidates in order until `limit` started; candidates stopped by a budget or a
/// cancelled group end cancelled. Returns the started ids.
///
/// # Errors
/// [`CoreError::NotLoaded`] / [`CoreError::RunNotLoaded`]: load more and call again.
pub fn apply_claims(
    source: &dyn RowSource,
    now: DateTime<Utc>,
    candidates: &[JobId],
    worker: WorkerId,
    limit: usize,
) -> Result<(Changes, Vec<JobId>), CoreError> {
    let mut ws = Workset::new(source, now);
    let mut started = Vec::new();
    for &id in candidates {
        if started.len() >= limit {
            break;
        }
        if ws.start(id, worker)? == StartOutcome::Started {
            started.push(id);
        }
    }
    Ok((ws.into_changes(), started))
}

/// Checks the invariants of one run against its rows (tasks with `prerequisites` loaded):
/// every group's counts and costs equal what its descendant tasks add up to and its state is
/// the derived one; no task runs or completed before all of its dependencies completed;
/// waiting and ready tasks agree with their dependencies; running tasks hold a lease.
///
/// # Errors
/// A description of the first violation.
pub fn check_invariants(tasks: &[TaskRow], groups: &[GroupRow]) -> Result<(), String> {
    let by_id: HashMap<JobId, &TaskRow> = tasks.iter().map(|t| (t.id, t)).collect();
    let mut expected: HashMap<JobId, (Counts, CostTotals)> = HashMap::new();
    for t in tasks {
        for a in &t.ancestors {
            let (c, k) = expected.entry(*a).or_default();
            c.add(t.state);
            k.total += t.cost;
            if t.charged {
                k.charged += t.cost;
            }
            if t.state.is_unsuccessful() {
                k.refundable += t.cost;
            }
        }
        let prerequisite_states: Vec<JobState> = t
            .prerequisites
            .iter()
            .map(|p| by_id.get(p).map_or(JobState::Completed, |p| p.state))
            .collect();
        let not_completed = prerequisite_states
            .iter()
            .filter(|s| **s != JobState::Completed)
            .count();
        let blocked = prerequisite_states.iter().any(|s| s.is_unsuccessful());
        match t.state {
            JobState::Running | JobState::Completed if not_completed > 0 => {
                return Err(format!(
                    "task {} is {} but {not_completed} of its dependencies have not completed",
                    t.key, t.state
                ));
            }
            JobState::Running if t.lease_owner.is_none() => {
                return Err(format!("task {} is running without a lease", t.key));
            }
            JobState::Running | JobState::Completed if !t.charged => {
                return Err(format!("task {} is {} but not charged", t.key, t.state));
            }
            JobState::Waiting
                if usize::try_from(t.deps_remaining).ok() != Some(not_completed)
                    || not_completed == 0 =>
            {
                return Err(format!(
                    "task {} waits for {} dependencies but {not_completed} have not completed",
                    t.key, t.deps_remaining
                ));
            }
            JobState::Waiting | JobState::Ready if blocked => {
                return Err(format!(
                    "task {} is {} although a dependency ended unsuccessfully",
                    t.key, t.state
                ));
            }
            JobState::Ready if not_completed > 0 || t.deps_remaining != 0 => {
                return Err(format!(
                    "task {} is ready but {not_completed} dependencies have not completed",
                    t.key
                ));
            }
            JobState::Skipped if !blocked => {
                return Err(format!(
                    "task {} is skipped but none of its dependencies failed",
                    t.key
                ));
            }
            s if s.is_unsuccessful() && t.charged => {
                return Err(format!("task {} is {s} but still charged", t.key));
            }
            _ => {}
        }
    }
    for g in groups {
        let (counts, costs) = expected.get(&g.id).copied().unwrap_or_default();
        if g.counts != counts {
            return Err(format!(
                "group {:?} counts {:?}, its tasks add up to {:?}",
                g.key, g.counts, counts
            ));
        }
        if (g.costs.total, g.costs.charged, g.costs.refundable)
            != (costs.total, costs.charged, costs.refundable)
        {
            return Err(format!(
                "group {:?} costs {:?}, its tasks add up to {:?}",
                g.key, g.costs, costs
            ));
        }
        let derived = derive_group_state(&g.counts, g.cancel_requested);
        if g.state != derived {
            return Err(format!(
                "group {:?} is {} but its counts say {}",
                g.key, g.state, derived
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{NodeSpec, RunSpec};

    struct Rows {
        tasks: HashMap<JobId, TaskRow>,
        groups: HashMap<JobId, GroupRow>,
        order: Vec<(JobId, NodeType)>,
        run: RunId,
    }

    impl RowSource for Rows {
        fn task(&self, id: JobId) -> Option<TaskRow> {
            self.tasks.get(&id).cloned()
        }
        fn group(&self, id: JobId) -> Option<GroupRow> {
            self.groups.get(&id).cloned()
        }
        fn run_nodes(&self, run: RunId) -> Option<Vec<(JobId, NodeType)>> {
            (run == self.run).then(|| self.order.clone())
        }
        fn run_identity(&self, _: RunId) -> Option<(Uuid, Option<String>)> {
            Some((Uuid::nil(), None))
        }
    }

    impl Rows {
        fn apply(&mut self, changes: Changes) {
            for n in &changes.new_nodes {
                self.order.push((n.id, n.node_type));
            }
            for t in changes.tasks {
                self.tasks.insert(t.id, t);
            }
            for g in changes.groups {
                self.groups.insert(g.id, g);
            }
            for (d, p) in changes.new_edges {
                let pt = self.tasks.get_mut(&p).unwrap();
                if !pt.dependents.contains(&d) {
                    pt.dependents.push(d);
                }
                let dt = self.tasks.get_mut(&d).unwrap();
                if !dt.prerequisites.contains(&p) {
                    dt.prerequisites.push(p);
                }
            }
            let tasks: Vec<TaskRow> = self.tasks.values().cloned().collect();
            let groups: Vec<GroupRow> = self.groups.values().cloned().collect();
            check_invariants(&tasks, &groups).unwrap();
        }

        fn id(&self, key: &str) -> JobId {
            self.tasks
                .values()
                .find(|t| t.key == key)
                .map(|t| t.id)
                .or_else(|| self.groups.values().find(|g| g.key == key).map(|g| g.id))
                .unwrap()
        }

        fn state(&self, key: &str) -> JobState {
            let id = self.id(key);
            self.tasks
                .get(&id)
                .map(|t| t.state)
                .or_else(|| self.groups.get(&id).map(|g| g.state))
                .unwrap()
        }
    }

    fn new_run(graph: &Graph) -> Rows {
        let run = JobId::new();
        let mut ws = Workset::new(&EmptySource, Utc::now());
        ws.submit(graph, run).unwrap();
        let mut rows = Rows {
            tasks: HashMap::new(),
            groups: HashMap::new(),
            order: Vec::new(),
            run,
        };
        rows.apply(ws.into_changes());
        rows
    }

    fn start(rows: &mut Rows, key: &str, worker: WorkerId) -> Fence {
        let id = rows.id(key);
        let (changes, started) = apply_claims(rows, Utc::now(), &[id], worker, 1).unwrap();
        assert_eq!(started, vec![id], "{key} should start");
        rows.apply(changes);
        let t = &rows.tasks[&id];
        Fence {
            job_id: id,
            run_id: t.run_id,
            epoch: t.epoch,
        }
    }

    fn finish(rows: &mut Rows, fence: Fence, kind: FinishKind) -> Result<(), JobError> {
        let (changes, mut results) =
            apply_finishes(rows, Utc::now(), &[Finish { fence, kind }]).unwrap();
        rows.apply(changes);
        results.remove(0)
    }

    fn ok(result: i64) -> FinishKind {
        FinishKind::Complete {
            result: json!(result),
            expansion: None,
        }
    }

    fn diamond() -> Graph {
        Graph::new(RunSpec::new("test", Uuid::nil()).budget(100))
            .with(NodeSpec::group("g", "grp"))
            .with(NodeSpec::task("a", "k", json!(1)).cost(5))
            .with(
                NodeSpec::task("b", "k", json!(2))
                    .after(["a"])
                    .parent("g")
                    .cost(7),
            )
            .with(NodeSpec::task("c", "k", json!(3)).after(["a"]).parent("g"))
            .with(
                NodeSpec::task("d", "k", json!(4))
                    .after(["b", "c"])
                    .cost(11),
            )
    }

    #[test]
    fn completions_release_dependents_and_roll_counts_up() {
        let mut rows = new_run(&diamond());
        let w = WorkerId::new();
        assert_eq!(rows.state("a"), JobState::Ready);
        assert_eq!(rows.state("d"), JobState::Waiting);
        let fa = start(&mut rows, "a", w);
        assert_eq!(rows.groups[&rows.run].state, JobState::Running);
        finish(&mut rows, fa, ok(1)).unwrap();
        assert_eq!(rows.state("b"), JobState::Ready);
        let fb = start(&mut rows, "b", w);
        let fc = start(&mut rows, "c", w);
        finish(&mut rows, fb, ok(2)).unwrap();
        assert_eq!(rows.state("d"), JobState::Waiting);
        finish(&mut rows, fc, ok(3)).unwrap();
        assert_eq!(rows.state("g"), JobState::Completed);
        let fd = start(&mut rows, "d", w);
        finish(&mut rows, fd, ok(4)).unwrap();
        let root = &rows.groups[&rows.run];
        assert_eq!(root.state, JobState::Completed);
        assert_eq!(root.counts.completed, 4);
        assert_eq!(root.costs.charged, 23);
        assert_eq!(root.costs.refundable, 0);
    }

    #[test]
    fn stale_fences_change_nothing() {
        let mut rows = new_run(&diamond());
        let w = WorkerId::new();
        let first = start(&mut rows, "a", w);
        let before = rows.tasks.clone();
        let stale = Fence {
            epoch: first.epoch - 1,
            ..first
        };
        assert!(matches!(
            finish(&mut rows, stale, ok(9)),
            Err(JobError::FenceLost(_))
        ));
        assert_eq!(rows.tasks, before);
        finish(&mut rows, first, ok(1)).unwrap();
        assert!(matches!(
            finish(&mut rows, first, ok(1)),
            Err(JobError::FenceLost(_))
        ));
    }

    #[test]
    fn failures_skip_dependents_and_become_refundable() {
        let mut rows = new_run(&diamond());
        let w = WorkerId::new();
        let fa = start(&mut rows, "a", w);
        finish(&mut rows, fa, ok(1)).unwrap();
        let fb = start(&mut rows, "b", w);
        finish(
            &mut rows,
            fb,
            FinishKind::Fail {
                error: "boom".into(),
            },
        )
        .unwrap();
        assert_eq!(rows.state("b"), JobState::Failed);
        assert_eq!(rows.state("d"), JobState::Skipped);
        assert_eq!(
            rows.state("c"),
            JobState::Ready,
            "independent work continues"
        );
        let fc = start(&mut rows, "c", w);
        finish(&mut rows, fc, ok(3)).unwrap();
        let root = &rows.groups[&rows.run];
        assert_eq!(root.state, JobState::Failed);
        assert_eq!(root.costs.refundable, 18);
        assert!(
            rows.tasks[&rows.id("d")]
                .error
                .as_deref()
                .unwrap()
                .contains("`b`")
        );
    }

    #[test]
    fn retries_use_attempts_and_deferrals_do_not() {
        let g = Graph::new(RunSpec::new("t", Uuid::nil()))
            .with(NodeSpec::task("a", "k", json!(1)).max_attempts(2));
        let mut rows = new_run(&g);
        let w = WorkerId::new();
        let f = start(&mut rows, "a", w);
        finish(
            &mut rows,
            f,
            FinishKind::Defer {
                reason: "429".into(),
                delay: Duration::ZERO,
            },
        )
        .unwrap();
        assert_eq!(rows.tasks[&rows.id("a")].attempts, 0);
        let f = start(&mut rows, "a", w);
        finish(
            &mut rows,
            f,
            FinishKind::Retry {
                error: "e1".into(),
                delay: Duration::ZERO,
            },
        )
        .unwrap();
        assert_eq!(rows.state("a"), JobState::Ready);
        let f = start(&mut rows, "a", w);
        finish(
            &mut rows,
            f,
            FinishKind::Retry {
                error: "e2".into(),
                delay: Duration::ZERO,
            },
        )
        .unwrap();
        assert_eq!(rows.state("a"), JobState::Failed);
        assert_eq!(
            rows.tasks[&rows.id("a")].error.as_deref(),
            Some("e2 (attempt 2 of 2)")
        );
    }

    #[test]
    fn budgets_cancel_what_would_overspend() {
        let g = Graph::new(RunSpec::new("t", Uuid::nil()).budget(10))
            .with(NodeSpec::task("a", "k", json!(1)).cost(6))
            .with(NodeSpec::task("b", "k", json!(1)).cost(6))
            .with(NodeSpec::task("c", "k", json!(1)).after(["b"]));
        let mut rows = new_run(&g);
        let w = WorkerId::new();
        start(&mut rows, "a", w);
        let (changes, started) = apply_claims(&rows, Utc::now(), &[rows.id("b")], w, 1).unwrap();
        rows.apply(changes);
        assert!(started.is_empty());
        assert_eq!(rows.state("b"), JobState::Cancelled);
        assert_eq!(rows.state("c"), JobState::Cancelled);
        assert!(
            rows.tasks[&rows.id("b")]
                .error
                .as_deref()
                .unwrap()
                .contains("budget")
        );
    }

    #[test]
    fn cancel_and_resume_a_group() {
        let mut rows = new_run(&diamond());
        let w = WorkerId::new();
        let fa = start(&mut rows, "a", w);
        finish(&mut rows, fa, ok(1)).unwrap();
        let fb = start(&mut rows, "b", w);
        let (run, g) = (rows.run, rows.id("g"));
        let mut ws = Workset::new(&rows, Utc::now());
        assert_eq!(ws.cancel(run, g, "user").unwrap(), (1, 1));
        let changes = ws.into_changes();
        rows.apply(changes);
        assert_eq!(rows.state("c"), JobState::Cancelled);
        assert_eq!(
            rows.state("d"),
            JobState::Cancelled,
            "dependents outside follow"
        );
        assert!(rows.tasks[&rows.id("b")].cancel_requested);
        // The running task sees the cancellation and stops.
        finish(
            &mut rows,
            fb,
            FinishKind::Retry {
                error: "stopped".into(),
                delay: Duration::ZERO,
            },
        )
        .unwrap();
        assert_eq!(rows.state("b"), JobState::Cancelled);
        assert_eq!(rows.groups[&run].state, JobState::Cancelled);
        let mut ws = Workset::new(&rows, Utc::now());
        assert_eq!(ws.resume(run, run).unwrap(), 3);
        let changes = ws.into_changes();
        rows.apply(changes);
        assert_eq!(
            rows.state("a"),
            JobState::Completed,
            "completed never reruns"
        );
        assert_eq!(rows.state("b"), JobState::Ready);
        assert_eq!(rows.state("d"), JobState::Waiting);
        assert_eq!(rows.groups[&run].state, JobState::Running);
    }

    #[test]
    fn expansions_add_nodes_and_edges_atomically() {
        let g = Graph::new(RunSpec::new("t", Uuid::nil()))
            .with(NodeSpec::group("ep", "episode"))
            .with(NodeSpec::task("write", "k", json!(1)).parent("ep"))
            .with(
                NodeSpec::task("stitch", "k", json!(1))
                    .parent("ep")
                    .after(["write"]),
            );
        let mut rows = new_run(&g);
        let w = WorkerId::new();
        let f = start(&mut rows, "write", w);
        let expansion = Expansion::new()
            .with(NodeSpec::task("clip1", "k", json!(1)).parent("ep"))
            .with(
                NodeSpec::task("clip2", "k", json!(1))
                    .parent("ep")
                    .after(["write"]),
            )
            .add_dependency("stitch", "clip1")
            .add_dependency("stitch", "clip2");
        finish(
            &mut rows,
            f,
            FinishKind::Complete {
                result: json!("scenes"),
                expansion: Some(expansion),
            },
        )
        .unwrap();
        assert_eq!(rows.state("stitch"), JobState::Waiting);
        assert_eq!(rows.tasks[&rows.id("stitch")].deps_remaining, 2);
        assert_eq!(rows.groups[&rows.id("ep")].counts.total, 4);
        for k in ["clip1", "clip2"] {
            let f = start(&mut rows, k, w);
            finish(&mut rows, f, ok(1)).unwrap();
        }
        assert_eq!(rows.state("stitch"), JobState::Ready);
        // An expansion that closes a cycle fails its task and writes nothing else.
        let f = start(&mut rows, "stitch", w);
        let bad = Expansion::new()
            .with(NodeSpec::task("x", "k", json!(1)))
            .add_dependency("clip1", "x");
        finish(
            &mut rows,
            f,
            FinishKind::Complete {
                result: json!(1),
                expansion: Some(bad),
            },
        )
        .unwrap();
        assert_eq!(rows.state("stitch"), JobState::Failed);
        assert!(rows.tasks.values().all(|t| t.key != "x"));
    }
}
