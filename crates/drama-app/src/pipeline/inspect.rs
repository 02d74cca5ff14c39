//! Looking before leaping: what a generation would cost, and a page of dramas with what a
//! list needs to show (episode count, last change, the latest run).

use std::collections::{BTreeMap, HashMap};

use drama_dal::{Page, PageRequest, StoredDrama};
use drama_domain::DramaId;
use drama_jobs::{JobView, NodeType, RunFilter};

use super::normalize::ensure_assets;
use super::plan::{Planner, Scope};
use super::usecases::job_error;
use crate::{App, AppError, Caller};

/// The runs read at once for a page of dramas; dramas whose latest run is older than these
/// are looked up one by one (at most a page of them).
const RECENT_RUNS: usize = 200;

/// What a generation would do and cost, without starting it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Tasks that would run.
    pub tasks: usize,
    /// Credits that would be debited when it starts.
    pub cost: i64,
    /// Per task kind (`portrait`, `clip`, …): how many and what they cost.
    pub by_kind: BTreeMap<String, KindEstimate>,
}

/// One task kind's share of an [`Estimate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindEstimate {
    /// Tasks of the kind.
    pub tasks: usize,
    /// Their credits.
    pub cost: i64,
}

/// A drama as a list shows it.
#[derive(Debug, Clone)]
pub struct DramaOverview {
    /// The drama.
    pub stored: StoredDrama,
    /// Its newest run (creation, generation, critique…), if any.
    pub latest_run: Option<JobView>,
}

impl App {
    /// What [`App::generate_with`] would run and debit for the same scope and `force`, computed
    /// by the same planner, without writing anything.
    ///
    /// # Errors
    /// `NotFound` (drama or scope); `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %id, ?scope, force))]
    pub async fn estimate(
        &self,
        caller: &Caller,
        id: &DramaId,
        scope: Scope,
        force: bool,
    ) -> Result<Estimate, AppError> {
        let owner = caller.user;
        let mut drama = self.store.get_complete(owner, id).await?.drama;
        // The targets a run would add first; added here only in memory.
        ensure_assets(&mut drama)?;
        let objects = self.store.asset_objects(owner, id).await?;
        let models = self.models(None);
        let planned =
            Planner::new(&drama, &objects, &models, &self.costs(&models))?.plan(&scope, force)?;
        let mut estimate = Estimate {
            tasks: planned.tasks,
            cost: planned.cost,
            by_kind: BTreeMap::new(),
        };
        for node in planned
            .nodes
            .iter()
            .filter(|n| n.node_type == NodeType::Task)
        {
            let entry = estimate.by_kind.entry(node.kind.clone()).or_default();
            entry.tasks += 1;
            entry.cost += node.cost;
        }
        Ok(estimate)
    }

    /// A page of the caller's dramas (newest change first) with each one's latest run.
    /// Costs one drama query and, usually, one run query for the whole page.
    ///
    /// # Errors
    /// `Invalid` (limit, cursor); `Unavailable`.
    #[tracing::instrument(skip_all)]
    pub async fn drama_overview(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<DramaOverview>, AppError> {
        let dramas = self.store.list_complete(caller.user, page).await?;
        let recent = self
            .jobs
            .list_runs(&RunFilter {
                owner: Some(caller.user.0),
                subject: None,
                active_only: false,
                limit: RECENT_RUNS,
            })
            .await
            .map_err(job_error)?;
        let exhaustive = recent.len() < RECENT_RUNS;
        let mut latest: HashMap<String, JobView> = HashMap::new();
        for run in recent {
            if let Some(subject) = run.subject.clone() {
                // Newest first: the first run seen for a subject is its latest.
                latest.entry(subject).or_insert(run);
            }
        }
        let mut items = Vec::with_capacity(dramas.items.len());
        for stored in dramas.items {
            let latest_run = match latest.remove(stored.drama.id.as_str()) {
                Some(run) => Some(run),
                None if exhaustive => None,
                None => self
                    .jobs
                    .list_runs(&RunFilter {
                        owner: Some(caller.user.0),
                        subject: Some(stored.drama.id.to_string()),
                        active_only: false,
                        limit: 1,
                    })
                    .await
                    .map_err(job_error)?
                    .into_iter()
                    .next(),
            };
            items.push(DramaOverview { stored, latest_run });
        }
        Ok(Page {
            items,
            next: dramas.next,
        })
    }
}
