//! A store that wraps a real one and changes what its claims look like to the worker: a claim
//! held back until the test lets it through (to stop a worker while a claim is in flight), or
//! a claim that commits but answers with an error (the connection failed after the commit),
//! or a look at which tasks are still held, held back the same way.
//! It can also be down: every call a worker makes fails as if the database could not be
//! reached. Everything else goes straight to the wrapped store.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::core::Finish;
use crate::{
    CancelReport, ClaimRequest, ClaimedJob, Event, EventId, Fence, Graph, Heartbeat, JobError,
    JobId, JobStore, JobView, NotificationStream, PruneReport, ResourceLimit, ResumeReport,
    RunFilter, RunId, RunTree, Submitted, WorkerId, WorkerRegistration,
};

/// The wrapper.
pub struct Interposed<S> {
    inner: Arc<S>,
    hold: AtomicBool,
    entered: Notify,
    go: Notify,
    lose: AtomicBool,
    down: AtomicBool,
    refuse: AtomicBool,
    hold_held: AtomicBool,
    held_entered: Notify,
    held_go: Notify,
}

impl<S: JobStore> Interposed<S> {
    /// Wraps `inner`; nothing is changed until asked.
    pub fn new(inner: Arc<S>) -> Self {
        Self {
            inner,
            hold: AtomicBool::new(false),
            entered: Notify::new(),
            go: Notify::new(),
            lose: AtomicBool::new(false),
            down: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            hold_held: AtomicBool::new(false),
            held_entered: Notify::new(),
            held_go: Notify::new(),
        }
    }

    /// Until `set_down(false)`, every call a worker makes (registration, heartbeats, claims,
    /// finishes, checkpoints, reaping) fails with [`JobError::Unavailable`], as during a
    /// database outage; the test's own submissions and queries still go through.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Until `set_refusing(false)`, every finish fails with an error that is not a passing
    /// one ([`JobError::Unexpected`]), as a database that turned read-only for a failover
    /// did before its error counted as passing.
    pub fn set_refusing(&self, refuse: bool) {
        self.refuse.store(refuse, Ordering::SeqCst);
    }

    fn reachable(&self) -> Result<(), JobError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(JobError::Unavailable(
                "the database cannot be reached".into(),
            ));
        }
        Ok(())
    }

    /// The next claim waits, before it reaches the store, until [`Interposed::let_go`].
    pub fn hold_next_claim(&self) {
        self.hold.store(true, Ordering::SeqCst);
    }

    /// Waits until a held claim arrived.
    pub async fn claim_arrived(&self) {
        self.entered.notified().await;
    }

    /// Lets the held claim through.
    pub fn let_go(&self) {
        self.go.notify_one();
    }

    /// The next [`JobStore::still_held`] waits, before it reaches the store, until
    /// [`Interposed::let_still_held_go`].
    pub fn hold_next_still_held(&self) {
        self.hold_held.store(true, Ordering::SeqCst);
    }

    /// Waits until a held `still_held` arrived.
    pub async fn still_held_arrived(&self) {
        self.held_entered.notified().await;
    }

    /// Lets the held `still_held` through.
    pub fn let_still_held_go(&self) {
        self.held_go.notify_one();
    }

    /// The next claim that gets tasks commits, and then answers with an error.
    pub fn lose_next_answer(&self) {
        self.lose.store(true, Ordering::SeqCst);
    }
}

impl<S: JobStore> JobStore for Interposed<S> {
    async fn submit(&self, graph: &Graph) -> Result<Submitted, JobError> {
        self.inner.submit(graph).await
    }

    async fn submit_many(&self, graphs: &[Graph]) -> Result<Vec<Submitted>, JobError> {
        self.inner.submit_many(graphs).await
    }

    async fn keyed_run(
        &self,
        owner: Uuid,
        key: &str,
        max_age: Duration,
    ) -> Result<Option<JobView>, JobError> {
        self.inner.keyed_run(owner, key, max_age).await
    }

