use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_domain::{
    ApiKeyId, ApiKeyMeta, AssetId, AssetOwner, AssetPatch, CharacterId, CharacterPatch, Drama,
    DramaId, DramaPatch, DramaSummary, EpisodeId, EpisodePatch, SceneId, ScenePatch, User, UserId,
};
use serde_json::Value;

use crate::error::RepoError;
use crate::page::{Page, PageRequest};

/// A drama's version: 1 when created, +1 on every write to the drama or any of its parts.
pub type Version = i64;

/// Tokens a new user starts with (the peer's default).
pub const DEFAULT_TOKENS: i64 = 30;

/// A drama as stored: the document plus what the store keeps about it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDrama {
    /// The document.
    pub drama: Drama,
    /// Whose it is.
    pub owner: UserId,
    /// For optimistic concurrency (`If-Match`).
    pub version: Version,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last write to the drama or any of its parts.
    pub updated_at: DateTime<Utc>,
}

/// Where a generated asset's bytes live, and how they were made.
#[derive(Debug, Clone, PartialEq)]
pub struct AssetObject {
    /// Object key in the asset store.
    pub storage_key: String,
    /// MIME type of the bytes.
    pub content_type: String,
    /// Length of the bytes.
    pub size_bytes: i64,
    /// Checksum of the bytes (e.g. `sha256:<hex>`), when known.
    pub checksum: Option<String>,
    /// Hash of the inputs (prompt, references, model) that produced the bytes.
    pub input_hash: Option<String>,
    /// Provider usage for cost accounting.
    pub usage: Option<Value>,
}

/// Reads and writes of whole dramas and their parts.
///
/// Every method is one transaction and takes the owner: another owner's drama behaves exactly
/// like a missing one. Every write validates its input first and bumps the drama's version.
#[async_trait]
pub trait DramaRepository: Send + Sync {
    /// Stores a new drama with its whole tree for `owner`.
    ///
    /// # Errors
    /// `Invalid` when the drama breaks a model rule; `AlreadyExists` when its id is taken (by
    /// anyone); `NotFound` (User) when the owner does not exist; `Unavailable`.
    async fn create(&self, owner: UserId, drama: &Drama) -> Result<StoredDrama, RepoError>;

    /// Whether any owner has a drama with this id (ids are global; creating one with a taken
    /// id is a conflict).
    ///
    /// # Errors
    /// `Unavailable`.
    async fn id_taken(&self, id: &DramaId) -> Result<bool, RepoError>;

    /// Reads a drama with its whole tree, in a constant number of round trips.
    ///
    /// # Errors
    /// `NotFound` (Drama); `Unavailable`.
    async fn get_complete(&self, owner: UserId, id: &DramaId) -> Result<StoredDrama, RepoError>;

    /// Replaces a drama's whole tree: upserts what is present, deletes what is gone (with their
    /// asset records), keeps generated-object records of assets that stay. Returns the new
    /// version.
    ///
    /// # Errors
    /// `Invalid`; `NotFound` (Drama); `VersionConflict` when `expected` is stale (nothing is
    /// written); `Unavailable`.
    async fn save_complete(
        &self,
        owner: UserId,
        drama: &Drama,
        expected: Option<Version>,
    ) -> Result<Version, RepoError>;

