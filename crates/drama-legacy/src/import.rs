//! `import-r2`: the old bucket's dramas into the repositories.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use drama_assets::{AssetStore, MediaType, ObjectKey};
use drama_dal::legacy::{ImportWrite, LegacyImport};
use drama_dal::legacy_tables::LegacyTables;
use drama_dal::{AssetObject, Entity, RepoError};
use drama_domain::{AssetId, Drama, DramaId, UserId};
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::LegacyError;
use crate::origin::{Candidate, Origin};
use crate::parse::{LegacyDrama, LegacyFileError, field_pattern};
use crate::report::{
    AssetLinks, Counts, DramaReport, ImportReport, MemoryUse, Outcome, Reason, ReasonCode, RunClock,
};
use crate::source::{BucketUrls, Layout, OwnerMap, OwnerTarget, UrlTarget};
use crate::{DramaRemover, Progress, Repositories};

mod audio;
pub(crate) mod budget;
mod gone;
mod records;
mod users;

use gone::{database_failure, deleted_since_import};

use audio::carry_audio;
pub use budget::DEFAULT_MEMORY_BUDGET;
use budget::MemoryBudget;
use records::Records;

/// How an import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Where the old layout is in the bucket.
    pub layout: Layout,
    /// Who the old owners become.
    pub owners: OwnerMap,
    /// URL bases that point into the bucket.
    pub bucket_urls: BucketUrls,
    /// Read and check everything, write nothing.
    pub dry_run: bool,
    /// Replace dramas edited (or deleted) in the database since their import.
    pub overwrite: bool,
    /// Delete a drama whose source (file or row) is gone since its import, when it was not
    /// edited in the database since; without it such dramas are only reported. A run that
    /// writes needs a [`DramaRemover`](crate::DramaRemover) ([`Importer::delete_gone_with`]).
    pub delete_gone: bool,
    /// Files handled at once (at least 1).
    pub jobs: usize,
    /// Most bytes of old drama documents held at once across the jobs, from before a file is
    /// read until its drama is written ([`DEFAULT_MEMORY_BUDGET`]); a file larger than the
    /// whole budget waits until it has the budget to itself. At least 1.
    pub memory_budget: u64,
    /// The credits a user the import creates opens with (`INITIAL_CREDITS`, as a user who
    /// signs in for the first time); users that exist keep their balance.
    pub initial_credits: i64,
    /// Carry the balances (`tokens`) of the old `users` table over. Off by default: the old
    /// tables were writable by anyone holding the project's anon key (allow-all policies,
    /// Supabase's default grants), so an old balance is a claim, not a record; without it
    /// the old users open with `initial_credits` and larger old balances are only reported.
    pub trust_legacy_balances: bool,
    /// The most credits a user brought over from the old `users` table opens with, whatever
    /// its old balance (`LEGACY_MAX_CREDITS`).
    pub max_legacy_credits: i64,
    /// Who could write the old tables, read before adoption closed them: reported as is.
    pub legacy_access: Vec<drama_dal::legacy_tables::LegacyTableAccess>,
}

/// The default of `LEGACY_MAX_CREDITS`.
pub const DEFAULT_MAX_LEGACY_CREDITS: i64 = 100_000;

impl ImportOptions {
    /// Options for the bucket's root layout, with nothing mapped, one file at a time.
    pub fn new(owners: OwnerMap) -> Self {
        Self {
            layout: Layout::default(),
            owners,
            bucket_urls: BucketUrls::default(),
            dry_run: false,
            overwrite: false,
            delete_gone: false,
            jobs: 1,
            memory_budget: DEFAULT_MEMORY_BUDGET,
            initial_credits: drama_dal::DEFAULT_TOKENS,
            trust_legacy_balances: false,
            max_legacy_credits: DEFAULT_MAX_LEGACY_CREDITS,
            legacy_access: Vec::new(),
        }
    }
}

/// An asset whose URL points into the bucket.
struct BucketAsset {
    asset: AssetId,
    key: ObjectKey,
    url: String,
}

