//! The asset library: files a user uploads into named projects, with a JSON record beside each
//! (the old server's `/asset-library` routes, with its bugs fixed: the owner comes from the
//! credentials, core metadata cannot be overwritten by caller metadata, the record never
//! collides with the file, and the public URL is never `None/…`).

use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use drama_assets::{
    ByteStream, Category, MediaKind, MediaType, ObjectKey, ObjectStream, SNIFF_LEN, Scope, keys,
};
use drama_dal::Entity;
use drama_domain::{DomainError, UserId};
use futures::StreamExt as _;
use serde_json::{Map, Value, json};

use crate::{App, AppError, Caller};

/// What kind of file an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryType {
    /// PNG, JPEG, WebP or GIF.
    Image,
    /// MP4, QuickTime or WebM.
    Video,
    /// Plain text or JSON.
    Text,
}

impl LibraryType {
    /// Parses the peer's `asset_type` values.
    ///
    /// # Errors
    /// `Invalid` naming `asset_type`, in the peer's words.
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "image" => Ok(Self::Image),
            "video" => Ok(Self::Video),
            "text" => Ok(Self::Text),
            other => Err(AppError::Invalid(DomainError::field(
                "asset_type",
                format!("Invalid asset_type '{other}'. Must be one of: image, video, text"),
            ))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Text => "text",
        }
    }

    fn admits(self, media: MediaType) -> bool {
        match self {
            Self::Image => media.kind() == MediaKind::Image,
            Self::Video => media.kind() == MediaKind::Video,
            Self::Text => matches!(media, MediaType::Text | MediaType::Json),
        }
    }
}

/// What an upload is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryTag {
    /// A character reference.
    Character,
    /// A storyboard.
    Storyboard,
    /// A clip.
    Clip,
}

impl LibraryTag {
    /// Parses the peer's `tag` values.
    ///
    /// # Errors
    /// `Invalid` naming `tag`, in the peer's words.
    pub fn parse(s: &str) -> Result<Self, AppError> {
        match s {
            "character" => Ok(Self::Character),
            "storyboard" => Ok(Self::Storyboard),
            "clip" => Ok(Self::Clip),
            other => Err(AppError::Invalid(DomainError::field(
                "tag",
                format!("Invalid tag '{other}'. Must be one of: character, storyboard, clip"),
            ))),
        }
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Character => "character",
            Self::Storyboard => "storyboard",
            Self::Clip => "clip",
        }
    }
}

/// An upload as the API hands it over: the body is streamed, never buffered whole.
pub struct LibraryUpload {
    /// Project (sanitised into the key).
    pub project: String,
    /// Declared kind.
    pub asset_type: LibraryType,
    /// Purpose.
    pub tag: LibraryTag,
    /// Original file name, if the client sent one.
    pub filename: Option<String>,
    /// Declared MIME type, if any.
    pub content_type: Option<String>,
    /// Extra fields for the record (core fields always win).
    pub metadata: Map<String, Value>,
    /// The bytes.
    pub body: ByteStream,
    /// Announced length, if known.
    pub size_hint: Option<u64>,
}

/// Where a library item lives.
#[derive(Debug, Clone)]
pub struct LibraryItem {
    /// Project name as the client wrote it.
    pub project: String,
    /// Declared kind.
    pub asset_type: LibraryType,
    /// The item's id.
    pub asset_id: String,
}

/// Items a library page holds when the client names no `limit`: the most a page holds, so
/// that an old client, which reads one answer as the whole library, misses as little as the
/// bound on a request's cost allows.
pub const LIBRARY_PAGE_DEFAULT: usize = LIBRARY_PAGE_MAX;
/// Most items a library page holds, and most records one page reads whatever its filters.
pub const LIBRARY_PAGE_MAX: usize = 1000;
/// Records of a page read at once: enough to hide a bucket's latency, few enough that one
/// listing does not flood the bucket.
const LIBRARY_READS: usize = 8;
/// A page ends once its records reach this many bytes. Caller metadata makes a record up to
/// tens of KB, so a page of 1,000 could pass the bound on a signed JSON answer (64 MB);
/// this keeps every page far below it.
pub const LIBRARY_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Which upload records a page lists.
#[derive(Debug, Clone)]
pub struct LibraryQuery<'a> {
    /// Project name as the client wrote it.
    pub project: &'a str,
    /// Only records of this kind.
    pub asset_type: Option<LibraryType>,
    /// Only records with this tag.
    pub tag: Option<LibraryTag>,
    /// Most items in the page, 1..=[`LIBRARY_PAGE_MAX`].
    pub limit: usize,
    /// The `next` cursor of the previous page; the first page when `None`.
    pub cursor: Option<&'a str>,
}

