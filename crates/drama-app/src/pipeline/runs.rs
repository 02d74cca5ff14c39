//! Reading runs and jobs as their owner sees them: one job, the runs of a drama (or of several
//! at once), a run's tree, a job's children and a run's events. Kept apart from the use cases
//! that start runs, which only wait on them through [`App::job`].

use std::collections::HashMap;

use drama_dal::Entity;
use drama_domain::{DramaId, UserId};
use drama_jobs::{Event, EventId, JobId, JobView, NodeType, RunFilter, RunId, RunTree};
use serde_json::{Value, json};

use super::plan::Held;
use super::spec::kind;
use super::usecases::job_error;
use crate::{App, AppError, Caller};

/// Most job nodes one request reads for the nested `jobs` of a page of dramas: a drama's run
/// holds a few hundred nodes, so this covers a page of busy dramas while keeping what one
/// GraphQL request can load bounded (a node carries its payload, prompts included).
pub const MAX_TREE_NODES: usize = 20_000;

/// What one request may still read of job nodes for the `jobs` of dramas
/// ([`App::trees_of_dramas`]): one allowance for all its reads, so that neither aliases nor
/// several pages of dramas multiply it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeBudget {
    total: usize,
    left: usize,
}

impl NodeBudget {
    /// An allowance of `total` nodes.
    pub fn new(total: usize) -> Self {
        Self { total, left: total }
    }

    /// The nodes still allowed.
    pub fn left(&self) -> usize {
        self.left
    }
}

/// Most runs a list of a drama's runs holds (the newest).
const RUNS_LISTED: usize = 100;

/// The character and asset of an audition run (its payload names them; `App::audition`).
fn audition_of(run: &JobView) -> Option<(&str, &str)> {
    Some((
        run.payload["characterId"].as_str()?,
        run.payload["assetId"].as_str()?,
    ))
}

/// A settled run whose result is not stored: it shows one made from its nodes
/// ([`run_result`]).
fn lacks_run_result(view: &JobView) -> bool {
    view.result.is_none() && view.id == view.run_id && view.state.is_settled()
}

/// Whether a run's result depends on its children: only a run of exactly one task can have
/// that task as its only child (groups carry no result, tasks have no children); any other
/// shows the drama it is about, whatever its size, so its nodes are not read at all.
fn result_needs_children(run: &JobView) -> bool {
    run.counts.is_none_or(|c| c.total == 1)
}

/// What a settled run shows as its result, as the old server's jobs did, from nodes of the
/// run (its direct children at least; every node for an audition): an audition's drama,
/// character and video url (null when the video task did not complete); otherwise the result
/// of its one task (a critique's feedback, a written drama's id), or the drama it is about.
fn run_result<'a>(run: &JobView, nodes: impl IntoIterator<Item = &'a JobView>) -> Option<Value> {
    if let Some((character, asset)) = audition_of(run) {
        let url = nodes
            .into_iter()
            .filter_map(|t| t.result.as_ref())
            // A video made for an asset deleted meanwhile was not applied (its object goes to
            // the sweeper): it is not the character's video.
            .find(|r| r["assetId"] == asset && r["applied"] != false)
            .and_then(|r| r.get("url").cloned());
        return Some(json!({
            "dramaId": run.subject,
            "characterId": character,
            "videoUrl": url,
        }));
    }
    let mut children = nodes.into_iter().filter(|n| n.parent_id == Some(run.id));
    match (children.next(), children.next()) {
        (Some(only), None) if only.result.is_some() => only.result.clone(),
        _ => run.subject.as_ref().map(|d| json!({ "dramaId": d })),
    }
}

/// The results [`run_result`] makes for the settled runs among `views` (by their index),
/// from `nodes`: of each run, its first two children, or all of it for an audition (a run
/// with no nodes among them shows the drama it is about). For lists of runs, which read their
/// nodes together instead of once per run.
fn run_results(views: &[JobView], nodes: &[JobView]) -> Vec<(usize, Value)> {
    let mut by_run: HashMap<RunId, Vec<&JobView>> = HashMap::new();
    for node in nodes {
        by_run.entry(node.run_id).or_default().push(node);
    }
    views
        .iter()
        .enumerate()
        .filter(|(_, view)| lacks_run_result(view))
        .filter_map(|(i, run)| {
            let nodes = by_run.get(&run.run_id).map_or(&[][..], Vec::as_slice);
            Some((i, run_result(run, nodes.iter().copied())?))
        })
        .collect()
}

