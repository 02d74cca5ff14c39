//! The store's state: nodes, task and group rows, indexes of ready and running tasks, events,
//! workers and resource classes, and how an operation's changes are applied to them.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::core::{self, Changes, GroupRow, NewNode, RowSource, TaskRow};
use crate::ids::{EventId, Fence, JobId, RunId, WorkerId};
use crate::state::{JobState, NodeType};
use crate::store::{ClaimRequest, ClaimedJob, Event, JobView, Notification};

/// Wall-clock time that advances with tokio's clock (paused in tests).
#[derive(Debug, Clone)]
pub(super) struct Clock {
    pub(super) base: DateTime<Utc>,
    pub(super) start: tokio::time::Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Self {
            base: Utc::now(),
            start: tokio::time::Instant::now(),
        }
    }

    pub(super) fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        let t = self.base + elapsed;
        DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
    }
}

pub(super) struct Node {
    pub(super) fixed: NewNode,
    pub(super) result: Option<Value>,
    pub(super) checkpoint: Option<Value>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
}

#[derive(Default)]
pub(super) struct Class {
    pub(super) max_running: Option<u32>,
    pub(super) per_minute: Option<u32>,
    pub(super) tokens: f64,
    pub(super) refilled_at: Option<DateTime<Utc>>,
    pub(super) throttled_until: Option<DateTime<Utc>>,
}

pub(super) type ReadyKey = (Reverse<i32>, Reverse<i64>, JobId);

/// A worker's registration: the memory twin of a `job_workers` row.
#[derive(Debug, Clone, Copy)]
pub(super) struct Registration {
    /// When it dies without a heartbeat.
    pub(super) expires: DateTime<Utc>,
    /// The last registration or heartbeat.
    pub(super) heartbeat: DateTime<Utc>,
    /// Since when it has been alive without a gap (see `JobStore::reap_expired`).
    pub(super) alive_since: DateTime<Utc>,
}

impl Registration {
    pub(super) fn alive(&self, now: DateTime<Utc>) -> bool {
        self.expires > now
    }

    /// Alive, and without a gap for at least its lease: it may reap.
    pub(super) fn may_reap(&self, now: DateTime<Utc>) -> bool {
        self.alive(now) && self.alive_since <= now - (self.expires - self.heartbeat)
    }
}

#[derive(Default)]
pub(super) struct Mem {
    pub(super) nodes: HashMap<JobId, Node>,
    pub(super) tasks: HashMap<JobId, TaskRow>,
    pub(super) groups: HashMap<JobId, GroupRow>,
    pub(super) runs: HashMap<RunId, Vec<JobId>>,
    pub(super) ready: BTreeSet<ReadyKey>,
    pub(super) running: BTreeSet<JobId>,
    pub(super) events: Vec<Event>,
    pub(super) run_events: HashMap<RunId, Vec<usize>>,
    pub(super) workers: HashMap<WorkerId, Registration>,
    pub(super) classes: HashMap<String, Class>,
    pub(super) idempotency: HashMap<(Uuid, String), RunId>,
    pub(super) violations: Vec<String>,
}

impl RowSource for Mem {
    fn task(&self, id: JobId) -> Option<TaskRow> {
        self.tasks.get(&id).cloned()
    }
    fn group(&self, id: JobId) -> Option<GroupRow> {
        self.groups.get(&id).cloned()
    }
    fn run_nodes(&self, run: RunId) -> Option<Vec<(JobId, NodeType)>> {
        self.runs.get(&run).map(|ids| {
            ids.iter()
                .filter_map(|id| self.nodes.get(id).map(|n| (*id, n.fixed.node_type)))
                .collect()
        })
    }
    fn run_identity(&self, run: RunId) -> Option<(Uuid, Option<String>)> {
        self.nodes
            .get(&run)
            .map(|n| (n.fixed.owner, n.fixed.subject.clone()))
    }
}

impl Mem {
    pub(super) fn ready_key(&self, id: JobId) -> Option<ReadyKey> {
        self.nodes
            .get(&id)
            .map(|n| (Reverse(n.fixed.priority), Reverse(n.fixed.rank), id))
    }