/// One page of upload records.
#[derive(Debug, Clone)]
pub struct LibraryPage {
    /// The records, in key order.
    pub items: Vec<Value>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<String>,
}

fn record_matches(record: &Value, query: &LibraryQuery<'_>) -> bool {
    let matches_type = query
        .asset_type
        .is_none_or(|t| record["asset_type"].as_str() == Some(t.as_str()));
    let matches_tag = query
        .tag
        .is_none_or(|t| record["tag"].as_str() == Some(t.as_str()));
    matches_type && matches_tag
}

/// Version prefix of a library cursor, so its form can change without misreading old ones.
const CURSOR_PREFIX: &str = "l1:";

/// The cursor after `key`: the record's asset id, hex-encoded (opaque to clients; it names
/// no owner or project, which every request gives anyway).
fn encode_cursor(key: &ObjectKey) -> String {
    let id = key
        .as_str()
        .rsplit('/')
        .next()
        .and_then(|name| name.strip_suffix(".json"))
        .unwrap_or_default();
    hex::encode(format!("{CURSOR_PREFIX}{id}"))
}

fn bad_cursor() -> AppError {
    AppError::Invalid(DomainError::field(
        "cursor",
        "not a cursor returned by this server",
    ))
}

fn decode_cursor(text: &str) -> Result<String, AppError> {
    let raw = hex::decode(text).map_err(|_| bad_cursor())?;
    let raw = String::from_utf8(raw).map_err(|_| bad_cursor())?;
    raw.strip_prefix(CURSOR_PREFIX)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(bad_cursor)
}

fn metadata_key(user: UserId, scope: &Scope, asset_id: &str) -> Result<ObjectKey, AppError> {
    Ok(keys::asset_key(
        user,
        scope,
        Category::Metadata,
        asset_id,
        MediaType::Json,
    )?)
}

fn check_asset_id(id: &str) -> Result<(), AppError> {
    let ok = uuid::Uuid::parse_str(id).is_ok();
    if ok {
        Ok(())
    } else {
        Err(AppError::not_found(Entity::Asset, id))
    }
}

/// Reads the first bytes of a stream to learn its type, then hands back an equivalent stream.
async fn sniff(mut body: ByteStream) -> Result<(Option<MediaType>, ByteStream), AppError> {
    let mut head = Vec::new();
    while head.len() < SNIFF_LEN {
        match body.next().await {
            Some(Ok(chunk)) => head.extend_from_slice(&chunk),
            Some(Err(e)) => {
                return Err(AppError::Invalid(DomainError::field(
                    "file",
                    format!("reading the upload failed: {e}"),
                )));
            }
            None => break,
        }
    }
    let detected = MediaType::detect(&head);
    let first = futures::stream::once(async move { Ok(Bytes::from(head)) });
    Ok((detected, first.chain(body).boxed()))
}

impl App {
    /// Refuses an upload before its body is read when its owner has no room for `announced`
    /// bytes (the request's length, an upper bound of the file's), or none at all when the
    /// length is unknown: a user at the byte or object quota is refused without spooling.
    /// [`library_upload`](Self::library_upload) checks again with the file's real size.
    ///
    /// # Errors
    /// `QuotaExceeded`; `Unavailable`.
    pub async fn library_upload_admit(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        announced: Option<u64>,
    ) -> Result<(), AppError> {
        self.check_bytes_quota(caller.owner(owner), announced.unwrap_or(0))
            .await
    }