/// Reads the old bucket and writes its dramas through the repositories.
pub struct Importer {
    bucket: Arc<dyn AssetStore>,
    repos: Repositories,
    options: ImportOptions,
    origin: Origin,
    /// Deletes dramas whose source is gone (`delete_gone`).
    remover: Option<Arc<dyn DramaRemover>>,
    /// Whether users named directly by files exist.
    known_users: Mutex<HashMap<UserId, bool>>,
    /// Bounds the bytes of documents the jobs hold at once.
    budget: MemoryBudget,
}

impl Importer {
    /// An importer reading `bucket` and writing to `repos`.
    ///
    /// # Errors
    /// [`LegacyError::InvalidOption`] for zero jobs (`--jobs`) or a zero memory budget
    /// (`--memory-mib`).
    pub fn new(
        bucket: Arc<dyn AssetStore>,
        repos: Repositories,
        options: ImportOptions,
    ) -> Result<Self, LegacyError> {
        LegacyError::check_jobs(options.jobs)?;
        if options.memory_budget == 0 {
            return Err(LegacyError::option("--memory-mib", "must be at least 1"));
        }
        Ok(Self {
            budget: MemoryBudget::new(options.memory_budget),
            bucket,
            repos,
            origin: Origin::Bucket(options.layout.clone()),
            options,
            remover: None,
            known_users: Mutex::new(HashMap::new()),
        })
    }

    /// Reads the dramas from the old server's database tables instead of the bucket's layout
    /// (`options.layout` is then unused). Source keys are `db:{schema}/dramas/{id}`; the
    /// bucket is still where asset URLs are looked up.
    #[must_use]
    pub fn from_tables(mut self, tables: Arc<dyn LegacyTables>) -> Self {
        self.origin = Origin::Tables(tables);
        self
    }

    /// How dramas whose source is gone are deleted when `options.delete_gone` is set: the
    /// way the API deletes a drama.
    #[must_use]
    pub fn delete_gone_with(mut self, remover: Arc<dyn DramaRemover>) -> Self {
        self.remover = Some(remover);
        self
    }

