//! The old asset library (`{user}/{project}/{images|videos|texts}/{uuid}{ext}` with a
//! `{uuid}.json` record beside each file) into the new one: each file is copied inside the
//! bucket to `{owner}/~{project}/uploads/{uuid}.{ext}` and gets a record at
//! `{owner}/~{project}/metadata/{uuid}.json` in the shape the `/asset-library` routes write,
//! so old clients find their uploads under the same project name and id. The old objects stay
//! where they are (the old server can still serve them after a rollback).
//!
//! A copied item remembers its source (`legacy_source_key`, `legacy_source_hash`): a rerun
//! leaves items whose old record did not change alone and copies again those whose record did.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use drama_assets::{AssetStore, Category, KeyPrefix, MediaType, ObjectKey, Scope, keys};
use drama_domain::UserId;
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::Progress;
use crate::error::LegacyError;
use crate::report::{Outcome, Reason, ReasonCode};
use crate::source::{Layout, OwnerMap};

/// The fields the `/asset-library` routes write into every record; an old record's own keys
/// never override them.
const CORE_FIELDS: [&str; 13] = [
    "asset_id",
    "user_id",
    "project_name",
    "asset_type",
    "tag",
    "filename",
    "created_at",
    "updated_at",
    "file_size",
    "r2_key",
    "public_url",
    "content_type",
    "checksum",
];

/// Largest old record read.
const MAX_RECORD_BYTES: u64 = 1024 * 1024;

/// How a library import runs.
#[derive(Debug, Clone)]
pub struct LibraryOptions {
    /// Where the old keys are (`{prefix}{user}/…`).
    pub layout: Layout,
    /// Whose uploads are imported: the library of every old owner the map names.
    pub owners: OwnerMap,
    /// The API's public origin, for the records' `public_url` of objects the bucket has no
    /// public URL for (`{origin}/media/{key}`, as the upload route writes it).
    pub api_origin: String,
    /// Read and check everything, write nothing.
    pub dry_run: bool,
    /// Items handled at once (at least 1).
    pub jobs: usize,
}

/// One old library item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibraryItemReport {
    /// Key of its old record.
    pub source_key: String,
    /// The old owner id.
    pub old_owner: String,
    /// The user it belongs to now.
    pub owner: UserId,
    /// Its project.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub project: String,
    /// Its id (kept).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub asset_id: String,
    /// Where the file is now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_key: Option<String>,
    /// `imported`, `updated`, `unchanged` or `failed`.
    pub outcome: Outcome,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
}

/// The library part of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LibraryReport {
    /// Old owners whose library was looked at.
    pub owners: Vec<String>,
    /// Old records found.
    pub total: usize,
    /// Copied for the first time.
    pub imported: usize,
    /// Copied again because the old record changed.
    pub updated: usize,
    /// Already copied, old record unchanged.
    pub unchanged: usize,
    /// Copied by an earlier run and deleted in the new library since
    /// (`deleted_since_import`): not copied again.
    pub skipped: usize,
    /// Could not be copied.
    pub failed: usize,
    /// Not reached because the run was interrupted.
    pub not_started: usize,
    /// Every item, by source key.
    pub items: Vec<LibraryItemReport>,
    /// What stopped the library part before it copied anything (the bucket could not be
    /// listed); the dramas' part of the report stands.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl LibraryReport {
    /// The library part of a run that `error` stopped: nothing copied, the error kept.
    pub fn stopped(owners: &OwnerMap, error: &LegacyError) -> Self {
        Self {
            owners: owners.entries().into_iter().map(|(old, _)| old).collect(),
            error: Some(error.to_string()),
            ..Self::default()
        }
    }

    /// Whether anything failed or was not reached.
    pub fn is_failure(&self) -> bool {
        self.failed > 0 || self.not_started > 0 || self.error.is_some()
    }
}

/// An old record found by listing.
struct Found {
    key: ObjectKey,
    old_owner: String,
    owner: UserId,
    project_segment: String,
    folder: String,
}

/// Copies the old asset library into the new layout.
pub struct LibraryImporter {
    bucket: Arc<dyn AssetStore>,
    options: LibraryOptions,
}

impl LibraryImporter {
    /// An importer working inside `bucket`.
    ///
    /// # Errors
    /// [`LegacyError::InvalidOption`] (`--jobs`) for zero jobs.
    pub fn new(bucket: Arc<dyn AssetStore>, options: LibraryOptions) -> Result<Self, LegacyError> {
        LegacyError::check_jobs(options.jobs)?;
        Ok(Self { bucket, options })
    }

