//! The S3 backend (Cloudflare R2, MinIO, AWS, the in-process test server) on aws-sdk-s3.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::builders::GetObjectFluentBuilder;
use aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use secrecy::ExposeSecret;

use crate::error::AssetError;
use crate::intake::Intake;
use crate::keys::{KeyPrefix, ObjectKey};
use crate::limits::SizeLimits;
use crate::media::MediaType;
use crate::s3_options::{MultipartSettings, S3Options};
use crate::store::{
    AssetStore, ByteRange, ByteStream, CheckReport, CheckStep, ContentRange, ListPage, ObjectInfo,
    ObjectStream, ObjectSummary, PresignMethod, PresignedRequest, presign_deadline,
};

mod multipart;

const CHECKSUM_METADATA: &str = "sha256";

/// An S3-compatible bucket.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    endpoint_url: String,
    public_base_url: Option<String>,
    multipart: MultipartSettings,
    limits: SizeLimits,
}

impl S3Store {
    /// A store for `options`. Builds the client only; nothing is sent until the first call.
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] for bad multipart settings or an empty bucket name.
    pub fn new(options: S3Options) -> Result<Self, AssetError> {
        options.multipart.validate()?;
        if options.bucket.trim().is_empty() {
            return Err(AssetError::InvalidSettings {
                variable: "R2_BUCKET",
                message: "must not be empty".to_owned(),
            });
        }
        let credentials = Credentials::new(
            options.access_key_id,
            options.secret_access_key.expose_secret(),
            None,
            None,
            "drama-assets",
        );
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(options.connect_timeout)
            .operation_attempt_timeout(options.attempt_timeout)
            .build();
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(options.region))
            .endpoint_url(options.endpoint_url.clone())
            .credentials_provider(credentials)
            // R2 and local servers want path-style addressing.
            .force_path_style(true)
            // Since aws-sdk-rust 1.69 the SDK adds CRC32 checksums by default, which R2 and
            // other S3-compatible stores reject in some combinations.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(timeouts)
            .retry_config(RetryConfig::standard().with_max_attempts(options.max_attempts.max(1)))
            .build();
        Ok(Self {
            client: Client::from_conf(config),
            bucket: options.bucket,
            endpoint_url: options.endpoint_url,
            public_base_url: options.public_base_url,
            multipart: options.multipart,
            limits: options.limits,
        })
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// Creates the bucket if it does not exist (for development servers; R2 buckets are
    /// made in the dashboard).
    ///
    /// # Errors
    /// `AccessDenied`, `Unavailable`, `Backend`.
    #[tracing::instrument(skip_all, fields(bucket = %self.bucket))]
    pub async fn create_bucket(&self) -> Result<(), AssetError> {
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.code(),
                    Some("BucketAlreadyOwnedByYou" | "BucketAlreadyExists")
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(self.map_err(e, &self.bucket)),
        }
    }

    fn map_err<E>(&self, err: SdkError<E, HttpResponse>, key: &str) -> AssetError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err.code().map(str::to_owned);
        let message = DisplayErrorContext(&err).to_string();
        match &err {
            SdkError::TimeoutError(_)
            | SdkError::DispatchFailure(_)
            | SdkError::ResponseError(_) => {
                return AssetError::unavailable(format!(
                    "{} unreachable: {message}",
                    self.endpoint_url
                ));
            }
            SdkError::ConstructionFailure(_) => return AssetError::backend(message),
            _ => {}
        }
        match (code.as_deref(), status) {
            (Some("NoSuchBucket"), _) => AssetError::backend(format!(
                "bucket {} does not exist at {}",
                self.bucket, self.endpoint_url
            )),
            (Some("NoSuchKey" | "NotFound"), _) | (None, Some(404)) => AssetError::NotFound {
                key: key.to_owned(),
            },
            (
                Some(
                    "AccessDenied"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "InvalidToken"
                    | "ExpiredToken",
                ),
                _,
            )
            | (_, Some(401 | 403)) => AssetError::AccessDenied {
                reason: code.unwrap_or_else(|| message.clone()),
            },
            (Some("EntityTooLarge"), _) => AssetError::TooLarge {
                key: key.to_owned(),
                limit: self.limits.other(),
            },
            (Some("SlowDown" | "ServiceUnavailable" | "InternalError" | "RequestTimeout"), _)
            | (_, Some(408 | 429 | 500 | 502 | 503 | 504)) => AssetError::unavailable(message),
            _ => AssetError::backend(message),
        }
    }

    async fn put_single(
        &self,
        key: &ObjectKey,
        body: Bytes,
        content_type: &str,
        checksum: &str,
    ) -> Result<Option<String>, AssetError> {
        let out = self
            .put_object(key)
            .content_type(content_type)
            .content_length(i64::try_from(body.len()).unwrap_or(i64::MAX))
            .metadata(CHECKSUM_METADATA, checksum_hex(checksum))
            .body(SdkByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.map_err(e, key.as_str()))?;
        Ok(out.e_tag)
    }

    async fn put_intake(
        &self,
        key: &ObjectKey,
        mut intake: Intake,
    ) -> Result<ObjectInfo, AssetError> {
        let content_type = intake.mime();
        let threshold = usize::try_from(self.multipart.threshold).unwrap_or(usize::MAX);
        let head = intake.next_part(threshold).await?.unwrap_or_default();
        let (etag, summary) = if intake.at_end().await? {
            let summary = intake.finish();
            let etag = self
                .put_single(key, head, content_type, &summary.checksum)
                .await?;
            (etag, summary)
        } else {
            intake.unread(head);
            self.put_multipart(key, intake, content_type).await?
        };
        Ok(ObjectInfo {
            key: key.clone(),
            size: summary.size,
            content_type: content_type.to_owned(),
            checksum: Some(summary.checksum),
            etag,
            last_modified: Some(Utc::now()),
        })
    }

    async fn list_raw(&self, prefix: &str) -> Result<Vec<RawEntry>, AssetError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.map_err(e, prefix))?;
            found.extend(page.contents().iter().filter_map(raw_entry));
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => break,
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// A `GetObject` of `key` in the bucket.
    fn get_object(&self, key: &ObjectKey) -> GetObjectFluentBuilder {
        self.client
            .get_object()
            .bucket(&self.bucket)
            .key(key.as_str())
    }

    /// A `PutObject` of `key` in the bucket.
    fn put_object(&self, key: &ObjectKey) -> PutObjectFluentBuilder {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key.as_str())
    }

    fn info_from_get(
        key: &ObjectKey,
        size: Option<i64>,
        content_type: Option<&str>,
        etag: Option<&str>,
        last_modified: Option<&aws_sdk_s3::primitives::DateTime>,
        metadata: Option<&std::collections::HashMap<String, String>>,
    ) -> ObjectInfo {
        ObjectInfo {
            key: key.clone(),
            size: size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
            content_type: content_type
                .map_or_else(|| MediaType::Binary.mime().to_owned(), ToOwned::to_owned),
            checksum: metadata
                .and_then(|m| m.get(CHECKSUM_METADATA))
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(|h| format!("sha256:{h}")),
            etag: etag.map(ToOwned::to_owned),
            last_modified: last_modified.and_then(to_chrono),
        }
    }
}