    /// Imports every drama of the old layout. Files are handled `jobs` at a time, each in its
    /// own transaction; one bad file never stops the others. When `stop` is cancelled, files
    /// in progress finish and no new one starts; a later run continues where this one stopped.
    ///
    /// # Errors
    /// [`LegacyError`] only for what stops the whole run: the bucket cannot be listed, the
    /// import records cannot be read, an owner cannot be created.
    #[tracing::instrument(skip_all, fields(source = self.origin.source_prefix(), dry_run = self.options.dry_run))]
    pub async fn run(
        &self,
        progress: &dyn Progress,
        stop: &CancellationToken,
    ) -> Result<ImportReport, LegacyError> {
        let clock = RunClock::start();
        if self.options.delete_gone && !self.options.dry_run && self.remover.is_none() {
            return Err(LegacyError::option(
                "--delete-gone",
                "this run was given no way to delete dramas",
            ));
        }
        let mut notes = Vec::new();
        self.access_notes(&mut notes);
        let users_created = self.bring_users(&mut notes).await?;
        let (candidates, mut source) = self.origin.gather(self.bucket.as_ref()).await?;
        source.bucket_urls = self.options.bucket_urls.bases().to_vec();
        // Every origin's records: a drama the other origin brought in is not this one's, but
        // its record says why the drama exists (`imported_from_other_source`).
        let all = self
            .repos
            .imports
            .recorded_imports("")
            .await
            .map_err(LegacyError::Target)?;
        let records = Records::new(all, &self.origin.source_prefix());
        tracing::info!(
            files = candidates.len(),
            recorded = records.by_key.len(),
            "import started"
        );

        let total = candidates.len();
        let found: HashSet<String> = candidates.iter().map(|c| c.key.clone()).collect();
        let gone = self.gone_from_source(&found, &records.by_key);
        progress.start(total + gone.len());
        let records = &records;
        let mut dramas: Vec<DramaReport> = futures::stream::iter(candidates)
            .map(|candidate| async move {
                if stop.is_cancelled() {
                    return None;
                }
                let report = self.import_one(candidate, records).await;
                progress.step(
                    &report.drama_id,
                    report.outcome.as_str(),
                    report.reason.as_ref(),
                );
                Some(report)
            })
            .buffer_unordered(self.options.jobs)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        dramas.sort_by(|a, b| a.source_key.cmp(&b.source_key));
        // Only after every file ran: a run stopped early has not looked at all of them, but
        // what is gone from the source is known from the listing alone.
        if !stop.is_cancelled() {
            for record in gone {
                let report = self.source_gone(record).await;
                progress.step(
                    &report.drama_id,
                    report.outcome.as_str(),
                    report.reason.as_ref(),
                );
                dramas.push(report);
            }
        }

        let mut counts = Counts {
            total,
            ..Counts::default()
        };
        let mut defaulted_fields: BTreeMap<String, usize> = BTreeMap::new();
        for d in &dramas {
            counts.add(d.outcome);
            for path in &d.defaulted {
                *defaulted_fields.entry(field_pattern(path)).or_default() += 1;
            }
        }
        counts.not_started = total - counts.done();
        let elapsed = clock.seconds();
        let report = ImportReport {
            command: match self.origin {
                Origin::Bucket(_) => "import-r2",
                Origin::Tables(_) => "migrate --adopt-legacy",
            },
            notes,
            legacy_access: self.options.legacy_access.clone(),
            trust_legacy_balances: self.options.trust_legacy_balances,
            dry_run: self.options.dry_run,
            overwrite: self.options.overwrite,
            delete_gone: self.options.delete_gone,
            interrupted: counts.not_started > 0,
            started_at: clock.started_at,
            finished_at: Utc::now(),
            elapsed_seconds: elapsed,
            dramas_per_second: rate(counts.done(), elapsed),
            source,
            users_created,
            counts,
            defaulted_fields,
            memory: MemoryUse {
                budget_bytes: self.budget.bytes(),
                peak_bytes: self.budget.peak(),
            },
            dramas,
            library: None,
        };
        tracing::info!(
            imported = report.counts.imported,
            updated = report.counts.updated,
            unchanged = report.counts.unchanged,
            skipped = report.counts.skipped,
            failed = report.counts.failed,
            not_started = report.counts.not_started,
            source_deleted = report.counts.source_deleted,
            deleted = report.counts.deleted,
            "import finished"
        );
        Ok(report)
    }

    #[tracing::instrument(skip_all, fields(source = candidate.key))]
    async fn import_one(&self, candidate: Candidate, records: &Records) -> DramaReport {
        let report = DramaReport::new(
            candidate.key.clone(),
            candidate.id.clone(),
            candidate.in_index,
        );
        let outcome = self.try_import(&candidate, records, report).await;
        let report = match outcome {
            Ok(report) | Err(report) => report,
        };
        if report.outcome == Outcome::Failed {
            // The report carries every failure; the log line is for tracing one file.
            tracing::debug!(
                source = report.source_key,
                reason = report.reason.as_ref().map(|r| r.message.as_str()),
                "import failed"
            );
        }
        report
    }