    /// Imports the library of every old owner in the map. One bad item never stops the
    /// others; when `stop` is cancelled, items in progress finish and no new one starts.
    ///
    /// # Errors
    /// [`LegacyError::Bucket`] when an owner's keys cannot be listed.
    #[tracing::instrument(skip_all, fields(dry_run = self.options.dry_run))]
    pub async fn run(
        &self,
        progress: &dyn Progress,
        stop: &CancellationToken,
    ) -> Result<LibraryReport, LegacyError> {
        let mut found = Vec::new();
        let mut refused = Vec::new();
        let mut owners = Vec::new();
        for (old, owner) in self.options.owners.entries() {
            let old = old.as_str();
            owners.push(old.to_owned());
            let Ok(prefix) = KeyPrefix::parse(format!("{}{old}/", self.options.layout.prefix()))
            else {
                continue;
            };
            for object in self
                .bucket
                .list(&prefix)
                .await
                .map_err(LegacyError::Bucket)?
            {
                let Some((project_segment, folder)) =
                    record_of(self.options.layout.prefix(), object.key.as_str(), old)
                else {
                    continue;
                };
                if object.size > MAX_RECORD_BYTES {
                    refused.push(Self::refused(
                        object.key.as_str(),
                        old,
                        owner,
                        ReasonCode::TooLarge,
                        format!(
                            "the record is {} bytes, more than the {MAX_RECORD_BYTES} read",
                            object.size
                        ),
                    ));
                } else {
                    found.push(Found {
                        key: object.key,
                        old_owner: old.to_owned(),
                        owner,
                        project_segment,
                        folder,
                    });
                }
            }
            // Keys the bucket client cannot address are not in the listing above: those that
            // would be records are reported rather than passed over.
            for key in self
                .bucket
                .list_unaddressable(&prefix)
                .await
                .map_err(LegacyError::Bucket)?
            {
                if record_of(self.options.layout.prefix(), &key, old).is_some() {
                    refused.push(Self::refused(
                        &key,
                        old,
                        owner,
                        ReasonCode::UnreadableKey,
                        "the key breaks this server's key rules (the old server left the \
                         project segment empty for a name without an ASCII letter or digit), \
                         so the bucket client cannot read it; copy the item by hand or upload \
                         it again"
                            .to_owned(),
                    ));
                }
            }
        }
        let total = found.len() + refused.len();
        progress.start(total);
        for item in &refused {
            progress.step(
                &item.source_key,
                item.outcome.as_str(),
                item.reason.as_ref(),
            );
        }
        let mut items: Vec<LibraryItemReport> = futures::stream::iter(found)
            .map(|f| async move {
                if stop.is_cancelled() {
                    return None;
                }
                let item = self.import_one(f).await;
                progress.step(
                    &item.source_key,
                    item.outcome.as_str(),
                    item.reason.as_ref(),
                );
                Some(item)
            })
            .buffer_unordered(self.options.jobs)
            .filter_map(|r| async move { r })
            .collect()
            .await;
        items.extend(refused);
        items.sort_by(|a, b| a.source_key.cmp(&b.source_key));
        let mut report = LibraryReport {
            owners,
            total,
            ..LibraryReport::default()
        };
        for item in &items {
            match item.outcome {
                Outcome::Imported => report.imported += 1,
                Outcome::Updated => report.updated += 1,
                Outcome::Skipped => report.skipped += 1,
                // Library items are never reported gone from the source.
                Outcome::Unchanged | Outcome::SourceDeleted | Outcome::Deleted => {
                    report.unchanged += 1;
                }
                Outcome::Failed => report.failed += 1,
            }
        }
        report.not_started = total - items.len();
        report.items = items;
        tracing::info!(
            imported = report.imported,
            unchanged = report.unchanged,
            failed = report.failed,
            "library import finished"
        );
        Ok(report)
    }

    /// A record listed but not read, failed for `code`.
    fn refused(
        key: &str,
        old: &str,
        owner: UserId,
        code: ReasonCode,
        message: String,
    ) -> LibraryItemReport {
        LibraryItemReport {
            source_key: key.to_owned(),
            old_owner: old.to_owned(),
            owner,
            project: String::new(),
            asset_id: String::new(),
            target_key: None,
            outcome: Outcome::Failed,
            reason: Some(Reason::new(code, message)),
        }
    }

