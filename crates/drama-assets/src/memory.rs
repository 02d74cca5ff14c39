//! The in-memory backend, for tests and the embedded mode.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::error::AssetError;
use crate::intake::Intake;
use crate::keys::{KeyPrefix, ObjectKey};
use crate::limits::SizeLimits;
use crate::media::MediaType;
use crate::signing::UrlSigner;
use crate::store::{
    AssetStore, ByteRange, ByteStream, CheckReport, CheckStep, ContentRange, ListPage, ObjectInfo,
    ObjectStream, ObjectSummary, PresignedRequest,
};

#[derive(Clone)]
struct StoredObject {
    bytes: Bytes,
    content_type: String,
    checksum: String,
    last_modified: DateTime<Utc>,
}

/// Objects in a map in this process's memory. Its presigned URLs are signed for the API to
/// serve, as with the local backend.
pub struct MemoryStore {
    objects: RwLock<BTreeMap<String, StoredObject>>,
    limits: SizeLimits,
    signer: UrlSigner,
    public_base_url: Option<String>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        f.debug_struct("MemoryStore")
            .field("objects", &count)
            .field("limits", &self.limits)
            .field("signer", &self.signer)
            .field("public_base_url", &self.public_base_url)
            .finish()
    }
}

impl MemoryStore {
    /// An empty store with default limits and a random signing secret whose URLs point at
    /// `http://localhost`.
    pub fn new() -> Self {
        Self::with_signer(
            SizeLimits::default(),
            UrlSigner::random_for("http://localhost".to_owned()),
            None,
        )
    }

    /// A store with the given limits, URL signer and optional public base URL.
    pub fn with_signer(
        limits: SizeLimits,
        signer: UrlSigner,
        public_base_url: Option<String>,
    ) -> Self {
        Self {
            objects: RwLock::new(BTreeMap::new()),
            limits,
            signer,
            public_base_url,
        }
    }

    fn read(&self, key: &ObjectKey) -> Result<StoredObject, AssetError> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects
            .get(key.as_str())
            .cloned()
            .ok_or_else(|| AssetError::NotFound {
                key: key.to_string(),
            })
    }

    fn write(&self, key: &ObjectKey, object: StoredObject) {
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        objects.insert(key.as_str().to_owned(), object);
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

fn info_of(key: &ObjectKey, object: &StoredObject) -> ObjectInfo {
    ObjectInfo {
        key: key.clone(),
        size: object.bytes.len() as u64,
        content_type: object.content_type.clone(),
        checksum: Some(object.checksum.clone()),
        etag: None,
        last_modified: Some(object.last_modified),
    }
}

fn one_chunk(bytes: Bytes) -> ByteStream {
    futures::stream::once(async move { Ok(bytes) }).boxed()
}

#[async_trait]
impl AssetStore for MemoryStore {
    fn backend(&self) -> &'static str {
        "memory"
    }

    fn limits(&self) -> &SizeLimits {
        &self.limits
    }

    #[tracing::instrument(skip_all, fields(backend = "memory", key = %key))]
    async fn put_bytes(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<ObjectInfo, AssetError> {
        let len = bytes.len() as u64;
        self.put_stream(key, one_chunk(bytes), content_type, Some(len))
            .await
    }

    #[tracing::instrument(skip_all, fields(backend = "memory", key = %key))]
    async fn put_stream(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        content_type: &str,
        size_hint: Option<u64>,
    ) -> Result<ObjectInfo, AssetError> {
        let mut intake = Intake::new(key, content_type, &self.limits, size_hint, body)?;
        let mut buf = BytesMut::new();
        while let Some(chunk) = intake.next_chunk().await? {
            buf.extend_from_slice(&chunk);
        }
        let mime = intake.mime();
        let summary = intake.finish();
        let object = StoredObject {
            bytes: buf.freeze(),
            content_type: mime.to_owned(),
            checksum: summary.checksum,
            last_modified: Utc::now(),
        };
        let info = info_of(key, &object);
        self.write(key, object);
        Ok(info)
    }

    #[tracing::instrument(skip_all, fields(backend = "memory", key = %key))]
    async fn get(&self, key: &ObjectKey) -> Result<ObjectStream, AssetError> {
        let object = self.read(key)?;
        Ok(ObjectStream {
            info: info_of(key, &object),
            range: None,
            body: one_chunk(object.bytes),
        })
    }

    #[tracing::instrument(skip_all, fields(backend = "memory", key = %key))]
    async fn get_range(
        &self,
        key: &ObjectKey,
        range: ByteRange,
    ) -> Result<ObjectStream, AssetError> {
        let object = self.read(key)?;
        let total = object.bytes.len() as u64;
        let (start, end) = range.resolve(key, total)?;
        let (from, to) = (
            usize::try_from(start).unwrap_or(usize::MAX),
            usize::try_from(end).unwrap_or(usize::MAX),
        );
        let body = object.bytes.slice(from..=to);
        Ok(ObjectStream {
            info: info_of(key, &object),
            range: Some(ContentRange { start, end, total }),
            body: one_chunk(body),
        })
    }

    async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        self.read(key).map(|o| info_of(key, &o))
    }

    async fn delete(&self, key: &ObjectKey) -> Result<(), AssetError> {
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        objects.remove(key.as_str());
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(backend = "memory", prefix = %prefix))]
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64, AssetError> {
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        let before = objects.len();
        objects.retain(|k, _| !k.starts_with(prefix.as_str()));
        Ok((before - objects.len()) as u64)
    }

    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectSummary>, AssetError> {
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        objects
            .range(prefix.as_str().to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix.as_str()))
            .map(|(k, o)| {
                Ok(ObjectSummary {
                    key: ObjectKey::parse(k.clone())?,
                    size: o.bytes.len() as u64,
                    last_modified: Some(o.last_modified),
                })
            })
            .collect()
    }

    async fn list_page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&ObjectKey>,
        max: usize,
    ) -> Result<ListPage, AssetError> {
        use std::ops::Bound;
        let max = max.max(1);
        let objects = self.objects.read().unwrap_or_else(PoisonError::into_inner);
        let start = match after {
            Some(a) if a.as_str() >= prefix.as_str() => Bound::Excluded(a.as_str().to_owned()),
            _ => Bound::Included(prefix.as_str().to_owned()),
        };
        let mut rest = objects
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix.as_str()));
        let page = rest
            .by_ref()
            .take(max)
            .map(|(k, o)| {
                Ok(ObjectSummary {
                    key: ObjectKey::parse(k.clone())?,
                    size: o.bytes.len() as u64,
                    last_modified: Some(o.last_modified),
                })
            })
            .collect::<Result<Vec<_>, AssetError>>()?;
        Ok(ListPage {
            objects: page,
            more: rest.next().is_some(),
        })
    }

    #[tracing::instrument(skip_all, fields(backend = "memory", from = %from, to = %to))]
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        let mut object = self.read(from)?;
        if let Ok(media) = MediaType::from_mime(&object.content_type) {
            to.check_media(media)?;
        }
        object.last_modified = Utc::now();
        let info = info_of(to, &object);
        self.write(to, object);
        Ok(info)
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

    async fn check(&self) -> CheckReport {
        let started = Instant::now();
        let count = self
            .objects
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        CheckReport {
            backend: "memory",
            location: "process memory (nothing is kept after exit)".to_owned(),
            steps: vec![CheckStep {
                name: "memory",
                ok: true,
                detail: format!("{count} objects held"),
                elapsed: started.elapsed(),
            }],
        }
    }
}
