//! What a run did, drama by drama: printed at the end and written as JSON (`--report FILE`).
//! The JSON shape is documented in `docs/MIGRATION.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Instant;

use chrono::{DateTime, Utc};
use drama_dal::Version;
use drama_domain::UserId;
use serde::Serialize;

/// When a run started: on the wall clock for its report, and on the monotonic clock for its
/// length (which a change of the system time cannot skew).
pub(crate) struct RunClock {
    pub(crate) started_at: DateTime<Utc>,
    clock: Instant,
}

impl RunClock {
    pub(crate) fn start() -> Self {
        Self {
            started_at: Utc::now(),
            clock: Instant::now(),
        }
    }

    /// Seconds since the start.
    pub(crate) fn seconds(&self) -> f64 {
        self.clock.elapsed().as_secs_f64()
    }
}

/// What happened to one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new drama was created.
    Imported,
    /// An existing drama was rewritten (its file changed, or `--overwrite`), or object records
    /// were added to it.
    Updated,
    /// Nothing needed writing.
    Unchanged,
    /// Deliberately left alone; the reason says why and what would change it.
    Skipped,
    /// Could not be imported; the reason says why.
    Failed,
    /// Imported earlier, but the source no longer holds it (deleted on the old side); the
    /// drama is kept, and the reason says why (`--delete-gone` not given, or edited since).
    SourceDeleted,
    /// Imported earlier, the source no longer holds it, and the drama, unchanged since its
    /// import, was deleted (`--delete-gone`; in a dry run: would be).
    Deleted,
}

impl Outcome {
    /// The JSON name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Imported => "imported",
            Self::Updated => "updated",
            Self::Unchanged => "unchanged",
            Self::Skipped => "skipped",
            Self::Failed => "failed",
            Self::SourceDeleted => "source_deleted",
            Self::Deleted => "deleted",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a file was skipped or failed, as a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonCode {
    /// Skipped: the drama was edited in the database since its import (`--overwrite` replaces
    /// it with the file).
    EditedSinceImport,
    /// Skipped: the drama was deleted in the database since its import (`--overwrite`
    /// creates it again).
    DeletedSinceImport,
    /// Skipped: a drama with this id and owner exists but was not imported from this file, and
    /// differs from it (`--overwrite` replaces it).
    ExistsNotImported,
    /// Skipped: a drama with this id and owner exists, was imported from another source (the
    /// old server's tables and its bucket held two copies of the same drama) and differs from
    /// this one (`--overwrite` replaces it with this one).
    ImportedFromOtherSource,
    /// Skipped: listed in `dramas/index.json`, but its `drama.json` does not exist.
    MissingFile,
    /// Failed: the file is not JSON.
    NotJson,
    /// Failed: the JSON is not a valid drama (the message names the field).
    InvalidDrama,
    /// Failed: the id inside the file differs from the one in its key.
    IdMismatch,
    /// Failed: the file's owner has no mapping (`--owner`, `--owner-map`).
    OwnerUnmapped,
    /// Failed: the file names a user id that does not exist.
    OwnerMissing,
    /// Failed: the id belongs to a drama of another user.
    IdTaken,
    /// Failed: the drama changed in the database while it was being imported; run again.
    Conflict,
    /// Failed: the bucket could not be read; run again.
    SourceUnavailable,
    /// Failed: the database refused or could not be reached; run again.
    Database,
    /// Failed: the bucket could not be written (export, library copies); run again.
    TargetUnavailable,
    /// Failed: an asset-library record cannot be used (its type, tag or id is not valid).
    InvalidRecord,
    /// Failed: the old key breaks this server's key rules, so the bucket client cannot read
    /// it (the old server wrote `{user}//images/{id}.json` for a project whose name had no
    /// ASCII letter or digit); copy it by hand.
    UnreadableKey,
    /// Failed: the old asset-library record is larger than this server reads (1 MiB).
    TooLarge,
    /// Kept: the source no longer holds the file (or row) the drama was imported from;
    /// `--delete-gone` deletes the drama when it was not edited since its import.
    SourceDeleted,
}

/// A skip or failure reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// Stable code.
    pub code: ReasonCode,
    /// For people.
    pub message: String,
}

