//! The in-memory implementation: same contract as Postgres, for tests and the embedded mode.

mod api_keys;
mod credits;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_domain::{
    ApiKeyId, ApiKeyMeta, Asset, AssetId, AssetOwner, Drama, DramaId, DramaSummary, EntityPatch,
    Episode, EpisodeId, User, UserId,
};
use futures::StreamExt as _;
use futures::channel::mpsc::{UnboundedSender, unbounded};
use uuid::Uuid;

use crate::api_key;
use crate::credits::LedgerEntry;
use crate::error::{Entity, RepoError};
use crate::page::{Cursor, Page, PageRequest};
use crate::repos::{
    AssetObject, CreatedApiKey, DramaChange, DramaChangeStream, DramaFeed, DramaRepository, Orphan,
    OrphanRepository, StoredApiKey, StoredDrama, Version,
};

#[derive(Default)]
pub(crate) struct State {
    pub(crate) dramas: HashMap<DramaId, StoredDrama>,
    objects: HashMap<DramaId, HashMap<AssetId, AssetObject>>,
    users: HashMap<UserId, User>,
    /// Every credit movement, in the order applied.
    ledger: Vec<LedgerEntry>,
    keys: HashMap<ApiKeyId, StoredApiKey>,
    /// Orphaned storage keys with the tick they were recorded at.
    /// Recorded orphans: when, and whose (owner and drama).
    orphans: HashMap<String, (DateTime<Utc>, UserId, DramaId)>,
    /// Keys outside their folder that imported dramas refer to by URL (`LegacyImport::
    /// references`): not swept while their drama exists.
    references: HashMap<DramaId, Vec<String>>,
    last_tick: Option<DateTime<Utc>>,
    /// Followers of drama changes (closed ones are dropped on the next change).
    followers: Vec<UnboundedSender<DramaChange>>,
}

impl State {
    /// Wall-clock time at microsecond precision (like Postgres), strictly increasing so that
    /// list order is deterministic.
    fn tick(&mut self) -> DateTime<Utc> {
        let now = Utc::now();
        let now = DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
        let next = match self.last_tick {
            Some(last) if now <= last => last + chrono::Duration::microseconds(1),
            _ => now,
        };
        self.last_tick = Some(next);
        next
    }

    /// A new key of `owner` (the one way both key-creating methods insert).
    fn insert_api_key(
        &mut self,
        owner: UserId,
        name: &str,
        scopes: &[String],
        expires_at: Option<DateTime<Utc>>,
        made_by: Option<ApiKeyId>,
    ) -> Result<CreatedApiKey, RepoError> {
        if name.trim().is_empty() {
            return Err(RepoError::invalid("name", "must not be empty"));
        }
        if !self.users.contains_key(&owner) {
            return Err(RepoError::not_found(Entity::User, owner));
        }
        let (key, prefix, secret_hash) = loop {
            let generated = api_key::generate();
            if !self.keys.values().any(|k| k.meta.prefix == generated.1) {
                break generated;
            }
        };
        let meta = ApiKeyMeta {
            id: Uuid::new_v4(),
            owner,
            name: name.to_owned(),
            prefix,
            scopes: scopes.to_vec(),
            created_at: self.tick(),
            last_used_at: None,
            expires_at,
            revoked_at: None,
            made_by,
        };
        self.keys.insert(
            meta.id,
            StoredApiKey {
                meta: meta.clone(),
                secret_hash,
            },
        );
        Ok(CreatedApiKey { meta, key })
    }

    fn announce(&mut self, stored: &StoredDrama, deleted: bool) {
        let change = DramaChange {
            drama_id: stored.drama.id.clone(),
            owner: stored.owner,
            version: stored.version,
            deleted,
        };
        self.followers
            .retain(|f| f.unbounded_send(change.clone()).is_ok());
    }

    fn orphan(&mut self, key: String, owner: UserId, drama: &DramaId) {
        let now = self.tick();
        self.orphans
            .entry(key)
            .or_insert_with(|| (now, owner, drama.clone()));
    }

    fn owned(&self, owner: UserId, id: &DramaId) -> Result<&StoredDrama, RepoError> {
        self.dramas
            .get(id)
            .filter(|d| d.owner == owner)
            .ok_or_else(|| RepoError::not_found(Entity::Drama, id))
    }

