//! Object bytes over HTTP: `/media/{key}` for callers (their own objects), and `/files/{key}`
//! for URLs signed by the local and in-memory stores.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use drama_assets::{ByteRange, ObjectKey, SignedRequest};
use drama_dal::Entity;
use futures::StreamExt as _;

use super::streaming::object_response;
use crate::error::ApiError;
use crate::state::{ApiState, Auth};

/// How long a redirect to a presigned bucket URL stays valid.
const REDIRECT_EXPIRY: Duration = Duration::from_secs(300);

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/media/{key:.+}", web::get().to(media)).service(
        web::resource("/files/{key:.+}")
            .route(web::get().to(signed_get))
            .route(web::put().to(signed_put)),
    );
}

fn parse_range(req: &HttpRequest) -> Option<ByteRange> {
    let value = req.headers().get(header::RANGE)?.to_str().ok()?;
    let spec = value.strip_prefix("bytes=")?;
    let (start, end) = spec.split_once('-')?;
    Some(ByteRange {
        start: start.parse().ok()?,
        end: if end.is_empty() {
            None
        } else {
            Some(end.parse().ok()?)
        },
    })
}

/// `GET /media/{key}`: an object of the caller. Buckets answer with a redirect to a short-lived
/// presigned URL; the local and memory stores stream the bytes (with ranges, for seeking).
async fn media(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let key =
        ObjectKey::parse(raw.clone()).map_err(|_| ApiError::not_found(Entity::Asset, &raw))?;
    let own = key.as_str().starts_with(&format!("{}/", caller.user));
    if !own && !caller.service {
        return Err(ApiError::not_found(Entity::Asset, &raw));
    }
    let assets = state.app().assets();
    if assets.url_signer().is_none() {
        let presigned = assets
            .presign_get(&key, REDIRECT_EXPIRY)
            .await
            .map_err(|e| ApiError::from(drama_app::AppError::from(e)))?;
        return Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, presigned.url))
            .insert_header((header::CACHE_CONTROL, "private, max-age=240"))
            .finish());
    }
    let object = match parse_range(&req) {
        Some(range) => assets.get_range(&key, range).await,
        None => assets.get(&key).await,
    }
    .map_err(|e| ApiError::from(drama_app::AppError::from(e)))?;
    Ok(object_response(object))
}

fn verify(state: &ApiState, req: &HttpRequest, key: &str) -> Result<ObjectKey, ApiError> {
    let signer = state
        .app()
        .assets()
        .url_signer()
        .ok_or_else(|| ApiError::not_found(Entity::Asset, key))?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    signer
        .verify(&SignedRequest {
            method: req.method().as_str(),
            key,
            query: req.query_string(),
            content_type,
        })
        .map_err(|e| {
            ApiError::message(
                actix_web::http::StatusCode::FORBIDDEN,
                "forbidden",
                e.to_string(),
            )
        })
}

/// `GET /files/{key}?expires&sig`: a signed download; the signature is the credential.
async fn signed_get(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let key = verify(&state, &req, &path)?;
    let assets = state.app().assets();
    let object = match parse_range(&req) {
        Some(range) => assets.get_range(&key, range).await,
        None => assets.get(&key).await,
    }
    .map_err(|e| ApiError::from(drama_app::AppError::from(e)))?;
    Ok(object_response(object))
}

/// `PUT /files/{key}?expires&sig`: a signed upload with the exact content type it was signed for.
async fn signed_put(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let key = verify(&state, &req, &path)?;
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_owned();
    let length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    // actix payloads are not `Send`; forward them through a channel to the store.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let store = state.app().assets().clone();
    let upload_key = key.clone();
    let upload = tokio::spawn(async move {
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).boxed();
        store
            .put_stream(&upload_key, stream, &content_type, length)
            .await
    });
    let mut body = body;
    while let Some(chunk) = body.next().await {
        let item = chunk.map_err(|e| std::io::Error::other(e.to_string()));
        let failed = item.is_err();
        if tx.send(item).await.is_err() || failed {
            break;
        }
    }
    drop(tx);
    let info = upload
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::from(drama_app::AppError::from(e)))?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "key": info.key.as_str(), "size": info.size, "content_type": info.content_type,
        "checksum": info.checksum,
    })))
}