impl App {
    /// What the owner's active runs on drama `id` are making ([`Held`]). The active runs are
    /// read through the active-run rows (no settled run is read), and their nodes in one
    /// query only when there are some.
    pub(super) async fn held_work(&self, owner: UserId, id: &DramaId) -> Result<Held, AppError> {
        let active = self
            .jobs
            .list_runs(&RunFilter {
                owner: Some(owner.0),
                subject: Some(id.as_str().to_owned()),
                active_only: true,
                limit: RUNS_LISTED,
            })
            .await
            .map_err(job_error)?;
        if active.is_empty() {
            return Ok(Held::default());
        }
        let runs: Vec<RunId> = active.iter().map(|r| r.run_id).collect();
        let nodes = self
            .jobs
            .nodes_of_runs(&runs, MAX_TREE_NODES)
            .await
            .map_err(job_error)?;
        Ok(Held::from_nodes(&nodes))
    }

    /// The newest generation run of `owner` on drama `id`, when it had no task.
    pub(super) async fn latest_empty_run(
        &self,
        owner: UserId,
        id: &DramaId,
    ) -> Result<Option<JobId>, AppError> {
        let newest = self
            .jobs
            .list_runs(&RunFilter {
                owner: Some(owner.0),
                subject: Some(id.as_str().to_owned()),
                active_only: false,
                limit: 1,
            })
            .await
            .map_err(job_error)?;
        Ok(newest
            .into_iter()
            .find(|r| r.kind == kind::GENERATE && r.counts.is_some_and(|c| c.total == 0))
            .map(|r| r.run_id))
    }

    /// A job of the caller (a run or any node of one).
    ///
    /// # Errors
    /// `NotFound` (also for another user's job); `Unavailable`.
    pub async fn job(&self, caller: &Caller, id: JobId) -> Result<JobView, AppError> {
        let mut view = match self.jobs.job(id).await.map_err(job_error)? {
            Some(view) if view.owner == caller.user.0 => view,
            _ => return Err(AppError::not_found(Entity::Job, id)),
        };
        if lacks_run_result(&view) {
            // An audition reads its whole (small) run; a run of one task its first two
            // children; any other run nothing.
            let nodes = match audition_of(&view) {
                Some(_) => self
                    .jobs
                    .run_tree(view.run_id)
                    .await
                    .map_err(job_error)?
                    .map(|t| t.nodes)
                    .unwrap_or_default(),
                None if result_needs_children(&view) => {
                    self.jobs.children(id, None, 2).await.map_err(job_error)?
                }
                None => Vec::new(),
            };
            view.result = run_result(&view, &nodes);
        }
        Ok(view)
    }

    /// A job of the caller that belongs to `drama`.
    ///
    /// # Errors
    /// `NotFound` when the drama or job is missing or they do not belong together.
    pub async fn job_of_drama(
        &self,
        caller: &Caller,
        drama: &DramaId,
        id: JobId,
    ) -> Result<JobView, AppError> {
        let view = self.job(caller, id).await?;
        if view.subject.as_deref() != Some(drama.as_str()) {
            return Err(AppError::not_found(Entity::Job, id));
        }
        Ok(view)
    }

    /// The runs of a drama, newest first (the drama must be the caller's, except for the
    /// runs that create it).
    ///
    /// # Errors
    /// `Unavailable`.
    pub async fn jobs_of_drama(
        &self,
        caller: &Caller,
        drama: &DramaId,
        active_only: bool,
    ) -> Result<Vec<JobView>, AppError> {
        let mut runs = self
            .jobs
            .list_runs(&RunFilter {
                owner: Some(caller.user.0),
                subject: Some(drama.to_string()),
                active_only,
                limit: RUNS_LISTED,
            })
            .await
            .map_err(job_error)?;
        // Settled runs show the result `job` shows them with, from the nodes `job` reads: the
        // first two children of a run of one task, every node of an audition's (small) run,
        // nothing of any other. Each kind is read in one statement for the whole list, not
        // once per run, and no read touches a drama's generation runs, whatever their size.
        let (auditions, others): (Vec<&JobView>, Vec<&JobView>) = runs
            .iter()
            .filter(|run| lacks_run_result(run))
            .partition(|run| audition_of(run).is_some());
        let mut nodes = Vec::new();
        let parents: Vec<JobId> = others
            .iter()
            .filter(|run| result_needs_children(run))
            .map(|run| run.id)
            .collect();
        if !parents.is_empty() {
            nodes.extend(
                self.jobs
                    .first_children(&parents, 2)
                    .await
                    .map_err(job_error)?,
            );
        }
        if !auditions.is_empty() {
            let ids: Vec<RunId> = auditions.iter().map(|run| run.run_id).collect();
            let mut whole = self
                .jobs
                .nodes_of_runs(&ids, MAX_TREE_NODES)
                .await
                .map_err(job_error)?;
            // The read was cut inside its last run: that run (like any not read) keeps no
            // result rather than one made from part of it.
            if whole.len() > MAX_TREE_NODES
                && let Some(cut) = whole.last().map(|n| n.run_id)
            {
                whole.retain(|n| n.run_id != cut);
            }
            nodes.extend(whole);
        }
        let read: std::collections::HashSet<RunId> = nodes.iter().map(|n| n.run_id).collect();
        for (i, result) in run_results(&runs, &nodes) {
            // An audition's result is made from all of its run (its root is always among
            // its nodes): one whose nodes were not read keeps none.
            if audition_of(&runs[i]).is_none() || read.contains(&runs[i].run_id) {
                runs[i].result = Some(result);
            }
        }
        Ok(runs)
    }

