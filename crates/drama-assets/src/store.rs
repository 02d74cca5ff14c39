//! The `AssetStore` trait and the values it exchanges.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::AssetError;
use crate::keys::{KeyPrefix, ObjectKey};
use crate::limits::SizeLimits;
use crate::media::{MediaType, SNIFF_LEN};
use crate::signing::UrlSigner;

/// A stream of bytes going into or coming out of a store.
pub type ByteStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Longest validity of a presigned URL (R2 and S3 refuse more).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// What the store knows about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's key.
    pub key: ObjectKey,
    /// Length in bytes.
    pub size: u64,
    /// MIME type stored with the object.
    pub content_type: String,
    /// `sha256:<hex>` of the bytes when known. Every put returns it; `head` knows it for
    /// objects written in one request (multipart uploads to S3 only report it from the put).
    pub checksum: Option<String>,
    /// The store's entity tag, when it has one (S3).
    pub etag: Option<String>,
    /// When the object was last written, when known.
    pub last_modified: Option<DateTime<Utc>>,
}

/// One entry of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectSummary {
    /// The object's key.
    pub key: ObjectKey,
    /// Length in bytes.
    pub size: u64,
    /// When the object was last written, when known.
    pub last_modified: Option<DateTime<Utc>>,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects, in key order.
    pub objects: Vec<ObjectSummary>,
    /// Whether more objects follow the last one.
    pub more: bool,
}

/// Where [`AssetStore::usage`] may stop counting: once the bytes pass `bytes` or the objects
/// reach `objects`, the answer (over either bound) is known and reading further would only
/// cost listings. `u64::MAX` leaves a bound off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageBound {
    /// Stop once more than this many bytes are counted.
    pub bytes: u64,
    /// Stop once this many objects are counted.
    pub objects: u64,
}

impl UsageBound {
    /// Counts everything.
    pub const NONE: Self = Self {
        bytes: u64::MAX,
        objects: u64::MAX,
    };

    /// Whether `usage` has passed a bound.
    #[must_use]
    pub fn reached(&self, usage: &Usage) -> bool {
        usage.bytes > self.bytes || usage.objects >= self.objects
    }
}

/// What [`AssetStore::usage`] counted under a prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of the objects counted.
    pub bytes: u64,
    /// Objects counted.
    pub objects: u64,
    /// Whether every object under the prefix was counted; `false` when the count stopped at
    /// a bound (the real figures are then at least these).
    pub complete: bool,
}

/// Objects read per listing request while counting (S3 answers at most 1,000 per request).
pub const USAGE_PAGE: usize = 1000;

/// An inclusive byte range to read, as in an HTTP `Range: bytes=start-end` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive); `None` reads to the end.
    pub end: Option<u64>,
}

impl ByteRange {
    /// Resolves the range against an object of `size` bytes: the served `(start, end)`,
    /// inclusive, with `end` clamped to the last byte.
    ///
    /// # Errors
    /// [`AssetError::RangeNotSatisfiable`] when the range starts past the end;
    /// [`AssetError::InvalidRequest`] when `end < start`.
    pub fn resolve(self, key: &ObjectKey, size: u64) -> Result<(u64, u64), AssetError> {
        if let Some(end) = self.end
            && end < self.start
        {
            return Err(AssetError::InvalidRequest(format!(
                "range end {end} is before its start {}",
                self.start
            )));
        }
        if self.start >= size {
            return Err(AssetError::RangeNotSatisfiable {
                key: key.to_string(),
                size,
            });
        }
        let last = size - 1;
        Ok((self.start, self.end.map_or(last, |e| e.min(last))))
    }
}

/// The part of an object a ranged read returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    /// First byte served.
    pub start: u64,
    /// Last byte served (inclusive).
    pub end: u64,
    /// Length of the whole object.
    pub total: u64,
}

/// An object being read.
pub struct ObjectStream {
    /// What the store knows about the object (size is the whole object's).
    pub info: ObjectInfo,
    /// Set for ranged reads: which bytes `body` holds.
    pub range: Option<ContentRange>,
    /// The bytes.
    pub body: ByteStream,
}

impl ObjectStream {
    /// How many bytes `body` yields.
    pub fn body_len(&self) -> u64 {
        self.range.map_or(self.info.size, |r| r.end - r.start + 1)
    }

    /// Collects the body into memory.
    ///
    /// # Errors
    /// [`AssetError::Unavailable`] when the transfer breaks.
    pub async fn collect(self) -> Result<(ObjectInfo, Bytes), AssetError> {
        let capacity = usize::try_from(self.body_len()).unwrap_or(0);
        let mut buf = BytesMut::with_capacity(capacity.min(64 * 1024 * 1024));
        let mut body = self.body;
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| AssetError::unavailable(format!("reading object: {e}")))?;
            buf.extend_from_slice(&chunk);
        }
        Ok((self.info, buf.freeze()))
    }
}

