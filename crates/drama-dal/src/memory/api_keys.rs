//! `ApiKeyRepository` in memory.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_domain::{ApiKeyId, ApiKeyMeta, UserId};

use super::MemoryStore;
use crate::error::{Entity, RepoError};
use crate::repos::{ApiKeyRepository, CreatedApiKey, KeyCaps, KeyCreation, StoredApiKey};

#[async_trait]
impl ApiKeyRepository for MemoryStore {
    async fn create_api_key(
        &self,
        owner: UserId,
        name: &str,
        scopes: &[String],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<CreatedApiKey, RepoError> {
        self.lock()
            .insert_api_key(owner, name, scopes, expires_at, None)
    }

    async fn create_api_key_capped(
        &self,
        owner: UserId,
        name: &str,
        expires_at: Option<DateTime<Utc>>,
        made_by: Option<ApiKeyId>,
        caps: KeyCaps,
    ) -> Result<KeyCreation, RepoError> {
        // One lock for the check of the maker, the counts and the insert.
        let mut s = self.lock();
        let now = Utc::now();
        if let Some(maker) = made_by
            && !s
                .keys
                .get(&maker)
                .is_some_and(|k| k.meta.owner == owner && k.meta.is_usable_at(now))
        {
            return Ok(KeyCreation::MakerUnusable);
        }
        let active = s
            .keys
            .values()
            .filter(|k| k.meta.owner == owner && k.meta.is_usable_at(now))
            .count();
        if active >= caps.usable {
            return Ok(KeyCreation::AtLimit { active });
        }
        let day_ago = now - chrono::Duration::days(1);
        let made = s
            .keys
            .values()
            .filter(|k| k.meta.owner == owner && k.meta.created_at > day_ago)
            .count();
        if made >= caps.per_day {
            return Ok(KeyCreation::DailyLimit { made });
        }
        s.insert_api_key(owner, name, &[], expires_at, made_by)
            .map(KeyCreation::Created)
    }

    async fn find_api_key(&self, prefix: &str) -> Result<Option<StoredApiKey>, RepoError> {
        Ok(self
            .lock()
            .keys
            .values()
            .find(|k| k.meta.prefix == prefix)
            .cloned())
    }

    async fn list_api_keys(&self, owner: UserId) -> Result<Vec<ApiKeyMeta>, RepoError> {
        let mut keys: Vec<ApiKeyMeta> = self
            .lock()
            .keys
            .values()
            .filter(|k| k.meta.owner == owner)
            .map(|k| k.meta.clone())
            .collect();
        keys.sort_by_key(|k| std::cmp::Reverse((k.created_at, k.id)));
        Ok(keys)
    }

    async fn list_recent_api_keys(
        &self,
        owner: UserId,
        lapsed_since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<ApiKeyMeta>, RepoError> {
        let now = Utc::now();
        let mut keys: Vec<ApiKeyMeta> = self
            .lock()
            .keys
            .values()
            .filter(|k| {
                k.meta.owner == owner
                    && (k.meta.is_usable_at(now)
                        || lapsed_at(&k.meta).is_some_and(|t| t >= lapsed_since))
            })
            .map(|k| k.meta.clone())
            .collect();
        // Usable ones first, newest first within each; then the newest `limit` of those.
        keys.sort_by_key(|k| std::cmp::Reverse((k.is_usable_at(now), k.created_at, k.id)));
        keys.truncate(limit);
        keys.sort_by_key(|k| std::cmp::Reverse((k.created_at, k.id)));
        Ok(keys)
    }

    async fn revoke_api_key(&self, owner: UserId, id: ApiKeyId) -> Result<ApiKeyMeta, RepoError> {
        self.revoke_key(owner, id, None)
    }

    async fn revoke_api_key_in_line(
        &self,
        owner: UserId,
        id: ApiKeyId,
        line: ApiKeyId,
    ) -> Result<ApiKeyMeta, RepoError> {
        self.revoke_key(owner, id, Some(line))
    }

    async fn purge_lapsed_api_keys(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<usize, RepoError> {
        let mut s = self.lock();
        let gone: Vec<ApiKeyId> = s
            .keys
            .values()
            .filter(|k| lapsed_at(&k.meta).is_some_and(|t| t < before))
            .map(|k| k.meta.id)
            .take(limit)
            .collect();
        for id in &gone {
            s.keys.remove(id);
        }
        // As the table's `on delete set null`.
        for key in s.keys.values_mut() {
            if key.meta.made_by.is_some_and(|m| gone.contains(&m)) {
                key.meta.made_by = None;
            }
        }
        Ok(gone.len())
    }

    async fn record_api_key_use(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<(), RepoError> {
        let mut s = self.lock();
        let key = s
            .keys
            .get_mut(&id)
            .ok_or_else(|| RepoError::not_found(Entity::ApiKey, id))?;
        key.meta.last_used_at = Some(at);
        Ok(())
    }
}

impl MemoryStore {
    /// Revokes `id` (which must be in `line`'s line when given) and every key made with it,
    /// down the line.
    fn revoke_key(
        &self,
        owner: UserId,
        id: ApiKeyId,
        line: Option<ApiKeyId>,
    ) -> Result<ApiKeyMeta, RepoError> {
        let mut s = self.lock();
        if let Some(line) = line {
            // Up from the key through its makers: `line` must be on the way.
            let mut at = Some(id);
            let mut found = false;
            while let Some(key) = at.and_then(|k| s.keys.get(&k)) {
                if key.meta.owner != owner {
                    break;
                }
                if key.meta.id == line {
                    found = true;
                    break;
                }
                at = key.meta.made_by;
            }
            if !found {
                return Err(RepoError::not_found(Entity::ApiKey, id));
            }
        }
        let now = s.tick();
        if s.keys.get(&id).is_none_or(|k| k.meta.owner != owner) {
            return Err(RepoError::not_found(Entity::ApiKey, id));
        }
        // The key, then the keys made with each revoked one, until no more are found.
        let mut revoke = vec![id];
        while let Some(next) = revoke.pop() {
            for key in s.keys.values_mut() {
                let made_by_next = key.meta.id == next || key.meta.made_by == Some(next);
                if made_by_next && key.meta.owner == owner && key.meta.revoked_at.is_none() {
                    key.meta.revoked_at = Some(now);
                    if key.meta.id != next {
                        revoke.push(key.meta.id);
                    }
                }
            }
        }
        s.keys
            .get(&id)
            .map(|k| k.meta.clone())
            .ok_or_else(|| RepoError::not_found(Entity::ApiKey, id))
    }
}

/// When a key stopped working: revoked, or expired, whichever came first (`None`: neither
/// yet, or a key that will expire later and is still usable unless revoked).
fn lapsed_at(key: &ApiKeyMeta) -> Option<DateTime<Utc>> {
    let expired = key.expires_at.filter(|t| *t <= Utc::now());
    match (key.revoked_at, expired) {
        (Some(r), Some(e)) => Some(r.min(e)),
        (r, e) => r.or(e),
    }
}