    /// Writes an operation's changes; returns the notifications to send.
    pub(super) fn apply(&mut self, changes: Changes, now: DateTime<Utc>) -> Vec<Notification> {
        let cancels = changes.cancel_requested();
        let mut touched: BTreeSet<RunId> = BTreeSet::new();
        for n in changes.new_nodes {
            self.runs.entry(n.run_id).or_default().push(n.id);
            if let Some(key) = &n.idempotency_key {
                self.idempotency.insert((n.owner, key.clone()), n.run_id);
            }
            self.nodes.insert(
                n.id,
                Node {
                    fixed: n,
                    result: None,
                    checkpoint: None,
                    created_at: now,
                    updated_at: now,
                },
            );
        }
        for t in changes.tasks {
            let old = self.tasks.get(&t.id).map(|o| o.state);
            if old == Some(JobState::Ready)
                && let Some(k) = self.ready_key(t.id)
            {
                self.ready.remove(&k);
            }
            if t.state == JobState::Ready
                && let Some(k) = self.ready_key(t.id)
            {
                self.ready.insert(k);
            }
            if t.state == JobState::Running {
                self.running.insert(t.id);
            } else {
                self.running.remove(&t.id);
            }
            if let Some(n) = self.nodes.get_mut(&t.id) {
                n.updated_at = now;
            }
            touched.insert(t.run_id);
            self.tasks.insert(t.id, t);
        }
        for g in changes.groups {
            if let Some(n) = self.nodes.get_mut(&g.id) {
                n.updated_at = now;
            }
            touched.insert(g.run_id);
            self.groups.insert(g.id, g);
        }
        for (dependent, prerequisite) in changes.new_edges {
            if let Some(p) = self.tasks.get_mut(&prerequisite)
                && !p.dependents.contains(&dependent)
            {
                p.dependents.push(dependent);
            }
            if let Some(d) = self.tasks.get_mut(&dependent)
                && !d.prerequisites.contains(&prerequisite)
            {
                d.prerequisites.push(prerequisite);
            }
        }
        for (id, result) in changes.results {
            if let Some(n) = self.nodes.get_mut(&id) {
                n.result = Some(result);
            }
        }
        let mut last: BTreeMap<RunId, EventId> = BTreeMap::new();
        for e in changes.events {
            let id = EventId(i64::try_from(self.events.len()).unwrap_or(i64::MAX) + 1);
            self.run_events
                .entry(e.run_id)
                .or_default()
                .push(self.events.len());
            last.insert(e.run_id, id);
            self.events.push(Event {
                id,
                run_id: e.run_id,
                job_id: e.job_id,
                key: e.key,
                kind: e.kind,
                state: e.state,
                attempt: e.attempt,
                at: now,
                detail: e.detail,
            });
        }
        last.into_iter()
            .map(|(run_id, event_id)| Notification {
                run_id,
                event_id,
                wake: changes.wake.contains(&run_id),
                cancel: cancels.contains(&run_id),
            })
            .collect()
    }

    pub(super) fn check(&mut self, runs: impl IntoIterator<Item = RunId>) {
        for run in runs {
            let Some(ids) = self.runs.get(&run) else {
                continue;
            };
            let tasks: Vec<TaskRow> = ids
                .iter()
                .filter_map(|i| self.tasks.get(i).cloned())
                .collect();
            let groups: Vec<GroupRow> = ids
                .iter()
                .filter_map(|i| self.groups.get(i).cloned())
                .collect();
            if let Err(v) = core::check_invariants(&tasks, &groups) {
                self.violations.push(v);
            }
        }
    }

