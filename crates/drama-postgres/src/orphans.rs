//! `OrphanRepository` on PostgreSQL. Recording on deletes and replacements is done by the
//! `assets_record_orphans` and `dramas_record_orphans` triggers, so it can never be skipped by
//! a code path; they record the owner and drama with every key.

use async_trait::async_trait;
use drama_dal::{Orphan, OrphanRepository, RepoError};
use drama_domain::{DramaId, UserId};
use sqlx::Row as _;

use crate::PgStore;
use crate::error::db;

#[async_trait]
impl OrphanRepository for PgStore {
    #[tracing::instrument(skip_all, fields(keys = keys.len()))]
    async fn record_orphans(
        &self,
        owner: UserId,
        drama: &DramaId,
        keys: &[String],
        reason: &str,
    ) -> Result<(), RepoError> {
        sqlx::query(
            "insert into public.orphaned_objects (storage_key, owner_id, drama_id, reason) \
             select k, $2, $3, $4 from unnest($1::text[]) as k on conflict (storage_key) do nothing",
        )
        .bind(keys)
        .bind(owner.0)
        .bind(drama.as_str())
        .bind(reason)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(limit))]
    async fn claim_orphans(
        &self,
        limit: u32,
        min_age: std::time::Duration,
    ) -> Result<Vec<Orphan>, RepoError> {
        if limit == 0 {
            return Err(RepoError::invalid("limit", "must be positive"));
        }
        // SKIP LOCKED lets several sweepers claim disjoint sets. Keys that do not belong to
        // their recorded owner, library keys and keys still referenced (by an asset, a job,
        // or the URL of an imported drama outside the key's folder) stay in the table.
        let rows = sqlx::query(
            "delete from public.orphaned_objects where storage_key in ( \
                 select o.storage_key from public.orphaned_objects o \
                 where o.recorded_at <= now() - make_interval(secs => $2) \
                   and o.owner_id is not null and o.drama_id ~ '^[A-Za-z0-9_.-]{1,128}$' \
                   and public.storage_key_belongs(o.storage_key, o.owner_id, o.drama_id) \
                   and split_part(o.storage_key, '/', 2) not like '~%' \
                   and not exists (select 1 from public.assets a where a.storage_key = o.storage_key) \
                   and not exists (select 1 from public.jobs j \
                                   where j.payload ->> 'reference_key' = o.storage_key) \
                   and not exists (select 1 from public.legacy_object_references r \
                                   where r.storage_key = o.storage_key) \
                 order by o.recorded_at, o.storage_key limit $1 for update skip locked) \
             returning storage_key, owner_id, drama_id",
        )
        .bind(i64::from(limit))
        .bind(min_age.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|row| {
                let drama: String = row.try_get("drama_id").map_err(db)?;
                Ok(Orphan {
                    storage_key: row.try_get("storage_key").map_err(db)?,
                    owner: UserId(row.try_get("owner_id").map_err(db)?),
                    drama: DramaId::parse(drama.clone())
                        .map_err(|e| RepoError::invalid("drama_id", format!("{drama}: {e}")))?,
                })
            })
            .collect()
    }
}