    async fn register_worker(&self, worker: &WorkerRegistration) -> Result<(), JobError> {
        self.reachable()?;
        self.inner.register_worker(worker).await
    }

    async fn heartbeat(
        &self,
        worker: WorkerId,
        ttl: Duration,
        held: Option<&[JobId]>,
    ) -> Result<Heartbeat, JobError> {
        self.reachable()?;
        self.inner.heartbeat(worker, ttl, held).await
    }

    async fn deregister_worker(&self, worker: WorkerId) -> Result<(), JobError> {
        self.reachable()?;
        self.inner.deregister_worker(worker).await
    }

    async fn claim(&self, request: &ClaimRequest) -> Result<Vec<ClaimedJob>, JobError> {
        self.reachable()?;
        if self.hold.swap(false, Ordering::SeqCst) {
            self.entered.notify_one();
            self.go.notified().await;
        }
        let jobs = self.inner.claim(request).await?;
        if !jobs.is_empty() && self.lose.swap(false, Ordering::SeqCst) {
            return Err(JobError::Unavailable(
                "the connection closed before the commit was acknowledged".into(),
            ));
        }
        Ok(jobs)
    }

    async fn finish(&self, items: Vec<Finish>) -> Result<Vec<Result<(), JobError>>, JobError> {
        self.reachable()?;
        if self.refuse.load(Ordering::SeqCst) {
            return Err(JobError::Unexpected(
                "cannot execute UPDATE in a read-only transaction".into(),
            ));
        }
        self.inner.finish(items).await
    }

    async fn checkpoint(&self, fence: &Fence, value: &Value) -> Result<(), JobError> {
        self.reachable()?;
        self.inner.checkpoint(fence, value).await
    }

    async fn still_held(&self, fences: &[Fence]) -> Result<Vec<JobId>, JobError> {
        self.reachable()?;
        if self.hold_held.swap(false, Ordering::SeqCst) {
            self.held_entered.notify_one();
            self.held_go.notified().await;
        }
        self.inner.still_held(fences).await
    }

    async fn reap_expired(&self, reaper: WorkerId, limit: usize) -> Result<usize, JobError> {
        self.reachable()?;
        self.inner.reap_expired(reaper, limit).await
    }

    async fn throttle_class(&self, class: &str, delay: Duration) -> Result<(), JobError> {
        self.reachable()?;
        self.inner.throttle_class(class, delay).await
    }

    async fn set_resource_limits(&self, limits: &[ResourceLimit]) -> Result<(), JobError> {
        self.inner.set_resource_limits(limits).await
    }

    async fn cancel(&self, job: JobId, reason: &str) -> Result<CancelReport, JobError> {
        self.inner.cancel(job, reason).await
    }

    async fn resume(&self, job: JobId) -> Result<ResumeReport, JobError> {
        self.inner.resume(job).await
    }

    async fn take_refund(&self, run: RunId) -> Result<i64, JobError> {
        self.inner.take_refund(run).await
    }

    async fn job(&self, id: JobId) -> Result<Option<JobView>, JobError> {
        self.inner.job(id).await
    }

    async fn children(
        &self,
        parent: JobId,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobView>, JobError> {
        self.inner.children(parent, after, limit).await
    }

    async fn run_tree(&self, run: RunId) -> Result<Option<RunTree>, JobError> {
        self.inner.run_tree(run).await
    }

    async fn events(
        &self,
        run: RunId,
        after: Option<EventId>,
        scope: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Event>, JobError> {
        self.inner.events(run, after, scope, limit).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<JobView>, JobError> {
        self.inner.list_runs(filter).await
    }

    async fn prune(
        &self,
        settled_before: DateTime<Utc>,
        max_runs: usize,
    ) -> Result<PruneReport, JobError> {
        self.inner.prune(settled_before, max_runs).await
    }

    async fn subscribe(&self) -> Result<NotificationStream, JobError> {
        self.inner.subscribe().await
    }
}
