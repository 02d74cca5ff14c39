//! [`MemoryJobStore`]: the whole store in one process's memory, for tests and the embedded
//! mode. Time follows tokio's clock, so tests with paused time are deterministic.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::core::{
    self, Changes, CoreError, Finish, GroupRow, NewNode, RowSource, TaskRow, Workset,
};
use crate::error::JobError;
use crate::graph::{self, Graph};
use crate::ids::{EventId, Fence, JobId, RunId, WorkerId};
use crate::state::{JobState, NodeType};
use crate::store::{
    CancelReport, ClaimRequest, ClaimedJob, Event, Heartbeat, JobStore, JobView, Notification,
    NotificationStream, PruneReport, ResourceLimit, ResumeReport, RunFilter, RunTree, Submitted,
    WorkerRegistration,
};

/// Wall-clock time that advances with tokio's clock (paused in tests).
#[derive(Debug, Clone)]
struct Clock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            base: Utc::now(),
            start: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        let t = self.base + elapsed;
        DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
    }
}

struct Node {
    fixed: NewNode,
    result: Option<Value>,
    checkpoint: Option<Value>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Default)]
struct Class {
    max_running: Option<u32>,
    per_minute: Option<u32>,
    tokens: f64,
    refilled_at: Option<DateTime<Utc>>,
    throttled_until: Option<DateTime<Utc>>,
}

type ReadyKey = (Reverse<i32>, Reverse<i64>, JobId);

#[derive(Default)]
struct Mem {
    nodes: HashMap<JobId, Node>,
    tasks: HashMap<JobId, TaskRow>,
    groups: HashMap<JobId, GroupRow>,
    runs: HashMap<RunId, Vec<JobId>>,
    ready: BTreeSet<ReadyKey>,
    running: BTreeSet<JobId>,
    events: Vec<Event>,
    run_events: HashMap<RunId, Vec<usize>>,
    workers: HashMap<WorkerId, DateTime<Utc>>,
    classes: HashMap<String, Class>,
    idempotency: HashMap<(Uuid, String), RunId>,
    violations: Vec<String>,
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
    fn ready_key(&self, id: JobId) -> Option<ReadyKey> {
        self.nodes
            .get(&id)
            .map(|n| (Reverse(n.fixed.priority), Reverse(n.fixed.rank), id))
    }

