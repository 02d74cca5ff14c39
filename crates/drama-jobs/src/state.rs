//! States of tasks and groups, progress counters and cost totals.

use std::fmt;

use drama_domain::JobStatus;
use serde::{Deserialize, Serialize};

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeType {
    /// The root of a run: a group that carries the run's owner, subject, budget and costs.
    Run,
    /// A container of tasks and groups (e.g. "episode e1"); it never runs a handler.
    Group,
    /// A unit of work run by the handler registered for its kind.
    Task,
}

impl NodeType {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Run => "run",
            Self::Group => "group",
            Self::Task => "task",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Run, Self::Group, Self::Task]
            .into_iter()
            .find(|t| t.as_str() == s)
    }

    /// Whether the node carries counters (a run or a group).
    pub fn is_group(self) -> bool {
        !matches!(self, Self::Task)
    }
}

/// The state of a node.
///
/// Tasks move `waiting → ready → running → completed`, with `running → ready` for retries,
/// deferrals and expired leases, and end `failed`, `skipped` (a dependency failed) or
/// `cancelled`. A group's state is derived from its descendant tasks: `waiting` until one of them
/// starts, `running` until all settle, then `completed`, `failed` or `cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Some dependency has not completed yet (for a group: nothing has started).
    Waiting,
    /// Runnable; starts when a worker and its resource class allow (and `run_after` passed).
    Ready,
    /// Leased by a worker (for a group: work has started and not everything settled).
    Running,
    /// Finished successfully; never runs again.
    Completed,
    /// Failed permanently or ran out of attempts.
    Failed,
    /// Not run because a dependency failed or was skipped.
    Skipped,
    /// Cancelled by a user, by the run's budget, or because a dependency was cancelled.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 7] = [
        Self::Waiting,
        Self::Ready,
        Self::Running,
        Self::Completed,
        Self::Failed,
        Self::Skipped,
        Self::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the node will not change again unless resumed.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::Completed | Self::Failed | Self::Skipped | Self::Cancelled
        )
    }

    /// Whether the node ended without completing (its cost is refundable).
    pub fn is_unsuccessful(self) -> bool {
        matches!(self, Self::Failed | Self::Skipped | Self::Cancelled)
    }

    /// Whether the node has not started (`waiting` or `ready`).
    pub fn is_pending(self) -> bool {
        matches!(self, Self::Waiting | Self::Ready)
    }

    /// The five client-facing statuses: `waiting`/`ready` → pending, `running` → processing,
    /// `skipped` → failed (the error names the dependency), the rest as they are.
    /// They are `drama_domain::JobStatus`, the workspace's one vocabulary of job status (it
    /// names no drama, so the engine may speak it).
    pub fn coarse(self) -> JobStatus {
        match self {
            Self::Waiting | Self::Ready => JobStatus::Pending,
            Self::Running => JobStatus::Processing,
            Self::Completed => JobStatus::Completed,
            Self::Failed | Self::Skipped => JobStatus::Failed,
            Self::Cancelled => JobStatus::Cancelled,
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many of a group's descendant tasks are in each state. `pending` counts `waiting` and
/// `ready`; `total` is the sum of the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Counts {
    /// All descendant tasks.
    pub total: i64,
    /// Waiting or ready.
    pub pending: i64,
    /// Running.
    pub running: i64,
    /// Completed.
    pub completed: i64,
    /// Failed.
    pub failed: i64,
    /// Skipped.
    pub skipped: i64,
    /// Cancelled.
    pub cancelled: i64,
}

impl Counts {
    /// The counter a task in `state` adds to.
    pub fn slot(&mut self, state: JobState) -> &mut i64 {
        match state {
            JobState::Waiting | JobState::Ready => &mut self.pending,
            JobState::Running => &mut self.running,
            JobState::Completed => &mut self.completed,
            JobState::Failed => &mut self.failed,
            JobState::Skipped => &mut self.skipped,
            JobState::Cancelled => &mut self.cancelled,
        }
    }

    /// Counts one task in `state`.
    pub fn add(&mut self, state: JobState) {
        self.total += 1;
        *self.slot(state) += 1;
    }

    /// Moves one task from `from` to `to`.
    pub fn shift(&mut self, from: JobState, to: JobState) {
        *self.slot(from) -= 1;
        *self.slot(to) += 1;
    }

    /// Whether every task settled.
    pub fn is_settled(&self) -> bool {
        self.pending == 0 && self.running == 0
    }
}

/// Sums of the `cost` of a group's descendant tasks, maintained in the same transaction as
/// every transition so that refunds are exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CostTotals {
    /// Cost of every descendant task.
    pub total: i64,
    /// Cost of tasks that started and did not end failed or cancelled (running, completed, or
    /// waiting for a retry). The run's budget caps this sum.
    pub charged: i64,
    /// Cost of tasks that are failed, skipped or cancelled now.
    pub refundable: i64,
    /// Refunds already taken with `take_refund` (kept on the run only).
    pub refunded: i64,
}

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A run was submitted (on the root; `detail.nodes` counts its nodes).
    Submitted,
    /// A completing task added nodes to its run (`detail.added` lists their keys).
    Expanded,
    /// A task's last dependency completed.
    Ready,
    /// A task was claimed by a worker (`attempt` is the attempt number).
    Started,
    /// A task finished successfully.
    Completed,
    /// A task failed and will be retried after `detail.delay_ms`.
    Retrying,
    /// A task asked to be retried later (`detail.delay_ms`); `detail.deferrals` counts its
    /// deferrals in a row, of which the first [`FREE_DEFERRALS`](crate::core::FREE_DEFERRALS)
    /// use no attempt.
    Deferred,
    /// A task's worker stopped heartbeating; the task was put back in the queue.
    LeaseExpired,
    /// A stopping worker handed a task back without using an attempt.
    Released,
    /// A task failed for good.
    Failed,
    /// A task will not run because a dependency failed.
    Skipped,
    /// A task or group was cancelled.
    Cancelled,
    /// Cancellation was requested for a running task; its handler sees the token.
    CancelRequested,
    /// A settled task was queued again by resume.
    Resumed,
    /// A group (or the run) settled, or became unsettled again after a resume or an
    /// expansion (`detail` carries its counts).
    GroupState,
}