/// The [`ObjectInfo`] of `key` from a `GetObject` or `HeadObject` answer: the SDK gives the two
/// the same accessors but no trait they share.
macro_rules! info_of {
    ($key:expr, $out:expr) => {
        S3Store::info_from_get(
            $key,
            $out.content_length(),
            $out.content_type(),
            $out.e_tag(),
            $out.last_modified(),
            $out.metadata(),
        )
    };
}

fn checksum_hex(checksum: &str) -> &str {
    checksum.strip_prefix("sha256:").unwrap_or(checksum)
}

fn to_chrono(t: &aws_sdk_s3::primitives::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn body_stream(body: SdkByteStream) -> ByteStream {
    futures::stream::unfold(Some(body), |state| async move {
        let mut body = state?;
        match body.try_next().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(body))),
            Ok(None) => None,
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    })
    .boxed()
}

/// A listed object as the bucket describes it: key, size and last change.
type RawEntry = (String, u64, Option<DateTime<Utc>>);

fn raw_entry(object: &aws_sdk_s3::types::Object) -> Option<RawEntry> {
    let key = object.key()?;
    let size = object
        .size()
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(0);
    Some((
        key.to_owned(),
        size,
        object.last_modified().and_then(to_chrono),
    ))
}

/// A listed object whose key follows the key rules; others are skipped (and logged): the
/// store never wrote them, and no caller could address them.
fn summary((key, size, last_modified): RawEntry) -> Option<ObjectSummary> {
    match ObjectKey::parse(key.as_str()) {
        Ok(key) => Some(ObjectSummary {
            key,
            size,
            last_modified,
        }),
        Err(e) => {
            tracing::warn!(key, error = %e, "skipping an object whose key breaks the key rules");
            None
        }
    }
}

