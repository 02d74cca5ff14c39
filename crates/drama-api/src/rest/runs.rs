//! What a client needs to show a run and to decide on one: `GET /jobs/{id}/graph` (every node
//! of the run with its dependencies, attempts, errors, provider task ids and timings) and
//! `POST /dramas/{id}/estimate` (what a generation would run and cost, without starting it).

use actix_web::{HttpResponse, web};
use drama_app::jobs::{JobView, NodeType};
use drama_app::pipeline::Scope;
use drama_app::pipeline::spec::job_type_of;
use drama_app::store::Entity;
use drama_domain::{AssetId, EpisodeId, SceneId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::generate::options;
use super::jobs::{job_id, record};
use super::openapi::schemas as doc;
use super::{drama_id, path_id};
use crate::endpoint::endpoint;
use crate::error::ApiError;
use crate::state::{ApiState, Auth};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/jobs/{job}/graph").get(graph))
        .service(endpoint("/dramas/{d}/estimate").post(estimate));
}

fn millis(t: Option<chrono::DateTime<chrono::Utc>>) -> Value {
    json!(t.map(|t| t.timestamp_millis()))
}

fn node_type(t: NodeType) -> &'static str {
    match t {
        NodeType::Run => "run",
        NodeType::Group => "group",
        NodeType::Task => "task",
    }
}

/// One node of a run as the graph shows it (no payloads: prompts are read from the drama).
fn node_json(n: &JobView) -> Value {
    let text = |v: Option<&Value>, key: &str| v.and_then(|v| v.get(key)).cloned();
    json!({
        "id": n.id.to_string(),
        "key": n.key,
        "kind": n.kind,
        "nodeType": node_type(n.node_type),
        "type": job_type_of(&n.kind, &n.payload).as_str(),
        "parentId": n.parent_id.map(|p| p.to_string()),
        "state": n.state.as_str(),
        "status": n.coarse_status().as_str(),
        "resourceClass": n.resource_class,
        "attempts": n.attempts,
        "maxAttempts": n.max_attempts,
        "cost": n.cost,
        "dependencies": n.dependencies,
        "error": n.error,
        "cancelRequested": n.cancel_requested,
        "providerTaskId": text(n.checkpoint.as_ref(), "task_id"),
        "assetId": text(Some(&n.payload), "asset").or_else(|| text(n.result.as_ref(), "assetId")),
        "url": text(n.result.as_ref(), "url"),
        "counts": n.counts.as_ref().map(|c| json!({
            "total": c.total, "pending": c.pending, "running": c.running,
            "completed": c.completed, "failed": c.failed, "skipped": c.skipped,
            "cancelled": c.cancelled,
        })),
        "createdAt": n.created_at.timestamp_millis(),
        "startedAt": millis(n.started_at),
        "finishedAt": millis(n.finished_at.filter(|_| n.state.is_settled())),
        "runAfter": millis(n.run_after),
        "updatedAt": n.updated_at.timestamp_millis(),
    })
}

/// `GET /jobs/{id}/graph`: the whole run the job belongs to.
#[utoipa::path(
    get,
    path = "/jobs/{job_id}/graph",
    tag = "Jobs",
    summary = "The whole run a job belongs to: every node with its state, attempts, error, provider task id and timings, and the dependency edges",
    params(
        ("job_id" = String, Path, description = "Id of the run or of any of its nodes."),
    ),
    responses(
        (status = 200, description = "The graph.", body = doc::RunGraph),
        (status = 404, description = "No such job of the caller.", body = doc::Error),
    )
)]
async fn graph(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tree = state.app().run_tree(&caller, job_id(&path)?).await?;
    let root = tree
        .nodes
        .iter()
        .find(|n| n.node_type == NodeType::Run)
        .ok_or_else(|| ApiError::not_found(Entity::Job, path.as_str()))?;
    let mut run = record(root);
    if let Value::Object(map) = &mut run {
        map.insert("budget".into(), json!(root.budget));
    }
    let edges: Vec<Value> = tree
        .edges
        .iter()
        .map(|(dependent, prerequisite)| {
            json!({"from": prerequisite.to_string(), "to": dependent.to_string()})
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "run": run,
        "nodes": tree.nodes.iter().map(node_json).collect::<Vec<_>>(),
        "edges": edges,
    })))
}

/// The scope of the generation to price: the narrowest id given, or the whole drama.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EstimateRequest {
    #[serde(default)]
    force: bool,
    episode_id: Option<String>,
    scene_id: Option<String>,
    asset_id: Option<String>,
}

impl EstimateRequest {
    /// The narrowest scope named (asset, then scene, then episode; none: the whole drama).
    fn scope(&self) -> Result<Scope, ApiError> {
        Ok(match (&self.asset_id, &self.scene_id, &self.episode_id) {
            (Some(a), _, _) => Scope::Asset(path_id::<AssetId>(a, Entity::Asset)?),
            (None, Some(s), _) => Scope::Scene(path_id::<SceneId>(s, Entity::Scene)?),
            (None, None, Some(e)) => Scope::Episode(path_id::<EpisodeId>(e, Entity::Episode)?),
            (None, None, None) => Scope::Drama,
        })
    }
}

/// `POST /dramas/{id}/estimate` `{"force", "episodeId" | "sceneId" | "assetId"}`: the tasks
/// and credits the matching `generate` call would start and debit now, and what the scenes
/// it writes are expected to add (and can add at most).
#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/estimate",
    tag = "Generation",
    summary = "What a generation would run and debit now, without starting it",
    params(
        ("drama_id" = String, Path, description = "Drama id."),
    ),
    request_body(content = Option<doc::EstimateRequest>),
    responses(
        (status = 200, description = "The estimate.", body = doc::Estimate),
        (status = 404, description = "No such drama, or no such part of it.", body = doc::Error),
        (status = 422, description = "A malformed body.", body = doc::ValidationError),
        doc::Malformed,
        doc::TooLarge,
    )
)]
async fn estimate(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    let request: EstimateRequest = options(&body)?;
    let estimate = state
        .app()
        .estimate(&caller, &id, request.scope()?, request.force)
        .await?;
    let by_kind: serde_json::Map<String, Value> = estimate
        .by_kind
        .iter()
        .map(|(kind, k)| (kind.clone(), json!({"tasks": k.tasks, "cost": k.cost})))
        .collect();
    Ok(HttpResponse::Ok().json(json!({
        "dramaId": id,
        "tasks": estimate.tasks,
        "cost": estimate.cost,
        "expectedCost": estimate.expected_cost,
        "maxCost": estimate.max_cost,
        "episodesToWrite": estimate.episodes_to_write,
        "scenesToWrite": estimate.scenes_to_write,
        "scenesPerEpisode": estimate.scenes_per_episode,
        "byKind": by_kind,
    })))
}
