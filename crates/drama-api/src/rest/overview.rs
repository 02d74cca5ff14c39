//! `GET /dramas?view=overview`: a page of dramas with what a list shows of each (cover, title,
//! counts, last change, the latest run), in one drama query and usually one run query.

use actix_web::HttpResponse;
use drama_app::Caller;
use drama_app::pipeline::DramaOverview;
use drama_app::pipeline::spec::job_type_of;
use drama_app::store::PageRequest;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::ApiState;

fn item(o: &DramaOverview) -> Value {
    let d = &o.stored.drama;
    json!({
        "id": d.id,
        "title": d.title,
        "description": d.description,
        "url": d.url,
        "version": o.stored.version,
        "createdAt": o.stored.created_at.timestamp_millis(),
        "updatedAt": o.stored.updated_at.timestamp_millis(),
        "characters": d.characters.len(),
        "episodes": d.episodes.len(),
        "scenes": d.episodes.iter().map(|e| e.scenes.len()).sum::<usize>(),
        "latestRun": o.latest_run.as_ref().map(|r| json!({
            "jobId": r.id.to_string(),
            "kind": r.kind,
            "type": job_type_of(&r.kind, &r.payload).as_str(),
            "status": r.coarse_status().as_str(),
            "state": r.state.as_str(),
            "createdAt": r.created_at.timestamp_millis(),
            "total": r.counts.as_ref().map(|c| c.total),
            "completed": r.counts.as_ref().map(|c| c.completed),
        })),
    })
}

/// Largest overview page: each item is read as a whole drama.
const MAX_OVERVIEW: u32 = 100;

pub(super) async fn page(
    state: &ApiState,
    caller: &Caller,
    request: &PageRequest,
) -> Result<HttpResponse, ApiError> {
    if request.limit > MAX_OVERVIEW {
        return Err(ApiError::validation(
            &drama_domain::DomainError::field(
                "limit",
                format!(
                    "must be at most {MAX_OVERVIEW} with view=overview, got {}",
                    request.limit
                ),
            ),
            "query",
        ));
    }
    let page = state.app().drama_overview(caller, request).await?;
    Ok(HttpResponse::Ok().json(json!({
        "dramas": page.items.iter().map(item).collect::<Vec<_>>(),
        "cursor": page.next.map(|c| c.encode()),
    })))
}
