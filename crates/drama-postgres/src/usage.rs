//! `UsageRepository` on PostgreSQL.

use async_trait::async_trait;
use drama_dal::{RepoError, UsageRepository};
use drama_domain::UserId;

use crate::PgStore;
use crate::error::db;

#[async_trait]
impl UsageRepository for PgStore {
    #[tracing::instrument(skip_all)]
    async fn drama_count(&self, owner: UserId) -> Result<u64, RepoError> {
        // dramas_owner_updated_idx (an index-only scan of the owner's entries).
        let n: i64 = sqlx::query_scalar("select count(*) from public.dramas where owner_id = $1")
            .bind(owner.0)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(u64::try_from(n).unwrap_or_default())
    }
}
