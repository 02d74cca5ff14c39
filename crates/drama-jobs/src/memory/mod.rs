//! [`MemoryJobStore`]: the whole store in one process's memory, for tests and the embedded
//! mode. Time follows tokio's clock, so tests with paused time are deterministic.
mod mem;
mod queries;

use std::collections::{BTreeSet, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt as _;
use serde_json::Value;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::core::{self, Changes, CoreError, Finish, Workset};
use crate::error::JobError;
use crate::graph::{self, Graph};
use crate::ids::{EventId, Fence, JobId, RunId, WorkerId};
use crate::state::{JobState, NodeType};
use crate::store::{
    CancelReport, ClaimRequest, ClaimedJob, Event, Heartbeat, JobStore, JobView, Notification,
    NotificationStream, PruneReport, ResourceLimit, ResumeReport, RunFilter, RunTree, Submitted,
    WorkerRegistration,
};

use mem::{Clock, Mem, Registration};

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
    /// [`JobStore::resume`], priced and paid: computes what the resume queues and its cost
    /// (see `Workset::resume_priced`), calls `pay(run, cost)` while the store is still locked,
    /// and commits only when `pay` succeeds; otherwise nothing changes. The memory twin of
    /// debiting a resume in the same transaction as the re-queue.
    ///
    /// # Errors
    /// `NotFound`; whatever `pay` returns.
    pub fn resume_paid<E: From<JobError>>(
        &self,
        job: JobId,
        pay: impl FnOnce(RunId, i64) -> Result<(), E>,
    ) -> Result<(usize, i64), E> {
        self.change_run_of(job, |ws, run| {
            let (queued, price) = ws.resume_priced(run, job).map_err(core_error)?;
            pay(run, price)?;
            Ok((queued, price))
        })
    }

    /// [`Workset::settle_cost`], paid: lowers the cost of the task running under `fence` to
    /// `actual` when that is less, calls `credit(back)` with what the cost dropped by (only
    /// when it dropped) while the store is still locked, and commits only when `credit`
    /// succeeds. The memory twin of crediting a settled price in the same transaction.
    ///
    /// # Errors
    /// `FenceLost`; whatever `credit` returns.
    pub fn settle_paid<E: From<JobError>>(
        &self,
        fence: &Fence,
        actual: i64,
        credit: impl FnOnce(i64) -> Result<(), E>,
    ) -> Result<i64, E> {
        let now = self.clock.now();
        let mut mem = self.lock();
        if !mem.tasks.contains_key(&fence.job_id) {
            return Err(JobError::FenceLost(*fence).into());
        }
        let mut ws = Workset::new(&*mem, now);
        let back = ws.settle_cost(fence, actual).map_err(core_error)?;
        let changes = ws.into_changes();
        if back > 0 {
            credit(back)?;
            self.commit(&mut mem, changes, now);
        }
        Ok(back)
    }

    /// Up to `limit` runs whose refund is due, however many newer runs there are: the memory
    /// twin of the refund loop's query on PostgreSQL (refunds before claw-backs).
    pub fn runs_owing_refunds(&self, limit: usize) -> Vec<JobView> {
        self.lock().runs_owing_refunds(limit)
    }

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

    /// Runs `op` on a workset of the run that holds `job` (`op` gets the run's id), with the
    /// store locked throughout, and commits what it changed when it succeeds.
    fn change_run_of<T, E: From<JobError>>(
        &self,
        job: JobId,
        op: impl FnOnce(&mut Workset<'_>, RunId) -> Result<T, E>,
    ) -> Result<T, E> {
        let now = self.clock.now();
        let mut mem = self.lock();
        let run = mem
            .nodes
            .get(&job)
            .ok_or(JobError::NotFound(job))?
            .fixed
            .run_id;
        let mut ws = Workset::new(&*mem, now);
        let out = op(&mut ws, run)?;
        let changes = ws.into_changes();
        self.commit(&mut mem, changes, now);
        Ok(out)
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
        let now = self.clock.now();
        let expires = now + chrono::Duration::from_std(worker.ttl).unwrap_or_default();
        let mut mem = self.lock();
        // Alive without a gap since then, unless it had expired (see `reap_expired`).
        let alive_since = match mem.workers.get(&worker.id) {
            Some(r) if r.alive(now) => r.alive_since,
            _ => now,
        };
        mem.workers.insert(
            worker.id,
            Registration {
                expires,
                heartbeat: now,
                alive_since,
            },
        );
        Ok(())
    }

    async fn heartbeat(
        &self,
        worker: WorkerId,
        ttl: Duration,
        held: Option<&[JobId]>,
    ) -> Result<Heartbeat, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        let lease = chrono::Duration::from_std(ttl).unwrap_or_default();
        match mem.workers.get_mut(&worker) {
            Some(r) if r.alive(now) => {
                // A gap of more than half a lease: the worker could not reach the store for a
                // while, and perhaps its peers could not either (see `reap_expired`).
                if r.heartbeat < now - lease / 2 {
                    r.alive_since = now;
                }
                r.expires = now + lease;
                r.heartbeat = now;
            }
            _ => return Ok(Heartbeat::default()),
        }
        let leased: Vec<_> = mem
            .running
            .iter()
            .filter_map(|id| mem.tasks.get(id))
            .filter(|t| t.lease_owner == Some(worker))
            .collect();
        let cancel_requested = leased
            .iter()
            .filter(|t| t.cancel_requested)
            .map(|t| t.id)
            .collect();
        let unheld = match held {
            None => Vec::new(),
            Some(held) => {
                let held: HashSet<JobId> = held.iter().copied().collect();
                leased
                    .iter()
                    .filter(|t| !held.contains(&t.id))
                    .map(|t| Fence {
                        job_id: t.id,
                        run_id: t.run_id,
                        epoch: t.epoch,
                    })
                    .collect()
            }
        };
        Ok(Heartbeat {
            alive: true,
            cancel_requested,
            unheld,
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
            Some(r) if r.alive(now) => {}
            _ => return Err(JobError::WorkerExpired(request.worker)),
        }
        if request.limit == 0 {
            return Ok(Vec::new());
        }
        let candidates = mem.claim_candidates(request, now);
        let (changes, started) =
            core::apply_claims(&*mem, now, &candidates, request.worker, request.limit)
                .map_err(core_error)?;
        self.commit(&mut mem, changes, now);
        Ok(started
            .into_iter()
            .filter_map(|id| mem.take_claimed(id))
            .collect())
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
                node.checkpoint = (!value.is_null()).then(|| value.clone());
                node.updated_at = now;
            }
            _ => return Err(JobError::FenceLost(*fence)),
        }
        if let Some(t) = mem.tasks.get_mut(&fence.job_id) {
            t.spent = !value.is_null();
        }
        Ok(())
    }

    async fn still_held(&self, fences: &[Fence]) -> Result<Vec<JobId>, JobError> {
        let mem = self.lock();
        Ok(fences
            .iter()
            .filter(|f| {
                mem.tasks.get(&f.job_id).is_some_and(|t| {
                    t.run_id == f.run_id && t.state == JobState::Running && t.epoch == f.epoch
                })
            })
            .map(|f| f.job_id)
            .collect())
    }

    #[tracing::instrument(skip_all)]
    async fn reap_expired(&self, reaper: WorkerId, limit: usize) -> Result<usize, JobError> {
        let now = self.clock.now();
        let mut mem = self.lock();
        if !mem.workers.get(&reaper).is_some_and(|r| r.may_reap(now)) {
            return Ok(0);
        }
        let dead: HashSet<WorkerId> = mem
            .workers
            .iter()
            .filter(|(_, r)| !r.alive(now))
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
        let delay = crate::core::defer_delay(delay);
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
        let (cancelled, signalled) = self.change_run_of(job, |ws, run| {
            ws.cancel(run, job, reason).map_err(core_error)
        })?;
        Ok(CancelReport {
            cancelled,
            signalled,
        })
    }

    #[tracing::instrument(skip_all, fields(job = %job))]
    async fn resume(&self, job: JobId) -> Result<ResumeReport, JobError> {
        let queued = self.change_run_of(job, |ws, run| ws.resume(run, job).map_err(core_error))?;
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

    async fn keyed_run(
        &self,
        owner: Uuid,
        key: &str,
        max_age: Duration,
    ) -> Result<Option<JobView>, JobError> {
        let oldest = chrono::Duration::from_std(max_age)
            .ok()
            .and_then(|age| self.clock.now().checked_sub_signed(age))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let mut mem = self.lock();
        let Some(&run) = mem.idempotency.get(&(owner, key.to_owned())) else {
            return Ok(None);
        };
        let taken = mem.nodes.get(&run).map(|n| n.created_at);
        if taken.is_some_and(|t| t > oldest) {
            return Ok(mem.view(run));
        }
        mem.idempotency.remove(&(owner, key.to_owned()));
        if let Some(n) = mem.nodes.get_mut(&run) {
            n.fixed.idempotency_key = None;
        }
        Ok(None)
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
        self.lock().children(parent, after, limit)
    }

    async fn run_tree(&self, run: RunId) -> Result<Option<RunTree>, JobError> {
        self.lock().run_tree(run)
    }

    async fn events(
        &self,
        run: RunId,
        after: Option<EventId>,
        scope: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Event>, JobError> {
        self.lock().events(run, after, scope, limit)
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<JobView>, JobError> {
        self.lock().list_runs(filter)
    }

    async fn prune(
        &self,
        settled_before: DateTime<Utc>,
        max_runs: usize,
    ) -> Result<PruneReport, JobError> {
        self.lock().prune(settled_before, max_runs)
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
