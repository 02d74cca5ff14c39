//! The job engine as the use cases see it: a dyn-safe port over any `JobStore`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drama_jobs::{
    CancelReport, Event, EventId, JobError, JobId, JobStore, JobView, NotificationStream,
    RunFilter, RunId, RunTree,
};

/// What the use cases need from the job engine (reads, control, notifications).
#[async_trait]
pub trait JobsPort: Send + Sync {
    /// One job.
    async fn job(&self, id: JobId) -> Result<Option<JobView>, JobError>;
    /// A node's children, in key order.
    async fn children(
        &self,
        parent: JobId,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobView>, JobError>;
    /// A run's nodes and edges.
    async fn run_tree(&self, run: RunId) -> Result<Option<RunTree>, JobError>;
    /// A run's events after `after` (optionally only those of the subtree `scope`).
    async fn events(
        &self,
        run: RunId,
        after: Option<EventId>,
        scope: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Event>, JobError>;
    /// Runs, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<JobView>, JobError>;
    /// Every node of the newest runs of each subject (one query on PostgreSQL).
    async fn nodes_of_subjects(
        &self,
        subjects: &[String],
        owner: Option<uuid::Uuid>,
        runs_per_subject: usize,
        max_nodes: usize,
    ) -> Result<Vec<JobView>, JobError>;
    /// The first `per_parent` direct children of each parent (one query on PostgreSQL).
    async fn first_children(
        &self,
        parents: &[JobId],
        per_parent: usize,
    ) -> Result<Vec<JobView>, JobError>;
    /// Every node of these runs, at most `max_nodes + 1` (one query on PostgreSQL).
    async fn nodes_of_runs(
        &self,
        runs: &[RunId],
        max_nodes: usize,
    ) -> Result<Vec<JobView>, JobError>;
    /// Cancels a run or a subtree.
    async fn cancel(&self, id: JobId, reason: &str) -> Result<CancelReport, JobError>;
    /// The run `owner` started under idempotency key `key` less than `max_age` ago (older
    /// holders give the key up).
    async fn keyed_run(
        &self,
        owner: uuid::Uuid,
        key: &str,
        max_age: Duration,
    ) -> Result<Option<JobView>, JobError>;
    /// Notifications of new events, from every process.
    async fn subscribe(&self) -> Result<NotificationStream, JobError>;
}

/// [`JobsPort`] over a concrete store.
pub struct EngineJobs<S>(pub Arc<S>);

#[async_trait]
impl<S: JobStore> JobsPort for EngineJobs<S> {
    async fn keyed_run(
        &self,
        owner: uuid::Uuid,
        key: &str,
        max_age: Duration,
    ) -> Result<Option<JobView>, JobError> {
        self.0.keyed_run(owner, key, max_age).await
    }

    async fn job(&self, id: JobId) -> Result<Option<JobView>, JobError> {
        self.0.job(id).await
    }
    async fn children(
        &self,
        parent: JobId,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobView>, JobError> {
        self.0.children(parent, after, limit).await
    }
    async fn run_tree(&self, run: RunId) -> Result<Option<RunTree>, JobError> {
        self.0.run_tree(run).await
    }
    async fn events(
        &self,
        run: RunId,
        after: Option<EventId>,
        scope: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Event>, JobError> {
        self.0.events(run, after, scope, limit).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<JobView>, JobError> {
        self.0.list_runs(filter).await
    }
    async fn nodes_of_subjects(
        &self,
        subjects: &[String],
        owner: Option<uuid::Uuid>,
        runs_per_subject: usize,
        max_nodes: usize,
    ) -> Result<Vec<JobView>, JobError> {
        self.0
            .nodes_of_subjects(subjects, owner, runs_per_subject, max_nodes)
            .await
    }
    async fn first_children(
        &self,
        parents: &[JobId],
        per_parent: usize,
    ) -> Result<Vec<JobView>, JobError> {
        self.0.first_children(parents, per_parent).await
    }
    async fn nodes_of_runs(
        &self,
        runs: &[RunId],
        max_nodes: usize,
    ) -> Result<Vec<JobView>, JobError> {
        self.0.nodes_of_runs(runs, max_nodes).await
    }
    async fn cancel(&self, id: JobId, reason: &str) -> Result<CancelReport, JobError> {
        self.0.cancel(id, reason).await
    }
    async fn subscribe(&self) -> Result<NotificationStream, JobError> {
        self.0.subscribe().await
    }
}

/// How long a synchronous use case waits for its run (portrait, cover) before it answers
/// with the run still going, unless told otherwise ([`crate::App::with_sync_wait`]).
pub const SYNC_WAIT: Duration = Duration::from_secs(25);
