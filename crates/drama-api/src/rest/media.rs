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
use crate::state::ApiState;

/// How long a redirect to a presigned bucket URL stays valid.
const REDIRECT_EXPIRY: Duration = Duration::from_secs(300);

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/media/{key:.+}", web::get().to(media)).service(
        web::resource("/files/{key:.+}")
            .route(web::get().to(signed_get))
            .route(web::put().to(signed_put)),
    );
}

/// What a `Range` header asks for. Only single ranges are honoured; a header this does not
/// understand (several ranges, another unit, nonsense) is ignored and the whole object is
/// served, as RFC 9110 allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    /// `bytes=start-` or `bytes=start-end`.
    From(ByteRange),
    /// `bytes=-n`: the last `n` bytes.
    Suffix(u64),
}

fn parse_range(value: &str) -> Option<Wanted> {
    let spec = value.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = (start.trim(), end.trim());
    if start.is_empty() {
        return Some(Wanted::Suffix(end.parse().ok()?));
    }
    let start = start.parse().ok()?;
    let end = if end.is_empty() {
        None
    } else {
        Some(end.parse().ok()?)
    };
    // A last byte before the first makes the header invalid, hence ignored.
    if end.is_some_and(|e| e < start) {
        return None;
    }
    Some(Wanted::From(ByteRange { start, end }))
}

/// The object (or the part the `Range` header asks for): 200, 206 with `Content-Range`, or 416
/// with `Content-Range: bytes */{size}` when the range starts past the end.
async fn serve_object(
    assets: &dyn drama_assets::AssetStore,
    req: &HttpRequest,
    key: &ObjectKey,
) -> Result<HttpResponse, ApiError> {
    let wanted = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_range);
    let range = match wanted {
        None => None,
        Some(Wanted::From(range)) => Some(range),
        Some(Wanted::Suffix(n)) => {
            let size = assets.head(key).await.map_err(asset_error)?.size;
            if n == 0 || size == 0 {
                return Ok(unsatisfiable(size));
            }
            Some(ByteRange {
                start: size.saturating_sub(n),
                end: None,
            })
        }
    };
    let object = match range {
        Some(range) => assets.get_range(key, range).await,
        None => assets.get(key).await,
    };
    match object {
        Ok(object) => Ok(object_response(object)),
        Err(drama_assets::AssetError::RangeNotSatisfiable { size, .. }) => Ok(unsatisfiable(size)),
        Err(e) => Err(asset_error(e)),
    }
}

fn asset_error(e: drama_assets::AssetError) -> ApiError {
    ApiError::from(drama_app::AppError::from(e))
}

fn unsatisfiable(size: u64) -> HttpResponse {
    HttpResponse::RangeNotSatisfiable()
        .insert_header((header::CONTENT_RANGE, format!("bytes */{size}")))
        .insert_header((header::ACCEPT_RANGES, "bytes"))
        .json(serde_json::json!({
            "detail": format!("Range not satisfiable: the object has {size} bytes"),
            "code": "range_not_satisfiable",
        }))
}

/// `GET /media/{key}`: an object of the caller, or anyone's with a signature of this server
/// (`?expires=…&sig=…`, as in the `/files/` URLs of the local and memory stores). Buckets
/// answer with a redirect to a short-lived presigned URL; the local and memory stores stream
/// the bytes (with ranges, for seeking).
async fn media(
    state: web::Data<ApiState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let raw = path.into_inner();
    let signed = req.query_string().contains("sig=");
    let key = if signed {
        verify(&state, &req, &raw)?
    } else {
        let caller = state.caller(&req).await?;
        let key =
            ObjectKey::parse(raw.clone()).map_err(|_| ApiError::not_found(Entity::Asset, &raw))?;
        let own = key.as_str().starts_with(&format!("{}/", caller.user));
        if !own && !caller.service {
            return Err(ApiError::not_found(Entity::Asset, &raw));
        }
        key
    };
    let assets = state.app().assets();
    if assets.url_signer().is_none() {
        let presigned = assets
            .presign_get(&key, REDIRECT_EXPIRY)
            .await
            .map_err(asset_error)?;
        return Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, presigned.url))
            .insert_header((header::CACHE_CONTROL, "private, max-age=240"))
            .finish());
    }
    serve_object(assets.as_ref(), &req, &key).await
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
    serve_object(state.app().assets().as_ref(), &req, &key).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers_are_read_as_rfc_9110_says() {
        let from = |start, end| Some(Wanted::From(ByteRange { start, end }));
        assert_eq!(parse_range("bytes=0-99"), from(0, Some(99)));
        assert_eq!(parse_range("bytes=100-"), from(100, None));
        assert_eq!(parse_range("bytes=-500"), Some(Wanted::Suffix(500)));
        assert_eq!(parse_range(" bytes= 5 - 9 "), from(5, Some(9)));
        for ignored in [
            "bytes=9-5",
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
            "0-1",
        ] {
            assert_eq!(parse_range(ignored), None, "{ignored}");
        }
    }
}