/// The SDK's presigning settings for a URL good for `expires_in`.
fn presigning(expires_in: Duration) -> Result<PresigningConfig, AssetError> {
    PresigningConfig::expires_in(expires_in).map_err(|e| AssetError::InvalidRequest(e.to_string()))
}

/// A request the SDK presigned, as the store hands it out.
fn presigned(
    method: PresignMethod,
    request: &aws_sdk_s3::presigning::PresignedRequest,
    expires_at: DateTime<Utc>,
) -> PresignedRequest {
    PresignedRequest {
        method,
        url: request.uri().to_owned(),
        headers: request
            .headers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        expires_at,
    }
}

#[async_trait]
impl AssetStore for S3Store {
    fn backend(&self) -> &'static str {
        "s3"
    }

    fn limits(&self) -> &SizeLimits {
        &self.limits
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", key = %key, size = bytes.len()))]
    async fn put_bytes(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<ObjectInfo, AssetError> {
        let intake = Intake::from_bytes(key, content_type, &self.limits, bytes)?;
        self.put_intake(key, intake).await
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", key = %key))]
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

    #[tracing::instrument(skip_all, fields(backend = "s3", key = %key))]
    async fn get(&self, key: &ObjectKey) -> Result<ObjectStream, AssetError> {
        let out = self
            .get_object(key)
            .send()
            .await
            .map_err(|e| self.map_err(e, key.as_str()))?;
        let info = info_of!(key, out);
        Ok(ObjectStream {
            info,
            range: None,
            body: body_stream(out.body),
        })
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", key = %key))]
    async fn get_range(
        &self,
        key: &ObjectKey,
        range: ByteRange,
    ) -> Result<ObjectStream, AssetError> {
        if let Some(end) = range.end
            && end < range.start
        {
            return Err(AssetError::InvalidRequest(format!(
                "range end {end} is before its start {}",
                range.start
            )));
        }
        let header = match range.end {
            Some(end) => format!("bytes={}-{end}", range.start),
            None => format!("bytes={}-", range.start),
        };
        let sent = self.get_object(key).range(header).send().await;
        let out = match sent {
            Ok(out) => out,
            Err(e)
                if e.code() == Some("InvalidRange")
                    || e.raw_response().map(|r| r.status().as_u16()) == Some(416) =>
            {
                let size = self.head(key).await?.size;
                return Err(AssetError::RangeNotSatisfiable {
                    key: key.to_string(),
                    size,
                });
            }
            Err(e) => return Err(self.map_err(e, key.as_str())),
        };
        let served = out.content_range.as_deref().and_then(parse_content_range);
        let mut info = info_of!(key, out);
        let range = match served {
            Some(r) => {
                info.size = r.total;
                r
            }
            // A server that ignores Range sends the whole object.
            None => ContentRange {
                start: 0,
                end: info.size.saturating_sub(1),
                total: info.size,
            },
        };
        Ok(ObjectStream {
            info,
            range: Some(range),
            body: body_stream(out.body),
        })
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", key = %key))]
    async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
            .map_err(|e| self.map_err(e, key.as_str()))?;
        Ok(info_of!(key, out))
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", key = %key))]
    async fn delete(&self, key: &ObjectKey) -> Result<(), AssetError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key.as_str())
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match self.map_err(e, key.as_str()) {
                AssetError::NotFound { .. } => Ok(()),
                other => Err(other),
            },
        }
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", prefix = %prefix))]
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64, AssetError> {
        let keys = self.list_raw(prefix.as_str()).await?;
        let mut deleted = 0u64;
        for batch in keys.chunks(1000) {
            let identifiers = batch
                .iter()
                .map(|(k, _, _)| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| AssetError::backend(e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(identifiers))
                .quiet(true)
                .build()
                .map_err(|e| AssetError::backend(e.to_string()))?;
            let out = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|e| self.map_err(e, prefix.as_str()))?;
            if let Some(first) = out.errors().first() {
                return Err(AssetError::backend(format!(
                    "deleting {} failed: {} {}",
                    first.key().unwrap_or_default(),
                    first.code().unwrap_or_default(),
                    first.message().unwrap_or_default()
                )));
            }
            deleted += batch.len() as u64;
        }
        Ok(deleted)
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", prefix = %prefix))]
    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectSummary>, AssetError> {
        let raw = self.list_raw(prefix.as_str()).await?;
        Ok(raw.into_iter().filter_map(summary).collect())
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", prefix = %prefix))]
    async fn list_unaddressable(&self, prefix: &KeyPrefix) -> Result<Vec<String>, AssetError> {
        let raw = self.list_raw(prefix.as_str()).await?;
        Ok(raw
            .into_iter()
            .map(|(key, _, _)| key)
            .filter(|key| ObjectKey::parse(key.as_str()).is_err())
            .collect())
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", prefix = %prefix))]
    async fn list_page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&ObjectKey>,
        max: usize,
    ) -> Result<ListPage, AssetError> {
        let max = max.max(1);
        let mut objects = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // One listing request answers at most 1,000 keys; a page asks for no more than
            // it still lacks, so the bucket never lists past the page.
            let want = i32::try_from((max - objects.len()).min(1000)).unwrap_or(1000);
            let start_after = match &token {
                None => after.map(|a| a.as_str().to_owned()),
                Some(_) => None,
            };
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix.as_str())
                .set_start_after(start_after)
                .max_keys(want)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| self.map_err(e, prefix.as_str()))?;
            objects.extend(
                page.contents()
                    .iter()
                    .filter_map(raw_entry)
                    .filter_map(summary),
            );
            let truncated = page.is_truncated() == Some(true);
            if objects.len() >= max || !truncated {
                let more = truncated || objects.len() > max;
                objects.truncate(max);
                return Ok(ListPage { objects, more });
            }
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_owned()),
                None => {
                    return Ok(ListPage {
                        objects,
                        more: true,
                    });
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", from = %from, to = %to))]
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        let source = self.head(from).await?;
        if let Ok(media) = MediaType::from_mime(&source.content_type) {
            to.check_media(media)?;
        }
        // Keys are made of URL-unreserved characters, so the copy source needs no encoding.
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to.as_str())
            .copy_source(format!("{}/{}", self.bucket, from.as_str()))
            .send()
            .await
            .map_err(|e| self.map_err(e, from.as_str()))?;
        self.head(to).await
    }

    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError> {
        let expires_at = presign_deadline(expires_in)?;
        let config = presigning(expires_in)?;
        let request = self
            .get_object(key)
            .presigned(config)
            .await
            .map_err(|e| self.map_err(e, key.as_str()))?;
        Ok(presigned(PresignMethod::Get, &request, expires_at))
    }

    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError> {
        let expires_at = presign_deadline(expires_in)?;
        key.check_media(MediaType::from_mime(content_type)?)?;
        let config = presigning(expires_in)?;
        let request = self
            .put_object(key)
            .content_type(content_type)
            .presigned(config)
            .await
            .map_err(|e| self.map_err(e, key.as_str()))?;
        Ok(presigned(PresignMethod::Put, &request, expires_at))
    }

    fn public_url(&self, key: &ObjectKey) -> Option<String> {
        self.public_base_url
            .as_ref()
            .map(|base| format!("{base}/{key}"))
    }

    #[tracing::instrument(skip_all, fields(backend = "s3", bucket = %self.bucket))]
    async fn check(&self) -> CheckReport {
        let mut steps = Vec::new();
        let started = Instant::now();
        let head = self.client.head_bucket().bucket(&self.bucket).send().await;
        steps.push(CheckStep {
            name: "head bucket",
            ok: head.is_ok(),
            detail: match head {
                Ok(_) => format!("bucket {} is reachable", self.bucket),
                Err(e) => match self.map_err(e, &self.bucket) {
                    AssetError::NotFound { .. } => format!(
                        "bucket {} does not exist at {}",
                        self.bucket, self.endpoint_url
                    ),
                    other => other.to_string(),
                },
            },
            elapsed: started.elapsed(),
        });
        if steps.iter().all(|s| s.ok) {
            crate::store::probe_write(self, &mut steps).await;
        }
        CheckReport {
            backend: "s3",
            location: format!("bucket {} at {}", self.bucket, self.endpoint_url),
            steps,
        }
    }
}

/// Parses `bytes start-end/total`.
fn parse_content_range(header: &str) -> Option<ContentRange> {
    let spec = header.trim().strip_prefix("bytes ")?;
    let (span, total) = spec.split_once('/')?;
    let (start, end) = span.split_once('-')?;
    Some(ContentRange {
        start: start.trim().parse().ok()?,
        end: end.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_ranges() {
        assert_eq!(
            parse_content_range("bytes 0-9/100"),
            Some(ContentRange {
                start: 0,
                end: 9,
                total: 100
            })
        );
        assert_eq!(parse_content_range("bytes */100"), None);
    }
}
