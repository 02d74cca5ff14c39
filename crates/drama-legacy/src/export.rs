//! `export-r2`: the repositories' dramas back into the old layout, so that the old server can
//! run again on current data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use drama_assets::{AssetStore, MediaType, ObjectKey};
use drama_dal::legacy::RecordedImport;
use drama_dal::{MAX_PAGE_SIZE, PageRequest, RepoError};
use drama_domain::{DramaId, UserId};
use futures::StreamExt as _;
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::error::LegacyError;
use crate::format::{
    IndexEntry, LegacyIndex, drama_file, exported_owner, for_old_model, names_owner,
};
use crate::import::rate;
use crate::report::{ExportReport, ExportedDrama, MovedFile, Reason, ReasonCode, RunClock};
use crate::source::Layout;
use crate::{Progress, Repositories};

/// How an export runs.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// Where to write the old layout in the bucket.
    pub layout: Layout,
    /// Read and serialise everything, write nothing.
    pub dry_run: bool,
    /// Dramas handled at once (at least 1).
    pub jobs: usize,
    /// Whose dramas to write.
    pub owners: ExportOwners,
}

/// Whose dramas an export writes. The old server serves every drama of its bucket to anyone
/// (`GET /dramas`, `/graphql`, and usually a public bucket), so a drama written there is
/// published: by default only the old server's own world goes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportOwners {
    /// The owners an import brought dramas in for (every `legacy_imports` record names one,
    /// from the bucket or the old tables), plus these users: the one old clients act as
    /// (`LEGACY_USER_ID`), and any named with `--owner`.
    Legacy(BTreeSet<UserId>),
    /// Every owner of a drama (`--all-owners`): the dramas users created in the new system,
    /// private there, become public on the old server.
    All,
}

impl Default for ExportOwners {
    fn default() -> Self {
        Self::Legacy(BTreeSet::new())
    }
}

/// The dramas an export writes, and those of the other owners it leaves out.
struct Selection {
    /// (owner, drama) pairs to write.
    dramas: Vec<(UserId, DramaId)>,
    /// The owners whose dramas are written, by id.
    owners: Vec<UserId>,
    /// Drama id → owner, of the dramas left out.
    left_out: BTreeMap<String, UserId>,
}

/// Writes every drama of the repositories as `dramas/{id}/drama.json` and rebuilds
/// `dramas/index.json`.
pub struct Exporter {
    bucket: Arc<dyn AssetStore>,
    repos: Repositories,
    options: ExportOptions,
}

const EXPORTED: &str = "exported";
const FAILED: &str = "failed";
const GONE: &str = "gone";
const MOVED: &str = "moved";

impl Exporter {
    /// An exporter writing to `bucket` from `repos`.
    ///
    /// # Errors
    /// [`LegacyError::InvalidOption`] (`--jobs`) for zero jobs.
    pub fn new(
        bucket: Arc<dyn AssetStore>,
        repos: Repositories,
        options: ExportOptions,
    ) -> Result<Self, LegacyError> {
        LegacyError::check_jobs(options.jobs)?;
        Ok(Self {
            bucket,
            repos,
            options,
        })
    }

