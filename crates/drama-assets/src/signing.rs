//! Presigned URLs served by the API itself (local and memory backends).
//!
//! Shape: `{base_url}/files/{key}?expires={unix seconds}&sig={signature}`, where the
//! signature is the unpadded base64url HMAC-SHA256, under the server's secret, of
//! `drama-assets/v1\n{METHOD}\n{key}\n{expires}\n{content type or empty}`. A PUT URL is
//! bound to its content type: the request must send that exact `Content-Type`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;

use crate::error::AssetError;
use crate::keys::ObjectKey;
use crate::media::MediaType;
use crate::store::{PresignMethod, PresignedRequest, presign_deadline};

/// Path segment under which the API serves signed file URLs.
pub const FILES_PATH: &str = "/files/";

/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies the URLs that the API serves for local and memory stores.
pub struct UrlSigner {
    secret: SecretBox<[u8]>,
    base_url: String,
}

/// The parts of an incoming request that [`UrlSigner::verify`] needs.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `GET`, `HEAD` (checked as `GET`) or `PUT`.
    pub method: &'a str,
    /// The path after `/files/`, as received (keys never need percent-decoding).
    pub key: &'a str,
    /// The raw query string (without `?`).
    pub query: &'a str,
    /// The request's `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
}

impl UrlSigner {
    /// A signer with `secret` (at least 32 bytes) producing URLs under `base_url` (the API's
    /// public origin, e.g. `https://api.example.com`).
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] for a short secret or a base URL that is not http(s).
    pub fn new(secret: &[u8], base_url: &str) -> Result<Self, AssetError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AssetError::InvalidSettings {
                variable: "ASSETS_SIGNING_SECRET",
                message: format!(
                    "must be at least {MIN_SECRET_LEN} bytes, got {}",
                    secret.len()
                ),
            });
        }
        Ok(Self {
            secret: SecretBox::new(secret.to_vec().into_boxed_slice()),
            base_url: check_base_url(base_url, "ASSETS_BASE_URL")?,
        })
    }

    /// A signer with a fresh random secret: its URLs stop working when the process exits.
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] for a base URL that is not http(s).
    pub fn random(base_url: &str) -> Result<Self, AssetError> {
        let base_url = check_base_url(base_url, "ASSETS_BASE_URL")?;
        Ok(Self::random_for(base_url))
    }

    /// A random-secret signer for a base URL already known to be well-formed.
    pub(crate) fn random_for(base_url: String) -> Self {
        let mut secret = [0u8; MIN_SECRET_LEN];
        rand::rng().fill_bytes(&mut secret);
        Self {
            secret: SecretBox::new(secret.to_vec().into_boxed_slice()),
            base_url,
        }
    }

    /// The origin URLs are made under.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// [`crate::AssetStore::presign_get`] for the stores whose URLs the API serves.
    ///
    /// # Errors
    /// `InvalidRequest` when `expires_in` is zero or longer than seven days.
    pub fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: std::time::Duration,
    ) -> Result<PresignedRequest, AssetError> {
        let deadline = presign_deadline(expires_in)?;
        Ok(self.sign(PresignMethod::Get, key, None, deadline))
    }

    /// [`crate::AssetStore::presign_put`] for the stores whose URLs the API serves.
    ///
    /// # Errors
    /// `InvalidRequest` for a bad expiry; `UnsupportedContentType` for an unknown content
    /// type; `ContentMismatch` when the key cannot hold it.
    pub fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        expires_in: std::time::Duration,
    ) -> Result<PresignedRequest, AssetError> {
        let deadline = presign_deadline(expires_in)?;
        key.check_media(MediaType::from_mime(content_type)?)?;
        Ok(self.sign(PresignMethod::Put, key, Some(content_type), deadline))
    }

    /// A signed URL for `method` on `key`, valid until `expires_at`. `content_type` is bound
    /// into PUT URLs and ignored for GET.
    pub fn sign(
        &self,
        method: PresignMethod,
        key: &ObjectKey,
        content_type: Option<&str>,
        expires_at: DateTime<Utc>,
    ) -> PresignedRequest {
        let expires = expires_at.timestamp();
        let content_type = match method {
            PresignMethod::Get => "",
            PresignMethod::Put => content_type.unwrap_or_default(),
        };
        let sig = self.signature(method.as_str(), key.as_str(), expires, content_type);
        let headers = match method {
            PresignMethod::Get => Vec::new(),
            PresignMethod::Put => vec![("content-type".to_owned(), content_type.to_owned())],
        };
        PresignedRequest {
            method,
            url: format!(
                "{}{FILES_PATH}{}?expires={expires}&sig={sig}",
                self.base_url,
                key.as_str()
            ),
            headers,
            expires_at: Utc.timestamp_opt(expires, 0).single().unwrap_or(expires_at),
        }
    }

    /// Checks a request against its signature and the current time; returns the key it may
    /// act on.
    ///
    /// # Errors
    /// [`AssetError::InvalidKey`] for a bad key, [`AssetError::InvalidRequest`] for a missing
    /// or malformed `expires`/`sig`, [`AssetError::AccessDenied`] when the URL expired, was
    /// signed for another method, key or content type, or with another secret.
    pub fn verify(&self, request: &SignedRequest<'_>) -> Result<ObjectKey, AssetError> {
        self.verify_at(request, Utc::now())
    }

    /// [`verify`](Self::verify) at a given time.
    ///
    /// # Errors
    /// As [`verify`](Self::verify).
    pub fn verify_at(
        &self,
        request: &SignedRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<ObjectKey, AssetError> {
        self.verify_until_at(request, now).map(|(key, _)| key)
    }

    /// [`verify`](Self::verify), also returning when the URL stops working (how long a
    /// response to it may be cached).
    ///
    /// # Errors
    /// As [`verify`](Self::verify).
    pub fn verify_until(
        &self,
        request: &SignedRequest<'_>,
    ) -> Result<(ObjectKey, DateTime<Utc>), AssetError> {
        self.verify_until_at(request, Utc::now())
    }

    fn verify_until_at(
        &self,
        request: &SignedRequest<'_>,
        now: DateTime<Utc>,
    ) -> Result<(ObjectKey, DateTime<Utc>), AssetError> {
        let key = ObjectKey::parse(request.key)?;
        let (expires, sig) = parse_query(request.query)?;
        let method = match request.method.to_ascii_uppercase().as_str() {
            "GET" | "HEAD" => PresignMethod::Get,
            "PUT" => PresignMethod::Put,
            other => {
                return Err(AssetError::AccessDenied {
                    reason: format!("signed URLs do not allow {other}"),
                });
            }
        };
        let content_type = match method {
            PresignMethod::Get => "",
            PresignMethod::Put => request.content_type.unwrap_or_default().trim(),
        };
        let given = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| AssetError::InvalidRequest("sig is not base64url".to_owned()))?;
        let mut mac = self.mac();
        mac.update(&message(
            method.as_str(),
            key.as_str(),
            expires,
            content_type,
        ));
        mac.verify_slice(&given)
            .map_err(|_| AssetError::AccessDenied {
                reason: "signature does not match this method, key and content type".to_owned(),
            })?;
        if now.timestamp() > expires {
            return Err(AssetError::AccessDenied {
                reason: format!(
                    "the signed URL expired at {}",
                    Utc.timestamp_opt(expires, 0)
                        .single()
                        .map_or_else(|| expires.to_string(), |t| t.to_rfc3339())
                ),
            });
        }
        let until = Utc.timestamp_opt(expires, 0).single().unwrap_or(now);
        Ok((key, until))
    }

    fn signature(&self, method: &str, key: &str, expires: i64, content_type: &str) -> String {
        let mut mac = self.mac();
        mac.update(&message(method, key, expires, content_type));
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail; fall back to an impossible
        // empty-key MAC rather than panicking.
        <HmacSha256 as KeyInit>::new_from_slice(self.secret.expose_secret())
            .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()))
    }
}

