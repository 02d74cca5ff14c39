//! The storage port of the legacy import (`drama-server import-r2`): which file of the old
//! bucket became which drama, at which version, and the write that stores an imported drama
//! together with that record in one transaction.
//!
//! A record outlives its drama on purpose: a rerun can then tell a drama deleted since its
//! import (leave it deleted) from one never imported (create it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_domain::{AssetId, Drama, DramaId, UserId};

use crate::error::{Entity, RepoError};
use crate::memory::MemoryStore;
use crate::repos::{AssetObject, DramaRepository, Version};

/// Who owns a drama and its current version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DramaState {
    /// The owner.
    pub owner: UserId,
    /// The current version.
    pub version: Version,
}

/// What was recorded when a source file was imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    /// Key of the source file in the old bucket (`dramas/{id}/drama.json`, with any prefix).
    pub source_key: String,
    /// SHA-256 (lowercase hex) of the source file's bytes.
    pub source_hash: String,
    /// The drama the file became.
    pub drama_id: DramaId,
    /// Its owner.
    pub owner: UserId,
    /// The drama's version right after the import; a later version means someone edited it.
    pub version: Version,
    /// When the import was recorded.
    pub imported_at: DateTime<Utc>,
}

/// A record together with the current state of its drama (`None` when the drama is gone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedImport {
    /// The record.
    pub record: ImportRecord,
    /// The drama as it is now.
    pub current: Option<DramaState>,
}

/// How an import writes its drama.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportWrite {
    /// The id is free: create the drama. The timestamps (from the old index) are kept where the
    /// store can keep them; `None` means now.
    Create {
        /// Creation time to record.
        created_at: Option<DateTime<Utc>>,
        /// Last-change time to record.
        updated_at: Option<DateTime<Utc>>,
    },
    /// Replace the owner's drama, which must still be at version `expected`.
    Replace {
        /// The version the decision to replace was based on.
        expected: Version,
    },
    /// The owner's drama already holds this content (at version `expected`): record the import
    /// and attach any object records it lacks, without rewriting the tree.
    Keep {
        /// The version the comparison was made against.
        expected: Version,
    },
}

/// One imported drama, written with its record in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyImport {
    /// Key of the source file.
    pub source_key: String,
    /// SHA-256 (lowercase hex) of the source file's bytes.
    pub source_hash: String,
    /// The owner of the drama.
    pub owner: UserId,
    /// The drama as parsed from the file.
    pub drama: Drama,
    /// How to write it.
    pub write: ImportWrite,
    /// Where the bytes of some of its assets are (objects already in the bucket). The assets'
    /// `url`s are taken from `drama` unchanged.
    pub objects: Vec<(AssetId, AssetObject)>,
    /// Keys of bucket objects outside the drama's own folder that its URLs refer to (an
    /// old copy of another drama keeps its original's objects). They get no storage record,
    /// but the store must not let them be swept as orphans while this drama exists; the
    /// set replaces the one recorded by an earlier import of the drama.
    pub references: Vec<String>,
}

/// Bookkeeping of the legacy import.
#[async_trait]
pub trait LegacyImportRepository: Send + Sync {
    /// Every record whose source key starts with `source_prefix`, with the current state of its
    /// drama, in one round trip.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn recorded_imports(&self, source_prefix: &str)
    -> Result<Vec<RecordedImport>, RepoError>;

    /// The owner and version of the drama with this id, whoever owns it.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn drama_state(&self, id: &DramaId) -> Result<Option<DramaState>, RepoError>;

    /// Writes the drama as `import.write` says, attaches `import.objects`, records
    /// `import.references` (replacing the drama's earlier ones) and records the import
    /// (replacing an earlier record of the same source key), all in one transaction.
    /// Returns the record as stored.
    ///
    /// # Errors
    /// `Invalid` (the drama breaks a model rule); `AlreadyExists` (create with a taken id);
    /// `NotFound` (User for create; Drama for replace/keep when it is not the owner's; Asset
    /// when an object names an asset the drama lacks); `VersionConflict` (replace/keep on a
    /// stale version; nothing is written); `Unavailable`.
    async fn apply_import(&self, import: &LegacyImport) -> Result<ImportRecord, RepoError>;