    /// Exports every drama of the chosen owners ([`ExportOwners`]), `jobs` at a time, then
    /// rewrites the index with the dramas written and the entries of the old files left in
    /// place (not in a dry run, nor after an interruption: the old index then stays).
    /// Dramas are listed first and then read one by one, so each is exported as it is when
    /// read; stop writers for an exact snapshot.
    ///
    /// # Errors
    /// [`LegacyError`] when the dramas cannot be listed, or the bucket cannot be listed or the
    /// index written.
    #[tracing::instrument(skip_all, fields(prefix = self.options.layout.prefix(), dry_run = self.options.dry_run))]
    pub async fn run(
        &self,
        progress: &dyn Progress,
        stop: &CancellationToken,
    ) -> Result<ExportReport, LegacyError> {
        let clock = RunClock::start();
        let records = self
            .repos
            .imports
            .recorded_imports("")
            .await
            .map_err(LegacyError::Target)?;
        // Key → hashes of the files imported from it: a file in place that one of them
        // explains may be overwritten.
        let mut imported: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in &records {
            imported
                .entry(r.record.source_key.clone())
                .or_default()
                .insert(r.record.source_hash.clone());
        }
        let imported = &imported;
        let Selection {
            dramas,
            owners,
            left_out,
        } = self.select(&records).await.map_err(LegacyError::Target)?;
        let total = dramas.len();
        progress.start(total);
        let mut results: Vec<(ExportedDrama, Option<IndexEntry>)> = futures::stream::iter(dramas)
            .map(|(owner, id)| async move {
                if stop.is_cancelled() {
                    return None;
                }
                let done = self.export_one(owner, id, imported).await;
                progress.step(&done.0.drama_id, done.0.outcome, done.0.reason.as_ref());
                Some(done)
            })
            .buffer_unordered(self.options.jobs)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        results.sort_by(|a, b| a.0.drama_id.cmp(&b.0.drama_id));
        let reached = results.len();
        let interrupted = reached < total;

        let layout = &self.options.layout;
        let in_database: BTreeSet<String> =
            results.iter().map(|(d, _)| d.drama_id.clone()).collect();
        let stale_files: Vec<String> = self
            .bucket
            .list(&layout.dramas_prefix()?)
            .await
            .map_err(LegacyError::Bucket)?
            .into_iter()
            .filter_map(|o| {
                let id = layout.drama_id_of(o.key.as_str())?;
                (!in_database.contains(id)).then(|| o.key.to_string())
            })
            .collect();
        // Only a complete run knows which dramas the database lacks.
        let moved_aside = if interrupted {
            Vec::new()
        } else {
            self.move_aside(&stale_files, &records).await?
        };

        let mut index = LegacyIndex::default();
        for (_, entry) in &results {
            if let Some(entry) = entry {
                index.dramas.insert(entry.id.clone(), entry.clone());
            }
        }
        let stale_indexed = if interrupted {
            Vec::new()
        } else {
            self.carry_over(&stale_files, &moved_aside, &left_out, &mut index)
                .await?
        };
        let index_written = !self.options.dry_run && !interrupted;
        if index_written {
            let now = Utc::now();
            let bytes = index.to_file(now).map_err(|e| {
                LegacyError::option("index", format!("cannot serialise the index: {e}"))
            })?;
            self.bucket
                .put_bytes(
                    &layout.index_key()?,
                    Bytes::from(bytes),
                    MediaType::Json.mime(),
                )
                .await
                .map_err(LegacyError::Bucket)?;
        }
        let dramas: Vec<ExportedDrama> = results.into_iter().map(|(d, _)| d).collect();
        let exported = dramas.iter().filter(|d| d.outcome == EXPORTED).count();
        let failed = dramas.iter().filter(|d| d.outcome == FAILED).count();
        let repaired = dramas
            .iter()
            .filter(|d| d.outcome == EXPORTED && !d.repairs.is_empty())
            .count();
        let elapsed = clock.seconds();
        let report = ExportReport {
            command: "export-r2",
            dry_run: self.options.dry_run,
            interrupted,
            prefix: layout.prefix().to_owned(),
            started_at: clock.started_at,
            finished_at: Utc::now(),
            elapsed_seconds: elapsed,
            dramas_per_second: rate(reached, elapsed),
            total,
            exported,
            repaired,
            failed,
            not_started: total - reached,
            index_written,
            index_entries: index.dramas.len(),
            all_owners: self.options.owners == ExportOwners::All,
            owners,
            left_out: left_out.len(),
            left_out_owners: left_out.values().collect::<BTreeSet<_>>().len(),
            stale_files,
            stale_indexed,
            moved_aside,
            dramas,
        };
        tracing::info!(
            exported = report.exported,
            failed = report.failed,
            not_started = report.not_started,
            "export finished"
        );
        Ok(report)
    }