    /// Writes an operation's changes; returns the notifications to send.
    fn apply(&mut self, changes: Changes, now: DateTime<Utc>) -> Vec<Notification> {
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
            })
            .collect()
    }

    fn check(&mut self, runs: impl IntoIterator<Item = RunId>) {
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

    fn view(&self, id: JobId) -> Option<JobView> {
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

    fn refill(class: &mut Class, now: DateTime<Utc>) {
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

/// A complete job store in memory.
pub struct MemoryJobStore {
    state: Mutex<Mem>,
    notify: broadcast::Sender<Notification>,
    clock: Clock,
    verify: bool,
}

impl Default for MemoryJobStore {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for MemoryJobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryJobStore").finish_non_exhaustive()
    }
}

impl MemoryJobStore {
    /// An empty store.
    pub fn new() -> Self {
        let (notify, _) = broadcast::channel(4096);
        Self {
            state: Mutex::new(Mem::default()),
            notify,
            clock: Clock::new(),
            verify: false,
        }
    }

    /// An empty store that checks every run's invariants after every change (see
    /// [`core::check_invariants`]) and records violations, for tests.
    pub fn with_invariant_checks() -> Self {
        Self {
            verify: true,
            ..Self::new()
        }
    }

    /// Invariant violations seen so far (always empty without invariant checks).
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Mem> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn commit(&self, mem: &mut Mem, changes: Changes, now: DateTime<Utc>) {
        let runs: BTreeSet<RunId> = changes
            .tasks
            .iter()
            .map(|t| t.run_id)
            .chain(changes.groups.iter().map(|g| g.run_id))
            .collect();
        let notes = mem.apply(changes, now);
        if self.verify {
            mem.check(runs);
        }
        for n in notes {
            // Nobody listening is fine.
            let _ = self.notify.send(n);
        }
    }
}

fn core_error(e: CoreError) -> JobError {
    match e {
        CoreError::Job(e) => e,
        CoreError::NotLoaded(id) => JobError::NotFound(id),
        CoreError::RunNotLoaded(id) => JobError::NotFound(id),
    }
}

impl JobStore for MemoryJobStore {
    #[tracing::instrument(skip_all, fields(kind = %graph.run.kind, nodes = graph.nodes.len()))]
    async fn submit(&self, graph: &Graph) -> Result<Submitted, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        if let Some(key) = &graph.run.idempotency_key
            && let Some(&run_id) = mem.idempotency.get(&(graph.run.owner, key.clone()))
        {
            let ids = mem
                .runs
                .get(&run_id)
                .map(|ids| {
                    ids.iter()
                        .filter_map(|i| mem.nodes.get(i).map(|n| (n.fixed.key.clone(), *i)))
                        .collect()
                })
                .unwrap_or_default();
            return Ok(Submitted {
                run_id,
                created: false,
                ids,
            });
        }
        let run_id = JobId::new();
        let mut ws = Workset::new(&core::EmptySource, now);
        let mut ids = ws.submit(graph, run_id).map_err(core_error)?;
        ids.insert(String::new(), run_id);
        let changes = ws.into_changes();
        self.commit(&mut mem, changes, now);
        Ok(Submitted {
            run_id,
            created: true,
            ids,
        })
    }

    async fn submit_many(&self, graphs: &[Graph]) -> Result<Vec<Submitted>, JobError> {
        for g in graphs {
            g.validate()?;
        }
        let mut out = Vec::with_capacity(graphs.len());
        for g in graphs {
            out.push(self.submit(g).await?);
        }
        Ok(out)
    }

    async fn register_worker(&self, worker: &WorkerRegistration) -> Result<(), JobError> {
        let expires = self.clock.now() + chrono::Duration::from_std(worker.ttl).unwrap_or_default();
        self.lock().workers.insert(worker.id, expires);
        Ok(())
    }

    async fn heartbeat(&self, worker: WorkerId, ttl: Duration) -> Result<Heartbeat, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        match mem.workers.get_mut(&worker) {
            Some(expires) if *expires > now => {
                *expires = now + chrono::Duration::from_std(ttl).unwrap_or_default();
            }
            _ => return Ok(Heartbeat::default()),
        }
        let cancel_requested = mem
            .running
            .iter()
            .filter_map(|id| mem.tasks.get(id))
            .filter(|t| t.lease_owner == Some(worker) && t.cancel_requested)
            .map(|t| t.id)
            .collect();
        Ok(Heartbeat {
            alive: true,
            cancel_requested,
        })
    }

    async fn deregister_worker(&self, worker: WorkerId) -> Result<(), JobError> {
        self.lock().workers.remove(&worker);
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(worker = %request.worker, limit = request.limit))]
    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        match mem.workers.get(&request.worker) {
            Some(expires) if *expires > now => {}
            _ => return Err(JobError::WorkerExpired(request.worker)),
        }
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let kinds: HashSet<&str> = request.kinds.iter().map(String::as_str).collect();
        // What each limited class still allows.
        let mut running_per_class: HashMap<String, u32> = HashMap::new();
        for id in &mem.running {
            if let Some(n) = mem.nodes.get(id) {
                *running_per_class
                    .entry(n.fixed.resource_class.clone())
                    .or_default() += 1;
            }
        }
        let mut available: HashMap<String, u32> = HashMap::new();
        for (name, class) in &mut mem.classes {
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
        for &(_, _, id) in &mem.ready {
            if candidates.len() >= request.limit {
                break;
            }
            let (Some(node), Some(task)) = (mem.nodes.get(&id), mem.tasks.get(&id)) else {
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
        let (changes, started) =
            core::apply_claims(&*mem, now, &candidates, request.worker, request.limit)
                .map_err(core_error)?;
        self.commit(&mut mem, changes, now);
        let mut claimed = Vec::with_capacity(started.len());
        for id in started {
            let (Some(node), Some(task)) = (mem.nodes.get(&id), mem.tasks.get(&id)) else {
                continue;
            };
            let class = node.fixed.resource_class.clone();
            let dependencies = task
                .prerequisites
                .iter()
                .filter_map(|p| {
                    let n = mem.nodes.get(p)?;
                    Some((n.fixed.key.clone(), n.result.clone().unwrap_or(Value::Null)))
                })
                .collect();
            let root = mem.nodes.get(&node.fixed.run_id);
            claimed.push(ClaimedJob {
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
                cost: node.fixed.cost,
            });
            if let Some(c) = mem.classes.get_mut(&class)
                && c.per_minute.is_some()
            {
                c.tokens -= 1.0;
            }
        }
        Ok(claimed)
    }

    #[tracing::instrument(skip_all, fields(items = items.len()))]
    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<Result<(), JobError>>, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        let (changes, results) = core::apply_finishes(&*mem, now, &items).map_err(core_error)?;
        self.commit(&mut mem, changes, now);
        Ok(results)
    }

    async fn checkpoint(&self, fence: &Fence, value: &Value) -> Result<(), JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        let valid = mem.tasks.get(&fence.job_id).is_some_and(|t| {
            t.run_id == fence.run_id && t.state == JobState::Running && t.epoch == fence.epoch
        });
        match mem.nodes.get_mut(&fence.job_id) {
            Some(node) if valid => {
                node.checkpoint = Some(value.clone());
                node.updated_at = now;
                Ok(())
            }
            _ => Err(JobError::FenceLost(*fence)),
        }
    }

    #[tracing::instrument(skip_all)]
    async fn reap_expired(&self, limit: usize) -> Result<usize, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        let dead: HashSet<WorkerId> = mem
            .workers
            .iter()
            .filter(|(_, e)| **e <= now)
            .map(|(w, _)| *w)
            .collect();
        let expired: Vec<JobId> = mem
            .running
            .iter()
            .filter_map(|id| mem.tasks.get(id))
            .filter(|t| {
                t.lease_owner
                    .is_none_or(|w| dead.contains(&w) || !mem.workers.contains_key(&w))
            })
            .map(|t| t.id)
            .take(limit)
            .collect();
        let mut ws = Workset::new(&*mem, now);
        let mut n = 0;
        for id in expired {
            if ws.lease_expired(id).map_err(core_error)? {
                n += 1;
            }
        }
        let changes = ws.into_changes();
        self.commit(&mut mem, changes, now);
        for w in dead {
            mem.workers.remove(&w);
        }
        Ok(n)
    }

    async fn throttle_class(&self, class: &str, delay: Duration) -> Result<(), JobError> {
        let until = self.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
        let mut mem = self.lock();
        let c = mem.classes.entry(class.to_owned()).or_default();
        c.throttled_until = Some(c.throttled_until.map_or(until, |t| t.max(until)));
        Ok(())
    }

    async fn set_resource_limits(&self, limits: &[ResourceLimit]) -> Result<(), JobError> {
        for l in limits {
            graph::check_class_name(&l.class).map_err(|e| JobError::Invalid {
                field: "class",
                reason: e.to_string(),
            })?;
        }
        let mut mem = self.lock();
        for l in limits {
            let c = mem.classes.entry(l.class.clone()).or_default();
            c.max_running = l.max_running;
            if c.per_minute != l.per_minute {
                c.per_minute = l.per_minute;
                c.refilled_at = None;
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(job = %job))]
    async fn cancel(&self, job: JobId, reason: &str) -> Result<CancelReport, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        let run = mem
            .nodes
            .get(&job)
            .ok_or(JobError::NotFound(job))?
            .fixed
            .run_id;
        let mut ws = Workset::new(&*mem, now);
        let (cancelled, signalled) = ws.cancel(run, job, reason).map_err(core_error)?;
        let changes = ws.into_changes();
        self.commit(&mut mem, changes, now);
        Ok(CancelReport {
            cancelled,
            signalled,
        })
    }

    #[tracing::instrument(skip_all, fields(job = %job))]
    async fn resume(&self, job: JobId) -> Result<ResumeReport, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        let run = mem
            .nodes
            .get(&job)
            .ok_or(JobError::NotFound(job))?
            .fixed
            .run_id;
        let mut ws = Workset::new(&*mem, now);
        let queued = ws.resume(run, job).map_err(core_error)?;
        let changes = ws.into_changes();
        self.commit(&mut mem, changes, now);
        Ok(ResumeReport { queued })
    }

    async fn take_refund(&self, run: RunId) -> Result<i64, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        if mem
            .nodes
            .get(&run)
            .is_none_or(|n| n.fixed.node_type != NodeType::Run)
        {
            return Err(JobError::NotFound(run));
        }
        let mut ws = Workset::new(&*mem, now);
        let delta = ws.take_refund(run).map_err(core_error)?;
        let changes = ws.into_changes();
        self.commit(&mut mem, changes, now);
        Ok(delta)
    }

    async fn job(&self, id: JobId) -> Result<Option<JobView>, JobError> {
        Ok(self.lock().view(id))
    }

    async fn children(
        &self,
        parent: JobId,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobView>, JobError> {
        let mem = self.lock();
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

    async fn run_tree(&self, run: RunId) -> Result<Option<RunTree>, JobError> {
        let mem = self.lock();
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

    async fn events(
        &self,
        run: RunId,
        after: Option<EventId>,
        scope: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Event>, JobError> {
        let mem = self.lock();
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

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<JobView>, JobError> {
        let mem = self.lock();
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

    async fn prune(
        &self,
        settled_before: DateTime<Utc>,
        max_runs: usize,
    ) -> Result<PruneReport, JobError> {
        let mut mem = self.lock();
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

    async fn subscribe(&self) -> Result<NotificationStream, JobError> {
        let rx = self.notify.subscribe();
        Ok(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(n) => return Some((n, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed())
    }
}
