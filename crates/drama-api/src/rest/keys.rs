//! `/api-keys`: the signed-in user's own API keys (list, create, revoke). Owner-scoped: the
//! owner is always the caller; another user's key id answers 404 like a missing one.

use actix_web::{HttpResponse, web};
use drama_app::NewKey;
use drama_app::store::Entity;
use drama_domain::ApiKeyMeta;
use serde::Deserialize;
use serde_json::{Value, json};

use super::generate::options;
use super::openapi::schemas as doc;
use crate::endpoint::endpoint;
use crate::error::ApiError;
use crate::state::{ApiState, Auth};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/api-keys").get(list).post(create))
        .service(endpoint("/api-keys/{key_id}").delete(revoke));
}

/// A key as listed: never its secret.
fn key_json(meta: &ApiKeyMeta) -> Value {
    let now = chrono::Utc::now();
    json!({
        "id": meta.id,
        "name": meta.name,
        "prefix": meta.prefix,
        "scopes": meta.scopes,
        "createdAt": meta.created_at.timestamp_millis(),
        "lastUsedAt": meta.last_used_at.map(|t| t.timestamp_millis()),
        "expiresAt": meta.expires_at.map(|t| t.timestamp_millis()),
        "revokedAt": meta.revoked_at.map(|t| t.timestamp_millis()),
        "madeBy": meta.made_by,
        "active": meta.is_usable_at(now),
    })
}

#[utoipa::path(
    get,
    path = "/api-keys",
    tag = "Account",
    summary = "The caller's API keys, newest first (never their secrets)",
    description = "The usable keys and those revoked or expired in the last 30 days, at most 200 (the usable ones kept when there are more).",
    responses(
        (status = 200, description = "The keys.", body = inline(doc::ApiKeyList)),
    )
)]
async fn list(state: web::Data<ApiState>, Auth(caller): Auth) -> Result<HttpResponse, ApiError> {
    let keys = state.app().api_keys(&caller).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "keys": keys.iter().map(key_json).collect::<Vec<_>>() })))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = NewApiKey)]
pub(crate) struct CreateKey {
    /// Not blank; no control characters inside the name (surrounding whitespace is trimmed).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r#"^[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f](?:[^\u0000-\u001f\u007f-\u009f]*[^\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\u0000-\u001f\u007f-\u009f])?[\t\n\u000b\u000c\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$"#
    )]
    name: String,
    #[serde(default, deserialize_with = "drama_domain::lax::option_int")]
    #[schema(minimum = 1, maximum = 3650)]
    expires_in_days: Option<u32>,
}

/// `POST /api-keys` `{"name", "expiresInDays"?}` → 201 with the key's secret, shown once.
#[utoipa::path(
    post,
    path = "/api-keys",
    tag = "Account",
    summary = "Create an API key for the caller; the secret is in this answer only",
    request_body = doc::NewApiKey,
    responses(
        (status = 201, description = "The key, with its secret.", body = doc::CreatedApiKey),
        (status = 422, description = "A bad name or lifetime, or 50 usable keys already.", body = doc::ValidationError),
        (status = 403, description = "A legacy key or the service key (`forbidden`), or 100 keys made in the last 24 hours, revoked ones included (`quota_exceeded`).", body = doc::Error),
        doc::Malformed,
        doc::TooLarge,
    )
)]
async fn create(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let request: CreateKey = options(&body)?;
    let created = state
        .app()
        .create_api_key(
            &caller,
            NewKey {
                name: request.name,
                expires_in_days: request.expires_in_days,
            },
        )
        .await?;
    let mut body = key_json(&created.meta);
    if let Value::Object(map) = &mut body {
        map.insert("key".into(), json!(created.key));
    }
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(body))
}

/// `DELETE /api-keys/{id}`: revokes the key at once in this process (other processes stop
/// accepting it when their short authentication cache expires).
#[utoipa::path(
    delete,
    path = "/api-keys/{key_id}",
    tag = "Account",
    summary = "Revoke one of the caller's keys (at once in this process, within 30 s elsewhere)",
    description = "Also revokes every key made with it, down the line. A request made with an API key may revoke only that key and the keys made with it.",
    params(
        ("key_id" = String, Path, description = "Key id (UUID)."),
    ),
    responses(
        (status = 200, description = "The revoked key.", body = doc::ApiKey),
        (status = 404, description = "No such key of the caller; for a caller with an API key, no such key in that key's line (itself and the keys made with it).", body = doc::Error),
        doc::Malformed,
    )
)]
async fn revoke(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::path_id(&path, Entity::ApiKey)?;
    let meta = state.app().revoke_api_key(&caller, id).await?;
    // The keys made with it went too: every cached key of the owner is asked about again.
    state.auth.forget_keys_of(meta.owner);
    Ok(HttpResponse::Ok().json(key_json(&meta)))
}