    /// Runs `change` on an owned drama after the version check; bumps version and timestamp.
    fn write(
        &mut self,
        owner: UserId,
        id: &DramaId,
        expected: Option<Version>,
        change: impl FnOnce(&mut Drama) -> Result<(), RepoError>,
    ) -> Result<StoredDrama, RepoError> {
        let current = self.owned(owner, id)?;
        if let Some(expected) = expected
            && expected != current.version
        {
            return Err(RepoError::VersionConflict {
                expected,
                actual: current.version,
            });
        }
        let mut drama = current.drama.clone();
        change(&mut drama)?;
        let now = self.tick();
        let stored = self
            .dramas
            .get_mut(id)
            .ok_or_else(|| RepoError::not_found(Entity::Drama, id))?;
        stored.drama = drama;
        stored.version += 1;
        stored.updated_at = now;
        let stored = stored.clone();
        self.announce(&stored, false);
        Ok(stored)
    }
}

/// All repositories in memory. Cheap to create; nothing survives the process.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the keys outside its folder that the imported drama `id` refers to, replacing
    /// its earlier ones (`LegacyImport::references`).
    pub(crate) fn set_references(&self, id: &DramaId, keys: &[String]) {
        let mut s = self.lock();
        if keys.is_empty() {
            s.references.remove(id);
        } else {
            s.references.insert(id.clone(), keys.to_vec());
        }
    }

    /// Takes `owner`'s `keys` off the orphan list: objects a stored record holds now (the
    /// memory twin of what `GenerationStore::complete_drama` does in its transaction).
    pub fn keep_objects(&self, owner: UserId, keys: &[String]) {
        let mut s = self.lock();
        for key in keys {
            if s.orphans.get(key).is_some_and(|(_, o, _)| *o == owner) {
                s.orphans.remove(key);
            }
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change: every write
        // builds its result before it mutates, so the state behind a poisoned lock is sound.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn find_asset<'a>(assets: &'a mut [Asset], id: &AssetId) -> Option<&'a mut Asset> {
    assets.iter_mut().find(|a| &a.id == id)
}

fn assets_of<'a>(
    drama: &'a mut Drama,
    owner: &AssetOwner,
) -> Result<&'a mut Vec<Asset>, RepoError> {
    Ok(match owner {
        AssetOwner::Drama => &mut drama.assets,
        AssetOwner::Character(c) => {
            &mut drama
                .characters
                .iter_mut()
                .find(|x| &x.id == c)
                .ok_or_else(|| RepoError::not_found(Entity::Character, c))?
                .assets
        }
        AssetOwner::Episode(e) => &mut find_episode(drama, e)?.assets,
        AssetOwner::Scene { episode, scene } => {
            &mut find_episode(drama, episode)?
                .scenes
                .iter_mut()
                .find(|x| &x.id == scene)
                .ok_or_else(|| RepoError::not_found(Entity::Scene, scene))?
                .assets
        }
    })
}

/// Sets each field the patch carries on the part it addresses.
fn apply_patch(drama: &mut Drama, patch: &EntityPatch) -> Result<(), RepoError> {
    /// `Some` sets the field (for nullable fields, `Some(None)` clears it); `None` leaves it.
    fn set<T: Clone>(field: &mut T, value: &Option<T>) {
        if let Some(v) = value {
            field.clone_from(v);
        }
    }
    match patch {
        EntityPatch::Drama(p) => {
            set(&mut drama.title, &p.title);
            set(&mut drama.description, &p.description);
            set(&mut drama.premise, &p.premise);
            set(&mut drama.metadata, &p.metadata);
        }
        EntityPatch::Character { id, changes: p } => {
            let c = drama
                .characters
                .iter_mut()
                .find(|c| &c.id == id)
                .ok_or_else(|| RepoError::not_found(Entity::Character, id))?;
            set(&mut c.name, &p.name);
            set(&mut c.description, &p.description);
            set(&mut c.metadata, &p.metadata);
        }
        EntityPatch::Episode { id, changes: p } => {
            let e = find_episode(drama, id)?;
            set(&mut e.title, &p.title);
            set(&mut e.description, &p.description);
            set(&mut e.premise, &p.premise);
            set(&mut e.metadata, &p.metadata);
        }
        EntityPatch::Scene {
            episode,
            id,
            changes: p,
        } => {
            let s = find_episode(drama, episode)?
                .scenes
                .iter_mut()
                .find(|s| &s.id == id)
                .ok_or_else(|| RepoError::not_found(Entity::Scene, id))?;
            set(&mut s.description, &p.description);
            set(&mut s.image_url, &p.image_url);
            set(&mut s.video_url, &p.video_url);
            set(&mut s.metadata, &p.metadata);
        }
        EntityPatch::Asset {
            owner,
            id,
            changes: p,
        } => {
            let a = find_asset(assets_of(drama, owner)?, id)
                .ok_or_else(|| RepoError::not_found(Entity::Asset, id))?;
            set(&mut a.prompt, &p.prompt);
            set(&mut a.url, &p.url);
            set(&mut a.metadata, &p.metadata);
        }
    }
    Ok(())
}

