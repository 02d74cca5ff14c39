//! Object bytes for media delivery: reads (whole, ranged, metadata only), streamed uploads to
//! signed URLs, and the URLs that load an object without credentials. The API speaks HTTP
//! about them; the asset store behind them stays the app's.

use std::time::Duration;

use chrono::{DateTime, Utc};
use drama_assets::AssetError;
// The values these use cases take and return, re-exported so that callers need no dependency
// on the asset store itself.
pub use drama_assets::{
    ByteRange, ByteStream, ContentRange, ObjectInfo, ObjectKey, ObjectStream, SignedRequest,
};

use drama_domain::UserId;

use crate::{App, AppError};

/// What a read of an object found.
pub enum ObjectRead {
    /// The bytes asked for, with the object's metadata and the range they cover.
    Found(ObjectStream),
    /// The range starts past the end of the object; nothing was read.
    RangeNotSatisfiable {
        /// The object's length.
        size: u64,
    },
}

/// What a request to one of this server's own signed URLs may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedAccess {
    /// The signature holds for this key until then.
    Granted {
        /// The object the URL names.
        key: ObjectKey,
        /// When the URL stops working.
        until: DateTime<Utc>,
    },
    /// The signature, its expiry, its method or its content type do not hold (the reason is
    /// for the client).
    Refused(String),
    /// The store is a bucket that presigns URLs of its own: this server signed none.
    NotSigned,
}

impl App {
    /// The metadata of the object at `key`.
    ///
    /// # Errors
    /// `NotFound` (Asset); `Unavailable`.
    #[tracing::instrument(skip_all, fields(key = %key.as_str()))]
    pub async fn object_info(&self, key: &ObjectKey) -> Result<ObjectInfo, AppError> {
        Ok(self.assets.head(key).await?)
    }

    /// The bytes of the object at `key`, all of them or `range`.
    ///
    /// # Errors
    /// `NotFound` (Asset); `Unavailable`.
    #[tracing::instrument(skip_all, fields(key = %key.as_str()))]
    pub async fn read_object(
        &self,
        key: &ObjectKey,
        range: Option<ByteRange>,
    ) -> Result<ObjectRead, AppError> {
        let read = match range {
            Some(range) => self.assets.get_range(key, range).await,
            None => self.assets.get(key).await,
        };
        match read {
            Ok(object) => Ok(ObjectRead::Found(object)),
            Err(AssetError::RangeNotSatisfiable { size, .. }) => {
                Ok(ObjectRead::RangeNotSatisfiable { size })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Stores `body` at `key` (an upload to a signed URL, which named the key and the type).
    ///
    /// # Errors
    /// `TooLarge`, `Invalid` (content that is not of `content_type`); `Unavailable`.
    #[tracing::instrument(skip_all, fields(key = %key.as_str()))]
    pub async fn write_object(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        content_type: &str,
        length: Option<u64>,
    ) -> Result<ObjectInfo, AppError> {
        Ok(self
            .assets
            .put_stream(key, body, content_type, length)
            .await?)
    }

    /// Whether this server signs the URLs of its objects itself (the local and memory stores,
    /// whose bytes the API serves at `/files/`), rather than a bucket presigning its own.
    pub fn signs_media_urls(&self) -> bool {
        self.assets.url_signer().is_some()
    }

    /// A `GET` URL of this server for `key` that works until `until`, when it
    /// [signs its media URLs](Self::signs_media_urls).
    pub fn signed_media_url(&self, key: &ObjectKey, until: DateTime<Utc>) -> Option<String> {
        let signer = self.assets.url_signer()?;
        Some(
            signer
                .sign(drama_assets::PresignMethod::Get, key, None, until)
                .url,
        )
    }

    /// The store's own presigned `GET` URL for `key`, valid for `expiry`.
    ///
    /// # Errors
    /// `Unavailable`; `Internal` when the store cannot presign.
    #[tracing::instrument(skip_all, fields(key = %key.as_str()))]
    pub async fn presigned_media_url(
        &self,
        key: &ObjectKey,
        expiry: Duration,
    ) -> Result<String, AppError> {
        Ok(self.assets.presign_get(key, expiry).await?.url)
    }

    /// Rewrites each of `urls` that is one of this server's time-limited URLs for an object
    /// of `owner` (as every answer carries them: `/files/…?expires&sig`, or a bucket's
    /// presigned URL) to the object's lasting address, the one stored and signed again on
    /// the way out. A client that reads a scene and writes it back would otherwise store a
    /// URL that stops working when its signature expires. Any other URL is kept as sent.
    pub(crate) async fn make_media_urls_lasting(&self, owner: UserId, urls: Vec<&mut String>) {
        for url in urls {
            if let Some(lasting) = self.lasting_media_url(owner, url).await {
                *url = lasting;
            }
        }
    }

    /// The lasting address of `url` when it is one of this server's signed URLs of an object
    /// of `owner`: the URL up to its query must be exactly what this server signs for that
    /// key (a look-alike on another host or path is someone else's URL).
    async fn lasting_media_url(&self, owner: UserId, url: &str) -> Option<String> {
        let (address, _) = url.split_once('?')?;
        let at = address.find(&format!("/{owner}/"))?;
        let key = ObjectKey::parse(&address[at + 1..]).ok()?;
        let ours = match self.signed_media_url(&key, Utc::now()) {
            Some(signed) => signed,
            None => self
                .presigned_media_url(&key, Duration::from_secs(60))
                .await
                .ok()?,
        };
        (ours.split_once('?').map(|(a, _)| a) == Some(address)).then(|| self.object_url(&key))
    }

    /// Whether `request`, made to one of this server's signed URLs, may read or write the key
    /// it names.
    pub fn check_media_signature(&self, request: &SignedRequest<'_>) -> SignedAccess {
        let Some(signer) = self.assets.url_signer() else {
            return SignedAccess::NotSigned;
        };
        match signer.verify_until(request) {
            Ok((key, until)) => SignedAccess::Granted { key, until },
            Err(e) => SignedAccess::Refused(e.to_string()),
        }
    }
}