    /// `Err` carries a finished report (skipped or failed) so that `?` can end the attempt.
    async fn try_import(
        &self,
        candidate: &Candidate,
        records: &Records,
        mut report: DramaReport,
    ) -> Result<DramaReport, DramaReport> {
        let fail = |report: DramaReport, code, message: String| {
            report.done(Outcome::Failed, Some(Reason::new(code, message)))
        };
        let document = match self
            .origin
            .read(self.bucket.as_ref(), candidate, &self.budget)
            .await
        {
            Ok(document) => document,
            Err((reason, true)) => return Err(report.done(Outcome::Skipped, Some(reason))),
            Err((reason, false)) => return Err(report.done(Outcome::Failed, Some(reason))),
        };
        // The bytes, the parsed file and the drama live until the write below is done.
        let _held = document.held;
        let bytes = document.bytes;
        let hash = hex::encode(Sha256::digest(&bytes));
        let parsed = match LegacyDrama::parse(&bytes) {
            Ok(parsed) => parsed,
            Err(LegacyFileError::NotJson(e)) => {
                return Err(fail(report, ReasonCode::NotJson, format!("not JSON: {e}")));
            }
            Err(LegacyFileError::Invalid(e)) => {
                return Err(fail(report, ReasonCode::InvalidDrama, e.to_string()));
            }
        };
        report.defaulted.clone_from(&parsed.defaulted);
        report.kept_extra.clone_from(&parsed.kept_extra);
        report.repairs = document.repairs;
        report.repairs.extend(parsed.repairs.iter().cloned());
        if parsed.drama.id.as_str() != candidate.id {
            let message = format!(
                "the file's id is {:?}, its key says {:?}",
                parsed.drama.id.as_str(),
                candidate.id
            );
            return Err(fail(report, ReasonCode::IdMismatch, message));
        }
        // The old server saves its own model, which has no `user_id`: a drama exported to it
        // (a rollback) and saved there comes back naming no owner. One this import brought in
        // from this very file stays with the user it went to; any other drama of the same id
        // is not this file's, so the owner map decides (and a clash is `id_taken`).
        let resolved = self.options.owners.resolve(&parsed.owner);
        let kept = records
            .by_key
            .get(&candidate.key)
            .filter(|r| !parsed.names_owner && r.record.drama_id == parsed.drama.id)
            .map(|r| r.record.owner)
            .filter(|owner| resolved.map(OwnerTarget::user) != Some(*owner));
        let owner = match (kept, resolved) {
            (Some(user), _) => {
                report.repairs.push(format!(
                    "the file names no owner; drama {} was imported from it for user {user}, \
                     who keeps it",
                    parsed.drama.id.as_str()
                ));
                OwnerTarget::Direct(user)
            }
            (None, Some(owner)) => owner,
            (None, None) => {
                let message = format!(
                    "owner {:?} has no mapping: pass --owner for the old default user 10000 \
                     (and the old demo user), or map it in --owner-map",
                    parsed.owner
                );
                return Err(fail(report, ReasonCode::OwnerUnmapped, message));
            }
        };
        if let OwnerTarget::Direct(user) = owner {
            match self.user_exists(user).await {
                Ok(true) => {}
                Ok(false) => {
                    let message = format!("the file names user {user}, who does not exist");
                    return Err(fail(report, ReasonCode::OwnerMissing, message));
                }
                Err(e) => return Err(fail(report, ReasonCode::Database, e.to_string())),
            }
        }
        report.owner = Some(owner.user());
        let (in_bucket, references) =
            self.bucket_assets(owner.user(), &parsed.drama, &mut report.assets);
        let file = ParsedFile {
            candidate,
            hash,
            owner: owner.user(),
            drama: parsed.drama,
            in_bucket,
            references,
        };
        self.write(file, records, report).await
    }