impl Reason {
    /// A reason.
    pub fn new(code: ReasonCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What became of the asset URLs of one drama.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AssetLinks {
    /// Assets whose URL points into the bucket at an existing object: they carry a storage
    /// record (size, content type, key) after the import.
    pub in_bucket: usize,
    /// Of those, how many records this run wrote (0 when they were already there).
    pub recorded: usize,
    /// Asset URLs pointing elsewhere, kept as they are.
    pub foreign: usize,
    /// Asset URLs pointing into the bucket at no object: kept as they are, no record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_objects: Vec<String>,
    /// Asset URLs pointing into the bucket at a path the asset store cannot use as a key:
    /// kept as they are, no record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unusable: Vec<String>,
}

/// One source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DramaReport {
    /// Key of the file in the bucket.
    pub source_key: String,
    /// The drama id.
    pub drama_id: String,
    /// The owner, once resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
    /// What happened.
    pub outcome: Outcome,
    /// Why, for skipped and failed files (and notes on some unchanged ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// The drama's version after this run, when it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// Whether `dramas/index.json` lists it.
    pub in_index: bool,
    /// Fields that took their default.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub defaulted: Vec<String>,
    /// Unknown keys kept in `metadata.legacy_extra`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept_extra: Vec<String>,
    /// Other repairs.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
    /// Asset URLs.
    pub assets: AssetLinks,
}

impl DramaReport {
    pub(crate) fn new(source_key: String, drama_id: String, in_index: bool) -> Self {
        Self {
            source_key,
            drama_id,
            owner: None,
            outcome: Outcome::Failed,
            reason: None,
            version: None,
            in_index,
            defaulted: Vec::new(),
            kept_extra: Vec::new(),
            repairs: Vec::new(),
            assets: AssetLinks::default(),
        }
    }

    pub(crate) fn done(mut self, outcome: Outcome, reason: Option<Reason>) -> Self {
        self.outcome = outcome;
        self.reason = reason;
        self
    }
}

/// Files per outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Files found (index entries and listed files, without repeats).
    pub total: usize,
    /// Created.
    pub imported: usize,
    /// Rewritten.
    pub updated: usize,
    /// Left as they were.
    pub unchanged: usize,
    /// Left alone on purpose.
    pub skipped: usize,
    /// Could not be imported.
    pub failed: usize,
    /// Not reached because the run was interrupted.
    pub not_started: usize,
    /// Imported earlier, gone from the source, kept (not part of `total`).
    pub source_deleted: usize,
    /// Imported earlier, gone from the source, deleted (not part of `total`).
    pub deleted: usize,
}

impl Counts {
    pub(crate) fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Imported => self.imported += 1,
            Outcome::Updated => self.updated += 1,
            Outcome::Unchanged => self.unchanged += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Failed => self.failed += 1,
            Outcome::SourceDeleted => self.source_deleted += 1,
            Outcome::Deleted => self.deleted += 1,
        }
    }

    /// Files of the source finished (every outcome but those of dramas the source no
    /// longer holds).
    pub fn done(&self) -> usize {
        self.imported + self.updated + self.unchanged + self.skipped + self.failed
    }
}

/// What the run found in the bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SourceSummary {
    /// `bucket` (the old layout's files) or `database` (the old server's tables).
    pub origin: &'static str,
    /// Bucket key prefix of the old layout (empty for the bucket's root).
    pub prefix: String,
    /// `read`, `missing` or `unreadable: <why>` (a missing or unreadable index counts as empty,
    /// as on the old server).
    pub index: String,
    /// Entries in `dramas/index.json`.
    pub index_entries: usize,
    /// `dramas/*/drama.json` files found by listing.
    pub files_listed: usize,
    /// Listed files the index lacks (imported all the same).
    pub not_in_index: usize,
    /// URL bases taken to point into the bucket.
    pub bucket_urls: Vec<String>,
}

/// The bytes of old drama documents the import's jobs held at once (`--memory-mib`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemoryUse {
    /// The budget.
    pub budget_bytes: u64,
    /// The most held at once: at most the budget, unless one file larger than the whole
    /// budget held it alone.
    pub peak_bytes: u64,
}

/// The result of `import-r2`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportReport {
    /// Always `import-r2`.
    pub command: &'static str,
    /// Nothing was written.
    pub dry_run: bool,
    /// Database edits were overwritten by changed files.
    pub overwrite: bool,
    /// Dramas whose source is gone were deleted when unchanged since their import.
    pub delete_gone: bool,
    /// The run was stopped before every file was handled; run again to continue.
    pub interrupted: bool,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Wall-clock seconds.
    pub elapsed_seconds: f64,
    /// Files handled per second.
    pub dramas_per_second: f64,
    /// The bucket side.
    pub source: SourceSummary,
    /// Users created for mapped owners, and (from the old database) its users and the UUIDs
    /// owning its dramas (in a dry run: that would be created).
    pub users_created: Vec<UserId>,
    /// What the run noticed beyond single dramas (old user rows that cannot become users,
    /// tables that are not imported).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Who could write each old table before adoption (`migrate --adopt-legacy` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub legacy_access: Vec<drama_dal::legacy_tables::LegacyTableAccess>,
    /// The old balances were carried over (`--trust-legacy-balances`).
    pub trust_legacy_balances: bool,
    /// Files per outcome.
    pub counts: Counts,
    /// How often each field took its default (`characters[].voice_description`), over every
    /// file that parsed, whatever became of it.
    pub defaulted_fields: BTreeMap<String, usize>,
    /// The memory budget of the documents held at once, and the most they held.
    pub memory: MemoryUse,
    /// Every file, in key order; then every drama imported earlier whose source is gone
    /// (`source_deleted`, `deleted`), in key order.
    pub dramas: Vec<DramaReport>,
    /// The old asset library, when it was imported too.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<crate::library::LibraryReport>,
}