fn find_episode<'a>(drama: &'a mut Drama, id: &EpisodeId) -> Result<&'a mut Episode, RepoError> {
    drama
        .episodes
        .iter_mut()
        .find(|e| &e.id == id)
        .ok_or_else(|| RepoError::not_found(Entity::Episode, id))
}

fn every_asset_mut(drama: &mut Drama) -> impl Iterator<Item = &mut Asset> {
    drama
        .assets
        .iter_mut()
        .chain(
            drama
                .characters
                .iter_mut()
                .flat_map(|c| c.assets.iter_mut()),
        )
        .chain(drama.episodes.iter_mut().flat_map(|e| {
            e.assets
                .iter_mut()
                .chain(e.scenes.iter_mut().flat_map(|s| s.assets.iter_mut()))
        }))
}

fn page_of<T>(
    mut rows: Vec<(DateTime<Utc>, DramaId, T)>,
    page: &PageRequest,
) -> Result<Page<T>, RepoError> {
    page.validate()?;
    rows.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
    let after = page.after.as_ref();
    let mut selected: Vec<_> = rows
        .into_iter()
        .filter(|(at, id, _)| after.is_none_or(|c| (*at, id) < (c.updated_at, &c.id)))
        .skip(page.offset as usize)
        .take(page.limit as usize + 1)
        .collect();
    let more = selected.len() > page.limit as usize;
    selected.truncate(page.limit as usize);
    let next = if more {
        selected.last().map(|(at, id, _)| Cursor {
            updated_at: *at,
            id: id.clone(),
        })
    } else {
        None
    };
    Ok(Page {
        items: selected.into_iter().map(|(_, _, t)| t).collect(),
        next,
    })
}

