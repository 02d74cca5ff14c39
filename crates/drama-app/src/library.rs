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
        let asset_id = uuid::Uuid::new_v4().to_string();
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

    /// Records of a project's uploads, optionally filtered.
    ///
    /// # Errors
    /// `Invalid` (project name); `Unavailable`.
    #[tracing::instrument(skip_all)]
    pub async fn library_list(
        &self,
        caller: &Caller,
        owner: Option<UserId>,
        project: &str,
        asset_type: Option<LibraryType>,
        tag: Option<LibraryTag>,
    ) -> Result<Vec<Value>, AppError> {
        let user = caller.owner(owner);
        let scope = Scope::project(project)?;
        let prefix = keys::category_prefix(user, &scope, Category::Metadata);
        let mut records = Vec::new();
        for summary in self.assets.list(&prefix).await? {
            let (_, bytes) = match self.assets.get_bytes(&summary.key).await {
                Ok(found) => found,
                // Deleted between the listing and the read.
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            let Ok(record) = serde_json::from_slice::<Value>(&bytes) else {
                tracing::warn!(object.key = %summary.key, "unreadable library record skipped");
                continue;
            };
            let matches_type =
                asset_type.is_none_or(|t| record["asset_type"].as_str() == Some(t.as_str()));
            let matches_tag = tag.is_none_or(|t| record["tag"].as_str() == Some(t.as_str()));
            if matches_type && matches_tag {
                records.push(record);
            }
        }
        records.sort_by(|a, b| a["created_at"].as_str().cmp(&b["created_at"].as_str()));
        Ok(records)
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
