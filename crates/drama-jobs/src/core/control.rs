//! Cancellation, resumption and refunds: operations on a whole run or a part of it.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Value, json};

use crate::error::JobError;
use crate::ids::{JobId, RunId};
use crate::state::{EventKind, JobState, NodeType};

use super::{CoreError, Workset};

impl Workset<'_> {
    pub(super) fn run_nodes(&self, run: RunId) -> Result<Vec<(JobId, NodeType)>, CoreError> {
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
        let reason = &*super::storable_text(reason);
        let nodes = self.run_nodes(run)?;
        let target_type = node_type_in(&nodes, target)?;
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
    /// again. When it queues something or withdraws a cancellation from a running task below
    /// `target`, the groups below and above `target`, the groups enclosing the queued tasks,
    /// and the running tasks below `target` and the running prerequisites of the queued tasks
    /// are no longer cancelled, so every task queued (and paid for, with
    /// [`Workset::resume_priced`]) runs. A resume that does neither changes nothing: the
    /// groups stay cancelled, so what a running task adds under them (an expansion) is born
    /// cancelled instead of starting, and being charged, after the run was cancelled. Returns
    /// how many tasks were queued.
    ///
    /// # Errors
    /// [`CoreError::RunNotLoaded`] unless the whole run is loaded; `NotFound` for an unknown
    /// target.
    pub fn resume(&mut self, run: RunId, target: JobId) -> Result<usize, CoreError> {
        let scope = self.resume_scope(run, target)?;
        // Everything downstream that did not run because of a seed joins it.
        let mut reset: BTreeSet<JobId> = BTreeSet::new();
        let mut queue: VecDeque<JobId> = scope.seeds.into();
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
        // Settle the reset tasks in dependency order, so each sees its prerequisites' new
        // states.
        let mut queued = Vec::new();
        for id in self.order_by_dependencies(&reset)? {
            if self.requeue_reset(id)? {
                queued.push(id);
            }
        }
        if queued.is_empty() && scope.running.is_empty() {
            return Ok(0);
        }
        for g in scope.groups {
            self.group(g)?.cancel_requested = false;
            self.changed_groups.insert(g);
        }
        // The cancellation is withdrawn from running tasks too: one that ended cancelled after
        // the resume would cancel again the dependents the resume just queued (and charged
        // for). Workers no longer see it at their heartbeat; a handler that saw it already and
        // stops is run again (`Workset::finish`).
        for id in scope.running {
            self.withdraw_cancellation(id)?;
        }
        for &id in &queued {
            self.uncancel_groups_of(id)?;
            // A queued task waits for its running prerequisites, also outside `target`; one
            // that ended cancelled would cancel it again.
            for p in self.task(id)?.prerequisites.clone() {
                if self.task(p)?.state == JobState::Running {
                    self.withdraw_cancellation(p)?;
                    self.uncancel_groups_of(p)?;
                }
            }
        }
        Ok(queued.len())
    }

    /// [`Workset::resume`], priced: also returns the cost of the tasks it queued (those that
    /// left a failed, skipped or cancelled state), which the caller debits in the same
    /// transaction. The run's `refunded` drops by that cost, so the refund already given (or
    /// still due) for the earlier attempt stays the owner's and `take_refund` never claws back
    /// work that the resume paid for.
    ///
    /// # Errors
    /// As [`Workset::resume`].
    pub fn resume_priced(&mut self, run: RunId, target: JobId) -> Result<(usize, i64), CoreError> {
        let before = self.group(run)?.costs.refundable;
        let queued = self.resume(run, target)?;
        let g = self.group(run)?;
        let price = before - g.costs.refundable;
        if price != 0 {
            g.costs.refunded -= price;
            self.changed_groups.insert(run);
        }
        Ok((queued, price))
    }

    /// What a resume of `target` looks at: the unsuccessful tasks below it (the seeds), the
    /// running tasks below it whose cancellation was requested, and the cancelled groups
    /// below and above it. Changes nothing.
    fn resume_scope(&mut self, run: RunId, target: JobId) -> Result<ResumeScope, CoreError> {
        let nodes = self.run_nodes(run)?;
        let target_type = node_type_in(&nodes, target)?;
        let target_ancestors = match target_type {
            NodeType::Task => self.task(target)?.ancestors.clone(),
            NodeType::Group => self.group(target)?.ancestors.clone(),
            NodeType::Run => Vec::new(),
        };
        let mut scope = ResumeScope::default();
        for (id, t) in &nodes {
            if t.is_group() {
                let g = self.group(*id)?;
                let below = g.id == target || g.ancestors.contains(&target);
                if (below || target_ancestors.contains(id)) && g.cancel_requested {
                    scope.groups.push(*id);
                }
            } else {
                let task = self.task(*id)?;
                let below = *id == target || task.ancestors.contains(&target);
                if below && task.state.is_unsuccessful() {
                    scope.seeds.push(*id);
                } else if below && task.state == JobState::Running && task.cancel_requested {
                    scope.running.push(*id);
                }
            }
        }
        Ok(scope)
    }

    /// Withdraws the cancellation requested for a running task.
    fn withdraw_cancellation(&mut self, id: JobId) -> Result<(), CoreError> {
        let task = self.task(id)?;
        if task.cancel_requested {
            task.cancel_requested = false;
            self.touch_task(id);
        }
        Ok(())
    }

    /// Clears the cancellation of the groups enclosing a task the resume queued again (or a
    /// running prerequisite of one). A dependent elsewhere (a storyboard in an episode group,
    /// after a portrait of the characters group was resumed) lies outside the target's groups;
    /// if its group stayed cancelled, the claim would cancel it again at once, after
    /// [`Workset::resume_priced`] had charged for it.
    fn uncancel_groups_of(&mut self, id: JobId) -> Result<(), CoreError> {
        for a in self.task(id)?.ancestors.clone() {
            let g = self.group(a)?;
            if g.cancel_requested {
                g.cancel_requested = false;
                self.changed_groups.insert(a);
            }
        }
        Ok(())
    }

    /// Resets one task for a resume: it waits or is ready again (`true`), or, when a
    /// prerequisite stays unsuccessful, is skipped or cancelled again (`false`).
    fn requeue_reset(&mut self, id: JobId) -> Result<bool, CoreError> {
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
        task.deferrals = 0;
        task.error = None;
        task.cancel_requested = false;
        task.lease_owner = None;
        task.run_after = now;
        task.deps_remaining = remaining;
        let run_id = task.run_id;
        if let Some((state, key)) = blocked {
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
            return Ok(false);
        }
        let to = if remaining == 0 {
            JobState::Ready
        } else {
            JobState::Waiting
        };
        self.set_state(id, to, EventKind::Resumed, Value::Null)?;
        if to == JobState::Ready {
            self.changes.wake.insert(run_id);
        }
        Ok(true)
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
}

/// What a resume looks at (see [`Workset::resume_scope`]).
#[derive(Default)]
struct ResumeScope {
    seeds: Vec<JobId>,
    running: Vec<JobId>,
    groups: Vec<JobId>,
}

/// The type of `target` among a run's `nodes`; `NotFound` when the run does not hold it.
fn node_type_in(nodes: &[(JobId, NodeType)], target: JobId) -> Result<NodeType, CoreError> {
    nodes
        .iter()
        .find(|(id, _)| *id == target)
        .map(|(_, t)| *t)
        .ok_or(CoreError::Job(JobError::NotFound(target)))
}
