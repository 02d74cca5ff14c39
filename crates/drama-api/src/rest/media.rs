//! Object bytes over HTTP: `/media/{key}` for callers (their own objects), and `/files/{key}`
//! for URLs signed by the local and in-memory stores.

use std::time::Duration;

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use drama_app::media::{ObjectKey, SignedAccess, SignedRequest};
use drama_app::store::Entity;
use futures::StreamExt as _;

use super::delivery::Delivery;
use super::openapi::schemas as doc;
use crate::endpoint::endpoint;
use crate::error::{ApiError, ErrorCode};
use crate::headers::header_text;
use crate::state::ApiState;

/// How long a redirect to a presigned bucket URL stays valid.
const REDIRECT_EXPIRY: Duration = Duration::from_secs(300);

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/media/{key:.+}").get(media).head(media_head))
        .service(
            endpoint("/files/{key:.+}")
                .get(signed_get)
                .head(signed_head)
                .put(signed_put),
        );
}

/// `GET`/`HEAD /media/{key}`: an object of the caller, or anyone's with a signature of this
/// server (`?expires=…&sig=…`, as in the `/files/` URLs of the local and memory stores).
/// Buckets answer a `GET` with a redirect to a short-lived presigned URL (presigned for `GET`
/// only, so a `HEAD` is answered here from the object's metadata); the local and memory
/// stores stream the bytes (with ranges, for seeking).
#[utoipa::path(
    get,
    path = "/media/{key}",
    tag = "Asset library",
    summary = "An object of the caller (buckets redirect to a short-lived signed URL)",
    params(doc::ObjectPath),
    responses(
        (status = 200, description = "The bytes (ranges and conditional requests supported)."),
        (status = 302, description = "Redirect to a presigned URL."),
        (status = 404, description = "Not the caller's object.", body = doc::Error),
        (status = 206, description = "The range asked for, with `Content-Range`."),
        doc::NotModified,
        doc::RangePastEnd,
    )
)]
async fn media(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let signed = req.query_string().contains("sig=");
    let (key, signed_until) = if signed {
        let (key, until) = verify(&state, &req, &raw)?;
        (key, Some(until))
    } else {
        let caller = state.caller(&req).await?;
        let key =
            ObjectKey::parse(raw.clone()).map_err(|_| ApiError::not_found(Entity::Asset, &raw))?;
        let own = key.as_str().starts_with(&format!("{}/", caller.user));
        if !own && !caller.service {
            return Err(ApiError::not_found(Entity::Asset, &raw));
        }
        (key, None)
    };
    let app = state.app();
    if !app.signs_media_urls() && req.method() == Method::GET {
        let presigned = app.presigned_media_url(&key, REDIRECT_EXPIRY).await?;
        return Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, presigned))
            .insert_header((header::CACHE_CONTROL, "private, max-age=240"))
            .finish());
    }
    Delivery {
        app,
        key: &key,
        signed_until,
    }
    .answer(&req)
    .await
}

/// The key a signed request may read or write, and when its URL expires.
fn verify(
    state: &ApiState,
    req: &HttpRequest,
    key: &str,
) -> Result<(ObjectKey, DateTime<Utc>), ApiError> {
    let content_type = header_text(req.headers(), header::CONTENT_TYPE);
    match state.app().check_media_signature(&SignedRequest {
        method: req.method().as_str(),
        key,
        query: req.query_string(),
        content_type,
    }) {
        SignedAccess::Granted { key, until } => Ok((key, until)),
        SignedAccess::Refused(reason) => Err(ApiError::message(ErrorCode::Forbidden, reason)),
        SignedAccess::NotSigned => Err(ApiError::not_found(Entity::Asset, key)),
    }
}

/// `HEAD /media/{key}`: [`media`] without the body.
#[utoipa::path(
    head,
    path = "/media/{key}",
    tag = "Asset library",
    summary = "The headers of the object's GET, without the body (buckets included: answered from the object's metadata)",
    params(doc::ObjectPath),
    responses(
        (status = 200, description = "The headers a GET would answer (Content-Length, Content-Type, Accept-Ranges, ETag, Last-Modified), no body."),
        (status = 404, description = "Not the caller's object.", body = doc::Error),
        (status = 206, description = "With `Range`: the headers of that range."),
        doc::NotModified,
        doc::RangePastEnd,
    )
)]
async fn media_head(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    media(state, req, path).await
}

/// `HEAD /files/{key}?expires&sig`: [`signed_get`] without the body.
#[utoipa::path(
    head,
    path = "/files/{key}",
    tag = "Asset library",
    summary = "The headers of a signed download, without the body (the GET URL's signature is good for HEAD)",
    params(doc::ObjectPath, doc::Signature),
    responses(
        (status = 200, description = "The headers a GET would answer (Content-Length, Content-Type, Accept-Ranges, ETag, Last-Modified), no body."),
        (status = 403, description = "Bad or expired signature.", body = doc::Error),
        (status = 206, description = "With `Range`: the headers of that range."),
        doc::NotModified,
        doc::RangePastEnd,
    ),
    security(())
)]
async fn signed_head(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    signed_get(state, req, path).await
}

/// `GET`/`HEAD /files/{key}?expires&sig`: a signed download; the signature is the credential.
#[utoipa::path(
    get,
    path = "/files/{key}",
    tag = "Asset library",
    summary = "Download through a URL signed by the local or memory store",
    params(doc::ObjectPath, doc::Signature),
    responses(
        (status = 200, description = "The bytes, cached privately for the rest of the signature's life (ranges and conditional requests supported)."),
        (status = 403, description = "Bad or expired signature.", body = doc::Error),
        (status = 206, description = "The range asked for, with `Content-Range`."),
        doc::NotModified,
        doc::RangePastEnd,
    ),
    security(())
)]
async fn signed_get(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (key, until) = verify(&state, &req, &path)?;
    Delivery {
        app: state.app(),
        key: &key,
        signed_until: Some(until),
    }
    .answer(&req)
    .await
}

/// `PUT /files/{key}?expires&sig`: a signed upload with the exact content type it was signed for.
#[utoipa::path(
    put,
    path = "/files/{key}",
    tag = "Asset library",
    summary = "Upload through a signed URL (exact Content-Type)",
    params(doc::ObjectPath, doc::Signature),
    responses(
        (status = 200, description = "The stored object's facts."),
        (status = 403, description = "Bad or expired signature, or another Content-Type.", body = doc::Error),
    ),
    security(())
)]
async fn signed_put(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (key, _) = verify(&state, &req, &path)?;
    let content_type = header_text(req.headers(), header::CONTENT_TYPE)
        .unwrap_or("application/octet-stream")
        .to_owned();
    let length = header_text(req.headers(), header::CONTENT_LENGTH).and_then(|v| v.parse().ok());
    // actix payloads are not `Send`; forward them through a channel to the store.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    let app = state.app().clone();
    let upload_key = key.clone();
    let upload = tokio::spawn(async move {
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx).boxed();
        app.write_object(&upload_key, stream, &content_type, length)
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
    let info = upload.await.map_err(ApiError::internal)??;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "key": info.key.as_str(), "size": info.size, "content_type": info.content_type,
        "checksum": info.checksum,
    })))
}
