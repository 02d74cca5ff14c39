//! Reading runs and jobs as their owner sees them: one job, the runs of a drama (or of several
//! at once), a run's tree, a job's children and a run's events. Kept apart from the use cases
//! that start runs, which only wait on them through [`App::job`].

use std::collections::HashMap;

use drama_dal::Entity;
use drama_domain::DramaId;
use drama_jobs::{Event, EventId, JobId, JobView, NodeType, RunFilter, RunId, RunTree};
use serde_json::{Value, json};

use super::usecases::job_error;
use crate::{App, AppError, Caller};

/// Most job nodes one request reads for the nested `jobs` of a page of dramas: a drama's run
/// holds a few hundred nodes, so this covers a page of busy dramas while keeping what one
/// GraphQL request can load bounded (a node carries its payload, prompts included).
pub const MAX_TREE_NODES: usize = 20_000;

/// The character and asset of an audition run (its payload names them; `App::audition`).
fn audition_of(run: &JobView) -> Option<(&str, &str)> {
    Some((
        run.payload["characterId"].as_str()?,
        run.payload["assetId"].as_str()?,
    ))
}

impl App {
    /// A job of the caller (a run or any node of one).
    ///
    /// # Errors
    /// `NotFound` (also for another user's job); `Unavailable`.
    pub async fn job(&self, caller: &Caller, id: JobId) -> Result<JobView, AppError> {
        let mut view = match self.jobs.job(id).await.map_err(job_error)? {
            Some(view) if view.owner == caller.user.0 => view,
            _ => return Err(AppError::not_found(Entity::Job, id)),
        };
        // A settled run shows what it produced, as the old server's jobs did: the result of
        // its one task (a critique's feedback, a written drama's id), or the drama it is about.
        if view.result.is_none() && view.id == view.run_id && view.state.is_settled() {
            view.result = match audition_of(&view) {
                Some((character, asset)) => {
                    Some(self.audition_result(&view, character, asset).await?)
                }
                None => {
                    let children = self.jobs.children(id, None, 2).await.map_err(job_error)?;
                    match children.as_slice() {
                        [only] if only.result.is_some() => only.result.clone(),
                        _ => view.subject.as_ref().map(|d| json!({ "dramaId": d })),
                    }
                }
            };
        }
        Ok(view)
    }

    /// An audition run's result as the old server's audition job had it: the drama, the
    /// character and the url of its video (null when the video task did not complete). The
    /// run holds the video task and at most a portrait before it, so its tree is small.
    async fn audition_result(
        &self,
        run: &JobView,
        character: &str,
        asset: &str,
    ) -> Result<Value, AppError> {
        let tree = self.jobs.run_tree(run.run_id).await.map_err(job_error)?;
        let url = tree
            .iter()
            .flat_map(|t| &t.nodes)
            .filter_map(|t| t.result.as_ref())
            // A video made for an asset deleted meanwhile was not applied (its object goes to
            // the sweeper): it is not the character's video.
            .find(|r| r["assetId"] == asset && r["applied"] != false)
            .and_then(|r| r.get("url").cloned());
        Ok(json!({
            "dramaId": run.subject,
            "characterId": character,
            "videoUrl": url,
        }))
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
        self.jobs
            .list_runs(&RunFilter {
                owner: Some(caller.user.0),
                subject: Some(drama.to_string()),
                active_only,
                limit: 100,
            })
            .await
            .map_err(job_error)
    }

    /// The runs of several dramas at once (GraphQL loads nested `jobs` fields this way): the
    /// newest 100 runs of each, with every node, at most [`MAX_TREE_NODES`] nodes in all. For
    /// one drama whose runs hold more, its newest runs that fit whole.
    ///
    /// # Errors
    /// `TooLarge` when the runs of several dramas hold more nodes than that (ask for fewer
    /// dramas); `Unavailable`.
    pub async fn trees_of_dramas(
        &self,
        caller: &Caller,
        dramas: &[DramaId],
    ) -> Result<HashMap<DramaId, Vec<JobView>>, AppError> {
        let mut out: HashMap<DramaId, Vec<JobView>> =
            dramas.iter().map(|d| (d.clone(), Vec::new())).collect();
        let subjects: Vec<String> = dramas.iter().map(ToString::to_string).collect();
        let mut nodes = self
            .jobs
            .nodes_of_subjects(&subjects, Some(caller.user.0), 100, MAX_TREE_NODES)
            .await
            .map_err(job_error)?;
        if nodes.len() > MAX_TREE_NODES {
            if dramas.len() > 1 {
                return Err(AppError::TooLarge(format!(
                    "the jobs of these {} dramas hold more than {MAX_TREE_NODES} nodes; ask \
                     for fewer dramas at once, or read one drama's jobs",
                    dramas.len()
                )));
            }
            // One drama: its newest runs that fit whole (the read was cut inside the last).
            if let Some(cut) = nodes.last().map(|n| n.run_id) {
                nodes.retain(|n| n.run_id != cut);
            }
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