    /// Moves the stale files of dramas that no longer exist out of the old layout: the old
    /// server reads `dramas/{id}/drama.json` directly, so a deleted drama's file left there
    /// would still be served by id. Those are the dramas an import record names, and those
    /// whose file an earlier export wrote (it names a user UUID: a drama created in the new
    /// system, which no import record names). The file is copied to
    /// `dramas-deleted/{id}/drama.json`, then deleted. A file the old server wrote that no
    /// record explains (one whose import failed, or one it created while it ran again) is
    /// left alone.
    async fn move_aside(
        &self,
        stale_files: &[String],
        records: &[RecordedImport],
    ) -> Result<Vec<MovedFile>, LegacyError> {
        if stale_files.is_empty() {
            return Ok(Vec::new());
        }
        let layout = &self.options.layout;
        // Drama id → whether a drama recorded under it still exists.
        let mut imported: BTreeMap<String, bool> = BTreeMap::new();
        for r in records {
            *imported.entry(r.record.drama_id.to_string()).or_default() |= r.current.is_some();
        }
        let mut moved = Vec::new();
        for key in stale_files {
            let Some(id) = layout.drama_id_of(key) else {
                continue;
            };
            // A record whose drama still exists (under another key) means the drama is not
            // gone; no record at all means it was never imported, and the file is ours only if
            // an export wrote it for a drama that is gone.
            match imported.get(id) {
                Some(false) => {}
                Some(true) => continue,
                None => {
                    if !self.exported_and_gone(key, id).await? {
                        continue;
                    }
                }
            }
            let to = layout.deleted_key_text(id);
            let mut done = MovedFile {
                drama_id: id.to_owned(),
                key: key.clone(),
                to: to.clone(),
                outcome: MOVED,
                reason: None,
            };
            if !self.options.dry_run
                && let Err(reason) = self.move_file(key, &to).await
            {
                tracing::warn!(
                    key,
                    reason = reason.message,
                    "moving a deleted drama's file failed"
                );
                done.outcome = FAILED;
                done.reason = Some(reason);
            }
            moved.push(done);
        }
        Ok(moved)
    }

    /// Whether the file at `key` is one an earlier export wrote (it names a user UUID) for a
    /// drama that no longer exists, whoever owned it. A file that cannot be read is not
    /// judged: it stays, as before.
    async fn exported_and_gone(&self, key: &str, id: &str) -> Result<bool, LegacyError> {
        let Some(bytes) = self.read(key).await else {
            return Ok(false);
        };
        if exported_owner(&bytes).is_none() {
            return Ok(false);
        }
        // The export writes only ids the new model accepts.
        let Ok(drama_id) = DramaId::parse(id) else {
            return Ok(false);
        };
        let state = self
            .repos
            .imports
            .drama_state(&drama_id)
            .await
            .map_err(LegacyError::Target)?;
        Ok(state.is_none())
    }

    async fn move_file(&self, from: &str, to: &str) -> Result<(), Reason> {
        let invalid =
            |e: drama_assets::AssetError| Reason::new(ReasonCode::InvalidDrama, e.to_string());
        let from = ObjectKey::parse(from).map_err(invalid)?;
        let to = ObjectKey::parse(to).map_err(invalid)?;
        let unavailable =
            |e: drama_assets::AssetError| Reason::new(ReasonCode::TargetUnavailable, e.to_string());
        self.bucket.copy(&from, &to).await.map_err(unavailable)?;
        self.bucket.delete(&from).await.map_err(unavailable)
    }

    /// The dramas to write: those of the chosen owners, owner by owner; and, to count them,
    /// those of the owners left out.
    async fn select(&self, records: &[RecordedImport]) -> Result<Selection, RepoError> {
        let chosen: Option<BTreeSet<UserId>> = match &self.options.owners {
            ExportOwners::All => None,
            ExportOwners::Legacy(extra) => Some(
                records
                    .iter()
                    .map(|r| r.record.owner)
                    .chain(extra.iter().copied())
                    .collect(),
            ),
        };
        let mut selection = Selection {
            dramas: Vec::new(),
            owners: Vec::new(),
            left_out: BTreeMap::new(),
        };
        for owner in self.repos.imports.drama_owners().await? {
            let ids = self.dramas_of(owner).await?;
            if chosen.as_ref().is_none_or(|c| c.contains(&owner)) {
                selection.owners.push(owner);
                selection
                    .dramas
                    .extend(ids.into_iter().map(|id| (owner, id)));
            } else {
                selection
                    .left_out
                    .extend(ids.into_iter().map(|id| (id.to_string(), owner)));
            }
        }
        // A drama whose update moved it across a page boundary may have been listed twice.
        let mut seen = BTreeMap::new();
        selection
            .dramas
            .retain(|(owner, id)| seen.insert(id.clone(), *owner).is_none());
        Ok(selection)
    }

