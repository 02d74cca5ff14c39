//! `OrphanRepository` on PostgreSQL. Recording on deletes and replacements is done by the
//! `assets_record_orphans` trigger, so it can never be skipped by a code path.

use async_trait::async_trait;
use drama_dal::{OrphanRepository, RepoError};

use crate::PgStore;
use crate::error::db;

#[async_trait]
impl OrphanRepository for PgStore {
    #[tracing::instrument(skip_all, fields(keys = keys.len()))]
    async fn record_orphans(&self, keys: &[String], reason: &str) -> Result<(), RepoError> {
        sqlx::query(
            "insert into public.orphaned_objects (storage_key, reason) \
             select k, $2 from unnest($1::text[]) as k on conflict (storage_key) do nothing",
        )
        .bind(keys)
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
    ) -> Result<Vec<String>, RepoError> {
        if limit == 0 {
            return Err(RepoError::invalid("limit", "must be positive"));
        }
        // SKIP LOCKED lets several sweepers claim disjoint sets.
        sqlx::query_scalar(
            "delete from public.orphaned_objects where storage_key in ( \
                 select o.storage_key from public.orphaned_objects o \
                 where not exists (select 1 from public.assets a where a.storage_key = o.storage_key) \
                   and o.recorded_at <= now() - make_interval(secs => $2) \
                 order by o.recorded_at, o.storage_key limit $1 for update skip locked) \
             returning storage_key",
        )
        .bind(i64::from(limit))
        .bind(min_age.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }
}