    /// Stores an upload and its record; returns the record.
    ///
    /// # Errors
    /// `Invalid` (type not admitted by `asset_type`, content not matching its declared type,
    /// bad project name, malformed metadata); `TooLarge`; `Unavailable`.
    #[tracing::instrument(skip_all, fields(project = %upload.project))]
    pub async fn library_upload(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        upload: LibraryUpload,
    ) -> Result<Value, AppError> {
        let user = caller.owner(owner);
        let scope = Scope::project(&upload.project)?;
        let (detected, body) = sniff(upload.body).await?;
        let declared = upload
            .content_type
            .as_deref()
            .filter(|t| !t.is_empty() && *t != "application/octet-stream")
            .map(MediaType::from_mime)
            .transpose()?;
        let media = declared
            .or(detected)
            .or_else(|| {
                upload
                    .filename
                    .as_deref()
                    .and_then(|f| f.rsplit_once('.'))
                    .and_then(|(_, ext)| MediaType::from_extension(ext))
            })
            .ok_or_else(|| {
                AppError::Invalid(DomainError::field(
                    "file",
                    "the file's type is not recognised",
                ))
            })?;
        if !upload.asset_type.admits(media) {
            return Err(AppError::Invalid(DomainError::field(
                "file",
                format!(
                    "a {} file cannot be stored as asset_type {}",
                    media.mime(),
                    upload.asset_type.as_str()
                ),
            )));
        }
        self.check_bytes_quota(user, upload.size_hint.unwrap_or(0))
            .await?;
        // Time-ordered, so a listing in key order is in upload order.
        let asset_id = uuid::Uuid::now_v7().to_string();
        let key = keys::asset_key(user, &scope, Category::Uploads, &asset_id, media)?;
        let info = self
            .assets
            .put_stream(&key, body, media.mime(), upload.size_hint)
            .await?;
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
        let mut record = upload.metadata;
        let core = json!({
            "asset_id": asset_id,
            "user_id": user.to_string(),
            "project_name": upload.project,
            "asset_type": upload.asset_type.as_str(),
            "tag": upload.tag.as_str(),
            "filename": upload.filename.as_deref().and_then(keys::sanitize_filename)
                .unwrap_or_else(|| format!("{asset_id}.{}", media.extension())),
            "created_at": now,
            "updated_at": now,
            "file_size": info.size,
            "r2_key": key.as_str(),
            "public_url": self.object_url(&key),
            "content_type": media.mime(),
            "checksum": info.checksum,
        });
        if let Value::Object(core) = core {
            record.extend(core);
        }
        let record = Value::Object(record);
        let bytes =
            serde_json::to_vec_pretty(&record).map_err(|e| AppError::Internal(Box::new(e)))?;
        let meta_key = metadata_key(user, &scope, &asset_id)?;
        if let Err(e) = self
            .assets
            .put_bytes(&meta_key, Bytes::from(bytes), MediaType::Json.mime())
            .await
        {
            // Without its record the file is unreachable; do not leave it behind.
            let _ = self.assets.delete(&key).await;
            return Err(e.into());
        }
        Ok(record)
    }

