//! The local file-system backend (the embedded default).
//!
//! Layout under the root directory: `objects/{key}` holds the bytes as a plain file,
//! `meta/{key}.json` the content type and checksum, `tmp/` the files being written. Every
//! write goes to `tmp/` first and is renamed into place, so a reader sees the old object or
//! the new one, never half of one.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use crate::error::AssetError;
use crate::intake::Intake;
use crate::keys::{KeyPrefix, ObjectKey};
use crate::limits::SizeLimits;
use crate::media::MediaType;
use crate::signing::UrlSigner;
use crate::store::{
    AssetStore, ByteRange, ByteStream, CheckReport, CheckStep, ContentRange, ObjectInfo,
    ObjectStream, ObjectSummary, PresignedRequest,
};

const READ_CHUNK: usize = 256 * 1024;

/// Objects as files under a directory. Its presigned URLs point at the API server, which
/// checks them with [`AssetStore::url_signer`] and streams the file.
#[derive(Debug)]
pub struct LocalStore {
    root: PathBuf,
    limits: SizeLimits,
    signer: UrlSigner,
    public_base_url: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sidecar {
    content_type: String,
    size: u64,
    checksum: String,
}

impl LocalStore {
    /// A store rooted at `root` (created if missing).
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] (`ASSETS_DIR`) when the directories cannot be created.
    pub async fn open(
        root: impl Into<PathBuf>,
        limits: SizeLimits,
        signer: UrlSigner,
        public_base_url: Option<String>,
    ) -> Result<Self, AssetError> {
        let root = root.into();
        for dir in ["objects", "meta", "tmp"] {
            fs::create_dir_all(root.join(dir))
                .await
                .map_err(|e| AssetError::InvalidSettings {
                    variable: "ASSETS_DIR",
                    message: format!("cannot create {}: {e}", root.join(dir).display()),
                })?;
        }
        Ok(Self {
            root,
            limits,
            signer,
            public_base_url,
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_path(&self, key: &ObjectKey) -> PathBuf {
        // Checked keys have no `..`, no leading `/` and no backslash, so the join stays
        // inside `objects/`.
        self.root.join("objects").join(key.as_str())
    }

    fn sidecar_path(&self, key: &ObjectKey) -> PathBuf {
        self.root
            .join("meta")
            .join(format!("{}.json", key.as_str()))
    }

    fn temp_path(&self) -> PathBuf {
        self.root.join("tmp").join(uuid::Uuid::new_v4().to_string())
    }

    async fn read_info(&self, key: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        let meta = fs::metadata(self.object_path(key))
            .await
            .map_err(|e| AssetError::from_io(key.as_str(), &e))?;
        if !meta.is_file() {
            return Err(AssetError::NotFound {
                key: key.to_string(),
            });
        }
        let last_modified = meta.modified().ok().map(DateTime::<Utc>::from);
        let sidecar = match fs::read(self.sidecar_path(key)).await {
            Ok(raw) => serde_json::from_slice::<Sidecar>(&raw).ok(),
            Err(_) => None,
        };
        // A sidecar of another length belongs to a write that was interrupted between its
        // two renames; the bytes win and the type falls back to the extension's.
        let (content_type, checksum) = match sidecar {
            Some(s) if s.size == meta.len() => (s.content_type, Some(s.checksum)),
            _ => (
                key.media_type()
                    .unwrap_or(MediaType::Binary)
                    .mime()
                    .to_owned(),
                None,
            ),
        };
        Ok(ObjectInfo {
            key: key.clone(),
            size: meta.len(),
            content_type,
            checksum,
            etag: None,
            last_modified,
        })
    }

    /// Renames `temp` to `target`, creating parent directories.
    async fn place(&self, key: &ObjectKey, temp: &Path, target: &Path) -> Result<(), AssetError> {
        let map = |e: std::io::Error| AssetError::from_io(key.as_str(), &e);
        // A concurrent delete may prune the fresh parent directory; one retry covers it.
        for attempt in 0..2 {
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).await.map_err(map)?;
            }
            match fs::rename(temp, target).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt == 0 && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(map(e)),
            }
        }
        Err(AssetError::backend(format!("could not place {key}")))
    }

    async fn write_sidecar(&self, key: &ObjectKey, sidecar: &Sidecar) -> Result<(), AssetError> {
        let json = serde_json::to_vec(sidecar)
            .map_err(|e| AssetError::backend(format!("encoding metadata of {key}: {e}")))?;
        let temp = self.temp_path();
        let result = async {
            fs::write(&temp, &json)
                .await
                .map_err(|e| AssetError::from_io(key.as_str(), &e))?;
            self.place(key, &temp, &self.sidecar_path(key)).await
        }
        .await;
        if result.is_err() {
            let _ = fs::remove_file(&temp).await;
        }
        result
    }