    pub(super) fn view(&self, id: JobId) -> Option<JobView> {
        let node = self.nodes.get(&id)?;
        let f = &node.fixed;
        let root = self.nodes.get(&f.run_id)?;
        let dependencies = self
            .tasks
            .get(&id)
            .map(|t| {
                t.prerequisites
                    .iter()
                    .filter_map(|p| self.nodes.get(p).map(|n| n.fixed.key.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let mut view = JobView {
            id,
            run_id: f.run_id,
            parent_id: f.parent_id,
            node_type: f.node_type,
            key: f.key.clone(),
            kind: f.kind.clone(),
            state: JobState::Waiting,
            owner: root.fixed.owner,
            subject: root.fixed.subject.clone(),
            idempotency_key: f.idempotency_key.clone(),
            payload: f.payload.clone(),
            result: node.result.clone(),
            error: None,
            checkpoint: node.checkpoint.clone(),
            dependencies,
            resource_class: f.resource_class.clone(),
            priority: f.priority,
            attempts: 0,
            max_attempts: f.max_attempts,
            cost: f.cost,
            run_after: None,
            cancel_requested: false,
            counts: None,
            costs: None,
            budget: None,
            created_at: node.created_at,
            started_at: None,
            finished_at: None,
            updated_at: node.updated_at,
        };
        if let Some(t) = self.tasks.get(&id) {
            view.state = t.state;
            // Settling by usage may have lowered it since the node was created.
            view.cost = t.cost;
            view.error = t.error.clone();
            view.attempts = t.attempts;
            view.run_after = (t.state == JobState::Ready).then_some(t.run_after);
            view.cancel_requested = t.cancel_requested;
            view.started_at = t.started_at;
            view.finished_at = t.finished_at;
        } else if let Some(g) = self.groups.get(&id) {
            view.state = g.state;
            view.counts = Some(g.counts);
            view.costs = Some(g.costs);
            view.budget = g.budget;
            view.cancel_requested = g.cancel_requested;
            view.started_at = g.started_at;
            view.finished_at = g.finished_at;
        }
        Some(view)
    }

    /// The ready tasks a claim should try, best first, within each class's free capacity
    /// (running slots, rate tokens, throttling).
    pub(super) fn claim_candidates(
        &mut self,
        request: &ClaimRequest,
        now: DateTime<Utc>,
    ) -> Vec<JobId> {
        let kinds: HashSet<&str> = request.kinds.iter().map(String::as_str).collect();
        // What each limited class still allows.
        let mut running_per_class: HashMap<String, u32> = HashMap::new();
        for id in &self.running {
            if let Some(n) = self.nodes.get(id) {
                *running_per_class
                    .entry(n.fixed.resource_class.clone())
                    .or_default() += 1;
            }
        }
        let mut available: HashMap<String, u32> = HashMap::new();
        for (name, class) in &mut self.classes {
            Mem::refill(class, now);
            let mut cap = u32::MAX;
            if class.throttled_until.is_some_and(|t| t > now) {
                cap = 0;
            }
            if let Some(max) = class.max_running {
                cap = cap.min(
                    max.saturating_sub(running_per_class.get(name).copied().unwrap_or_default()),
                );
            }
            if class.per_minute.is_some() {
                cap = cap.min(class.tokens.floor() as u32);
            }
            available.insert(name.clone(), cap);
        }
        let mut candidates = Vec::new();
        for &(_, _, id) in &self.ready {
            if candidates.len() >= request.limit {
                break;
            }
            let (Some(node), Some(task)) = (self.nodes.get(&id), self.tasks.get(&id)) else {
                continue;
            };
            if !kinds.contains(node.fixed.kind.as_str()) || task.run_after > now {
                continue;
            }
            if let Some(cap) = available.get_mut(&node.fixed.resource_class) {
                if *cap == 0 {
                    continue;
                }
                *cap -= 1;
            }
            candidates.push(id);
        }
        candidates
    }

    /// What the handler of a just-claimed task needs; uses a rate token of its class.
    pub(super) fn take_claimed(&mut self, id: JobId) -> Option<ClaimedJob> {
        let (node, task) = (self.nodes.get(&id)?, self.tasks.get(&id)?);
        let class = node.fixed.resource_class.clone();
        let dependencies = task
            .prerequisites
            .iter()
            .filter_map(|p| {
                let n = self.nodes.get(p)?;
                Some((n.fixed.key.clone(), n.result.clone().unwrap_or(Value::Null)))
            })
            .collect();
        let root = self.nodes.get(&node.fixed.run_id);
        let claimed = ClaimedJob {
            fence: Fence {
                job_id: id,
                run_id: task.run_id,
                epoch: task.epoch,
            },
            key: node.fixed.key.clone(),
            kind: node.fixed.kind.clone(),
            payload: node.fixed.payload.clone(),
            attempt: u32::try_from(task.attempts).unwrap_or_default(),
            max_attempts: u32::try_from(task.max_attempts).unwrap_or_default(),
            checkpoint: node.checkpoint.clone(),
            dependencies,
            owner: root.map_or(Uuid::nil(), |r| r.fixed.owner),
            subject: root.and_then(|r| r.fixed.subject.clone()),
            parent_id: node.fixed.parent_id,
            resource_class: class.clone(),
            cost: task.cost,
        };
        if let Some(c) = self.classes.get_mut(&class)
            && c.per_minute.is_some()
        {
            c.tokens -= 1.0;
        }
        Some(claimed)
    }

    pub(super) fn refill(class: &mut Class, now: DateTime<Utc>) {
        let Some(rate) = class.per_minute else {
            return;
        };
        let capacity = f64::from(rate.max(1));
        let elapsed = class.refilled_at.map_or(0.0, |t| {
            (now - t).num_microseconds().unwrap_or(0) as f64 / 60e6
        });
        class.tokens = (class.tokens + elapsed * f64::from(rate)).min(capacity);
        if class.refilled_at.is_none() {
            class.tokens = capacity;
        }
        class.refilled_at = Some(now);
    }
}
