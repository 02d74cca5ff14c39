use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use drama_dal::{Cursor, PageRequest};
use drama_domain::{Drama, DramaPatch};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{drama_id, expected_version, json_body, with_etag};
use crate::error::ApiError;
use crate::state::{ApiState, Auth};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/dramas")
            .route(web::get().to(list))
            .route(web::post().to(create)),
    )
    .service(
        web::resource("/dramas/{drama_id}")
            .route(web::get().to(get))
            .route(web::patch().to(patch))
            .route(web::delete().to(delete)),
    );
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /dramas?limit&cursor`: summaries, newest first, with an opaque keyset cursor.
async fn list(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    let after = query
        .cursor
        .as_deref()
        .filter(|c| !c.is_empty())
        .map(Cursor::decode)
        .transpose()
        .map_err(|e| ApiError::from(drama_app::AppError::from(e)))?;
    let page = state
        .app()
        .list_summaries(
            &caller,
            None,
            &PageRequest {
                limit,
                after,
                offset: 0,
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "dramas": page.items,
        "cursor": page.next.map(|c| c.encode()),
    })))
}

/// `POST /dramas`: `{"drama": {…}}` stores a complete drama (201).
async fn create(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let body = json_body(&body)?;
    match body {
        Value::Object(mut map) if map.contains_key("drama") && !map.contains_key("premise") => {
            let drama = Drama::from_value(map.remove("drama").unwrap_or(Value::Null))
                .map_err(|e| ApiError::validation(&e.within("drama"), "body"))?;
            let stored = state.app().create_drama(&caller, &drama).await?;
            Ok(HttpResponse::Created()
                .insert_header(("ETag", format!("\"{}\"", stored.version)))
                .json(&stored.drama))
        }
        _ => Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "Must provide either 'premise' (async mode) or 'drama' (sync mode)",
        )),
    }
}

/// `GET /dramas/{id}`.
async fn get(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    let stored = state.app().get_drama(&caller, None, &id).await?;
    Ok(with_etag(stored.version, &stored.drama))
}

/// `PATCH /dramas/{id}`: title, description, premise, metadata.
async fn patch(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    let body = json_body(&body)?;
    let expected = expected_version(req.headers(), Some(&body))?;
    let patch = DramaPatch::from_value(body).map_err(|e| ApiError::validation(&e, "body"))?;
    let stored = state
        .app()
        .patch_drama(&caller, &id, &patch, expected)
        .await?;
    Ok(with_etag(stored.version, &stored.drama))
}

/// `DELETE /dramas/{id}`: the drama, its rows and its objects.
async fn delete(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    state.app().delete_drama(&caller, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"success": true})))
}