    async fn write_object(
        &self,
        key: &ObjectKey,
        intake: &mut Intake,
        temp: &Path,
    ) -> Result<(), AssetError> {
        let io = |e: std::io::Error| AssetError::from_io(key.as_str(), &e);
        let mut file = fs::File::create(temp).await.map_err(io)?;
        while let Some(chunk) = intake.next_chunk().await? {
            file.write_all(&chunk).await.map_err(io)?;
        }
        file.flush().await.map_err(io)?;
        file.sync_all().await.map_err(io)?;
        drop(file);
        self.place(key, temp, &self.object_path(key)).await
    }

    /// Removes now-empty directories between `path` and `stop`.
    async fn prune_empty_dirs(path: &Path, stop: &Path) {
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == stop || !d.starts_with(stop) {
                break;
            }
            if fs::remove_dir(d).await.is_err() {
                break;
            }
            dir = d.parent();
        }
    }

    async fn walk(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectSummary>, AssetError> {
        let objects_root = self.root.join("objects");
        let start = objects_root.join(prefix.as_str());
        let mut found = Vec::new();
        let mut pending = vec![start];
        while let Some(dir) = pending.pop() {
            let mut entries = match fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => continue,
                Err(e) => return Err(AssetError::from_io(prefix.as_str(), &e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| AssetError::from_io(prefix.as_str(), &e))?
            {
                let Ok(file_type) = entry.file_type().await else {
                    continue;
                };
                let path = entry.path();
                if file_type.is_dir() {
                    pending.push(path);
                    continue;
                }
                // Symlinks and special files are never written by the store; skip them.
                if !file_type.is_file() {
                    continue;
                }
                let Some(relative) = path.strip_prefix(&objects_root).ok().and_then(Path::to_str)
                else {
                    continue;
                };
                match ObjectKey::parse(relative) {
                    Ok(key) => {
                        let meta = entry.metadata().await.ok();
                        found.push(ObjectSummary {
                            key,
                            size: meta.as_ref().map_or(0, std::fs::Metadata::len),
                            last_modified: meta
                                .and_then(|m| m.modified().ok())
                                .map(DateTime::<Utc>::from),
                        });
                    }
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "skipping a file that is not a valid key")
                    }
                }
            }
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(found)
    }
}

#[async_trait]
impl AssetStore for LocalStore {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn limits(&self) -> &SizeLimits {
        &self.limits
    }

