//! Jobs: the old server's `JobStatusRecord` per drama, and the job routes it lacked (a job
//! with its children, cancel, resume, and its events as Server-Sent Events).

use actix_web::{HttpResponse, web};
use drama_app::jobs::{JobId, JobView};
use drama_app::pipeline::spec::job_type_of;
use drama_app::store::Entity;
use serde_json::{Value, json};

use super::drama_id;
use super::openapi::schemas as doc;
use crate::endpoint::endpoint;
use crate::error::ApiError;
use crate::state::{ApiState, Auth};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/dramas/{d}/jobs").get(jobs_of_drama))
        .service(endpoint("/dramas/{d}/jobs/{job}").get(job_of_drama))
        .service(endpoint("/jobs/{job}").get(job))
        .service(endpoint("/jobs/{job}/cancel").post(cancel))
        .service(endpoint("/jobs/{job}/resume").post(resume))
        .service(endpoint("/jobs/{job}/events").get(super::events::events))
        .service(endpoint("/dramas/{d}/events").get(super::events::drama_events));
}

pub(crate) fn job_id(raw: &str) -> Result<JobId, ApiError> {
    super::path_id(raw, Entity::Job)
}

fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// The old server's `JobStatusRecord`, in its field order, with the engine's extra facts.
pub(crate) fn record(view: &JobView) -> Value {
    let mut record = json!({
        "jobId": view.id.to_string(),
        "type": job_type_of(&view.kind, &view.payload).as_str(),
        "status": view.coarse_status().as_str(),
        "dramaId": view.subject,
        "createdAt": millis(view.created_at),
        "startedAt": view.started_at.map(millis),
        "completedAt": view.finished_at.filter(|_| view.state.is_settled()).map(millis),
        "error": view.error,
        "result": view.result,
    });
    if let Value::Object(map) = &mut record {
        map.insert("kind".into(), json!(view.kind));
        map.insert("key".into(), json!(view.key));
        map.insert("state".into(), json!(view.state.as_str()));
        map.insert(
            "parentJobId".into(),
            json!(view.parent_id.map(|p| p.to_string())),
        );
        map.insert("runId".into(), json!(view.run_id.to_string()));
        map.insert("attempts".into(), json!(view.attempts));
        if let Some(counts) = &view.counts {
            map.insert(
                "counts".into(),
                json!({
                    "total": counts.total, "pending": counts.pending, "running": counts.running,
                    "completed": counts.completed, "failed": counts.failed,
                    "skipped": counts.skipped, "cancelled": counts.cancelled,
                }),
            );
        }
        if let Some(costs) = &view.costs {
            map.insert(
                "cost".into(),
                json!({ "total": costs.total, "charged": costs.charged,
                        "refundable": costs.refundable, "refunded": costs.refunded }),
            );
        }
    }
    record
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/jobs",
    tag = "Jobs",
    summary = "The jobs of a drama (runs), in creation order",
    params(doc::DramaPath),
    responses(
        (status = 200, description = "`{\"jobs\": [JobStatusRecord]}`"),
        (status = 404, description = "No such entity, or not the caller's.", body = doc::Error),
    )
)]
async fn jobs_of_drama(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let drama = drama_id(&path)?;
    let mut runs = state.app().jobs_of_drama(&caller, &drama, false).await?;
    // Creation order, as the old server listed them.
    runs.reverse();
    let jobs: Vec<Value> = runs.iter().map(record).collect();
    Ok(HttpResponse::Ok().json(json!({ "jobs": jobs })))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/jobs/{job_id}",
    tag = "Jobs",
    summary = "A job of a drama",
    params(
        doc::DramaPath,
        ("job_id" = String, Path, description = "Job id (UUID)."),
    ),
    responses(
        (status = 200, description = "The record.", body = doc::JobStatusRecord),
        (status = 404, description = "No such job of that drama.", body = doc::Error),
    )
)]
async fn job_of_drama(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, j) = path.into_inner();
    let view = state
        .app()
        .job_of_drama(&caller, &drama_id(&d)?, job_id(&j)?)
        .await?;
    Ok(HttpResponse::Ok().json(record(&view)))
}

/// `GET /jobs/{id}`: the job, its counts and its direct children.
#[utoipa::path(
    get,
    path = "/jobs/{job_id}",
    tag = "Jobs",
    summary = "A job with its counts and direct children",
    params(doc::JobPath),
    responses(
        (status = 200, description = "The record with `children`.", body = doc::JobStatusRecord),
        (status = 404, description = "No such job of the caller.", body = doc::Error),
    )
)]
async fn job(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path)?;
    let view = state.app().job(&caller, id).await?;
    let children = state.app().job_children(&caller, id).await?;
    let mut body = record(&view);
    if let Value::Object(map) = &mut body {
        map.insert(
            "children".into(),
            Value::Array(children.iter().map(record).collect()),
        );
    }
    Ok(HttpResponse::Ok().json(body))
}

#[utoipa::path(
    post,
    path = "/jobs/{job_id}/cancel",
    tag = "Jobs",
    summary = "Cancel a run or subtree: nothing new starts, running handlers stop",
    params(doc::JobPath),
    responses(doc::JobChanged)
)]
async fn cancel(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = state.app().cancel_job(&caller, job_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(record(&view)))
}

#[utoipa::path(
    post,
    path = "/jobs/{job_id}/resume",
    tag = "Jobs",
    summary = "Re-queue what failed, was skipped or cancelled (never what completed)",
    params(doc::JobPath),
    responses(doc::JobResumed)
)]
async fn resume(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let view = state.app().resume_job(&caller, job_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(record(&view)))
}
