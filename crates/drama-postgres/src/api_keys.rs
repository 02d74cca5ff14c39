//! `ApiKeyRepository` on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_dal::{
    ApiKeyRepository, CreatedApiKey, Entity, KeyCaps, KeyCreation, RepoError, StoredApiKey, api_key,
};
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
        made_by: row.try_get("made_by").map_err(db)?,
    })
}

/// Inserts a new key of `owner` in `tx`. A prefix collision (1 in 62^12 per pair) is retried
/// with a fresh key; `on conflict (prefix) do nothing` keeps the transaction usable for it.
async fn insert_key(
    tx: &mut sqlx::PgConnection,
    owner: UserId,
    name: &str,
    scopes: &[String],
    expires_at: Option<DateTime<Utc>>,
    made_by: Option<ApiKeyId>,
) -> Result<CreatedApiKey, RepoError> {
    if name.trim().is_empty() {
        return Err(RepoError::invalid("name", "must not be empty"));
    }
    for _ in 0..3 {
        let (key, prefix, hash) = api_key::generate();
        let inserted = sqlx::query(
            "insert into public.api_keys (id, owner_id, name, prefix, secret_hash, scopes, \
                 expires_at, made_by) \
             values ($1, $2, $3, $4, $5, $6, $7, $8) \
             on conflict (prefix) do nothing \
             returning id, owner_id, name, prefix, scopes, created_at, last_used_at, \
                 expires_at, revoked_at, made_by",
        )
        .bind(Uuid::new_v4())
        .bind(owner.0)
        .bind(name)
        .bind(&prefix)
        .bind(&hash)
        .bind(scopes)
        .bind(expires_at)
        .bind(made_by)
        .fetch_optional(&mut *tx)
        .await;
        match inserted {
            Ok(Some(row)) => {
                return Ok(CreatedApiKey {
                    meta: meta_from_row(&row)?,
                    key,
                });
            }
            Ok(None) => {}
            Err(e) => {
                return Err(match map_err(e, Entity::ApiKey, &prefix) {
                    RepoError::NotFound { .. } => RepoError::not_found(Entity::User, owner),
                    other => other,
                });
            }
        }
    }
    Err(RepoError::Unavailable(
        "could not allocate a unique API key prefix".to_owned(),
    ))
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
        let mut tx = self.pool.begin().await.map_err(db)?;
        let created = insert_key(&mut tx, owner, name, scopes, expires_at, None).await?;
        tx.commit().await.map_err(db)?;
        Ok(created)
    }

    #[tracing::instrument(skip_all, fields(user.id = %owner))]
    async fn create_api_key_capped(
        &self,
        owner: UserId,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        made_by: Option<ApiKeyId>,
        caps: KeyCaps,
    ) -> Result<KeyCreation, RepoError> {
        if name.trim().is_empty() {
            return Err(RepoError::invalid("name", "must not be empty"));
        }
        let mut tx = self.pool.begin().await.map_err(db)?;
        // The owner's row is the lock that makes count-then-insert one step per owner (the
        // only lock this transaction takes before its insert, so no order to break). `no key
        // update` serialises key creations without blocking the owner's other writes that
        // only reference the row (their foreign keys take `key share`). A revocation takes
        // the same lock first, so the maker checked below cannot be revoked before this
        // key is in place for that revocation to find.
        let found: Option<Uuid> =
            sqlx::query_scalar("select id from public.users where id = $1 for no key update")
                .bind(owner.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if found.is_none() {
            return Err(RepoError::not_found(Entity::User, owner));
        }
        if let Some(maker) = made_by {
            let usable: Option<bool> = sqlx::query_scalar(
                "select revoked_at is null and (expires_at is null or expires_at > now()) \
                 from public.api_keys where id = $1 and owner_id = $2",
            )
            .bind(maker)
            .bind(owner.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            if usable != Some(true) {
                return Ok(KeyCreation::MakerUnusable);
            }
        }
        // Both counts read only a bounded set of the owner's rows: the unrevoked ones
        // (`api_keys_owner_unrevoked_idx`), and those of the last day (by creation time).
        let (active, made): (i64, i64) = sqlx::query_as(
            "select \
               (select count(*) from public.api_keys \
                where owner_id = $1 and revoked_at is null \
                  and (expires_at is null or expires_at > now())), \
               (select count(*) from public.api_keys \
                where owner_id = $1 and created_at > now() - interval '1 day')",
        )
        .bind(owner.0)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let active = usize::try_from(active).unwrap_or(usize::MAX);
        if active >= caps.usable {
            return Ok(KeyCreation::AtLimit { active });
        }
        let made = usize::try_from(made).unwrap_or(usize::MAX);
        if made >= caps.per_day {
            return Ok(KeyCreation::DailyLimit { made });
        }
        let created = insert_key(&mut tx, owner, name, &[], expires_at, made_by).await?;
        tx.commit().await.map_err(db)?;
        Ok(KeyCreation::Created(created))
    }

    #[tracing::instrument(skip_all)]
    async fn find_api_key(&self, prefix: &str) -> Result<Option<StoredApiKey>, RepoError> {
        let row = sqlx::query(
            "select id, owner_id, name, prefix, scopes, created_at, last_used_at, expires_at, \
                 revoked_at, made_by, secret_hash \
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
                 revoked_at, made_by \
             from public.api_keys where owner_id = $1 order by created_at desc, id desc",
        )
        .bind(owner.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(meta_from_row).collect()
    }

    #[tracing::instrument(skip_all, fields(user.id = %owner))]
    async fn list_recent_api_keys(
        &self,
        owner: UserId,
        lapsed_since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ApiKeyMeta>, RepoError> {
        // A key stopped working when it was revoked or expired, whichever came first
        // (`least` skips nulls); usable ones are kept before the others.
        let rows = sqlx::query(
            "select id, owner_id, name, prefix, scopes, created_at, last_used_at, expires_at, \
                 revoked_at, made_by \
             from public.api_keys \
             where owner_id = $1 \
               and ((revoked_at is null and (expires_at is null or expires_at > now())) \
                    or least(revoked_at, expires_at) >= $2) \
             order by (revoked_at is null and (expires_at is null or expires_at > now())) desc, \
                 created_at desc, id desc \
             limit $3",
        )
        .bind(owner.0)
        .bind(lapsed_since)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut keys = rows
            .iter()
            .map(meta_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        keys.sort_by_key(|k| std::cmp::Reverse((k.created_at, k.id)));
        Ok(keys)
    }

    #[tracing::instrument(skip_all, fields(user.id = %owner, api_key.id = %id))]
    async fn revoke_api_key(&self, owner: UserId, id: ApiKeyId) -> Result<ApiKeyMeta, RepoError> {
        revoke(self, owner, id, None).await
    }

    #[tracing::instrument(skip_all, fields(user.id = %owner, api_key.id = %id))]
    async fn revoke_api_key_in_line(
        &self,
        owner: UserId,
        id: ApiKeyId,
        line: ApiKeyId,
    ) -> Result<ApiKeyMeta, RepoError> {
        revoke(self, owner, id, Some(line)).await
    }

    #[tracing::instrument(skip_all)]
    async fn purge_lapsed_api_keys(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, RepoError> {
        // Through `api_keys_lapsed_idx`; the keys made with these have their `made_by` set
        // null by the foreign key.
        let done = sqlx::query(
            "delete from public.api_keys where id in ( \
                 select id from public.api_keys where least(revoked_at, expires_at) < $1 \
                 limit $2)",
        )
        .bind(before)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(usize::try_from(done.rows_affected()).unwrap_or(usize::MAX))
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

/// Revokes `owner`'s key `id` (which must be `line` or made down its line, when given) and
/// every key made with it, down the line.
async fn revoke(
    store: &PgStore,
    owner: UserId,
    id: ApiKeyId,
    line: Option<ApiKeyId>,
) -> Result<ApiKeyMeta, RepoError> {
    let mut tx = store.pool.begin().await.map_err(db)?;
    // The owner's row first, as a key creation takes it: a key being made with one of
    // these keys is either in place for the walk below or refused after it.
    sqlx::query("select 1 from public.users where id = $1 for no key update")
        .bind(owner.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    if let Some(line) = line {
        // Up from the key through its makers (each made by at most one, so the walk is
        // the key's line of makers): `line` must be on the way.
        let within: bool = sqlx::query_scalar(
            "with recursive up (id, made_by) as ( \
                 select id, made_by from public.api_keys where id = $1 and owner_id = $2 \
                 union \
                 select k.id, k.made_by from public.api_keys k \
                 join up on k.id = up.made_by where k.owner_id = $2) \
             select exists (select 1 from up where id = $3)",
        )
        .bind(id)
        .bind(owner.0)
        .bind(line)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if !within {
            return Err(RepoError::not_found(Entity::ApiKey, id));
        }
    }
    // The key, and down the line every key made with a key revoked here (a key already
    // revoked had its line revoked with it).
    sqlx::query(
        "with recursive line (id) as ( \
             select id from public.api_keys where id = $1 and owner_id = $2 \
             union \
             select k.id from public.api_keys k join line on k.made_by = line.id \
             where k.owner_id = $2 and k.revoked_at is null) \
         update public.api_keys k set revoked_at = now() \
         from line where k.id = line.id and k.revoked_at is null",
    )
    .bind(id)
    .bind(owner.0)
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    let row = sqlx::query(
        "select id, owner_id, name, prefix, scopes, created_at, last_used_at, expires_at, \
             revoked_at, made_by \
         from public.api_keys where id = $1 and owner_id = $2",
    )
    .bind(id)
    .bind(owner.0)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?
    .ok_or_else(|| RepoError::not_found(Entity::ApiKey, id))?;
    tx.commit().await.map_err(db)?;
    meta_from_row(&row)
}