impl EventKind {
    /// Every kind.
    pub const ALL: [Self; 15] = [
        Self::Submitted,
        Self::Expanded,
        Self::Ready,
        Self::Started,
        Self::Completed,
        Self::Retrying,
        Self::Deferred,
        Self::LeaseExpired,
        Self::Released,
        Self::Failed,
        Self::Skipped,
        Self::Cancelled,
        Self::CancelRequested,
        Self::Resumed,
        Self::GroupState,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Submitted => "submitted",
            Self::Expanded => "expanded",
            Self::Ready => "ready",
            Self::Started => "started",
            Self::Completed => "completed",
            Self::Retrying => "retrying",
            Self::Deferred => "deferred",
            Self::LeaseExpired => "lease_expired",
            Self::Released => "released",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
            Self::CancelRequested => "cancel_requested",
            Self::Resumed => "resumed",
            Self::GroupState => "group_state",
        }
    }

    /// Parses the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
        }
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(k));
        }
        for t in [NodeType::Run, NodeType::Group, NodeType::Task] {
            assert_eq!(NodeType::parse(t.as_str()), Some(t));
        }
        assert_eq!(JobState::parse("pending"), None);
    }

    #[test]
    fn coarse_status_follows_the_wire_contract() {
        assert_eq!(JobState::Waiting.coarse(), JobStatus::Pending);
        assert_eq!(JobState::Ready.coarse(), JobStatus::Pending);
        assert_eq!(JobState::Running.coarse(), JobStatus::Processing);
        assert_eq!(JobState::Skipped.coarse(), JobStatus::Failed);
        assert_eq!(JobState::Cancelled.coarse().as_str(), "cancelled");
    }

    #[test]
    fn counts_shift_between_slots() {
        let mut c = Counts::default();
        c.add(JobState::Waiting);
        c.add(JobState::Ready);
        c.shift(JobState::Ready, JobState::Running);
        assert_eq!((c.total, c.pending, c.running), (2, 1, 1));
        assert!(!c.is_settled());
        c.shift(JobState::Waiting, JobState::Skipped);
        c.shift(JobState::Running, JobState::Completed);
        assert!(c.is_settled());
    }
}