impl fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlSigner")
            .field("secret", &"[REDACTED]")
            .field("base_url", &self.base_url)
            .finish()
    }
}

fn message(method: &str, key: &str, expires: i64, content_type: &str) -> Vec<u8> {
    format!("drama-assets/v1\n{method}\n{key}\n{expires}\n{content_type}").into_bytes()
}

fn parse_query(query: &str) -> Result<(i64, &str), AssetError> {
    let mut expires = None;
    let mut sig = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("expires", v)) => expires = Some(v),
            Some(("sig", v)) => sig = Some(v),
            _ => {}
        }
    }
    let expires = expires
        .ok_or_else(|| AssetError::InvalidRequest("signed URL lacks expires".to_owned()))?
        .parse::<i64>()
        .map_err(|_| AssetError::InvalidRequest("expires is not a number".to_owned()))?;
    let sig = sig.ok_or_else(|| AssetError::InvalidRequest("signed URL lacks sig".to_owned()))?;
    Ok((expires, sig))
}

/// Checks an http(s) base URL and drops its trailing `/`.
pub(crate) fn check_base_url(url: &str, variable: &'static str) -> Result<String, AssetError> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => Ok(trimmed.to_owned()),
        _ => Err(AssetError::InvalidSettings {
            variable,
            message: format!("{url:?} is not an http(s) URL"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new(&[7u8; 32], "http://api.test/").unwrap()
    }

    fn split(url: &str) -> (&str, &str) {
        let rest = url.strip_prefix("http://api.test/files/").unwrap();
        rest.split_once('?').unwrap()
    }

    #[test]
    fn a_signed_get_verifies_until_it_expires() {
        let key = ObjectKey::parse("u/d/covers/cover.png").unwrap();
        let expires = Utc::now() + chrono::Duration::minutes(5);
        let req = signer().sign(PresignMethod::Get, &key, None, expires);
        let (path, query) = split(&req.url);
        let incoming = SignedRequest {
            method: "GET",
            key: path,
            query,
            content_type: None,
        };
        assert_eq!(signer().verify(&incoming).unwrap(), key);
        let later = expires + chrono::Duration::seconds(2);
        let err = signer().verify_at(&incoming, later).unwrap_err();
        assert!(err.to_string().contains("expired"), "{err}");
        // PUT with a GET URL is refused.
        let put = SignedRequest {
            method: "PUT",
            ..incoming
        };
        assert!(matches!(
            signer().verify(&put),
            Err(AssetError::AccessDenied { .. })
        ));
    }

    #[test]
    fn a_signed_put_is_bound_to_its_content_type_key_and_secret() {
        let key = ObjectKey::parse("u/d/uploads/a.png").unwrap();
        let expires = Utc::now() + chrono::Duration::minutes(5);
        let req = signer().sign(PresignMethod::Put, &key, Some("image/png"), expires);
        assert_eq!(
            req.headers,
            vec![("content-type".to_owned(), "image/png".to_owned())]
        );
        let (path, query) = split(&req.url);
        let ok = SignedRequest {
            method: "PUT",
            key: path,
            query,
            content_type: Some("image/png"),
        };
        assert!(signer().verify(&ok).is_ok());
        let other_type = SignedRequest {
            content_type: Some("image/jpeg"),
            ..ok
        };
        assert!(signer().verify(&other_type).is_err());
        let other_key = SignedRequest {
            key: "u/d/uploads/b.png",
            ..ok
        };
        assert!(signer().verify(&other_key).is_err());
        let escaping = SignedRequest {
            key: "u/../../etc/passwd",
            ..ok
        };
        assert!(matches!(
            signer().verify(&escaping),
            Err(AssetError::InvalidKey { .. })
        ));
        let other_secret = UrlSigner::new(&[8u8; 32], "http://api.test").unwrap();
        assert!(other_secret.verify(&ok).is_err());
        let tampered_expiry = query.replacen("expires=", "expires=9", 1);
        let extended = SignedRequest {
            query: &tampered_expiry,
            ..ok
        };
        assert!(signer().verify(&extended).is_err());
    }

    #[test]
    fn rejects_short_secrets_and_bad_urls() {
        assert!(UrlSigner::new(b"short", "http://x").is_err());
        assert!(UrlSigner::new(&[1; 32], "ftp://x").is_err());
        let debug = format!("{:?}", signer());
        assert!(
            debug.contains("REDACTED") && !debug.contains("7, 7"),
            "{debug}"
        );
    }
}