#[async_trait]
impl DramaRepository for MemoryStore {
    async fn create(&self, owner: UserId, drama: &Drama) -> Result<StoredDrama, RepoError> {
        drama.validate()?;
        let mut s = self.lock();
        if !s.users.contains_key(&owner) {
            return Err(RepoError::not_found(Entity::User, owner));
        }
        if s.dramas.contains_key(&drama.id) {
            return Err(RepoError::AlreadyExists {
                entity: Entity::Drama,
                id: drama.id.to_string(),
            });
        }
        let now = s.tick();
        let stored = StoredDrama {
            drama: drama.clone(),
            owner,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        s.dramas.insert(drama.id.clone(), stored.clone());
        s.announce(&stored, false);
        Ok(stored)
    }

    async fn id_taken(&self, id: &DramaId) -> Result<bool, RepoError> {
        Ok(self.lock().dramas.contains_key(id))
    }

    async fn get_complete(&self, owner: UserId, id: &DramaId) -> Result<StoredDrama, RepoError> {
        self.lock().owned(owner, id).cloned()
    }

    async fn save_complete(
        &self,
        owner: UserId,
        drama: &Drama,
        expected: Option<Version>,
    ) -> Result<Version, RepoError> {
        drama.validate()?;
        let mut s = self.lock();
        let stored = s.write(owner, &drama.id, expected, |d| {
            *d = drama.clone();
            Ok(())
        })?;
        let present: std::collections::HashSet<&AssetId> =
            drama.assets_with_owner().map(|(_, a)| &a.id).collect();
        let mut dropped = Vec::new();
        if let Some(objects) = s.objects.get_mut(&drama.id) {
            objects.retain(|id, o| {
                let keep = present.contains(id);
                if !keep {
                    dropped.push(o.storage_key.clone());
                }
                keep
            });
        }
        for key in dropped {
            s.orphan(key, owner, &drama.id);
        }
        Ok(stored.version)
    }

    async fn patch(
        &self,
        owner: UserId,
        drama: &DramaId,
        patch: &EntityPatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, RepoError> {
        self.lock()
            .write(owner, drama, expected, |d| apply_patch(d, patch))
    }

    async fn attach_asset_object(
        &self,
        owner: UserId,
        drama: &DramaId,
        asset: &AssetId,
        url: &str,
        object: &AssetObject,
    ) -> Result<Version, RepoError> {
        let mut s = self.lock();
        let stored = s.write(owner, drama, None, |d| {
            let a = every_asset_mut(d)
                .find(|a| &a.id == asset)
                .ok_or_else(|| RepoError::not_found(Entity::Asset, asset))?;
            if !drama_domain::storage_key_belongs(&object.storage_key, owner, drama) {
                return Err(foreign_key_error(&object.storage_key, drama));
            }
            a.url = Some(url.to_owned());
            Ok(())
        })?;
        let previous = s
            .objects
            .entry(drama.clone())
            .or_default()
            .insert(asset.clone(), object.clone());
        if let Some(previous) = previous
            && previous.storage_key != object.storage_key
        {
            s.orphan(previous.storage_key, owner, drama);
        }
        s.orphans.remove(&object.storage_key);
        Ok(stored.version)
    }

    async fn asset_objects(
        &self,
        owner: UserId,
        drama: &DramaId,
    ) -> Result<HashMap<AssetId, AssetObject>, RepoError> {
        let s = self.lock();
        s.owned(owner, drama)?;
        Ok(s.objects.get(drama).cloned().unwrap_or_default())
    }

    async fn delete(&self, owner: UserId, id: &DramaId) -> Result<Vec<String>, RepoError> {
        let mut s = self.lock();
        s.owned(owner, id)?;
        if let Some(gone) = s.dramas.remove(id) {
            s.announce(&gone, true);
        }
        s.references.remove(id);
        let mut keys: Vec<String> = s
            .objects
            .remove(id)
            .unwrap_or_default()
            .into_values()
            .map(|o| o.storage_key)
            .collect();
        keys.sort();
        for key in &keys {
            s.orphan(key.clone(), owner, id);
        }
        Ok(keys)
    }

    async fn list_summaries(
        &self,
        owner: UserId,
        page: &PageRequest,
    ) -> Result<Page<DramaSummary>, RepoError> {
        let rows = self
            .lock()
            .dramas
            .values()
            .filter(|d| d.owner == owner)
            .map(|d| {
                (
                    d.updated_at,
                    d.drama.id.clone(),
                    d.drama.summary(d.created_at, d.updated_at),
                )
            })
            .collect();
        page_of(rows, page)
    }

    async fn list_complete(
        &self,
        owner: UserId,
        page: &PageRequest,
    ) -> Result<Page<StoredDrama>, RepoError> {
        let rows = self
            .lock()
            .dramas
            .values()
            .filter(|d| d.owner == owner)
            .map(|d| (d.updated_at, d.drama.id.clone(), d.clone()))
            .collect();
        page_of(rows, page)
    }
}

#[async_trait]
impl OrphanRepository for MemoryStore {
    async fn record_orphans(
        &self,
        owner: UserId,
        drama: &DramaId,
        keys: &[String],
        _reason: &str,
    ) -> Result<(), RepoError> {
        let mut s = self.lock();
        for key in keys {
            s.orphan(key.clone(), owner, drama);
        }
        Ok(())
    }

    async fn claim_orphans(
        &self,
        limit: u32,
        min_age: std::time::Duration,
    ) -> Result<Vec<Orphan>, RepoError> {
        if limit == 0 {
            return Err(RepoError::invalid("limit", "must be positive"));
        }
        let cutoff =
            Utc::now() - chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
        let mut s = self.lock();
        let referenced: std::collections::HashSet<&String> = s
            .objects
            .values()
            .flat_map(|o| o.values().map(|o| &o.storage_key))
            .chain(s.references.values().flatten())
            .collect();
        let mut claimable: Vec<(DateTime<Utc>, Orphan)> = s
            .orphans
            .iter()
            .filter(|(k, (at, _, _))| !referenced.contains(k) && *at <= cutoff)
            .map(|(k, (at, owner, drama))| {
                let orphan = Orphan {
                    storage_key: k.clone(),
                    owner: *owner,
                    drama: drama.clone(),
                };
                (*at, orphan)
            })
            .filter(|(_, o)| o.is_deletable())
            .collect();
        claimable.sort();
        claimable.truncate(limit as usize);
        let orphans: Vec<Orphan> = claimable.into_iter().map(|(_, o)| o).collect();
        for orphan in &orphans {
            s.orphans.remove(&orphan.storage_key);
        }
        Ok(orphans)
    }
}

/// The error of a storage key that does not belong to the drama's owner (the database's
/// `assets_storage_key_owner` rule).
fn foreign_key_error(key: &str, drama: &DramaId) -> RepoError {
    RepoError::invalid(
        "assets_storage_key_owner",
        format!("storage key {key} is not under the prefix of the owner of drama {drama}"),
    )
}

#[async_trait]
impl DramaFeed for MemoryStore {
    async fn drama_changes(&self) -> Result<DramaChangeStream, RepoError> {
        let (tx, rx) = unbounded();
        self.lock().followers.push(tx);
        Ok(rx.boxed())
    }
}