    /// Sorts the asset URLs into bucket and foreign ones. Only objects in the drama's own
    /// folder of the old layout (`{prefix}dramas/{id}/…`) get a storage record: any other
    /// object of the bucket may be another user's, and a record makes the server read, serve
    /// and eventually delete it on this drama's behalf. The keys of the others, named by any
    /// URL field of the drama (assets, cover, portraits, premise images, episode videos,
    /// storyboards, clips), are returned as references (second), so that the object is not
    /// swept while this drama still shows its URL (an old copy of a drama keeps its
    /// original's objects).
    fn bucket_assets(
        &self,
        owner: UserId,
        drama: &Drama,
        links: &mut AssetLinks,
    ) -> (Vec<BucketAsset>, Vec<String>) {
        let folder = format!("{}dramas/{}/", self.options.layout.prefix(), drama.id);
        let outside = |key: &ObjectKey| {
            !key.as_str().starts_with(&folder)
                || !drama_domain::storage_key_belongs(key.as_str(), owner, &drama.id)
        };
        let mut found = Vec::new();
        for (_, asset) in drama.assets_with_owner() {
            let Some(url) = asset.url.as_deref() else {
                continue;
            };
            match self.options.bucket_urls.target(url) {
                UrlTarget::Bucket(key) if outside(&key) => {
                    links.unusable.push(format!(
                        "{url} (not in the drama's folder {folder} of the old layout)"
                    ));
                }
                UrlTarget::Bucket(key) => {
                    links.in_bucket += 1;
                    found.push(BucketAsset {
                        asset: asset.id.clone(),
                        key,
                        url: url.to_owned(),
                    });
                }
                UrlTarget::BucketUnusable(why) => {
                    links.unusable.push(format!("{url} ({why})"));
                }
                UrlTarget::Foreign => links.foreign += 1,
            }
        }
        let references: std::collections::BTreeSet<String> = drama
            .media_urls()
            .into_iter()
            .filter_map(|url| match self.options.bucket_urls.target(url) {
                UrlTarget::Bucket(key) if outside(&key) => Some(key.to_string()),
                _ => None,
            })
            .collect();
        (found, references.into_iter().collect())
    }

    /// Decides what to do with a parsed file and does it.
    async fn write(
        &self,
        mut file: ParsedFile<'_>,
        records: &Records,
        mut report: DramaReport,
    ) -> Result<DramaReport, DramaReport> {
        let id = &file.drama.id;
        let overwrite = self.options.overwrite;
        // The record of an earlier import of this very file into this very drama and owner.
        let imported_here = records
            .by_key
            .get(&file.candidate.key)
            .filter(|r| r.record.drama_id == *id && r.record.owner == file.owner);
        // An unchanged file is skipped without a write, unless its drama refers to objects
        // outside its folder: an import by an earlier version did not record those, and the
        // write below (a keep, for an unchanged drama) does.
        if let Some(r) = imported_here
            && r.record.source_hash == file.hash
            && !overwrite
            && (file.references.is_empty()
                || r.current.is_none_or(|now| now.version != r.record.version))
        {
            match r.current {
                Some(now) if now.owner == file.owner => {
                    report.version = Some(now.version);
                    let note = (now.version != r.record.version).then(|| {
                        Reason::new(
                            ReasonCode::EditedSinceImport,
                            format!(
                                "file unchanged; the drama was edited in the database since its \
                                 import (version {}, imported as version {}) and is left as it is",
                                now.version, r.record.version
                            ),
                        )
                    });
                    return Ok(report.done(Outcome::Unchanged, note));
                }
                None => return Err(deleted_since_import(report)),
                Some(_) => {}
            }
        }

        let state = match self.repos.imports.drama_state(id).await {
            Ok(state) => state,
            Err(e) => return Err(database_failure(report, &e)),
        };
        let Some(state) = state else {
            if imported_here.is_some() && !overwrite {
                return Err(deleted_since_import(report));
            }
            let objects = self
                .head_objects(&file.in_bucket, &HashMap::new(), &mut report.assets)
                .await
                .map_err(|reason| report.clone().done(Outcome::Failed, Some(reason)))?;
            let write = ImportWrite::Create {
                created_at: file.candidate.created_at,
                updated_at: file.candidate.updated_at,
            };
            return self
                .apply(file, write, objects, Outcome::Imported, report)
                .await;
        };
        if state.owner != file.owner {
            return Err(report.done(
                Outcome::Failed,
                Some(Reason::new(
                    ReasonCode::IdTaken,
                    format!(
                        "drama {id} belongs to another user; change the id in the file, or map \
                         the file's owner to that user"
                    ),
                )),
            ));
        }
        let stored = match self.repos.dramas.get_complete(file.owner, id).await {
            Ok(stored) => stored,
            Err(e) => return Err(database_failure(report, &e)),
        };
        // An old file cannot hold audio assets (the old model refuses them, and the export
        // leaves them out): the stored drama's stay, so that a drama exported and read back
        // is unchanged and a roll-forward does not lose them.
        let carried = carry_audio(&stored.drama, &mut file.drama);
        if carried > 0 {
            report.repairs.push(format!(
                "{carried} audio asset(s) of the stored drama kept (an old file cannot hold \
                 them)"
            ));
        }
        let id = &file.drama.id;
        let existing = match self.repos.dramas.asset_objects(file.owner, id).await {
            Ok(existing) => existing,
            Err(e) => return Err(database_failure(report, &e)),
        };
        let (write, outcome) = if stored.drama == file.drama {
            (
                ImportWrite::Keep {
                    expected: stored.version,
                },
                Outcome::Unchanged,
            )
        } else {
            match imported_here {
                Some(r) if r.record.version == stored.version => {}
                Some(r) if !overwrite => {
                    return Err(report.done(
                        Outcome::Skipped,
                        Some(Reason::new(
                            ReasonCode::EditedSinceImport,
                            format!(
                                "the file changed, and the drama was edited in the database \
                                 since its import (version {}, imported as version {}); \
                                 --overwrite replaces it with the file",
                                stored.version, r.record.version
                            ),
                        )),
                    ));
                }
                None if !overwrite => {
                    let reason = records.not_imported_here(
                        &file.candidate.key,
                        id,
                        file.owner,
                        stored.version,
                    );
                    return Err(report.done(Outcome::Skipped, Some(reason)));
                }
                _ => {}
            }
            (
                ImportWrite::Replace {
                    expected: stored.version,
                },
                Outcome::Updated,
            )
        };
        report.version = Some(stored.version);
        let existing_keys: HashMap<AssetId, String> = existing
            .into_iter()
            .map(|(asset, object)| (asset, object.storage_key))
            .collect();
        let objects = self
            .head_objects(&file.in_bucket, &existing_keys, &mut report.assets)
            .await
            .map_err(|reason| report.clone().done(Outcome::Failed, Some(reason)))?;
        let outcome = if outcome == Outcome::Unchanged && !objects.is_empty() {
            Outcome::Updated
        } else {
            outcome
        };
        self.apply(file, write, objects, outcome, report).await
    }