    /// The ids of `owner`'s dramas.
    async fn dramas_of(&self, owner: UserId) -> Result<Vec<DramaId>, RepoError> {
        let mut out = Vec::new();
        let mut page = PageRequest::first(MAX_PAGE_SIZE);
        loop {
            let got = self.repos.dramas.list_summaries(owner, &page).await?;
            out.extend(got.items.into_iter().map(|s| s.id));
            match got.next {
                Some(cursor) => page = PageRequest::after(MAX_PAGE_SIZE, cursor),
                None => break,
            }
        }
        Ok(out)
    }

    /// Puts the entries of the old files that stay in place (no drama of the export, not moved
    /// aside) into `index`: the old server lists dramas from the index alone, so a file left
    /// out of it (a drama whose import failed, or one the old server wrote during an earlier
    /// rollback) would still be there but hidden. Each keeps its entry of the current index;
    /// a file the current index lacks is indexed from its own fields, as the old server's
    /// rebuild script did. A file that an earlier export wrote for a drama of an owner now
    /// left out (it names that owner) is not listed. Answers the keys listed.
    async fn carry_over(
        &self,
        stale_files: &[String],
        moved_aside: &[MovedFile],
        left_out: &BTreeMap<String, UserId>,
        index: &mut LegacyIndex,
    ) -> Result<Vec<String>, LegacyError> {
        let layout = &self.options.layout;
        let mut current: Option<LegacyIndex> = None;
        let mut listed = Vec::new();
        for key in stale_files {
            let Some(id) = layout.drama_id_of(key) else {
                continue;
            };
            if moved_aside.iter().any(|m| m.key == *key) {
                continue;
            }
            if current.is_none() {
                current = Some(self.current_index().await?);
            }
            let old_entry = current.as_ref().and_then(|c| c.dramas.get(id)).cloned();
            let file = if old_entry.is_none() || left_out.contains_key(id) {
                self.read(key).await
            } else {
                None
            };
            // A file that cannot be read is not vouched for: listing it might publish a
            // left-out owner's drama that an earlier export wrote.
            if let Some(owner) = left_out.get(id)
                && file.as_deref().is_none_or(|b| names_owner(b, *owner))
            {
                continue;
            }
            let entry =
                old_entry.or_else(|| file.as_deref().and_then(|b| IndexEntry::of_file(id, b)));
            if let Some(entry) = entry {
                index.dramas.insert(id.to_owned(), entry);
                listed.push(key.clone());
            }
        }
        Ok(listed)
    }

    /// The index as it is in the bucket; missing or unreadable counts as empty, as on the old
    /// server.
    async fn current_index(&self) -> Result<LegacyIndex, LegacyError> {
        let key = self.options.layout.index_key()?;
        Ok(self
            .read(key.as_str())
            .await
            .and_then(|bytes| LegacyIndex::parse(&bytes).ok())
            .unwrap_or_default())
    }

    /// An object's bytes; `None` when it is missing or cannot be read (the file is then
    /// indexed from the current index alone, if at all).
    async fn read(&self, key: &str) -> Option<Bytes> {
        let key = ObjectKey::parse(key).ok()?;
        match self.bucket.get_bytes(&key).await {
            Ok((_, bytes)) => Some(bytes),
            Err(e) => {
                if !e.is_not_found() {
                    tracing::warn!(key = %key, error = %e, "reading an old file failed");
                }
                None
            }
        }
    }

