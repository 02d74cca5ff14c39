//! What each user keeps in the bucket, as the byte and object quotas need it.
//!
//! Counting a user's objects costs listings (1,000 objects a request), so a check reads at
//! most up to its bound ([`AssetStore::usage`]) and this process remembers the last count
//! per user for [`USAGE_TTL`]. The remembered figure is kept an upper bound by this
//! process's own writes: every object the app stores goes through [`Tracked`], which adds it
//! to its owner's figure (a replaced object is counted twice, a deleted one is still
//! counted: both only overstate). So a check passes on the remembered figure, and refuses
//! only on a fresh count: within one process, quotas are exact. Writes of other processes
//! are seen when the figure expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use drama_assets::{
    AssetError, AssetStore, ByteRange, ByteStream, CheckReport, KeyPrefix, ListPage, ObjectInfo,
    ObjectKey, ObjectStream, ObjectSummary, PresignedRequest, SizeLimits, UrlSigner, Usage,
    UsageBound,
};
use drama_domain::UserId;

/// How long a count is trusted for the writes of other processes.
pub(crate) const USAGE_TTL: Duration = Duration::from_secs(5);

/// Users whose count locks are held before the map drops those nobody holds any more.
const TURNS_KEPT: usize = 1024;

/// A remembered count.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Known {
    /// At most this much (a complete count, plus what this process stored since).
    AtMost(Usage),
    /// At least this much: a count that stopped at its bound. Dropped when this process
    /// deletes one of the user's objects, so a user who makes room is counted again.
    AtLeast(Usage),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    known: Known,
    taken: Instant,
}

/// The per-user counts of this process.
#[derive(Default)]
pub(crate) struct UsageCache {
    entries: Mutex<HashMap<UserId, Entry>>,
    /// One count lock per user: a burst of one user's checks waits for one count, and no
    /// other user ever waits behind it (a user near the object bound counts up to 100
    /// listing pages).
    counting: Mutex<HashMap<UserId, Weak<tokio::sync::Mutex<()>>>>,
}

impl UsageCache {
    /// The remembered count of `user`, when younger than [`USAGE_TTL`].
    pub(crate) fn get(&self, user: UserId) -> Option<Known> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        match entries.get(&user) {
            Some(e) if e.taken.elapsed() < USAGE_TTL => Some(e.known),
            Some(_) => {
                entries.remove(&user);
                None
            }
            None => None,
        }
    }

    /// Remembers a count taken just now.
    pub(crate) fn put(&self, user: UserId, known: Known) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        // Expired entries go when the map is written, so it holds recent users only.
        if entries.len() >= 4096 {
            entries.retain(|_, e| e.taken.elapsed() < USAGE_TTL);
        }
        entries.insert(
            user,
            Entry {
                known,
                taken: Instant::now(),
            },
        );
    }

    /// Waits for `user`'s turn to count (so a burst lists once, the others reuse its count).
    pub(crate) async fn turn(&self, user: UserId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut turns = self.counting.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(lock) = turns.get(&user).and_then(Weak::upgrade) {
                lock
            } else {
                // Locks nobody holds or waits for go when the map grows: it holds the users
                // counting now, not every user ever counted.
                if turns.len() >= TURNS_KEPT {
                    turns.retain(|_, lock| lock.strong_count() > 0);
                }
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                turns.insert(user, Arc::downgrade(&lock));
                lock
            }
        };
        lock.lock_owned().await
    }

    fn stored(&self, key: &ObjectKey, size: u64) {
        let Some(user) = owner_of(key.as_str()) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Entry {
            known: Known::AtMost(usage),
            ..
        }) = entries.get_mut(&user)
        {
            usage.bytes = usage.bytes.saturating_add(size);
            usage.objects = usage.objects.saturating_add(1);
        }
    }

    fn deleted(&self, user: Option<UserId>) {
        let Some(user) = user else { return };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Entry {
            known: Known::AtLeast(_),
            ..
        }) = entries.get(&user)
        {
            entries.remove(&user);
        }
    }
}

