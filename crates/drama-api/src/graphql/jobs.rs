//! The `Job` type and the per-request loader that fetches the jobs of every drama a response
//! shows in one batch.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use drama_app::jobs::{JobId, JobView, NodeType};
use drama_app::pipeline::NodeBudget;
use drama_app::pipeline::spec::job_type_of;
use drama_domain::DramaId;
use juniper::graphql_object;

use super::context::Ctx;
use super::error::GqlError;

fn iso(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn count(n: Option<i64>) -> Option<i32> {
    n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))
}

/// A job: a run, a group of a run, or one task.
#[derive(Clone)]
pub struct Job {
    view: Arc<JobView>,
    children: Option<Vec<JobId>>,
}

impl Job {
    /// A job without its children's ids.
    pub fn new(view: JobView) -> Self {
        Self {
            view: Arc::new(view),
            children: None,
        }
    }

    fn payload_str(&self, key: &str) -> Option<&str> {
        self.view.payload.get(key).and_then(|v| v.as_str())
    }

    /// The asset the task makes, when it makes one.
    pub(crate) fn asset(&self) -> Option<&str> {
        self.payload_str("asset")
    }

    pub(crate) fn node_key(&self) -> &str {
        &self.view.key
    }

    pub(crate) fn status_str(&self) -> &'static str {
        self.view.coarse_status().as_str()
    }
}

#[graphql_object(context = Ctx)]
impl Job {
    fn job_id(&self) -> String {
        self.view.id.to_string()
    }
    fn drama_id(&self) -> String {
        self.view.subject.clone().unwrap_or_default()
    }
    /// The asset (or, for scene writing, the episode) the job is about.
    fn asset_id(&self) -> Option<String> {
        self.asset()
            .or_else(|| self.payload_str("episode"))
            .map(str::to_owned)
    }
    #[graphql(name = "type")]
    fn job_type(&self) -> &'static str {
        job_type_of(&self.view.kind, &self.view.payload).as_str()
    }
    fn status(&self) -> &'static str {
        self.view.coarse_status().as_str()
    }
    fn prompt(&self) -> Option<String> {
        self.payload_str("prompt").map(str::to_owned)
    }
    /// The url of what the job made.
    fn r2_url(&self) -> Option<String> {
        self.view
            .result
            .as_ref()
            .and_then(|r| r.get("url"))
            .and_then(|u| u.as_str())
            .map(str::to_owned)
    }
    fn created_at(&self) -> String {
        iso(self.view.created_at)
    }
    fn started_at(&self) -> Option<String> {
        self.view.started_at.map(iso)
    }
    fn completed_at(&self) -> Option<String> {
        self.view
            .finished_at
            .filter(|_| self.view.state.is_settled())
            .map(iso)
    }
    fn error(&self) -> Option<&str> {
        self.view.error.as_deref()
    }
    fn parent_job_id(&self) -> Option<String> {
        self.view.parent_id.map(|p| p.to_string())
    }
    /// Ids of the job's direct children (runs and groups).
    fn child_jobs(&self) -> Option<Vec<String>> {
        self.children
            .as_ref()
            .map(|c| c.iter().map(ToString::to_string).collect())
    }
    fn total_jobs(&self) -> Option<i32> {
        count(self.view.counts.as_ref().map(|c| c.total))
    }
    fn completed_jobs(&self) -> Option<i32> {
        count(self.view.counts.as_ref().map(|c| c.completed))
    }
    fn failed_jobs(&self) -> Option<i32> {
        count(self.view.counts.as_ref().map(|c| c.failed + c.skipped))
    }
    fn running_jobs(&self) -> Option<i32> {
        count(self.view.counts.as_ref().map(|c| c.running))
    }
    /// The node's key within its run (`storyboard:ep1-sc1-img`, `episode:ep1`, …).
    fn key(&self) -> &str {
        &self.view.key
    }
    /// The engine's state: waiting, ready, running, completed, failed, skipped, cancelled.
    fn state(&self) -> &'static str {
        self.view.state.as_str()
    }
    /// The job's result as JSON text.
    fn result(&self) -> Option<String> {
        self.view.result.as_ref().map(ToString::to_string)
    }
}

/// Every job of the dramas a request shows, loaded together the first time one is asked for,
/// each drama's once, and all of them within one allowance of job nodes for the request
/// ([`NodeBudget`]): aliased fields and several pages of dramas share it.
pub struct JobsLoader {
    wanted: Mutex<Vec<DramaId>>,
    loaded: tokio::sync::Mutex<Loaded>,
}

/// What a loader read, and what its request may still read.
struct Loaded {
    jobs: HashMap<DramaId, Arc<Vec<Job>>>,
    budget: NodeBudget,
}

impl JobsLoader {
    /// A loader that reads at most `budget` job nodes in all.
    pub fn new(budget: NodeBudget) -> Self {
        Self {
            wanted: Mutex::default(),
            loaded: tokio::sync::Mutex::new(Loaded {
                jobs: HashMap::new(),
                budget,
            }),
        }
    }

    /// Notes dramas whose jobs may be asked for.
    pub fn want(&self, ids: impl IntoIterator<Item = DramaId>) {
        self.wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(ids);
    }

    /// The jobs of one drama (loading every wanted drama's jobs at once if needed).
    ///
    /// # Errors
    /// `TOO_LARGE` when the request's reads together hold more job nodes than it may read.
    pub async fn of(&self, ctx: &Ctx, drama: &DramaId) -> Result<Arc<Vec<Job>>, GqlError> {
        let mut loaded = self.loaded.lock().await;
        if let Some(jobs) = loaded.jobs.get(drama) {
            return Ok(jobs.clone());
        }
        let mut batch: Vec<DramaId> = std::mem::take(
            &mut *self
                .wanted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        batch.push(drama.clone());
        batch.retain(|d| !loaded.jobs.contains_key(d));
        batch.sort();
        batch.dedup();
        let found = ctx
            .app
            .trees_of_dramas(&ctx.caller, &batch, &mut loaded.budget)
            .await?;
        for id in batch {
            let views = found.get(&id).cloned().unwrap_or_default();
            loaded.jobs.insert(id, Arc::new(with_children(views)));
        }
        Ok(loaded.jobs.get(drama).cloned().unwrap_or_default())
    }
}

/// Jobs with the ids of their children filled in for runs and groups; newest first.
fn with_children(views: Vec<JobView>) -> Vec<Job> {
    let mut children: HashMap<JobId, Vec<JobId>> = HashMap::new();
    for v in &views {
        if let Some(p) = v.parent_id {
            children.entry(p).or_default().push(v.id);
        }
    }
    let mut jobs: Vec<Job> = views
        .into_iter()
        .map(|v| {
            let kids =
                (v.node_type != NodeType::Task).then(|| children.remove(&v.id).unwrap_or_default());
            Job {
                view: Arc::new(v),
                children: kids,
            }
        })
        .collect();
    jobs.sort_by(|a, b| {
        b.view
            .created_at
            .cmp(&a.view.created_at)
            .then(b.view.id.0.cmp(&a.view.id.0))
    });
    jobs
}