    /// Copies the file in place at `key` aside when nothing says it may be overwritten, and
    /// answers where. An import of exactly these bytes (its record's hash), or an earlier
    /// export of this owner's drama (it names the owner), may be overwritten: the database
    /// holds what they held. Anything else — a file whose import failed, one the old server
    /// wrote or changed after the import — may be the only full copy of an old drama (a drama
    /// created after cutover can take a never-imported old drama's id), so it goes to
    /// `dramas-conflict/{id}/{sha256}/drama.json` first (copied, not moved: the export
    /// overwrites the original next), and the report names it. A file that cannot be read is
    /// not overwritten.
    async fn keep_unknown(
        &self,
        key: &ObjectKey,
        id: &DramaId,
        owner: UserId,
        imported: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<Option<String>, Reason> {
        let unavailable =
            |e: drama_assets::AssetError| Reason::new(ReasonCode::TargetUnavailable, e.to_string());
        let bytes = match self.bucket.get_bytes(key).await {
            Ok((_, bytes)) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => {
                return Err(Reason::new(
                    ReasonCode::TargetUnavailable,
                    format!(
                        "the file in place cannot be read, so it is not overwritten (it may be \
                         an old drama that was never imported): {e}"
                    ),
                ));
            }
        };
        let hash = hex::encode(Sha256::digest(&bytes));
        let explained = imported
            .get(key.as_str())
            .is_some_and(|hashes| hashes.contains(&hash))
            || exported_owner(&bytes) == Some(owner);
        if explained {
            return Ok(None);
        }
        let to = self.options.layout.conflict_key_text(id.as_str(), &hash);
        if !self.options.dry_run {
            let to_key = ObjectKey::parse(&to)
                .map_err(|e| Reason::new(ReasonCode::InvalidDrama, e.to_string()))?;
            self.bucket.copy(key, &to_key).await.map_err(unavailable)?;
            tracing::warn!(key = %key, to, "an old drama file no import explains was set aside");
        }
        Ok(Some(to))
    }

    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    async fn export_one(
        &self,
        owner: UserId,
        id: DramaId,
        imported: &BTreeMap<String, BTreeSet<String>>,
    ) -> (ExportedDrama, Option<IndexEntry>) {
        let layout = &self.options.layout;
        let mut done = ExportedDrama {
            drama_id: id.to_string(),
            owner,
            key: layout.drama_key_text(id.as_str()),
            version: None,
            outcome: FAILED,
            reason: None,
            repairs: Vec::new(),
            set_aside: None,
        };
        let stored = match self.repos.dramas.get_complete(owner, &id).await {
            Ok(stored) => stored,
            Err(RepoError::NotFound { .. }) => {
                done.outcome = GONE;
                return (done, None);
            }
            Err(e) => {
                done.reason = Some(Reason::new(ReasonCode::Database, e.to_string()));
                return (done, None);
            }
        };
        done.version = Some(stored.version);
        let (readable, repairs) = for_old_model(&stored.drama);
        done.repairs = repairs;
        let written = async {
            let bytes = drama_file(&readable, owner)
                .map_err(|e| Reason::new(ReasonCode::InvalidDrama, e.to_string()))?;
            let key = layout
                .drama_key(&id)
                .map_err(|e| Reason::new(ReasonCode::InvalidDrama, e.to_string()))?;
            done.set_aside = self.keep_unknown(&key, &id, owner, imported).await?;
            if self.options.dry_run {
                return Ok(());
            }
            self.bucket
                .put_bytes(&key, Bytes::from(bytes), MediaType::Json.mime())
                .await
                .map(|_| ())
                .map_err(|e| Reason::new(ReasonCode::TargetUnavailable, e.to_string()))
        }
        .await;
        match written {
            Ok(()) => {
                done.outcome = EXPORTED;
                let entry = IndexEntry::of(&stored.drama, stored.created_at, stored.updated_at);
                (done, Some(entry))
            }
            Err(reason) => {
                tracing::debug!(reason = reason.message, "export failed");
                done.reason = Some(reason);
                (done, None)
            }
        }
    }
}