/// The user whose prefix holds `key` (`{user_id}/…`).
fn owner_of(key: &str) -> Option<UserId> {
    let first = key.split('/').next()?;
    uuid::Uuid::parse_str(first).ok().map(UserId)
}

/// The app's store: every call goes to `inner`; what is stored and deleted is told to the
/// usage counts.
pub(crate) struct Tracked {
    pub(crate) inner: Arc<dyn AssetStore>,
    pub(crate) usage: Arc<UsageCache>,
}

#[async_trait]
impl AssetStore for Tracked {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn limits(&self) -> &SizeLimits {
        self.inner.limits()
    }

    async fn put_bytes(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<ObjectInfo, AssetError> {
        let info = self.inner.put_bytes(key, bytes, content_type).await?;
        self.usage.stored(key, info.size);
        Ok(info)
    }

    async fn put_stream(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        content_type: &str,
        size_hint: Option<u64>,
    ) -> Result<ObjectInfo, AssetError> {
        let info = self
            .inner
            .put_stream(key, body, content_type, size_hint)
            .await?;
        self.usage.stored(key, info.size);
        Ok(info)
    }

    async fn get(&self, key: &ObjectKey) -> Result<ObjectStream, AssetError> {
        self.inner.get(key).await
    }

    async fn get_range(
        &self,
        key: &ObjectKey,
        range: ByteRange,
    ) -> Result<ObjectStream, AssetError> {
        self.inner.get_range(key, range).await
    }

    async fn get_bytes(&self, key: &ObjectKey) -> Result<(ObjectInfo, Bytes), AssetError> {
        self.inner.get_bytes(key).await
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        self.inner.head(key).await
    }

    async fn exists(&self, key: &ObjectKey) -> Result<bool, AssetError> {
        self.inner.exists(key).await
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), AssetError> {
        let result = self.inner.delete(key).await;
        self.usage.deleted(owner_of(key.as_str()));
        result
    }

    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64, AssetError> {
        // Told even on failure: some objects may be gone already.
        let result = self.inner.delete_prefix(prefix).await;
        self.usage.deleted(owner_of(prefix.as_str()));
        result
    }

    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectSummary>, AssetError> {
        self.inner.list(prefix).await
    }

    async fn list_page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&ObjectKey>,
        max: usize,
    ) -> Result<ListPage, AssetError> {
        self.inner.list_page(prefix, after, max).await
    }

    async fn usage(&self, prefix: &KeyPrefix, bound: UsageBound) -> Result<Usage, AssetError> {
        self.inner.usage(prefix, bound).await
    }

    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        let info = self.inner.copy(from, to).await?;
        self.usage.stored(to, info.size);
        Ok(info)
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError> {
        self.inner.presign_get(key, expires_in).await
    }

    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError> {
        self.inner.presign_put(key, content_type, expires_in).await
    }

    fn public_url(&self, key: &ObjectKey) -> Option<String> {
        self.inner.public_url(key)
    }

    fn url_signer(&self) -> Option<&UrlSigner> {
        self.inner.url_signer()
    }

    async fn check(&self) -> CheckReport {
        self.inner.check().await
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    /// Whether `user`'s turn is free now (`unconstrained`: tokio's budget of operations per
    /// task would otherwise answer "not yet" after a hundred or so).
    fn free(cache: &UsageCache, user: UserId) -> bool {
        tokio::task::unconstrained(cache.turn(user))
            .now_or_never()
            .is_some()
    }

    #[tokio::test]
    async fn a_users_count_waits_only_for_that_users_count() {
        let cache = UsageCache::default();
        let counting = UserId::random();
        let held = cache.turn(counting).await;
        // Another check of the same user waits for the count in progress...
        assert!(!free(&cache, counting));
        // ...and no other user does, however many there are.
        for _ in 0..2_000 {
            assert!(free(&cache, UserId::random()));
        }
        drop(held);
        assert!(free(&cache, counting));
        // The locks nobody holds are dropped as the map grows.
        assert!(cache.counting.lock().unwrap().len() <= TURNS_KEPT);
    }
}
