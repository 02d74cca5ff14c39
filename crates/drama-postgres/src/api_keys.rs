//! `ApiKeyRepository` on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_dal::{ApiKeyRepository, CreatedApiKey, Entity, RepoError, StoredApiKey, api_key};
use drama_domain::{ApiKeyId, ApiKeyMeta, UserId};
use sqlx::Row as _;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::PgStore;
use crate::error::{db, map_err};

fn meta_from_row(row: &PgRow) -> Result<ApiKeyMeta, RepoError> {
    Ok(ApiKeyMeta {
        id: row.try_get("id").map_err(db)?,
        owner: UserId(row.try_get("owner_id").map_err(db)?),
        name: row.try_get("name").map_err(db)?,
        prefix: row.try_get("prefix").map_err(db)?,
        scopes: row.try_get("scopes").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        last_used_at: row.try_get("last_used_at").map_err(db)?,
        expires_at: row.try_get("expires_at").map_err(db)?,
        revoked_at: row.try_get("revoked_at").map_err(db)?,
    })
}

#[async_trait]
impl ApiKeyRepository for PgStore {
    #[tracing::instrument(skip_all, fields(user.id = %owner))]
    async fn create_api_key(
        &self,
        owner: UserId,
        name: &str,
        scopes: &[String],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<CreatedApiKey, RepoError> {
        if name.trim().is_empty() {
            return Err(RepoError::invalid("name", "must not be empty"));
        }
        // A prefix collision (1 in 62^12 per pair) is retried with a fresh key.
        for _ in 0..3 {
            let (key, prefix, hash) = api_key::generate();
            let inserted = sqlx::query(
                "insert into public.api_keys (id, owner_id, name, prefix, secret_hash, scopes, \
                     expires_at) \
                 values ($1, $2, $3, $4, $5, $6, $7) \
                 returning id, owner_id, name, prefix, scopes, created_at, last_used_at, \
                     expires_at, revoked_at",
            )
            .bind(Uuid::new_v4())
            .bind(owner.0)
            .bind(name)
            .bind(&prefix)
            .bind(&hash)
            .bind(scopes)
            .bind(expires_at)
            .fetch_one(&self.pool)
            .await;
            match inserted {
                Ok(row) => {
                    return Ok(CreatedApiKey {
                        meta: meta_from_row(&row)?,
                        key,
                    });
                }
                Err(e) => match map_err(e, Entity::ApiKey, &prefix) {
                    RepoError::AlreadyExists { .. } => {}
                    RepoError::NotFound { .. } => {
                        return Err(RepoError::not_found(Entity::User, owner));
                    }
                    other => return Err(other),
                },
            }
        }
        Err(RepoError::Unavailable(
            "could not allocate a unique API key prefix".to_owned(),
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn find_api_key(&self, prefix: &str) -> Result<Option<StoredApiKey>, RepoError> {
        let row = sqlx::query(
            "select id, owner_id, name, prefix, scopes, created_at, last_used_at, expires_at, \
                 revoked_at, secret_hash \
             from public.api_keys where prefix = $1",
        )
        .bind(prefix)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|row| {
            Ok(StoredApiKey {
                meta: meta_from_row(&row)?,
                secret_hash: row.try_get("secret_hash").map_err(db)?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip_all, fields(user.id = %owner))]
    async fn list_api_keys(&self, owner: UserId) -> Result<Vec<ApiKeyMeta>, RepoError> {
        let rows = sqlx::query(
            "select id, owner_id, name, prefix, scopes, created_at, last_used_at, expires_at, \
                 revoked_at \
             from public.api_keys where owner_id = $1 order by created_at desc, id desc",
        )
        .bind(owner.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(meta_from_row).collect()
    }

    #[tracing::instrument(skip_all, fields(user.id = %owner, api_key.id = %id))]
    async fn revoke_api_key(&self, owner: UserId, id: ApiKeyId) -> Result<ApiKeyMeta, RepoError> {
        let row = sqlx::query(
            "update public.api_keys set revoked_at = coalesce(revoked_at, now()) \
             where id = $1 and owner_id = $2 \
             returning id, owner_id, name, prefix, scopes, created_at, last_used_at, expires_at, \
                 revoked_at",
        )
        .bind(id)
        .bind(owner.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| RepoError::not_found(Entity::ApiKey, id))?;
        meta_from_row(&row)
    }

    #[tracing::instrument(skip_all, fields(api_key.id = %id))]
    async fn record_api_key_use(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<(), RepoError> {
        let done = sqlx::query("update public.api_keys set last_used_at = $2 where id = $1")
            .bind(id)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(RepoError::not_found(Entity::ApiKey, id));
        }
        Ok(())
    }
}
