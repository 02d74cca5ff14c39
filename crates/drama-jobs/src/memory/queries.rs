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
        let mem = &*self;
        let Some(run) = mem.nodes.get(&parent).map(|n| n.fixed.run_id) else {
            return Ok(Vec::new());
        };
        let mut ids: Vec<JobId> = mem
            .runs
            .get(&run)
            .into_iter()
            .flatten()
            .filter(|id| {
                mem.nodes
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
            .filter_map(|id| mem.view(id))
            .collect())
    }

    pub(super) fn run_tree(&self, run: RunId) -> Result<Option<RunTree>, JobError> {
        let mem = &*self;
        let Some(ids) = mem.runs.get(&run) else {
            return Ok(None);
        };
        let mut ids = ids.clone();
        ids.sort();
        let mut edges = Vec::new();
        for id in &ids {
            if let Some(t) = mem.tasks.get(id) {
                edges.extend(t.prerequisites.iter().map(|p| (*id, *p)));
            }
        }
        Ok(Some(RunTree {
            nodes: ids.iter().filter_map(|id| mem.view(*id)).collect(),
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
        let mem = &*self;
        let after = after.unwrap_or(EventId(0));
        Ok(mem
            .run_events
            .get(&run)
            .into_iter()
            .flatten()
            .filter_map(|&i| mem.events.get(i))
            .filter(|e| e.id > after)
            .filter(|e| {
                scope.is_none_or(|s| {
                    e.job_id == s
                        || mem
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
        let mem = &*self;
        let limit = if filter.limit == 0 { 100 } else { filter.limit };
        let mut runs: Vec<RunId> = mem
            .runs
            .keys()
            .filter(|id| {
                let (Some(n), Some(g)) = (mem.nodes.get(id), mem.groups.get(id)) else {
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
            .filter_map(|id| mem.view(id))
            .collect())
    }

    pub(super) fn prune(
        &mut self,
        settled_before: DateTime<Utc>,
        max_runs: usize,
    ) -> Result<PruneReport, JobError> {
        let mem = self;
        let old: Vec<RunId> = mem
            .runs
            .keys()
            .filter(|id| {
                mem.groups.get(id).is_some_and(|g| {
                    g.state.is_settled() && g.finished_at.is_some_and(|f| f < settled_before)
                })
            })
            .take(max_runs)
            .copied()
            .collect();
        let mut report = PruneReport::default();
        for run in old {
            let ids = mem.runs.remove(&run).unwrap_or_default();
            for id in &ids {
                if let Some(n) = mem.nodes.remove(id)
                    && let Some(k) = n.fixed.idempotency_key
                {
                    mem.idempotency.remove(&(n.fixed.owner, k));
                }
                if let Some(k) = mem.ready_key(*id) {
                    mem.ready.remove(&k);
                }
                mem.tasks.remove(id);
                mem.groups.remove(id);
                mem.running.remove(id);
            }
            report.nodes += ids.len();
            report.events += mem.run_events.remove(&run).map_or(0, |e| e.len());
            report.runs += 1;
        }
        Ok(report)
    }
}