    /// Looks up the objects of bucket URLs that have no record with the same key yet.
    async fn head_objects(
        &self,
        in_bucket: &[BucketAsset],
        existing: &HashMap<AssetId, String>,
        links: &mut AssetLinks,
    ) -> Result<Vec<(AssetId, AssetObject)>, Reason> {
        let mut seen: HashMap<ObjectKey, Option<AssetObject>> = HashMap::new();
        let mut objects = Vec::new();
        for linked in in_bucket {
            if existing.get(&linked.asset).map(String::as_str) == Some(linked.key.as_str()) {
                continue;
            }
            if !seen.contains_key(&linked.key) {
                let object = match self.bucket.head(&linked.key).await {
                    Ok(info) => Some(AssetObject {
                        storage_key: linked.key.to_string(),
                        content_type: content_type_of(&linked.key, &info.content_type),
                        size_bytes: i64::try_from(info.size).unwrap_or(i64::MAX),
                        checksum: info.checksum,
                        input_hash: None,
                        usage: None,
                    }),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => {
                        return Err(Reason::new(
                            ReasonCode::SourceUnavailable,
                            format!("looking up {}: {e}", linked.key),
                        ));
                    }
                };
                seen.insert(linked.key.clone(), object);
            }
            match seen.get(&linked.key).cloned().flatten() {
                Some(object) => objects.push((linked.asset.clone(), object)),
                None => links.missing_objects.push(linked.url.clone()),
            }
        }
        links.recorded = objects.len();
        Ok(objects)
    }