impl fmt::Debug for ObjectStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStream")
            .field("info", &self.info)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// HTTP method of a presigned request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PresignMethod {
    /// Download.
    Get,
    /// Upload.
    Put,
}

impl PresignMethod {
    /// `GET` or `PUT`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Put => "PUT",
        }
    }
}

/// A URL that lets its holder make one kind of request without credentials until it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedRequest {
    /// The method the URL is good for.
    pub method: PresignMethod,
    /// The URL.
    pub url: String,
    /// Headers the request must carry exactly as given (for a PUT, `content-type`).
    pub headers: Vec<(String, String)>,
    /// When the URL stops working.
    pub expires_at: DateTime<Utc>,
}

/// One step of a connectivity check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckStep {
    /// What was tried (`head bucket`, `put probe`, …).
    pub name: &'static str,
    /// Whether it worked.
    pub ok: bool,
    /// What happened, for people.
    pub detail: String,
    /// How long it took.
    pub elapsed: Duration,
}

/// Whether the store is reachable and writable, step by step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// `s3`, `local` or `memory`.
    pub backend: &'static str,
    /// Where the objects live (bucket and endpoint, or directory).
    pub location: String,
    /// The steps, in order; the check stops at the first failure.
    pub steps: Vec<CheckStep>,
}

impl CheckReport {
    /// Whether every step worked.
    pub fn ok(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.ok)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.ok() { "ok" } else { "FAILED" };
        writeln!(f, "assets ({}, {}): {verdict}", self.backend, self.location)?;
        for step in &self.steps {
            let mark = if step.ok { "ok  " } else { "FAIL" };
            writeln!(
                f,
                "  [{mark}] {} ({} ms): {}",
                step.name,
                step.elapsed.as_millis(),
                step.detail
            )?;
        }
        Ok(())
    }
}

/// Object storage for generated and uploaded assets.
///
/// Keys are checked [`ObjectKey`]s. Every put checks the declared content type against the
/// first bytes, the key's category and extension against the type, and the size against the
/// category's limit, and writes nothing when a check fails. Deleting a missing object is not
/// an error.
#[async_trait]
pub trait AssetStore: Send + Sync {
    /// `s3`, `local` or `memory`.
    fn backend(&self) -> &'static str;

    /// The size limits this store enforces.
    fn limits(&self) -> &SizeLimits;

    /// Stores `bytes` under `key` with MIME type `content_type`, replacing any object there.
    ///
    /// # Errors
    /// `ContentMismatch`, `UnsupportedContentType`, `TooLarge`, `AccessDenied`,
    /// `Unavailable`, `Backend`.
    async fn put_bytes(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<ObjectInfo, AssetError>;

    /// Stores a stream under `key`, holding at most a few parts in memory whatever its
    /// length. `size_hint` (e.g. from `Content-Length`) lets an oversized upload fail before
    /// any byte is read, and must then equal the real length. On S3, objects above the
    /// multipart threshold go up in equal parts; a failed upload is aborted.
    ///
    /// # Errors
    /// As [`put_bytes`](Self::put_bytes), plus `Input` when the stream fails and
    /// `InvalidRequest` when its length differs from `size_hint`.
    async fn put_stream(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        content_type: &str,
        size_hint: Option<u64>,
    ) -> Result<ObjectInfo, AssetError>;

    /// Reads an object as a stream.
    ///
    /// # Errors
    /// `NotFound`, `AccessDenied`, `Unavailable`, `Backend`.
    async fn get(&self, key: &ObjectKey) -> Result<ObjectStream, AssetError>;

    /// Reads part of an object (for HTTP range requests and video seeking).
    ///
    /// # Errors
    /// As [`get`](Self::get), plus `RangeNotSatisfiable` and `InvalidRequest`.
    async fn get_range(
        &self,
        key: &ObjectKey,
        range: ByteRange,
    ) -> Result<ObjectStream, AssetError>;

    /// Reads a whole object into memory.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    async fn get_bytes(&self, key: &ObjectKey) -> Result<(ObjectInfo, Bytes), AssetError> {
        self.get(key).await?.collect().await
    }

    /// Size, content type and checksum of an object.
    ///
    /// # Errors
    /// `NotFound`, `AccessDenied`, `Unavailable`, `Backend`.
    async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, AssetError>;

