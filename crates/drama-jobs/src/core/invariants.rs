//! The invariants every run keeps, checked by the in-memory store and the tests.

use std::collections::HashMap;

use crate::ids::JobId;
use crate::state::{CostTotals, Counts, JobState};

use super::{GroupRow, TaskRow, derive_group_state};

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
            if t.refundable() {
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
            s if s.is_unsuccessful() && t.charged && t.refundable() => {
                return Err(format!(
                    "task {} is {s} and refundable but still charged",
                    t.key
                ));
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