impl ImportReport {
    /// Whether anything failed or the run was interrupted (the command then exits non-zero).
    pub fn is_failure(&self) -> bool {
        self.counts.failed > 0
            || self.interrupted
            || self
                .library
                .as_ref()
                .is_some_and(crate::library::LibraryReport::is_failure)
    }
}

/// One exported drama.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedDrama {
    /// The drama id.
    pub drama_id: String,
    /// Its owner.
    pub owner: UserId,
    /// Key written.
    pub key: String,
    /// The version exported.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// `exported` or `failed`.
    pub outcome: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// What the file leaves out because the old model cannot read it (audio assets); the
    /// database keeps it. An exported drama with repairs is counted in `repaired` too.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repairs: Vec<String>,
    /// Where the file found at `key` was copied before this export overwrote it (in a dry
    /// run: would be): no import record or earlier export of this owner explained it, so it
    /// may be an old drama that was never imported (`dramas-conflict/{id}/{sha256}/…`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub set_aside: Option<String>,
}

/// The file of a drama deleted in the database since its import, which the export moved out
/// of the old layout (the old server would still serve it by id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MovedFile {
    /// The drama id.
    pub drama_id: String,
    /// Where the file was (`dramas/{id}/drama.json`).
    pub key: String,
    /// Where it is now (`dramas-deleted/{id}/drama.json`).
    pub to: String,
    /// `moved` (in a dry run: would be), or `failed`.
    pub outcome: &'static str,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// The result of `export-r2`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportReport {
    /// Always `export-r2`.
    pub command: &'static str,
    /// Nothing was written.
    pub dry_run: bool,
    /// The run was stopped early; the index was not rewritten. Run again.
    pub interrupted: bool,
    /// Bucket key prefix of the old layout.
    pub prefix: String,
    /// When the run started.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: DateTime<Utc>,
    /// Wall-clock seconds.
    pub elapsed_seconds: f64,
    /// Dramas exported per second.
    pub dramas_per_second: f64,
    /// Dramas of the exported owners in the database.
    pub total: usize,
    /// Files written (in a dry run: that would be written).
    pub exported: usize,
    /// Of the exported, those whose file leaves something out that the old model cannot read
    /// (their `repairs` say what).
    pub repaired: usize,
    /// Dramas that could not be exported.
    pub failed: usize,
    /// Not reached because the run was interrupted.
    pub not_started: usize,
    /// Whether `dramas/index.json` was rewritten.
    pub index_written: bool,
    /// Entries in the rewritten index.
    pub index_entries: usize,
    /// Every owner's dramas were exported (`--all-owners`).
    pub all_owners: bool,
    /// The owners whose dramas were exported: without `--all-owners`, those an import brought
    /// dramas in for, the legacy user and `--owner`, when they own dramas.
    pub owners: Vec<UserId>,
    /// Dramas of other owners, left out (they stay private: the old server publishes every
    /// drama of its bucket).
    pub left_out: usize,
    /// How many owners those dramas belong to.
    pub left_out_owners: usize,
    /// `drama.json` files already in the bucket for dramas the export did not write (deleted
    /// since the import, never imported, or of an owner left out). Those of dramas imported
    /// and since deleted are moved aside (`moved_aside`); the others stay in place.
    pub stale_files: Vec<String>,
    /// The stale files left in place that the rewritten index keeps listing (their entry of
    /// the old index, or one read from the file), so that the old server still lists them.
    pub stale_indexed: Vec<String>,
    /// Files of dramas imported and since deleted in the database, moved from `dramas/` to
    /// `dramas-deleted/` so that the old server no longer serves them by id.
    pub moved_aside: Vec<MovedFile>,
    /// Every drama, by id.
    pub dramas: Vec<ExportedDrama>,
}

impl ExportReport {
    /// Whether anything failed or the run was interrupted.
    pub fn is_failure(&self) -> bool {
        self.failed > 0 || self.interrupted || self.moved_aside.iter().any(|m| m.reason.is_some())
    }
}
