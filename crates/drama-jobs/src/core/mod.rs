//! The transition rules every store applies.
//!
//! A store loads the rows an operation touches into a [`Workset`] (lazily, through
//! [`RowSource`]), runs the operation, and writes the resulting [`Changes`] in the same
//! transaction. Because both stores run this code, the in-memory store and PostgreSQL agree on
//! every state, counter, cost and event.
//!
//! Stores serialise operations per run (PostgreSQL locks the run's root row first), so an
//! operation sees its run as of the start of the operation and nobody else changes it meanwhile.
//!
//! The rules are split by concern: [`rows`] (what stores load and write), `transitions`
//! (claims, finishes, retries, failure propagation, lease expiry), `control` (cancel, resume,
//! refunds), `submission` (new runs and expansions) and [`check_invariants`].

mod control;
mod invariants;
mod rows;
mod submission;
#[cfg(test)]
mod tests;
mod transitions;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::error::JobError;
use crate::ids::{Fence, JobId, RunId, WorkerId};
use crate::state::{Counts, EventKind, JobState};

pub use invariants::check_invariants;
pub use rows::{
    Changes, CoreError, EmptySource, Finish, FinishKind, GroupRow, NewEvent, NewNode, RowSource,
    StartOutcome, TaskRow, refundable, storable_text,
};

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The longest a deferral (`Outcome::retry_after`, `Outcome::throttle`) puts a task, or a
/// throttled resource class, off. A provider's Retry-After comes from outside: a huge one would
/// park the task (and, throttled, its whole class) for years, and one past the representable
/// time would, before this bound, have meant "now".
pub const MAX_DEFER: Duration = Duration::from_secs(3600);

/// How many deferrals in a row a task gets without using an attempt. Every further deferral
/// uses one, so a provider that answers "retry after" forever (with any delay, even 0) ends the
/// task after `max_attempts` of them, failed, instead of keeping its run open forever. A retry
/// (or a resume) starts the count again.
pub const FREE_DEFERRALS: i32 = 20;

/// `d` bounded by [`MAX_DEFER`].
pub fn defer_delay(d: Duration) -> Duration {
    d.min(MAX_DEFER)
}

/// `t + d`, saturating at the latest representable time: a delay too long to represent is
/// still a delay, never "now".
fn add_duration(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(d)
        .ok()
        .and_then(|d| t.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
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
        let was_refundable = task.refundable();
        task.state = to;
        let refundable = (i64::from(task.refundable()) - i64::from(was_refundable)) * task.cost;
        let mut charged = 0;
        if to == JobState::Running && !task.charged {
            task.charged = true;
            charged = task.cost;
        } else if matches!(to, JobState::Failed | JobState::Cancelled)
            && task.charged
            && task.refundable()
        {
            // Only a refund takes a cost out of what the run has spent. A task whose provider
            // call was accepted stays paid for however it ends, and a budget that forgot it
            // would let the next task spend the same credits again.
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
        self.group_cancel_reason(&ancestors)
    }

    /// Why a node under `ancestors` may not run: the innermost cancelled group (or the run).
    fn group_cancel_reason(&mut self, ancestors: &[JobId]) -> Result<Option<String>, CoreError> {
        for a in ancestors.iter().rev() {
            let g = self.group(*a)?;
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
