//! New runs and expansions of running ones.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use uuid::Uuid;

use crate::error::GraphError;
use crate::graph::{self, ExistingNode, ExistingNodes, Expansion, Graph, NodeRef};
use crate::ids::{JobId, RunId};
use crate::state::{CostTotals, Counts, EventKind, JobState, NodeType};

use super::{CoreError, GroupRow, NewNode, TaskRow, Workset};

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

impl Workset<'_> {
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
    pub(super) fn expand(&mut self, by: JobId, expansion: &Expansion) -> Result<(), CoreError> {
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
        let root = self.group(run)?.id;
        let identity = self.run_identity(run)?;
        let ids: Vec<JobId> = specs.iter().map(|_| JobId::new()).collect();
        let id_of_key = specs
            .iter()
            .zip(&ids)
            .map(|(spec, id)| (spec.key.clone(), *id))
            .collect();
        let resolve_ref = |r: NodeRef| match r {
            NodeRef::New(i) => ids[i],
            NodeRef::Existing(e) => index.ids[e],
        };
        let mut ancestors_of: HashMap<JobId, Vec<JobId>> = HashMap::new();
        for &i in &resolved.order {
            let (spec, id) = (&specs[i], ids[i]);
            let ancestors = match resolved.parent[i] {
                None => vec![root],
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
            self.record_new_node(run, id, spec, resolved.rank[i], &ancestors, &identity);
            if spec.node_type.is_group() {
                self.insert_group(run, id, spec, ancestors)?;
            } else {
                let prerequisites = resolved.dependencies[i]
                    .iter()
                    .map(|&r| resolve_ref(r))
                    .collect();
                self.insert_task(run, id, spec, ancestors, prerequisites)?;
            }
        }
        Ok(id_of_key)
    }

    /// The fixed part of a new node.
    fn record_new_node(
        &mut self,
        run: RunId,
        id: JobId,
        spec: &graph::NodeSpec,
        rank: i64,
        ancestors: &[JobId],
        (owner, subject): &(Uuid, Option<String>),
    ) {
        self.changes.created.insert(id);
        self.changes.new_nodes.push(NewNode {
            id,
            run_id: run,
            parent_id: ancestors.last().copied(),
            ancestors: ancestors.to_vec(),
            node_type: spec.node_type,
            key: spec.key.clone(),
            kind: spec.kind.clone(),
            payload: spec.payload.clone(),
            resource_class: spec.resource_class.clone(),
            priority: spec.priority,
            rank,
            max_attempts: i32::try_from(spec.max_attempts).unwrap_or(i32::MAX),
            cost: spec.cost,
            owner: *owner,
            subject: subject.clone(),
            idempotency_key: None,
        });
    }

    /// A new group; inside a cancelled group it is born cancelled.
    fn insert_group(
        &mut self,
        run: RunId,
        id: JobId,
        spec: &graph::NodeSpec,
        ancestors: Vec<JobId>,
    ) -> Result<(), CoreError> {
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
        Ok(())
    }

    /// A new task: ready, waiting for its dependencies, or born skipped or cancelled when a
    /// dependency already ended unsuccessfully or an enclosing group was cancelled.
    fn insert_task(
        &mut self,
        run: RunId,
        id: JobId,
        spec: &graph::NodeSpec,
        ancestors: Vec<JobId>,
        prerequisites: Vec<JobId>,
    ) -> Result<(), CoreError> {
        let now = self.now;
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
        let (state, error) = self.initial_state(&ancestors, remaining, blocked)?;
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
                deferrals: 0,
                epoch: 0,
                cost: spec.cost,
                charged: false,
                spent: false,
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
        Ok(())
    }

    /// The state a new task starts in, and why when it is born settled.
    fn initial_state(
        &mut self,
        ancestors: &[JobId],
        remaining: i32,
        blocked: Option<(JobState, String)>,
    ) -> Result<(JobState, Option<String>), CoreError> {
        if let Some(reason) = self.group_cancel_reason(ancestors)? {
            return Ok((JobState::Cancelled, Some(reason)));
        }
        Ok(match blocked {
            Some((JobState::Cancelled, k)) => (
                JobState::Cancelled,
                Some(format!("dependency `{k}` was cancelled")),
            ),
            Some((s, k)) => (
                JobState::Skipped,
                Some(format!("dependency `{k}` did not complete ({s})")),
            ),
            None if remaining == 0 => (JobState::Ready, None),
            None => (JobState::Waiting, None),
        })
    }

    fn run_identity(&mut self, run: RunId) -> Result<(Uuid, Option<String>), CoreError> {
        if let Some(n) = self.changes.new_nodes.iter().find(|n| n.id == run) {
            return Ok((n.owner, n.subject.clone()));
        }
        self.source
            .run_identity(run)
            .ok_or(CoreError::NotLoaded(run))
    }
}
