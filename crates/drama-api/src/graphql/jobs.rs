//! The `Job` type and the per-request loader that fetches the jobs of every drama a response
//! shows in one batch.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, SecondsFormat, Utc};
use drama_app::AppError;
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
///
/// What the request serves is bounded apart from what it reads: a drama's jobs read once can
/// be served by any number of aliased or nested `jobs` fields (and by every operation of a
/// batch), each a copy in the answer, so every field serving jobs charges what it serves
/// against an allowance of the same size ([`JobsLoader::serve`]).
pub struct JobsLoader {
    wanted: Mutex<Wanted>,
    loaded: tokio::sync::Mutex<Loaded>,
    /// Job objects the request's fields may still serve.
    serves_left: Mutex<usize>,
    /// The whole of that allowance, named when it runs out.
    serves_total: usize,
}

/// The dramas whose jobs a loader will read with the next one asked for, and every drama it
/// was ever told of: a drama is noted once, however many fields (or, under a long-lived
/// context, events) name it again.
#[derive(Default)]
struct Wanted {
    pending: Vec<DramaId>,
    seen: HashSet<DramaId>,
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
            serves_left: Mutex::new(budget.left()),
            serves_total: budget.left(),
            loaded: tokio::sync::Mutex::new(Loaded {
                jobs: HashMap::new(),
                budget,
            }),
        }
    }

    /// Charges `jobs`, which a field is about to answer, against the job objects the request
    /// may serve, and answers them.
    ///
    /// # Errors
    /// `TOO_LARGE` when the request's fields together would serve more job objects than the
    /// allowance (the answer would copy the same lists over and over).
    pub fn serve<'a>(
        &self,
        jobs: impl ExactSizeIterator<Item = &'a Job>,
    ) -> Result<Vec<Job>, GqlError> {
        let n = jobs.len();
        {
            let mut left = self
                .serves_left
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(rest) = left.checked_sub(n) else {
                return Err(GqlError(AppError::TooLarge(format!(
                    "the jobs fields of this request would serve more than {} jobs together; \
                     ask for each drama's jobs once, or in more requests",
                    self.serves_total
                ))));
            };
            *left = rest;
        }
        Ok(jobs.cloned().collect())
    }

    /// Notes dramas whose jobs may be asked for.
    pub fn want(&self, ids: impl IntoIterator<Item = DramaId>) {
        let mut wanted = self
            .wanted
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Wanted { pending, seen } = &mut *wanted;
        for id in ids {
            if seen.insert(id.clone()) {
                pending.push(id);
            }
        }
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
        let mut batch: Vec<DramaId> = {
            let mut wanted = self
                .wanted
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            wanted.seen.insert(drama.clone());
            std::mem::take(&mut wanted.pending)
        };
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

/// The loader a context's fields read jobs through: the request's own, or under
/// `dramaChanged`, the one of the event being resolved (see [`JobsSlot::resolve_with`]).
pub struct JobsSlot(Mutex<Arc<JobsLoader>>);

impl JobsSlot {
    /// A slot holding `loader`.
    pub fn new(loader: JobsLoader) -> Self {
        Self(Mutex::new(Arc::new(loader)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Arc<JobsLoader>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The loader fields resolved now read through.
    pub fn get(&self) -> Arc<JobsLoader> {
        self.lock().clone()
    }

    /// Makes `loader` the one fields read through from now on. A subscription's context
    /// lives as long as it does while each of its events is resolved on its own (one after
    /// the other): an event resolved with a loader of its own shows the jobs as they are
    /// then, not those cached at its first event, within an allowance of its own.
    pub fn resolve_with(&self, loader: &Arc<JobsLoader>) {
        let mut current = self.lock();
        if !Arc::ptr_eq(&current, loader) {
            *current = loader.clone();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drama_wanted_again_is_noted_once() {
        let loader = JobsLoader::new(NodeBudget::new(10));
        let id: DramaId = "d1".parse().unwrap();
        for _ in 0..10_000 {
            loader.want([id.clone()]);
        }
        let wanted = loader.wanted.lock().unwrap();
        assert!(wanted.pending.len() <= 1, "{}", wanted.pending.len());
    }
}
