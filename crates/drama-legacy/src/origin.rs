//! Where the old dramas come from: the old bucket's layout (`import-r2`) or the old server's
//! database tables (`migrate --adopt-legacy`). Both hand the import the bytes of a
//! `drama.json`-shaped document per drama; everything after that is shared.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use drama_assets::{AssetStore, ObjectKey};
use drama_dal::legacy_tables::LegacyTables;

use crate::error::LegacyError;
use crate::format::LegacyIndex;
use crate::import::budget::{Held, MemoryBudget};
use crate::report::{Reason, ReasonCode, SourceSummary};
use crate::source::Layout;
use crate::tables::assemble;

/// Largest `drama.json` read (the fixture is 38 KB; the biggest generated dramas a few MB).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The source of an import.
#[derive(Clone)]
pub(crate) enum Origin {
    /// `dramas/{id}/drama.json` files of the old bucket, under a prefix.
    Bucket(Layout),
    /// The old server's tables.
    Tables(Arc<dyn LegacyTables>),
}

/// One drama to import.
pub(crate) struct Candidate {
    /// The source key (bucket key, or `db:{schema}/dramas/{id}`), recorded with the import.
    pub(crate) key: String,
    /// The drama id the source names.
    pub(crate) id: String,
    /// Whether the index (or the table) lists it.
    pub(crate) in_index: bool,
    /// Size announced by the listing.
    pub(crate) size: Option<u64>,
    /// Creation time, when known.
    pub(crate) created_at: Option<DateTime<Utc>>,
    /// Last change, when known.
    pub(crate) updated_at: Option<DateTime<Utc>>,
}

/// What reading one candidate gave.
pub(crate) struct Document<'b> {
    /// The bytes that are parsed and hashed.
    pub(crate) bytes: Bytes,
    /// Repairs made while putting the document together.
    pub(crate) repairs: Vec<String>,
    /// The document's share of the memory budget, to be kept until its drama is written.
    pub(crate) held: Held<'b>,
}

/// Why a candidate could not be read: the reason, and whether it is a skip (`true`) rather
/// than a failure.
pub(crate) type Unreadable = (Reason, bool);

impl Origin {
    /// The prefix of every source key this origin makes.
    pub(crate) fn source_prefix(&self) -> String {
        match self {
            Self::Bucket(layout) => layout.prefix().to_owned(),
            Self::Tables(tables) => format!("db:{}/", tables.location()),
        }
    }

    /// Whether `key` is a source key this origin makes (`{prefix}dramas/{id}/drama.json`, or
    /// `db:{schema}/dramas/{id}`), so that a record under it whose source is not found again
    /// is gone from this very source.
    pub(crate) fn owns_key(&self, key: &str) -> bool {
        match self {
            Self::Bucket(layout) => layout.drama_id_of(key).is_some(),
            Self::Tables(_) => key
                .strip_prefix(&self.source_prefix())
                .and_then(|rest| rest.strip_prefix("dramas/"))
                .is_some_and(|id| !id.is_empty() && !id.contains('/')),
        }
    }

    /// Every drama of the source, by source key, and a summary of what was found.
    pub(crate) async fn gather(
        &self,
        bucket: &dyn AssetStore,
    ) -> Result<(Vec<Candidate>, SourceSummary), LegacyError> {
        match self {
            Self::Bucket(layout) => gather_bucket(layout, bucket).await,
            Self::Tables(tables) => {
                let entries = tables.legacy_dramas().await.map_err(LegacyError::Target)?;
                let prefix = self.source_prefix();
                let summary = SourceSummary {
                    origin: "database",
                    prefix: prefix.clone(),
                    index: format!("table {}.dramas", tables.location()),
                    index_entries: entries.len(),
                    files_listed: entries.len(),
                    not_in_index: 0,
                    bucket_urls: Vec::new(),
                };
                let candidates = entries
                    .into_iter()
                    .map(|e| Candidate {
                        key: format!("{prefix}dramas/{}", e.id),
                        id: e.id,
                        in_index: true,
                        size: None,
                        created_at: e.created_at,
                        updated_at: e.updated_at,
                    })
                    .collect();
                Ok((candidates, summary))
            }
        }
    }

    /// The document of one candidate, read within `budget`.
    pub(crate) async fn read<'b>(
        &self,
        bucket: &dyn AssetStore,
        candidate: &Candidate,
        budget: &'b MemoryBudget,
    ) -> Result<Document<'b>, Unreadable> {
        match self {
            Self::Bucket(_) => read_file(bucket, candidate, budget).await,
            Self::Tables(tables) => match tables.legacy_drama(&candidate.id).await {
                Ok(Some(rows)) => {
                    let assembled = assemble(rows);
                    let bytes = serde_json::to_vec(&assembled.document).map_err(|e| {
                        (Reason::new(ReasonCode::InvalidDrama, e.to_string()), false)
                    })?;
                    drop(assembled.document);
                    // A drama's rows announce no size: its document waits for its share
                    // once assembled, before it is parsed.
                    let mut held = budget.hold(bytes.len() as u64).await;
                    held.count(bytes.len() as u64);
                    Ok(Document {
                        bytes: Bytes::from(bytes),
                        repairs: assembled.repairs,
                        held,
                    })
                }
                Ok(None) => Err((
                    Reason::new(
                        ReasonCode::MissingFile,
                        format!(
                            "{}.dramas no longer holds {:?} (deleted during the import)",
                            tables.location(),
                            candidate.id
                        ),
                    ),
                    true,
                )),
                Err(e) => Err((Reason::new(ReasonCode::Database, e.to_string()), false)),
            },
        }
    }
}