    /// Every user who owns at least one drama, in id order.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn drama_owners(&self) -> Result<Vec<UserId>, RepoError>;
}

/// The in-memory twin of the import bookkeeping, over a [`MemoryStore`].
///
/// [`MemoryStore`] answers only owner-scoped questions, so this type knows the owner of a
/// drama only when the drama was imported through it (or belongs to a recorded import):
/// [`drama_state`](LegacyImportRepository::drama_state) and
/// [`drama_owners`](LegacyImportRepository::drama_owners) see those dramas alone. A create on
/// an id taken by a drama it does not know still fails with `AlreadyExists`, as on PostgreSQL.
/// The memory store has no transactions: the writes of one import (the drama, each object,
/// the record) are applied one after another, so versions count each attached object and two
/// concurrent imports of the same drama may interleave.
pub struct MemoryLegacyImports {
    store: Arc<MemoryStore>,
    state: Mutex<Bookkeeping>,
}

#[derive(Default)]
struct Bookkeeping {
    records: HashMap<String, ImportRecord>,
    owners: HashMap<DramaId, UserId>,
}

impl MemoryLegacyImports {
    /// Bookkeeping over `store`, with no records.
    pub fn new(store: Arc<MemoryStore>) -> Self {
        Self {
            store,
            state: Mutex::new(Bookkeeping::default()),
        }
    }

    /// The store the dramas are written to.
    pub fn store(&self) -> &Arc<MemoryStore> {
        &self.store
    }