    /// Whether an object exists.
    ///
    /// # Errors
    /// `AccessDenied`, `Unavailable`, `Backend`.
    async fn exists(&self, key: &ObjectKey) -> Result<bool, AssetError> {
        match self.head(key).await {
            Ok(_) => Ok(true),
            Err(AssetError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes an object; a missing object is not an error.
    ///
    /// # Errors
    /// `AccessDenied`, `Unavailable`, `Backend`.
    async fn delete(&self, key: &ObjectKey) -> Result<(), AssetError>;

    /// Deletes every object under `prefix`; returns how many were deleted.
    ///
    /// # Errors
    /// `AccessDenied`, `Unavailable`, `Backend` (some objects may be gone already; calling
    /// again finishes the job).
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64, AssetError>;

    /// Every object under `prefix`, in key order.
    ///
    /// # Errors
    /// `AccessDenied`, `Unavailable`, `Backend`.
    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectSummary>, AssetError>;

    /// The keys under `prefix` that [`list`](Self::list) leaves out because they break the
    /// key rules — objects this store never wrote, such as the old server's
    /// `10000//images/{id}.json` of a project whose name had no ASCII letter or digit — as
    /// text, in key order, so that a migration can report what it cannot read instead of
    /// passing over it. None by default: the stores that only ever hold checked keys.
    ///
    /// # Errors
    /// `AccessDenied`, `Unavailable`, `Backend`.
    async fn list_unaddressable(&self, prefix: &KeyPrefix) -> Result<Vec<String>, AssetError> {
        let _ = prefix;
        Ok(Vec::new())
    }

    /// At most `max` objects under `prefix` whose keys sort after `after` (from the first when
    /// `None`), in key order, and whether more follow: a listing that stops after the page,
    /// so its cost follows `max` rather than the number of objects under `prefix`. A `max` of
    /// 0 is read as 1.
    ///
    /// The default lists everything and cuts (the local store, whose directories are read
    /// whole anyway); the bucket and memory stores read only the page.
    ///
    /// # Errors
    /// `AccessDenied`, `Unavailable`, `Backend`.
    async fn list_page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&ObjectKey>,
        max: usize,
    ) -> Result<ListPage, AssetError> {
        let max = max.max(1);
        let mut rest = self
            .list(prefix)
            .await?
            .into_iter()
            .filter(|o| after.is_none_or(|a| o.key.as_str() > a.as_str()));
        let objects: Vec<ObjectSummary> = rest.by_ref().take(max).collect();
        let more = rest.next().is_some();
        Ok(ListPage { objects, more })
    }

    /// Counts the objects and bytes under `prefix`, a page at a time without keeping the
    /// entries, and stops as soon as `bound` is reached: the cost of a count follows the
    /// bound, not what the prefix holds.
    ///
    /// The default reads [`list_page`](Self::list_page) pages of [`USAGE_PAGE`] objects.
    ///
    /// # Errors
    /// `AccessDenied`, `Unavailable`, `Backend`.
    async fn usage(&self, prefix: &KeyPrefix, bound: UsageBound) -> Result<Usage, AssetError> {
        let mut usage = Usage::default();
        let mut after: Option<ObjectKey> = None;
        loop {
            let page = self.list_page(prefix, after.as_ref(), USAGE_PAGE).await?;
            for object in &page.objects {
                usage.bytes = usage.bytes.saturating_add(object.size);
                usage.objects += 1;
            }
            let last = page.objects.into_iter().next_back().map(|o| o.key);
            match last {
                Some(last) if page.more => {
                    if bound.reached(&usage) {
                        return Ok(usage);
                    }
                    after = Some(last);
                }
                _ => {
                    usage.complete = true;
                    return Ok(usage);
                }
            }
        }
    }

    /// Copies an object inside the store, content type and checksum included.
    ///
    /// # Errors
    /// `NotFound` (source), `ContentMismatch` (the destination key cannot hold the source's
    /// type), `AccessDenied`, `Unavailable`, `Backend`.
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectInfo, AssetError>;

    /// A URL that downloads the object until `expires_in` has passed (at most 7 days).
    ///
    /// # Errors
    /// `InvalidRequest` for an expiry of zero or above 7 days; `Backend`.
    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError>;

    /// A URL that uploads the object until `expires_in` has passed. The upload must send
    /// exactly `content_type` as its `Content-Type`, or it is refused.
    ///
    /// Nothing checks the bytes of a presigned upload as they arrive: call
    /// [`verify_upload`](crate::verify_upload) once the client says it is done.
    ///
    /// # Errors
    /// `InvalidRequest` (expiry), `UnsupportedContentType`, `ContentMismatch` (the key's
    /// category or extension does not fit the type), `Backend`.
    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError>;

    /// The permanent public URL of `key`, when a public base URL is configured.
    fn public_url(&self, key: &ObjectKey) -> Option<String>;

    /// The signer of this store's URLs when the API server serves them itself (local and
    /// memory backends): the API answers `GET`/`PUT {base}/files/{key}?expires=…&sig=…` after
    /// [`UrlSigner::verify`]. `None` for S3, whose URLs the bucket serves.
    fn url_signer(&self) -> Option<&UrlSigner> {
        None
    }

    /// Checks that the store is reachable and writable: for S3, head bucket, put a probe
    /// object, delete it.
    async fn check(&self) -> CheckReport;
}

/// Checks an object that a client uploaded through a presigned PUT: its size against the
/// category limit, its stored content type against `content_type`, and its first bytes against
/// both. A failing object is deleted, so nothing unchecked stays in the store.
///
/// # Errors
/// `NotFound` (nothing was uploaded), `TooLarge`, `ContentMismatch`,
/// `UnsupportedContentType`, and the store's own errors.
#[tracing::instrument(skip_all, fields(key = %key))]
pub async fn verify_upload(
    store: &dyn AssetStore,
    key: &ObjectKey,
    content_type: &str,
) -> Result<ObjectInfo, AssetError> {
    let declared = MediaType::from_mime(content_type)?;
    let info = store.head(key).await?;
    let verdict = check_uploaded(store, key, &info, declared).await;
    if let Err(problem) = verdict {
        if !problem.is_retryable() {
            tracing::warn!(error = %problem, "deleting an upload that failed its checks");
            store.delete(key).await?;
        }
        return Err(problem);
    }
    Ok(info)
}

async fn check_uploaded(
    store: &dyn AssetStore,
    key: &ObjectKey,
    info: &ObjectInfo,
    declared: MediaType,
) -> Result<(), AssetError> {
    let limit = store.limits().for_key(key);
    if info.size > limit {
        return Err(AssetError::TooLarge {
            key: key.to_string(),
            limit,
        });
    }
    key.check_media(declared)?;
    if MediaType::from_mime(&info.content_type).ok() != Some(declared) {
        return Err(AssetError::ContentMismatch {
            declared: declared.mime().to_owned(),
            detail: format!("the object was stored as {}", info.content_type),
        });
    }
    let head = if info.size == 0 {
        Bytes::new()
    } else {
        let range = ByteRange {
            start: 0,
            end: Some(SNIFF_LEN as u64 - 1),
        };
        store.get_range(key, range).await?.collect().await?.1
    };
    declared.check_content(&head)
}

/// Checks a presign expiry and turns it into an instant.
pub(crate) fn presign_deadline(expires_in: Duration) -> Result<DateTime<Utc>, AssetError> {
    if expires_in.is_zero() || expires_in > MAX_PRESIGN_EXPIRY {
        return Err(AssetError::InvalidRequest(format!(
            "presigned URL expiry must be between 1 second and 7 days, got {} s",
            expires_in.as_secs()
        )));
    }
    let delta = chrono::Duration::from_std(expires_in)
        .map_err(|e| AssetError::InvalidRequest(format!("expiry out of range: {e}")))?;
    Ok(Utc::now() + delta)
}

/// The write half of every backend's check: put a small probe object, then delete it.
pub(crate) async fn probe_write(store: &dyn AssetStore, steps: &mut Vec<CheckStep>) {
    let key = match ObjectKey::parse(format!("_check/probe-{}.txt", uuid::Uuid::new_v4())) {
        Ok(key) => key,
        Err(e) => {
            steps.push(CheckStep {
                name: "put probe",
                ok: false,
                detail: e.to_string(),
                elapsed: Duration::ZERO,
            });
            return;
        }
    };
    let started = std::time::Instant::now();
    let put = store
        .put_bytes(
            &key,
            Bytes::from_static(b"drama-server check\n"),
            MediaType::Text.mime(),
        )
        .await;
    let put_ok = put.is_ok();
    steps.push(CheckStep {
        name: "put probe",
        ok: put_ok,
        detail: match put {
            Ok(info) => format!("wrote {} ({} bytes)", info.key, info.size),
            Err(e) => e.to_string(),
        },
        elapsed: started.elapsed(),
    });
    if !put_ok {
        return;
    }
    let started = std::time::Instant::now();
    let deleted = store.delete(&key).await;
    steps.push(CheckStep {
        name: "delete probe",
        ok: deleted.is_ok(),
        detail: match deleted {
            Ok(()) => format!("deleted {key}"),
            Err(e) => e.to_string(),
        },
        elapsed: started.elapsed(),
    });
}
