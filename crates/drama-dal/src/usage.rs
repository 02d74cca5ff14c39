//! What a user holds, for per-user quotas.

use async_trait::async_trait;
use drama_domain::UserId;

use crate::error::RepoError;
use crate::memory::MemoryStore;

/// Counts behind the per-user quotas that only the repositories can answer.
#[async_trait]
pub trait UsageRepository: Send + Sync {
    /// How many dramas `owner` has.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn drama_count(&self, owner: UserId) -> Result<u64, RepoError>;
}

#[async_trait]
impl UsageRepository for MemoryStore {
    async fn drama_count(&self, owner: UserId) -> Result<u64, RepoError> {
        let s = self.lock();
        Ok(s.dramas.values().filter(|d| d.owner == owner).count() as u64)
    }
}
