//! Claims, finishes, retries, deferrals, failure propagation and lease expiry.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

use crate::ids::{JobId, WorkerId};
use crate::state::{EventKind, JobState};

use super::{
    CoreError, FREE_DEFERRALS, Finish, FinishKind, StartOutcome, Workset, add_duration,
    defer_delay, millis,
};

impl Workset<'_> {
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
        // Errors and reasons enter the engine here, from handlers: keep them storable.
        let kind = finish.kind.storable();
        let cancelled = {
            let own = self.task(id)?.cancel_requested;
            match self.cancelled_by_group(id)? {
                Some(r) => Some(r),
                None => own.then(|| "cancelled while running".to_owned()),
            }
        };
        match &*kind {
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
                    task.deferrals = 0;
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
                    self.defer(id, reason, defer_delay(*delay))?;
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
            FinishKind::Cancelled { reason } => match cancelled {
                Some(_) => self.end_running(id, JobState::Cancelled, reason)?,
                // No cancellation is in force: a resume withdrew it after the worker had told
                // the handler, which stopped. The resume wants the task to run: it runs again,
                // as a deferral (so a handler that stops on its own cannot loop for free).
                None => self.defer(
                    id,
                    &format!("stopped for a cancellation that was withdrawn: {reason}"),
                    Duration::ZERO,
                )?,
            },
            FinishKind::VerifyExternal => {}
        }
        Ok(())
    }

    /// Lowers the cost of the task running under `fence` to `actual` when that is less, for
    /// work priced by what it consumed: the cost it was charged when it started is the most it
    /// may cost. Returns how much the cost dropped (what to credit back to the owner in the
    /// same transaction); 0 when `actual` is not less. The task's ancestors' `total` and
    /// `charged` drop with it, so a settled task that ends unsuccessfully later is refunded
    /// only what is left of its cost, and settling again drops nothing.
    ///
    /// # Errors
    /// [`JobError::FenceLost`] (as [`CoreError::Job`]) when the fence is stale.
    pub fn settle_cost(
        &mut self,
        fence: &crate::ids::Fence,
        actual: i64,
    ) -> Result<i64, CoreError> {
        self.check_fence(fence)?;
        let id = fence.job_id;
        let task = self.task(id)?;
        let actual = actual.max(0);
        if actual >= task.cost {
            return Ok(0);
        }
        let back = task.cost - actual;
        task.cost = actual;
        let (charged, ancestors) = (task.charged, task.ancestors.clone());
        self.touch_task(id);
        for a in ancestors {
            let g = self.group(a)?;
            g.costs.total -= back;
            if charged {
                g.costs.charged -= back;
            }
            self.changed_groups.insert(a);
        }
        Ok(back)
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

    /// Puts a running task off for `delay`, giving its attempt back unless it was deferred
    /// [`FREE_DEFERRALS`] times in a row already; a deferral that uses the last attempt fails
    /// the task.
    fn defer(&mut self, id: JobId, reason: &str, delay: Duration) -> Result<(), CoreError> {
        let task = self.task(id)?;
        task.deferrals = task.deferrals.saturating_add(1);
        let (deferrals, attempts, max) = (task.deferrals, task.attempts, task.max_attempts);
        let free = deferrals <= FREE_DEFERRALS;
        if !free && attempts >= max {
            let msg = format!(
                "{reason} (deferred {deferrals} times in a row; attempt {attempts} of {max})"
            );
            return self.end_running(id, JobState::Failed, &msg);
        }
        self.requeue(
            id,
            delay,
            free,
            EventKind::Deferred,
            Some(reason.to_owned()),
            json!({"reason": reason, "delay_ms": millis(delay), "deferrals": deferrals}),
        )
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
    pub(super) fn end_pending(
        &mut self,
        id: JobId,
        to: JobState,
        reason: &str,
    ) -> Result<(), CoreError> {
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
}