    async fn import_one(&self, f: Found) -> LibraryItemReport {
        let mut item = LibraryItemReport {
            source_key: f.key.to_string(),
            old_owner: f.old_owner.clone(),
            owner: f.owner,
            project: String::new(),
            asset_id: String::new(),
            target_key: None,
            outcome: Outcome::Failed,
            reason: None,
        };
        match self.try_import(&f, &mut item).await {
            Ok(outcome) => item.outcome = outcome,
            Err(reason) => {
                item.outcome = Outcome::Failed;
                item.reason = Some(reason);
            }
        }
        item
    }

    async fn try_import(&self, f: &Found, item: &mut LibraryItemReport) -> Result<Outcome, Reason> {
        let unavailable =
            |e: drama_assets::AssetError| Reason::new(ReasonCode::SourceUnavailable, e.to_string());
        let (_, bytes) = self.bucket.get_bytes(&f.key).await.map_err(unavailable)?;
        let hash = hex::encode(Sha256::digest(&bytes));
        let old = OldRecord::parse(&bytes, f)?;
        item.project.clone_from(&old.project);
        item.asset_id.clone_from(&old.asset_id);
        let invalid = |m: String| Reason::new(ReasonCode::InvalidRecord, m);
        let scope = Scope::project(&old.project).map_err(|e| invalid(e.to_string()))?;
        let source = old.source_key(f, &self.options.layout)?;
        let info = match self.bucket.head(&source).await {
            Ok(info) => info,
            Err(e) if e.is_not_found() => {
                return Err(Reason::new(
                    ReasonCode::MissingFile,
                    format!("the record names {source}, which does not exist"),
                ));
            }
            Err(e) => return Err(unavailable(e)),
        };
        let media = old.media(&source, &info.content_type);
        let target = keys::asset_key(f.owner, &scope, Category::Uploads, &old.asset_id, media)
            .map_err(|e| invalid(e.to_string()))?;
        let meta_key = keys::asset_key(
            f.owner,
            &scope,
            Category::Metadata,
            &old.asset_id,
            MediaType::Json,
        )
        .map_err(|e| invalid(e.to_string()))?;
        item.target_key = Some(target.to_string());
        let previous = self.copied_before(&meta_key, f).await?;
        let marker = marker_key(f)?;
        let marked = self.marked_target(&marker).await?;
        if previous.is_none() && marked.as_deref() == Some(meta_key.as_str()) {
            // The copy's record is the only memory the new library keeps, and deleting an
            // upload deletes it: without this, a rerun would bring the item back.
            item.reason = Some(Reason::new(
                ReasonCode::DeletedSinceImport,
                format!(
                    "copied by an earlier run and deleted in the new library since; not copied \
                     again (delete {marker} to import it anew)"
                ),
            ));
            return Ok(Outcome::Skipped);
        }
        if previous.as_deref() == Some(hash.as_str()) {
            if marked.is_none() && !self.options.dry_run {
                // Copied by a run from before the marks: marked now, so that a deletion from
                // here on is remembered.
                self.mark(&marker, &meta_key, &hash).await?;
            }
            return Ok(Outcome::Unchanged);
        }
        let outcome = if previous.is_some() {
            Outcome::Updated
        } else {
            Outcome::Imported
        };
        if self.options.dry_run {
            return Ok(outcome);
        }
        let copied = self
            .bucket
            .copy(&source, &target)
            .await
            .map_err(|e| Reason::new(ReasonCode::TargetUnavailable, e.to_string()))?;
        let public_url = self.bucket.public_url(&target).unwrap_or_else(|| {
            format!(
                "{}/media/{}",
                self.options.api_origin.trim_end_matches('/'),
                target
            )
        });
        let record = old.into_record(f, &target, media, &copied, public_url, &hash);
        let body = serde_json::to_vec_pretty(&record)
            .map_err(|e| Reason::new(ReasonCode::InvalidRecord, e.to_string()))?;
        if let Err(e) = self
            .bucket
            .put_bytes(&meta_key, Bytes::from(body), MediaType::Json.mime())
            .await
        {
            // Without its record the copy is unreachable; do not leave it behind.
            let _ = self.bucket.delete(&target).await;
            return Err(Reason::new(ReasonCode::TargetUnavailable, e.to_string()));
        }
        self.mark(&marker, &meta_key, &hash).await?;
        Ok(outcome)
    }