async fn read_file<'b>(
    bucket: &dyn AssetStore,
    candidate: &Candidate,
    budget: &'b MemoryBudget,
) -> Result<Document<'b>, Unreadable> {
    let fail = |code, message: String| (Reason::new(code, message), false);
    let too_large = |key: &ObjectKey, size: u64| {
        fail(
            ReasonCode::InvalidDrama,
            format!("{key} is {size} bytes; a drama file may have at most {MAX_FILE_BYTES}"),
        )
    };
    let key = ObjectKey::parse(candidate.key.as_str()).map_err(|e| {
        fail(
            ReasonCode::InvalidDrama,
            format!("the index names a drama id that cannot be a key: {e}"),
        )
    })?;
    if let Some(size) = candidate.size
        && size > MAX_FILE_BYTES
    {
        return Err(too_large(&key, size));
    }
    // The share is taken before the body is read, for the size the listing announced; a
    // file that grew since waits for a share of its new size before it is read.
    let mut size = candidate.size.unwrap_or(0);
    for _ in 0..3 {
        let held = budget.hold(size).await;
        let stream = match bucket.get(&key).await {
            Ok(stream) => stream,
            Err(e) if e.is_not_found() => {
                return Err((
                    Reason::new(
                        ReasonCode::MissingFile,
                        format!("listed in dramas/index.json, but {key} does not exist"),
                    ),
                    true,
                ));
            }
            Err(e) => {
                return Err(fail(
                    ReasonCode::SourceUnavailable,
                    format!("reading {key}: {e}"),
                ));
            }
        };
        size = stream.body_len();
        if size > MAX_FILE_BYTES {
            return Err(too_large(&key, size));
        }
        if held.covers(size) {
            return collect(stream, held, &key)
                .await
                .map(|(bytes, held)| Document {
                    bytes,
                    repairs: Vec::new(),
                    held,
                });
        }
    }
    Err(fail(
        ReasonCode::SourceUnavailable,
        format!("{key} kept changing size while it was read; run again"),
    ))
}

/// The body of `stream`, never more than it announced (nor than [`MAX_FILE_BYTES`]), counted
/// against `held`.
async fn collect<'b>(
    stream: drama_assets::ObjectStream,
    mut held: Held<'b>,
    key: &ObjectKey,
) -> Result<(Bytes, Held<'b>), Unreadable> {
    use futures::StreamExt as _;
    let fail = |message: String| (Reason::new(ReasonCode::SourceUnavailable, message), false);
    let announced = stream.body_len();
    let mut buf = bytes::BytesMut::with_capacity(usize::try_from(announced).unwrap_or(0));
    let mut body = stream.body;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| fail(format!("reading {key}: {e}")))?;
        if (buf.len() + chunk.len()) as u64 > announced {
            return Err(fail(format!(
                "{key} sent more than the {announced} bytes it announced; run again"
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    held.count(buf.len() as u64);
    Ok((buf.freeze(), held))
}

/// The old index, or an empty one (with why) when it is missing or unreadable, as the old
/// server treated it.
async fn read_index(
    layout: &Layout,
    bucket: &dyn AssetStore,
) -> Result<(LegacyIndex, String), LegacyError> {
    let key = layout.index_key()?;
    match bucket.get_bytes(&key).await {
        Ok((_, bytes)) => match LegacyIndex::parse(&bytes) {
            Ok(index) => Ok((index, "read".to_owned())),
            Err(why) => {
                tracing::warn!(%key, why, "the old index is unreadable; listing files only");
                Ok((LegacyIndex::default(), format!("unreadable: {why}")))
            }
        },
        Err(e) if e.is_not_found() => Ok((LegacyIndex::default(), "missing".to_owned())),
        Err(e) => Err(LegacyError::Bucket(e)),
    }
}

/// The index's entries and the listed files, merged by key.
async fn gather_bucket(
    layout: &Layout,
    bucket: &dyn AssetStore,
) -> Result<(Vec<Candidate>, SourceSummary), LegacyError> {
    let (index, index_status) = read_index(layout, bucket).await?;
    let listed = bucket
        .list(&layout.dramas_prefix()?)
        .await
        .map_err(LegacyError::Bucket)?;
    let mut candidates: BTreeMap<String, Candidate> = BTreeMap::new();
    for (id, entry) in index.dramas {
        let key = layout.drama_key_text(&id);
        candidates.insert(
            key.clone(),
            Candidate {
                key,
                id,
                in_index: true,
                size: None,
                created_at: entry.created_at,
                updated_at: entry.updated_at,
            },
        );
    }
    let index_entries = candidates.len();
    let mut files_listed = 0;
    let mut not_in_index = 0;
    for object in listed {
        let Some(id) = layout.drama_id_of(object.key.as_str()).map(str::to_owned) else {
            continue;
        };
        files_listed += 1;
        let key = object.key.to_string();
        let candidate = candidates.entry(key.clone()).or_insert_with(|| {
            not_in_index += 1;
            Candidate {
                key,
                id,
                in_index: false,
                size: None,
                created_at: None,
                updated_at: None,
            }
        });
        candidate.size = Some(object.size);
        // The index's times win; the listing's modification time stands in for both.
        candidate.created_at = candidate.created_at.or(object.last_modified);
        candidate.updated_at = candidate.updated_at.or(object.last_modified);
    }
    let summary = SourceSummary {
        origin: "bucket",
        prefix: layout.prefix().to_owned(),
        index: index_status,
        index_entries,
        files_listed,
        not_in_index,
        bucket_urls: Vec::new(),
    };
    Ok((candidates.into_values().collect(), summary))
}
