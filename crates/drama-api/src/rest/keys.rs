//! `/api-keys`: the signed-in user's own API keys (list, create, revoke). Owner-scoped: the
//! owner is always the caller; another user's key id answers 404 like a missing one.

use actix_web::{HttpResponse, web};
use drama_app::NewKey;
use drama_app::store::Entity;
use drama_domain::ApiKeyMeta;
use serde::Deserialize;
use serde_json::{Value, json};

use super::generate::options;
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
        "active": meta.is_usable_at(now),
    })
}

async fn list(state: web::Data<ApiState>, Auth(caller): Auth) -> Result<HttpResponse, ApiError> {
    let keys = state.app().api_keys(&caller).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "keys": keys.iter().map(key_json).collect::<Vec<_>>() })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateKey {
    name: String,
    #[serde(default, deserialize_with = "super::integral::option")]
    expires_in_days: Option<u32>,
}

/// `POST /api-keys` `{"name", "expiresInDays"?}` → 201 with the key's secret, shown once.
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
async fn revoke(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path
        .parse()
        .map_err(|_| ApiError::not_found(Entity::ApiKey, path.as_str()))?;
    let meta = state.app().revoke_api_key(&caller, id).await?;
    state.auth.forget_key_id(meta.id);
    Ok(HttpResponse::Ok().json(key_json(&meta)))
}