    /// The runs of several dramas at once (GraphQL loads nested `jobs` fields this way): the
    /// newest 100 runs of each, with every node, within what is left of `budget`, the job
    /// nodes one request may read (at most [`MAX_TREE_NODES`] by default, over all its calls).
    /// For one drama whose runs hold more than a whole budget, its newest runs that fit whole.
    ///
    /// # Errors
    /// `TooLarge` when the runs read hold more nodes than the budget has left (ask for fewer
    /// dramas, or in more requests); `Unavailable`.
    pub async fn trees_of_dramas(
        &self,
        caller: &Caller,
        dramas: &[DramaId],
        budget: &mut NodeBudget,
    ) -> Result<HashMap<DramaId, Vec<JobView>>, AppError> {
        let mut out: HashMap<DramaId, Vec<JobView>> =
            dramas.iter().map(|d| (d.clone(), Vec::new())).collect();
        let subjects: Vec<String> = dramas.iter().map(ToString::to_string).collect();
        let left = budget.left;
        let mut nodes = self
            .jobs
            .nodes_of_subjects(&subjects, Some(caller.user.0), RUNS_LISTED, left)
            .await
            .map_err(job_error)?;
        if nodes.len() > left {
            // Several dramas, or one after earlier reads of the request: every further read
            // would start a new allowance, so the request is refused rather than served
            // from more nodes than one request may read.
            if dramas.len() > 1 || left < budget.total {
                budget.left = 0;
                return Err(AppError::TooLarge(format!(
                    "the jobs this request asks for hold more than {} nodes together; ask \
                     for fewer dramas at once, or in more requests",
                    budget.total
                )));
            }
            // One drama: its newest runs that fit whole (the read was cut inside the last).
            if let Some(cut) = nodes.last().map(|n| n.run_id) {
                nodes.retain(|n| n.run_id != cut);
            }
            // Its read took the whole allowance.
            budget.left = 0;
        } else {
            budget.left -= nodes.len();
        }
        // Only a run's root names its subject; its nodes follow it.
        let mut drama_of_run: HashMap<RunId, DramaId> = HashMap::new();
        for node in nodes {
            if node.node_type == NodeType::Run
                && let Some(subject) = node.subject.as_deref()
                && let Ok(drama) = DramaId::parse(subject)
            {
                drama_of_run.insert(node.run_id, drama);
            }
            if let Some(list) = drama_of_run.get(&node.run_id).and_then(|d| out.get_mut(d)) {
                list.push(node);
            }
        }
        // Each run here is whole: its root shows the result `job` shows it with.
        for list in out.values_mut() {
            for (i, result) in run_results(list, list) {
                list[i].result = Some(result);
            }
        }
        Ok(out)
    }

    /// A run's nodes and edges.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn run_tree(&self, caller: &Caller, id: JobId) -> Result<RunTree, AppError> {
        let view = self.job(caller, id).await?;
        self.jobs
            .run_tree(view.run_id)
            .await
            .map_err(job_error)?
            .ok_or_else(|| AppError::not_found(Entity::Job, id))
    }

    /// The direct children of a job.
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn job_children(&self, caller: &Caller, id: JobId) -> Result<Vec<JobView>, AppError> {
        self.job(caller, id).await?;
        self.jobs.children(id, None, 1000).await.map_err(job_error)
    }

    /// A run's events after `after` (for server-sent events and their replay).
    ///
    /// # Errors
    /// `NotFound`.
    pub async fn job_events(
        &self,
        caller: &Caller,
        id: JobId,
        after: Option<EventId>,
        limit: usize,
    ) -> Result<Vec<Event>, AppError> {
        let view = self.job(caller, id).await?;
        let scope = (view.id != view.run_id).then_some(view.id);
        self.jobs
            .events(view.run_id, after, scope, limit)
            .await
            .map_err(job_error)
    }

    /// The result to show for a job: the engine's result, plus the drama id for runs.
    pub fn job_result(view: &JobView) -> Option<Value> {
        view.result.clone()
    }
}