    async fn apply(
        &self,
        file: ParsedFile<'_>,
        write: ImportWrite,
        objects: Vec<(AssetId, AssetObject)>,
        outcome: Outcome,
        mut report: DramaReport,
    ) -> Result<DramaReport, DramaReport> {
        if self.options.dry_run {
            return Ok(report.done(outcome, None));
        }
        let import = LegacyImport {
            source_key: file.candidate.key.clone(),
            source_hash: file.hash,
            owner: file.owner,
            drama: file.drama,
            write,
            objects,
            references: file.references,
        };
        match self.repos.imports.apply_import(&import).await {
            Ok(record) => {
                report.version = Some(record.version);
                Ok(report.done(outcome, None))
            }
            Err(RepoError::AlreadyExists { .. }) => {
                let reason = self.created_meanwhile(import.owner, &import.drama.id).await;
                Err(report.done(Outcome::Failed, Some(reason)))
            }
            Err(e) => {
                let (code, message) = match &e {
                    RepoError::VersionConflict { .. }
                    | RepoError::NotFound {
                        entity: Entity::Drama | Entity::Asset,
                        ..
                    } => (
                        ReasonCode::Conflict,
                        format!(
                            "the drama changed in the database during the import ({e}); run again"
                        ),
                    ),
                    RepoError::NotFound {
                        entity: Entity::User,
                        ..
                    } => (ReasonCode::OwnerMissing, e.to_string()),
                    RepoError::Invalid(_) => (ReasonCode::InvalidDrama, e.to_string()),
                    _ => (ReasonCode::Database, e.to_string()),
                };
                Err(report.done(Outcome::Failed, Some(Reason::new(code, message))))
            }
        }
    }
}

impl Importer {
    /// Why the create of drama `id` for `owner` found the id taken, although it was free when
    /// the import looked: someone created it in between. Whose it is now decides: the same
    /// owner's means another import of the same drama ran at the same time (a second
    /// `import-r2`, or `migrate --adopt-legacy` and `import-r2` at once), and a rerun compares
    /// the file with what that import wrote; another user's is a real clash.
    async fn created_meanwhile(&self, owner: UserId, id: &DramaId) -> Reason {
        // Asked through the owner first: the in-memory twin knows the owner of a drama only
        // when it was imported through it.
        let owners = match self.repos.dramas.get_complete(owner, id).await {
            Ok(_) => true,
            Err(RepoError::NotFound { .. }) => match self.repos.imports.drama_state(id).await {
                Ok(state) => state.is_some_and(|s| s.owner == owner),
                Err(e) => return Reason::new(ReasonCode::Database, e.to_string()),
            },
            Err(e) => return Reason::new(ReasonCode::Database, e.to_string()),
        };
        if owners {
            Reason::new(
                ReasonCode::Conflict,
                format!(
                    "drama {id} was created for this same owner while this import ran (another \
                     import of it at the same time: a second import-r2, or migrate \
                     --adopt-legacy); run again once that one has finished, to compare the file \
                     with what it wrote"
                ),
            )
        } else {
            Reason::new(
                ReasonCode::IdTaken,
                format!("drama {id} was created by another user during the import"),
            )
        }
    }
}

/// A file that parsed, with everything decided about it but what to write.
struct ParsedFile<'c> {
    candidate: &'c Candidate,
    hash: String,
    owner: UserId,
    drama: Drama,
    in_bucket: Vec<BucketAsset>,
    /// Bucket keys outside the drama's folder that its URLs name.
    references: Vec<String>,
}

/// The stored content type, or the one the key's extension names when the store knows none.
fn content_type_of(key: &ObjectKey, stored: &str) -> String {
    let vague = stored.trim().is_empty()
        || stored.eq_ignore_ascii_case("application/octet-stream")
        || stored.eq_ignore_ascii_case("binary/octet-stream");
    match key.media_type() {
        Some(media) if vague => media.mime().to_owned(),
        _ if vague => MediaType::Binary.mime().to_owned(),
        _ => stored.to_owned(),
    }
}

pub(crate) fn rate(done: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        #[allow(clippy::cast_precision_loss)]
        let done = done as f64;
        done / seconds
    } else {
        0.0
    }
}
