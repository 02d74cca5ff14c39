//! REST routes: the old server's paths and shapes, with its bugs fixed.

mod delivery;
mod dramas;
mod events;
mod generate;
pub(crate) mod health;
mod jobs;
mod keys;
mod library;
mod me;
mod media;
mod models;
mod nested;
pub(crate) mod openapi;
mod overview;
mod query;
mod runs;
mod streaming;
pub(crate) mod upload_guard;

use actix_web::http::header::{self, HeaderMap};
use actix_web::{HttpResponse, web};
use drama_app::Caller;
use drama_app::store::{StoredDrama, Version};
use drama_domain::{DomainError, Drama, DramaId, EntityPatch};
use serde_json::Value;

use crate::error::ApiError;
use crate::state::ApiState;

/// Registers every REST route.
pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    health::configure(cfg);
    dramas::configure(cfg);
    nested::configure(cfg);
    library::configure(cfg);
    media::configure(cfg);
    models::configure(cfg);
    generate::configure(cfg);
    jobs::configure(cfg);
    runs::configure(cfg);
    keys::configure(cfg);
    me::configure(cfg);
}

/// Parses a path id, answering 404 like a missing entity when it cannot be one.
pub(crate) fn path_id<T: std::str::FromStr>(
    raw: &str,
    entity: drama_app::store::Entity,
) -> Result<T, ApiError> {
    raw.parse().map_err(|_| ApiError::not_found(entity, raw))
}

pub(crate) fn drama_id(raw: &str) -> Result<DramaId, ApiError> {
    path_id(raw, drama_app::store::Entity::Drama)
}

/// The version a write is based on: `If-Match: "3"` or a `version` field in the body. A body
/// `version` is checked even when `If-Match` is sent (the header wins), so a malformed one is
/// refused either way.
pub(crate) fn expected_version(
    headers: &HeaderMap,
    body: Option<&Value>,
) -> Result<Option<Version>, ApiError> {
    let in_body = match body.and_then(|b| b.get("version")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            drama_domain::lax::as_i64(v)
                .filter(|version| *version >= 0)
                .ok_or_else(|| {
                    ApiError::validation(
                        &DomainError::field("version", "must be an integer, at least 0"),
                        "body",
                    )
                })?,
        ),
    };
    if let Some(value) = headers.get(header::IF_MATCH) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::bad_request("If-Match is not text"))?
            .trim();
        if text == "*" {
            return Ok(None);
        }
        let unquoted = text.trim_start_matches("W/").trim_matches('"');
        return unquoted.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "If-Match must be a drama version as sent in ETag, e.g. \"3\"; got {text}"
            ))
        });
    }
    Ok(in_body)
}

/// A PATCH body made into the patch of the route's part by `parse`, and the version the client
/// expects (`If-Match` or the body's `version`).
pub(crate) fn patch_body(
    headers: &HeaderMap,
    bytes: &[u8],
    parse: impl FnOnce(Value) -> Result<EntityPatch, DomainError>,
) -> Result<(EntityPatch, Option<Version>), ApiError> {
    let body = json_body(bytes)?;
    metadata_is_object(&body, "metadata")?;
    let expected = expected_version(headers, Some(&body))?;
    let patch = parse(body).map_err(|e| ApiError::validation(&e, "body"))?;
    Ok((patch, expected))
}

/// The caller's drama named by a raw path id.
pub(crate) async fn load_drama(
    state: &ApiState,
    caller: &Caller,
    raw: &str,
) -> Result<StoredDrama, ApiError> {
    Ok(state.app().get_drama(caller, None, &drama_id(raw)?).await?)
}

/// A read of the caller's drama answered with what `part` picks out of it, the drama's version
/// as its ETag.
pub(crate) async fn read_part<T: serde::Serialize>(
    state: &ApiState,
    caller: &Caller,
    raw: &str,
    part: impl for<'d> FnOnce(&'d Drama) -> Result<&'d T, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let stored = load_drama(state, caller, raw).await?;
    Ok(with_etag(stored.version, part(&stored.drama)?))
}

/// Applies a patch made by [`patch_body`] to the caller's drama `drama` and answers with what
/// `part` picks out of the drama as committed, the drama's version as its ETag.
pub(crate) async fn commit<T: serde::Serialize>(
    state: &ApiState,
    caller: &Caller,
    drama: &DramaId,
    (patch, expected): (EntityPatch, Option<Version>),
    part: impl for<'d> FnOnce(&'d Drama) -> Result<&'d T, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let stored = state.app().patch(caller, drama, &patch, expected).await?;
    Ok(with_etag(stored.version, part(&stored.drama)?))
}

/// `metadata` of an entity in a request: a JSON object or `null`, as the document says. The
/// model keeps any JSON there (stored documents are read as they are), so the rule is applied
/// to what clients send.
pub(crate) fn metadata_is_object(entity: &Value, path: &str) -> Result<(), ApiError> {
    match entity.get("metadata") {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(_) => Err(ApiError::validation(
            &DomainError::field(path, "must be an object or null"),
            "body",
        )),
    }
}

/// Every `metadata` of a complete drama in a request (the drama's and those of its characters,
/// episodes, scenes and assets at every level), checked as [`metadata_is_object`] does.
pub(crate) fn drama_metadata_are_objects(drama: &Value) -> Result<(), ApiError> {
    fn items<'v>(v: &'v Value, key: &str) -> &'v [Value] {
        v.get(key)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
    /// The entity's own `metadata` and its assets'.
    fn with_assets(entity: &Value, at: &str) -> Result<(), ApiError> {
        metadata_is_object(entity, &format!("{at}.metadata"))?;
        for (a, asset) in items(entity, "assets").iter().enumerate() {
            metadata_is_object(asset, &format!("{at}.assets[{a}].metadata"))?;
        }
        Ok(())
    }
    with_assets(drama, "drama")?;
    for (c, character) in items(drama, "characters").iter().enumerate() {
        with_assets(character, &format!("drama.characters[{c}]"))?;
    }
    for (e, episode) in items(drama, "episodes").iter().enumerate() {
        let at = format!("drama.episodes[{e}]");
        with_assets(episode, &at)?;
        for (s, scene) in items(episode, "scenes").iter().enumerate() {
            with_assets(scene, &format!("{at}.scenes[{s}]"))?;
        }
    }
    Ok(())
}

/// Parses a JSON body, answering 400 when it is not JSON at all.
pub(crate) fn json_body(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("Invalid JSON body: {e}")))
}

/// A 200 JSON answer carrying the drama's version as its ETag.
pub(crate) fn with_etag(version: Version, body: &impl serde::Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::ETAG, format!("\"{version}\"")))
        .json(body)
}