    fn lock(&self) -> MutexGuard<'_, Bookkeeping> {
        // Every update below is a single insert, so a poisoned lock still holds sound data.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn state_of(&self, owner: UserId, id: &DramaId) -> Result<Option<DramaState>, RepoError> {
        match self.store.get_complete(owner, id).await {
            Ok(stored) => Ok(Some(DramaState {
                owner,
                version: stored.version,
            })),
            Err(RepoError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Attaches the objects that differ from what is recorded; returns the version afterwards
    /// (`version` when nothing changed).
    async fn attach_objects(
        &self,
        import: &LegacyImport,
        mut version: Version,
    ) -> Result<Version, RepoError> {
        let id = &import.drama.id;
        let current = self.store.asset_objects(import.owner, id).await?;
        let urls: HashMap<&AssetId, Option<&str>> = import
            .drama
            .assets_with_owner()
            .map(|(_, a)| (&a.id, a.url.as_deref()))
            .collect();
        for (asset, object) in &import.objects {
            let url = urls
                .get(asset)
                .ok_or_else(|| RepoError::not_found(Entity::Asset, asset))?;
            if current.get(asset) == Some(object) {
                continue;
            }
            version = self
                .store
                .attach_asset_object(import.owner, id, asset, url.unwrap_or_default(), object)
                .await?;
        }
        Ok(version)
    }
}

#[async_trait]
impl LegacyImportRepository for MemoryLegacyImports {
    async fn recorded_imports(
        &self,
        source_prefix: &str,
    ) -> Result<Vec<RecordedImport>, RepoError> {
        let records: Vec<ImportRecord> = self
            .lock()
            .records
            .values()
            .filter(|r| r.source_key.starts_with(source_prefix))
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(records.len());
        for record in records {
            let current = self.state_of(record.owner, &record.drama_id).await?;
            out.push(RecordedImport { record, current });
        }
        out.sort_by(|a, b| a.record.source_key.cmp(&b.record.source_key));
        Ok(out)
    }

    async fn drama_state(&self, id: &DramaId) -> Result<Option<DramaState>, RepoError> {
        let owner = self.lock().owners.get(id).copied();
        match owner {
            Some(owner) => self.state_of(owner, id).await,
            None => Ok(None),
        }
    }

    async fn apply_import(&self, import: &LegacyImport) -> Result<ImportRecord, RepoError> {
        import.drama.validate()?;
        let id = &import.drama.id;
        let written = match import.write {
            ImportWrite::Create { .. } => {
                self.store
                    .create(import.owner, &import.drama)
                    .await?
                    .version
            }
            ImportWrite::Replace { expected } => {
                self.store
                    .save_complete(import.owner, &import.drama, Some(expected))
                    .await?
            }
            ImportWrite::Keep { expected } => {
                let actual = self.store.get_complete(import.owner, id).await?.version;
                if actual != expected {
                    return Err(RepoError::VersionConflict { expected, actual });
                }
                actual
            }
        };
        self.lock().owners.insert(id.clone(), import.owner);
        let version = self.attach_objects(import, written).await?;
        self.store.set_references(id, &import.references);
        let record = ImportRecord {
            source_key: import.source_key.clone(),
            source_hash: import.source_hash.clone(),
            drama_id: id.clone(),
            owner: import.owner,
            version,
            imported_at: Utc::now(),
        };
        self.lock()
            .records
            .insert(record.source_key.clone(), record.clone());
        Ok(record)
    }

    async fn drama_owners(&self) -> Result<Vec<UserId>, RepoError> {
        let known: Vec<(DramaId, UserId)> = self
            .lock()
            .owners
            .iter()
            .map(|(id, owner)| (id.clone(), *owner))
            .collect();
        let mut owners = Vec::new();
        for (id, owner) in known {
            if self.state_of(owner, &id).await?.is_some() {
                owners.push(owner);
            }
        }
        owners.sort();
        owners.dedup();
        Ok(owners)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::repos::{NewUser, UserRepository};

    fn drama(id: &str, title: &str) -> Drama {
        Drama::from_value(serde_json::json!({
            "id": id, "title": title, "description": "D", "premise": "P",
            "assets": [{"id": "cover", "kind": "image", "prompt": "a cover",
                        "url": "https://bucket.example/dramas/x/cover.png"}]
        }))
        .unwrap()
    }

    fn import(owner: UserId, drama: Drama, write: ImportWrite) -> LegacyImport {
        let storage_key = format!("dramas/{}/cover.png", drama.id);
        LegacyImport {
            source_key: format!("dramas/{}/drama.json", drama.id),
            source_hash: "ab".repeat(32),
            owner,
            drama,
            write,
            objects: vec![(
                AssetId::parse("cover").unwrap(),
                AssetObject {
                    storage_key,
                    content_type: "image/png".to_owned(),
                    size_bytes: 10,
                    checksum: None,
                    input_hash: None,
                    usage: None,
                },
            )],
            references: Vec::new(),
        }
    }

    #[tokio::test]
    async fn records_follow_creates_replaces_and_stale_versions() {
        let store = Arc::new(MemoryStore::new());
        let imports = MemoryLegacyImports::new(store.clone());
        let owner = UserId::random();
        store.create_user(&NewUser::new(owner)).await.unwrap();

        let created = imports
            .apply_import(&import(
                owner,
                drama("d1", "First"),
                ImportWrite::Create {
                    created_at: None,
                    updated_at: None,
                },
            ))
            .await
            .unwrap();
        let objects = store
            .asset_objects(owner, &DramaId::parse("d1").unwrap())
            .await
            .unwrap();
        assert_eq!(objects.len(), 1);
        let state = imports
            .drama_state(&DramaId::parse("d1").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(state.version, created.version);
        assert_eq!(imports.drama_owners().await.unwrap(), vec![owner]);

        let stale = imports
            .apply_import(&import(
                owner,
                drama("d1", "Second"),
                ImportWrite::Replace {
                    expected: created.version + 5,
                },
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(stale, RepoError::VersionConflict { .. }),
            "{stale}"
        );

        let replaced = imports
            .apply_import(&import(
                owner,
                drama("d1", "Second"),
                ImportWrite::Replace {
                    expected: created.version,
                },
            ))
            .await
            .unwrap();
        assert!(replaced.version > created.version);
        let recorded = imports.recorded_imports("dramas/").await.unwrap();
        assert_eq!(recorded.len(), 1);
        assert_eq!(recorded[0].record, replaced);
        assert_eq!(recorded[0].current.unwrap().version, replaced.version);
        assert!(imports.recorded_imports("other/").await.unwrap().is_empty());

        let other = UserId::random();
        store.create_user(&NewUser::new(other)).await.unwrap();
        let taken = imports
            .apply_import(&import(
                other,
                drama("d1", "Third"),
                ImportWrite::Create {
                    created_at: None,
                    updated_at: None,
                },
            ))
            .await
            .unwrap_err();
        assert!(matches!(taken, RepoError::AlreadyExists { .. }), "{taken}");
    }
}