    #[tracing::instrument(skip_all, fields(backend = "local", key = %key, size = bytes.len()))]
    async fn put_bytes(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<ObjectInfo, AssetError> {
        let intake = Intake::from_bytes(key, content_type, &self.limits, bytes)?;
        self.put_intake(key, intake).await
    }

    #[tracing::instrument(skip_all, fields(backend = "local", key = %key))]
    async fn put_stream(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        content_type: &str,
        size_hint: Option<u64>,
    ) -> Result<ObjectInfo, AssetError> {
        let intake = Intake::new(key, content_type, &self.limits, size_hint, body)?;
        self.put_intake(key, intake).await
    }

    #[tracing::instrument(skip_all, fields(backend = "local", key = %key))]
    async fn get(&self, key: &ObjectKey) -> Result<ObjectStream, AssetError> {
        let file = fs::File::open(self.object_path(key))
            .await
            .map_err(|e| AssetError::from_io(key.as_str(), &e))?;
        let info = self.read_info(key).await?;
        Ok(ObjectStream {
            info,
            range: None,
            body: ReaderStream::with_capacity(file, READ_CHUNK).boxed(),
        })
    }

    #[tracing::instrument(skip_all, fields(backend = "local", key = %key))]
    async fn get_range(
        &self,
        key: &ObjectKey,
        range: ByteRange,
    ) -> Result<ObjectStream, AssetError> {
        let mut file = fs::File::open(self.object_path(key))
            .await
            .map_err(|e| AssetError::from_io(key.as_str(), &e))?;
        let info = self.read_info(key).await?;
        let (start, end) = range.resolve(key, info.size)?;
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(|e| AssetError::from_io(key.as_str(), &e))?;
        let body = ReaderStream::with_capacity(file.take(end - start + 1), READ_CHUNK).boxed();
        let total = info.size;
        Ok(ObjectStream {
            info,
            range: Some(ContentRange { start, end, total }),
            body,
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        self.read_info(key).await
    }

    #[tracing::instrument(skip_all, fields(backend = "local", key = %key))]
    async fn delete(&self, key: &ObjectKey) -> Result<(), AssetError> {
        let path = self.object_path(key);
        for (file, stop) in [
            (path, self.root.join("objects")),
            (self.sidecar_path(key), self.root.join("meta")),
        ] {
            match fs::remove_file(&file).await {
                Ok(()) => Self::prune_empty_dirs(&file, &stop).await,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) => {}
                Err(e) => return Err(AssetError::from_io(key.as_str(), &e)),
            }
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(backend = "local", prefix = %prefix))]
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64, AssetError> {
        let objects = self.walk(prefix).await?;
        let mut deleted = 0;
        for object in &objects {
            self.delete(&object.key).await?;
            deleted += 1;
        }
        Ok(deleted)
    }

    #[tracing::instrument(skip_all, fields(backend = "local", prefix = %prefix))]
    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectSummary>, AssetError> {
        self.walk(prefix).await
    }

    /// One walk of the directories (the default would walk them once per page): the local
    /// store serves one embedded process, whose disk bounds what it holds.
    async fn usage(
        &self,
        prefix: &KeyPrefix,
        _bound: crate::store::UsageBound,
    ) -> Result<crate::store::Usage, AssetError> {
        let objects = self.walk(prefix).await?;
        Ok(crate::store::Usage {
            bytes: objects.iter().map(|o| o.size).sum(),
            objects: objects.len() as u64,
            complete: true,
        })
    }

    #[tracing::instrument(skip_all, fields(backend = "local", from = %from, to = %to))]
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        let source = self.read_info(from).await?;
        if let Ok(media) = MediaType::from_mime(&source.content_type) {
            to.check_media(media)?;
        }
        let temp = self.temp_path();
        let result = async {
            fs::copy(self.object_path(from), &temp)
                .await
                .map_err(|e| AssetError::from_io(from.as_str(), &e))?;
            self.place(to, &temp, &self.object_path(to)).await
        }
        .await;
        if let Err(e) = result {
            let _ = fs::remove_file(&temp).await;
            return Err(e);
        }
        if let Some(checksum) = &source.checksum {
            let sidecar = Sidecar {
                content_type: source.content_type.clone(),
                size: source.size,
                checksum: checksum.clone(),
            };
            self.write_sidecar(to, &sidecar).await?;
        }
        self.read_info(to).await
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError> {
        self.signer.presign_get(key, expires_in)
    }

    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError> {
        self.signer.presign_put(key, content_type, expires_in)
    }

    fn public_url(&self, key: &ObjectKey) -> Option<String> {
        self.public_base_url
            .as_ref()
            .map(|base| format!("{base}/{key}"))
    }

    fn url_signer(&self) -> Option<&UrlSigner> {
        Some(&self.signer)
    }

    #[tracing::instrument(skip_all, fields(backend = "local"))]
    async fn check(&self) -> CheckReport {
        let mut steps = Vec::new();
        let started = Instant::now();
        let dir_ok = fs::metadata(self.root.join("objects"))
            .await
            .map(|m| m.is_dir());
        steps.push(CheckStep {
            name: "directory",
            ok: matches!(dir_ok, Ok(true)),
            detail: match dir_ok {
                Ok(true) => format!("{} exists", self.root.display()),
                Ok(false) => format!("{}/objects is not a directory", self.root.display()),
                Err(e) => format!("{}: {e}", self.root.display()),
            },
            elapsed: started.elapsed(),
        });
        if steps.iter().all(|s| s.ok) {
            crate::store::probe_write(self, &mut steps).await;
        }
        CheckReport {
            backend: "local",
            location: self.root.display().to_string(),
            steps,
        }
    }
}

impl LocalStore {
    async fn put_intake(
        &self,
        key: &ObjectKey,
        mut intake: Intake,
    ) -> Result<ObjectInfo, AssetError> {
        let temp = self.temp_path();
        if let Err(e) = self.write_object(key, &mut intake, &temp).await {
            let _ = fs::remove_file(&temp).await;
            return Err(e);
        }
        let content_type = intake.mime().to_owned();
        let summary = intake.finish();
        let sidecar = Sidecar {
            content_type,
            size: summary.size,
            checksum: summary.checksum,
        };
        self.write_sidecar(key, &sidecar).await?;
        let mut info = self.read_info(key).await?;
        // Report what this call wrote even if another writer replaced it meanwhile.
        info.size = sidecar.size;
        info.content_type = sidecar.content_type;
        info.checksum = Some(sidecar.checksum);
        Ok(info)
    }
}