    /// The metadata key a mark says the old record was copied to, if it was.
    async fn marked_target(&self, marker: &ObjectKey) -> Result<Option<String>, Reason> {
        match self.bucket.get_bytes(marker).await {
            Ok((_, bytes)) => {
                let mark: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                Ok(mark["target"].as_str().map(str::to_owned))
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(Reason::new(ReasonCode::TargetUnavailable, e.to_string())),
        }
    }

    /// Remembers, outside every user's library, that the old record at the mark's key was
    /// copied to `meta_key`: the tombstone a deletion in the new library leaves behind.
    async fn mark(
        &self,
        marker: &ObjectKey,
        meta_key: &ObjectKey,
        hash: &str,
    ) -> Result<(), Reason> {
        let body = json!({
            "target": meta_key.as_str(),
            "source_hash": hash,
            "marked_at": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        });
        let bytes = serde_json::to_vec(&body)
            .map_err(|e| Reason::new(ReasonCode::InvalidRecord, e.to_string()))?;
        self.bucket
            .put_bytes(marker, Bytes::from(bytes), MediaType::Json.mime())
            .await
            .map(|_| ())
            .map_err(|e| Reason::new(ReasonCode::TargetUnavailable, e.to_string()))
    }

    /// The source hash of an earlier copy of this very record, if there is one.
    async fn copied_before(
        &self,
        meta_key: &ObjectKey,
        f: &Found,
    ) -> Result<Option<String>, Reason> {
        match self.bucket.get_bytes(meta_key).await {
            Ok((_, bytes)) => {
                let record: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if record["legacy_source_key"].as_str() == Some(f.key.as_str()) {
                    Ok(record["legacy_source_hash"].as_str().map(str::to_owned))
                } else {
                    Err(Reason::new(
                        ReasonCode::IdTaken,
                        format!(
                            "{meta_key} already holds a record that was not copied from {}",
                            f.key
                        ),
                    ))
                }
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(Reason::new(ReasonCode::TargetUnavailable, e.to_string())),
        }
    }
}

/// An old record, read tolerantly.
struct OldRecord {
    fields: Map<String, Value>,
    asset_id: String,
    project: String,
    asset_type: String,
}

impl OldRecord {
    fn parse(bytes: &[u8], f: &Found) -> Result<Self, Reason> {
        let invalid = |m: String| Reason::new(ReasonCode::InvalidRecord, m);
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| Reason::new(ReasonCode::NotJson, e.to_string()))?;
        let Value::Object(fields) = value else {
            return Err(invalid("the record is not a JSON object".to_owned()));
        };
        let file_id = f
            .key
            .as_str()
            .rsplit('/')
            .next()
            .and_then(|n| n.strip_suffix(".json"))
            .unwrap_or_default()
            .to_owned();
        let asset_id = fields
            .get("asset_id")
            .and_then(Value::as_str)
            .unwrap_or(&file_id)
            .to_owned();
        if asset_id != file_id {
            return Err(invalid(format!(
                "the record's asset_id {asset_id:?} differs from its file name {file_id:?}"
            )));
        }
        let project = fields
            .get("project_name")
            .and_then(Value::as_str)
            .filter(|p| !p.trim().is_empty())
            .unwrap_or(&f.project_segment)
            .to_owned();
        let folder_type = f.folder.trim_end_matches('s').to_owned();
        let asset_type = fields
            .get("asset_type")
            .and_then(Value::as_str)
            .unwrap_or(&folder_type)
            .to_owned();
        if !matches!(asset_type.as_str(), "image" | "video" | "text") {
            return Err(invalid(format!(
                "asset_type {asset_type:?} is not image, video or text"
            )));
        }
        let tag = fields
            .get("tag")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !matches!(tag, "character" | "storyboard" | "clip") {
            return Err(invalid(format!(
                "tag {tag:?} is not character, storyboard or clip"
            )));
        }
        Ok(Self {
            fields,
            asset_id,
            project,
            asset_type,
        })
    }

    /// The old file: the record's `r2_key` (as written, or under the layout's prefix when the
    /// old bucket was copied under one), which must lie in the record's own folder and not be
    /// the record itself (the old server wrote the record of a `.json` upload over the file).
    fn source_key(&self, f: &Found, layout: &Layout) -> Result<ObjectKey, Reason> {
        let folder = format!(
            "{}{}/{}/{}/",
            layout.prefix(),
            f.old_owner,
            f.project_segment,
            f.folder
        );
        let named = self
            .fields
            .get("r2_key")
            .and_then(Value::as_str)
            .and_then(|k| {
                [k.to_owned(), format!("{}{k}", layout.prefix())]
                    .into_iter()
                    .find(|k| k.starts_with(&folder) && k.as_str() != f.key.as_str())
            });
        match named {
            Some(key) => ObjectKey::parse(key)
                .map_err(|e| Reason::new(ReasonCode::InvalidRecord, e.to_string())),
            None => Err(Reason::new(
                ReasonCode::MissingFile,
                format!(
                    "the record's r2_key {:?} does not name a file beside it",
                    self.fields
                        .get("r2_key")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                ),
            )),
        }
    }

    /// The type the new key is named after: the record's, else the stored one, else the
    /// extension's, else opaque bytes.
    fn media(&self, source: &ObjectKey, stored: &str) -> MediaType {
        let declared = self
            .fields
            .get("content_type")
            .and_then(Value::as_str)
            .unwrap_or(stored);
        MediaType::from_mime(declared)
            .ok()
            .filter(|m| *m != MediaType::Binary)
            .or_else(|| MediaType::from_mime(stored).ok())
            .filter(|m| *m != MediaType::Binary)
            .or_else(|| source.media_type())
            .unwrap_or(MediaType::Binary)
    }

    fn into_record(
        self,
        f: &Found,
        target: &ObjectKey,
        media: MediaType,
        copied: &drama_assets::ObjectInfo,
        public_url: String,
        hash: &str,
    ) -> Value {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let created = self
            .fields
            .get("created_at")
            .and_then(Value::as_str)
            .map_or_else(|| now.clone(), str::to_owned);
        let updated = self
            .fields
            .get("updated_at")
            .and_then(Value::as_str)
            .map_or_else(|| created.clone(), str::to_owned);
        let filename = self
            .fields
            .get("filename")
            .and_then(Value::as_str)
            .and_then(keys::sanitize_filename)
            .unwrap_or_else(|| format!("{}.{}", self.asset_id, media.extension()));
        let tag = self.fields.get("tag").cloned().unwrap_or(Value::Null);
        let mut record: BTreeMap<String, Value> = self
            .fields
            .into_iter()
            .filter(|(k, _)| !CORE_FIELDS.contains(&k.as_str()))
            .collect();
        let core = json!({
            "asset_id": self.asset_id,
            "user_id": f.owner.to_string(),
            "project_name": self.project,
            "asset_type": self.asset_type,
            "tag": tag,
            "filename": filename,
            "created_at": created,
            "updated_at": updated,
            "file_size": copied.size,
            "r2_key": target.as_str(),
            "public_url": public_url,
            "content_type": media.mime(),
            "checksum": copied.checksum,
            "legacy_source_key": f.key.as_str(),
            "legacy_source_hash": hash,
            "legacy_imported_at": now,
        });
        if let Value::Object(core) = core {
            record.extend(core);
        }
        json!(record)
    }
}

/// An old record's key: `{prefix}{old}/{project}/{images|videos|texts}/{uuid}.json`
/// (the project segment may be empty: see [`ReasonCode::UnreadableKey`]): its project
/// segment and folder.
fn record_of(prefix: &str, key: &str, old: &str) -> Option<(String, String)> {
    let rest = key
        .strip_prefix(prefix)?
        .strip_prefix(old)?
        .strip_prefix('/')?;
    let mut parts = rest.split('/');
    let (project, folder, file) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !matches!(folder, "images" | "videos" | "texts") {
        return None;
    }
    let id = file.strip_suffix(".json")?;
    uuid::Uuid::parse_str(id).ok()?;
    Some((project.to_owned(), folder.to_owned()))
}

/// Where the import marks an old record as copied: `legacy-imports/library/{source key}`,
/// outside every user's prefix (so no user's listing, quota or deletion touches it).
fn marker_key(f: &Found) -> Result<ObjectKey, Reason> {
    ObjectKey::parse(format!("{MARKS}{}", f.key))
        .map_err(|e| Reason::new(ReasonCode::InvalidRecord, e.to_string()))
}

/// The prefix of the marks [`marker_key`] names.
const MARKS: &str = "legacy-imports/library/";

#[cfg(test)]
mod tests {
    use super::record_of;

    #[test]
    fn a_record_under_an_empty_project_segment_is_still_a_record() {
        let id = "0a7f7d0e-57f4-4d8e-9a4e-6a1b2f7c0a01";
        let key = format!("10000//images/{id}.json");
        assert_eq!(
            record_of("", &key, "10000"),
            Some((String::new(), "images".to_owned()))
        );
        assert_eq!(
            record_of("", &format!("10000/p/meta/{id}.json"), "10000"),
            None
        );
    }
}
