//! Read queries and retention on the in-memory state.

use chrono::{DateTime, Utc};

use crate::error::JobError;
use crate::ids::{EventId, JobId, RunId};
use crate::store::{Event, JobView, PruneReport, RunFilter, RunTree};

use super::mem::Mem;

impl Mem {
    pub(super) fn children(
        &self,
        parent: JobId,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobView>, JobError> {
        let Some(run) = self.nodes.get(&parent).map(|n| n.fixed.run_id) else {
            return Ok(Vec::new());
        };
        let mut ids: Vec<JobId> = self
            .runs
            .get(&run)
            .into_iter()
            .flatten()
            .filter(|id| {
                self.nodes
                    .get(id)
                    .is_some_and(|n| n.fixed.parent_id == Some(parent))
                    && after.is_none_or(|a| **id > a)
            })
            .copied()
            .collect();
        ids.sort();
        Ok(ids
            .into_iter()
            .take(limit)
            .filter_map(|id| self.view(id))
            .collect())
    }

    pub(super) fn run_tree(&self, run: RunId) -> Result<Option<RunTree>, JobError> {
        let Some(ids) = self.runs.get(&run) else {
            return Ok(None);
        };
        let mut ids = ids.clone();
        ids.sort();
        let mut edges = Vec::new();
        for id in &ids {
            if let Some(t) = self.tasks.get(id) {
                edges.extend(t.prerequisites.iter().map(|p| (*id, *p)));
            }
        }
        Ok(Some(RunTree {
            nodes: ids.iter().filter_map(|id| self.view(*id)).collect(),
            edges,
        }))
    }

    pub(super) fn events(
        &self,
        run: RunId,
        after: Option<EventId>,
        scope: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Event>, JobError> {
        let after = after.unwrap_or(EventId(0));
        Ok(self
            .run_events
            .get(&run)
            .into_iter()
            .flatten()
            .filter_map(|&i| self.events.get(i))
            .filter(|e| e.id > after)
            .filter(|e| {
                scope.is_none_or(|s| {
                    e.job_id == s
                        || self
                            .nodes
                            .get(&e.job_id)
                            .is_some_and(|n| n.fixed.ancestors.contains(&s))
                })
            })
            .take(limit)
            .cloned()
            .collect())
    }

    pub(super) fn list_runs(&self, filter: &RunFilter) -> Result<Vec<JobView>, JobError> {
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let mut runs: Vec<RunId> = self
            .runs
            .keys()
            .filter(|id| {
                let (Some(n), Some(g)) = (self.nodes.get(id), self.groups.get(id)) else {
                    return false;
                };
                filter.owner.is_none_or(|o| n.fixed.owner == o)
                    && filter
                        .subject
                        .as_ref()
                        .is_none_or(|s| n.fixed.subject.as_ref() == Some(s))
                    && (!filter.active_only || !g.state.is_settled())
            })
            .copied()
            .collect();
        runs.sort_by(|a, b| b.cmp(a));
        Ok(runs
            .into_iter()
            .take(limit)
            .filter_map(|id| self.view(id))
            .collect())
    }

    /// Up to `limit` runs whose refund is due (what is refundable differs from what was
    /// refunded), wherever they are in the list of runs: refunds before claw-backs, so that
    /// a claw-back that stays refused does not hold up others; oldest first otherwise.
    pub(super) fn runs_owing_refunds(&self, limit: usize) -> Vec<JobView> {
        let mut due: Vec<(bool, RunId)> = self
            .runs
            .keys()
            .filter_map(|id| {
                let costs = &self.groups.get(id)?.costs;
                (costs.refundable != costs.refunded)
                    .then_some((costs.refundable < costs.refunded, *id))
            })
            .collect();
        due.sort();
        due.into_iter()
            .take(limit)
            .filter_map(|(_, id)| self.view(id))
            .collect()
    }

    pub(super) fn prune(
        &mut self,
        settled_before: DateTime<Utc>,
        max_runs: usize,
    ) -> Result<PruneReport, JobError> {
        let old: Vec<RunId> = self
            .runs
            .keys()
            .filter(|id| {
                self.groups.get(id).is_some_and(|g| {
                    g.state.is_settled()
                        && g.finished_at.is_some_and(|f| f < settled_before)
                        && g.costs.refundable == g.costs.refunded
                })
            })
            .take(max_runs)
            .copied()
            .collect();
        let mut report = PruneReport::default();
        for run in old {
            let ids = self.runs.remove(&run).unwrap_or_default();
            for id in &ids {
                if let Some(n) = self.nodes.remove(id)
                    && let Some(k) = n.fixed.idempotency_key
                {
                    self.idempotency.remove(&(n.fixed.owner, k));
                }
                if let Some(k) = self.ready_key(*id) {
                    self.ready.remove(&k);
                }
                self.tasks.remove(id);
                self.groups.remove(id);
                self.running.remove(id);
            }
            report.nodes += ids.len();
            report.events += self.run_events.remove(&run).map_or(0, |e| e.len());
            report.runs += 1;
        }
        Ok(report)
    }
}