    /// Applies a PATCH to the drama's own fields.
    ///
    /// # Errors
    /// `NotFound` (Drama); `VersionConflict`; `Unavailable`.
    async fn patch_drama(
        &self,
        owner: UserId,
        id: &DramaId,
        patch: &DramaPatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, RepoError>;

    /// Applies a PATCH to one character.
    ///
    /// # Errors
    /// `NotFound` (Drama or Character); `VersionConflict`; `Unavailable`.
    async fn patch_character(
        &self,
        owner: UserId,
        drama: &DramaId,
        character: &CharacterId,
        patch: &CharacterPatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, RepoError>;

    /// Applies a PATCH to one episode.
    ///
    /// # Errors
    /// `NotFound` (Drama or Episode); `VersionConflict`; `Unavailable`.
    async fn patch_episode(
        &self,
        owner: UserId,
        drama: &DramaId,
        episode: &EpisodeId,
        patch: &EpisodePatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, RepoError>;

    /// Applies a PATCH to one scene of one episode.
    ///
    /// # Errors
    /// `NotFound` (Drama, Episode, or Scene — also when the scene is in another episode);
    /// `VersionConflict`; `Unavailable`.
    async fn patch_scene(
        &self,
        owner: UserId,
        drama: &DramaId,
        episode: &EpisodeId,
        scene: &SceneId,
        patch: &ScenePatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, RepoError>;

    /// Applies a PATCH to one asset of the given owner entity.
    ///
    /// # Errors
    /// `NotFound` (Drama, the owner entity, or Asset — also when the asset belongs to another
    /// entity); `VersionConflict`; `Unavailable`.
    async fn patch_asset(
        &self,
        owner: UserId,
        drama: &DramaId,
        asset_owner: &AssetOwner,
        asset: &AssetId,
        patch: &AssetPatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, RepoError>;

    /// Records where an asset's generated bytes are and sets its `url`. Returns the new version.
    ///
    /// # Errors
    /// `NotFound` (Drama or Asset); `Unavailable`.
    async fn attach_asset_object(
        &self,
        owner: UserId,
        drama: &DramaId,
        asset: &AssetId,
        url: &str,
        object: &AssetObject,
    ) -> Result<Version, RepoError>;

    /// The generated-object records of a drama's assets, by asset id.
    ///
    /// # Errors
    /// `NotFound` (Drama); `Unavailable`.
    async fn asset_objects(
        &self,
        owner: UserId,
        drama: &DramaId,
    ) -> Result<HashMap<AssetId, AssetObject>, RepoError>;

    /// Deletes a drama and everything in it. Returns the storage keys of its assets, which are
    /// also recorded as orphans in the same transaction: the caller deletes the objects now,
    /// and the sweeper does if the caller cannot.
    ///
    /// # Errors
    /// `NotFound` (Drama); `Unavailable`.
    async fn delete(&self, owner: UserId, id: &DramaId) -> Result<Vec<String>, RepoError>;

    /// A page of `owner`'s drama summaries, newest `updated_at` first.
    ///
    /// # Errors
    /// `Invalid` (limit); `Unavailable`.
    async fn list_summaries(
        &self,
        owner: UserId,
        page: &PageRequest,
    ) -> Result<Page<DramaSummary>, RepoError>;

    /// A page of `owner`'s complete dramas, newest `updated_at` first, in a constant number of
    /// round trips.
    ///
    /// # Errors
    /// `Invalid` (limit); `Unavailable`.
    async fn list_complete(
        &self,
        owner: UserId,
        page: &PageRequest,
    ) -> Result<Page<StoredDrama>, RepoError>;
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    /// Id (the Supabase subject for people).
    pub id: UserId,
    /// Contact address.
    pub email: Option<String>,
    /// Name to show.
    pub display_name: Option<String>,
    /// Starting balance.
    pub tokens: i64,
    /// Plan name.
    pub subscription_tier: String,
}

impl NewUser {
    /// A user with the default balance and tier.
    pub fn new(id: UserId) -> Self {
        Self {
            id,
            email: None,
            display_name: None,
            tokens: DEFAULT_TOKENS,
            subscription_tier: "free".to_owned(),
        }
    }
}

/// Users and their credit balance.
#[async_trait]
pub trait UserRepository: Send + Sync {
    /// Reads a user.
    ///
    /// # Errors
    /// `NotFound` (User); `Unavailable`.
    async fn get_user(&self, id: UserId) -> Result<User, RepoError>;

    /// Creates a user.
    ///
    /// # Errors
    /// `AlreadyExists` (User); `Invalid` for a negative balance or an empty tier; `Unavailable`.
    async fn create_user(&self, user: &NewUser) -> Result<User, RepoError>;

    /// Returns the user of an authenticated subject, creating it on first sight with
    /// `opening_tokens` (the deployment's initial credits, recorded as the ledger's opening
    /// entry) and the default tier. A known email is kept when `email` is `None`; a known
    /// user's balance is never touched.
    ///
    /// # Errors
    /// `Invalid` for negative opening tokens; `Unavailable`.
    async fn upsert_from_auth(
        &self,
        subject: UserId,
        email: Option<&str>,
        opening_tokens: i64,
    ) -> Result<User, RepoError>;

    /// Takes `amount` tokens atomically. Returns the new balance.
    ///
    /// # Errors
    /// `InsufficientTokens` when the balance is below `amount` (nothing is taken); `Invalid`
    /// when `amount` is not positive; `NotFound` (User); `Unavailable`.
    async fn debit_tokens(&self, id: UserId, amount: i64) -> Result<i64, RepoError>;

    /// Gives back `amount` tokens atomically. Returns the new balance.
    ///
    /// # Errors
    /// `Invalid` when `amount` is not positive; `NotFound` (User); `Unavailable`.
    async fn credit_tokens(&self, id: UserId, amount: i64) -> Result<i64, RepoError>;
}

/// A key just created: the only time its full text exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedApiKey {
    /// What is stored.
    pub meta: ApiKeyMeta,
    /// The full key to hand to the user once.
    pub key: String,
}

/// A stored key with the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    /// Everything but the secret.
    pub meta: ApiKeyMeta,
    /// SHA-256 of the full key.
    pub secret_hash: Vec<u8>,
}

/// API keys for machine clients.
#[async_trait]
pub trait ApiKeyRepository: Send + Sync {
    /// Creates a key for `owner`; the full key is returned once and only its hash is stored.
    ///
    /// # Errors
    /// `Invalid` for an empty name; `NotFound` (User); `Unavailable`.
    async fn create_api_key(
        &self,
        owner: UserId,
        name: &str,
        scopes: &[String],
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<CreatedApiKey, RepoError>;

    /// The key with this lookup prefix, if any (revoked and expired keys included; the caller
    /// decides).
    ///
    /// # Errors
    /// `Unavailable`.
    async fn find_api_key(&self, prefix: &str) -> Result<Option<StoredApiKey>, RepoError>;

    /// `owner`'s keys, newest first.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn list_api_keys(&self, owner: UserId) -> Result<Vec<ApiKeyMeta>, RepoError>;

    /// Revokes one of `owner`'s keys (again is a no-op). Returns the key's record.
    ///
    /// # Errors
    /// `NotFound` (ApiKey) when it is not `owner`'s; `Unavailable`.
    async fn revoke_api_key(&self, owner: UserId, id: ApiKeyId) -> Result<ApiKeyMeta, RepoError>;

    /// Records that the key was used at `at`.
    ///
    /// # Errors
    /// `NotFound` (ApiKey); `Unavailable`.
    async fn record_api_key_use(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<(), RepoError>;
}

/// Objects in the asset store that no record refers to any more.
///
/// Every write that drops a storage key (deleting a drama or an asset, attaching a new object
/// to an asset that had another) records the old key here in the same transaction; a sweeper
/// claims them and deletes the objects. Keys should be unique per generated object, so that a
/// key being swept is never written again.
#[async_trait]
pub trait OrphanRepository: Send + Sync {
    /// Records keys of `owner`'s drama `drama` whose objects must be deleted (e.g. after a
    /// failed write left an object behind). Keys already recorded stay recorded once, with the
    /// owner they were first recorded with.
    ///
    /// # Errors
    /// `Unavailable`.
    async fn record_orphans(
        &self,
        owner: UserId,
        drama: &DramaId,
        keys: &[String],
        reason: &str,
    ) -> Result<(), RepoError>;

    /// Removes up to `limit` recorded keys, oldest first, that were recorded at least
    /// `min_age` ago and that nothing refers to, and returns them: the caller now owns deleting
    /// those objects (and records them again if that fails). The age lets a writer record a
    /// key *before* it writes the object, so a crash between the two never leaks it, without
    /// the sweeper deleting an object that is about to be attached.
    ///
    /// Only keys that belong to their recorded owner and drama
    /// ([`drama_domain::storage_key_belongs`]) are claimed, never an asset-library key
    /// (`{owner}/~{project}/…`), and never one an asset (or, on PostgreSQL, a job's reference
    /// image) still refers to; the others stay recorded for an operator to look at.
    ///
    /// # Errors
    /// `Invalid` for a zero limit; `Unavailable`.
    async fn claim_orphans(
        &self,
        limit: u32,
        min_age: std::time::Duration,
    ) -> Result<Vec<Orphan>, RepoError>;
}

/// A claimed orphan: an object key and whose object it was.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Orphan {
    /// The object key.
    pub storage_key: String,
    /// The owner of the drama that held it.
    pub owner: UserId,
    /// That drama.
    pub drama: DramaId,
}

impl Orphan {
    /// Whether the key may be deleted on behalf of its recorded owner: it belongs to the owner
    /// and drama, and it is not an asset-library object.
    pub fn is_deletable(&self) -> bool {
        drama_domain::storage_key_belongs(&self.storage_key, self.owner, &self.drama)
            && !is_library_key(&self.storage_key)
    }
}

/// Whether `key` is an asset-library object (`{user}/~{project}/…`), which only the library
/// deletes.
pub fn is_library_key(key: &str) -> bool {
    key.split('/')
        .nth(1)
        .is_some_and(|scope| scope.starts_with('~'))
}

/// A drama was created, changed (its version grew) or deleted, by any process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DramaChange {
    /// Which drama.
    pub drama_id: DramaId,
    /// Its owner (subscribers show a change only to its owner).
    pub owner: UserId,
    /// The version after the change (the last one, for a deletion).
    pub version: Version,
    /// Whether the drama is gone.
    pub deleted: bool,
}

/// Notices of drama changes, from now on, in commit order per drama.
pub type DramaChangeStream = futures::stream::BoxStream<'static, DramaChange>;

/// Notices of changes to dramas, so clients can follow a drama live.
#[async_trait]
pub trait DramaFeed: Send + Sync {
    /// Every change committed after the call, by this process or any other sharing the
    /// store. A notice says only which version is current; a subscriber that falls behind
    /// re-reads the drama rather than replaying notices.
    ///
    /// # Errors
    /// `Unavailable` when the store cannot be listened to.
    async fn drama_changes(&self) -> Result<DramaChangeStream, RepoError>;
}

/// Every repository at once: what the server wires and the conformance suite exercises.
pub trait Store:
    DramaRepository
    + UserRepository
    + ApiKeyRepository
    + OrphanRepository
    + DramaFeed
    + crate::UsageRepository
    + crate::CreditLedger
{
}

impl<
    T: DramaRepository
        + UserRepository
        + ApiKeyRepository
        + OrphanRepository
        + DramaFeed
        + crate::UsageRepository
        + crate::CreditLedger,
> Store for T
{
}