    /// One page of a project's upload records, optionally filtered, in key order: the order
    /// of their ids, which for uploads stored by this server (UUID v7) is the order the
    /// uploads began.
    ///
    /// The listing stops after the page and the page's records are read a few at a time, so
    /// a page costs at most [`LIBRARY_PAGE_MAX`] record reads and about
    /// [`LIBRARY_PAGE_BYTES`] of records whatever the project holds. With a filter the page
    /// may hold fewer than `limit` items (even none) while `next` is set: it examined
    /// [`LIBRARY_PAGE_MAX`] records or [`LIBRARY_PAGE_BYTES`] of them.
    ///
    /// # Errors
    /// `Invalid` (project name, `limit` outside 1..=[`LIBRARY_PAGE_MAX`], a `cursor` this
    /// server did not answer); `Unavailable`.
    #[tracing::instrument(skip_all)]
    pub async fn library_list(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        query: &LibraryQuery<'_>,
    ) -> Result<LibraryPage, AppError> {
        if !(1..=LIBRARY_PAGE_MAX).contains(&query.limit) {
            return Err(AppError::Invalid(DomainError::field(
                "limit",
                format!("must be between 1 and {LIBRARY_PAGE_MAX}"),
            )));
        }
        let user = caller.owner(owner);
        let scope = Scope::project(query.project)?;
        let prefix = keys::category_prefix(user, &scope, Category::Metadata);
        let mut after = query
            .cursor
            .map(|c| {
                decode_cursor(c)
                    .and_then(|id| metadata_key(user, &scope, &id).map_err(|_| bad_cursor()))
            })
            .transpose()?;
        let mut items = Vec::new();
        let (mut examined, mut bytes_read) = (0usize, 0usize);
        loop {
            let want = (query.limit - items.len()).min(LIBRARY_PAGE_MAX - examined);
            let listed = self.assets.list_page(&prefix, after.as_ref(), want).await?;
            let listed_len = listed.objects.len();
            if listed_len == 0 {
                return Ok(LibraryPage { items, next: None });
            }
            let (mut consumed, mut full) = (0usize, false);
            let mut reads = futures::stream::iter(listed.objects)
                .map(|summary| async move {
                    let read = self.assets.get_bytes(&summary.key).await;
                    (summary.key, read)
                })
                .buffered(LIBRARY_READS);
            while let Some((key, read)) = reads.next().await {
                consumed += 1;
                examined += 1;
                let bytes = match read {
                    Ok((_, bytes)) => Some(bytes),
                    // Deleted between the listing and the read.
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(e.into()),
                };
                if let Some(bytes) = bytes {
                    bytes_read += bytes.len();
                    match serde_json::from_slice::<Value>(&bytes) {
                        Ok(record) if record_matches(&record, query) => items.push(record),
                        Ok(_) => {}
                        Err(_) => {
                            tracing::warn!(object.key = %key, "unreadable library record skipped");
                        }
                    }
                }
                after = Some(key);
                if items.len() >= query.limit
                    || examined >= LIBRARY_PAGE_MAX
                    || bytes_read >= LIBRARY_PAGE_BYTES
                {
                    full = true;
                    break;
                }
            }
            let more = consumed < listed_len || listed.more;
            if full || !more {
                let next = if more {
                    after.as_ref().map(encode_cursor)
                } else {
                    None
                };
                return Ok(LibraryPage { items, next });
            }
        }
    }

    async fn library_record(
        &self,
        user: UserId,
        item: &LibraryItem,
    ) -> Result<(Value, ObjectKey), AppError> {
        check_asset_id(&item.asset_id)?;
        let scope = Scope::project(&item.project)?;
        let meta_key = metadata_key(user, &scope, &item.asset_id)?;
        let (_, bytes) = self.assets.get_bytes(&meta_key).await.map_err(|e| {
            if e.is_not_found() {
                AppError::not_found(Entity::Asset, &item.asset_id)
            } else {
                e.into()
            }
        })?;
        let record: Value =
            serde_json::from_slice(&bytes).map_err(|e| AppError::Internal(Box::new(e)))?;
        if record["asset_type"].as_str() != Some(item.asset_type.as_str()) {
            return Err(AppError::not_found(Entity::Asset, &item.asset_id));
        }
        let key = record["r2_key"]
            .as_str()
            .map(ObjectKey::parse)
            .transpose()?
            .ok_or_else(|| AppError::not_found(Entity::Asset, &item.asset_id))?;
        Ok((record, key))
    }

    /// The record of one upload.
    ///
    /// # Errors
    /// `NotFound`; `Unavailable`.
    pub async fn library_metadata(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        item: &LibraryItem,
    ) -> Result<Value, AppError> {
        Ok(self.library_record(caller.owner(owner), item).await?.0)
    }

    /// The bytes of one upload, streamed.
    ///
    /// # Errors
    /// `NotFound`; `Unavailable`.
    pub async fn library_download(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        item: &LibraryItem,
    ) -> Result<ObjectStream, AppError> {
        let (_, key) = self.library_record(caller.owner(owner), item).await?;
        Ok(self.assets.get(&key).await?)
    }

    /// Deletes one upload and its record.
    ///
    /// # Errors
    /// `NotFound`; `Unavailable`.
    pub async fn library_delete(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        item: &LibraryItem,
    ) -> Result<(), AppError> {
        let user = caller.owner(owner);
        let (_, key) = self.library_record(user, item).await?;
        self.assets.delete(&key).await?;
        let scope = Scope::project(&item.project)?;
        self.assets
            .delete(&metadata_key(user, &scope, &item.asset_id)?)
            .await?;
        Ok(())
    }

    /// The URL clients use for an object: its public URL when the bucket has one, else the
    /// API's authenticated `/media/{key}` route.
    pub fn object_url(&self, key: &ObjectKey) -> String {
        self.assets
            .public_url(key)
            .unwrap_or_else(|| format!("{}/media/{}", self.public_base_url, key.as_str()))
    }
}
