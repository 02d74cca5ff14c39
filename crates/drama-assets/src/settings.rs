//! Settings, read from the environment (or any config source with the same lowercase names),
//! and the constructor that turns them into a store.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::error::AssetError;
use crate::limits::{SizeLimits, parse_size};
use crate::local::LocalStore;
use crate::memory::MemoryStore;
#[cfg(feature = "s3")]
use crate::s3::S3Store;
use crate::s3_options::{MultipartSettings, S3Options};
use crate::signing::{UrlSigner, check_base_url};
use crate::store::AssetStore;

/// Which backend holds the objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// An S3-compatible bucket (R2, MinIO, AWS).
    S3,
    /// Files under `ASSETS_DIR`.
    Local,
    /// Process memory; nothing survives a restart.
    Memory,
}

impl<'de> Deserialize<'de> for BackendKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        match raw.trim().to_ascii_lowercase().as_str() {
            "s3" | "r2" => Ok(Self::S3),
            "local" | "disk" | "fs" => Ok(Self::Local),
            "memory" | "mem" => Ok(Self::Memory),
            other => Err(serde::de::Error::custom(format!(
                "ASSETS_BACKEND must be s3, r2, local or memory, got {other:?}"
            ))),
        }
    }
}

/// Asset-store settings. Field names are the environment variables in lowercase, so a
/// `config` environment source (or [`AssetSettings::from_env`]) fills them directly. Empty
/// values count as unset. Secrets never appear in `Debug`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AssetSettings {
    /// `ASSETS_BACKEND`: `s3` (alias `r2`), `local` or `memory`. Unset: `s3` when any
    /// `R2_BUCKET`, `R2_ACCOUNT_ID` or `R2_ENDPOINT_URL` is set, else `local`.
    #[serde(deserialize_with = "opt_parsed")]
    pub assets_backend: Option<BackendKind>,
    /// `R2_ACCOUNT_ID`: the Cloudflare account; gives the endpoint
    /// `https://{id}.r2.cloudflarestorage.com`, which wins over `R2_ENDPOINT_URL` (as in the
    /// old server).
    #[serde(deserialize_with = "opt_string")]
    pub r2_account_id: Option<String>,
    /// `R2_ACCESS_KEY_ID`.
    #[serde(deserialize_with = "opt_string")]
    pub r2_access_key_id: Option<String>,
    /// `R2_SECRET_ACCESS_KEY`.
    #[serde(deserialize_with = "opt_secret")]
    pub r2_secret_access_key: Option<SecretString>,
    /// `R2_BUCKET`.
    #[serde(deserialize_with = "opt_string")]
    pub r2_bucket: Option<String>,
    /// `R2_PUBLIC_URL`: base of public object URLs (custom domain or `r2.dev`).
    #[serde(deserialize_with = "opt_string")]
    pub r2_public_url: Option<String>,
    /// `R2_ENDPOINT_URL`: any other S3 endpoint (MinIO, a test server); used only without
    /// `R2_ACCOUNT_ID`, as by the old server, whose environments may still carry one it
    /// ignored.
    #[serde(deserialize_with = "opt_string")]
    pub r2_endpoint_url: Option<String>,
    /// `R2_REGION`: signing region, default `auto` (R2 ignores it; MinIO may want
    /// `us-east-1`).
    #[serde(deserialize_with = "opt_string")]
    pub r2_region: Option<String>,
    /// `ASSETS_DIR`: root of the local backend, default `./data/assets`.
    #[serde(deserialize_with = "opt_string")]
    pub assets_dir: Option<String>,
    /// `ASSETS_BASE_URL`: public origin of the API server, used in the signed URLs of the
    /// local and memory backends; default `http://localhost:8000`.
    #[serde(deserialize_with = "opt_string")]
    pub assets_base_url: Option<String>,
    /// `ASSETS_SIGNING_SECRET`: HMAC key (32+ bytes) for those URLs. Unset: a random key per
    /// process, so URLs stop working on restart and differ between instances.
    #[serde(deserialize_with = "opt_secret")]
    pub assets_signing_secret: Option<SecretString>,
    /// `ASSETS_PUBLIC_URL`: base of unsigned public URLs for the local and memory backends
    /// (`{base}/{key}`); unset means none.
    #[serde(deserialize_with = "opt_string")]
    pub assets_public_url: Option<String>,
    /// `ASSETS_MULTIPART_THRESHOLD`: size above which S3 uploads go in parts (default 16MiB).
    #[serde(deserialize_with = "opt_size")]
    pub assets_multipart_threshold: Option<u64>,
    /// `ASSETS_MULTIPART_PART_SIZE`: size of every part but the last (default 8MiB, 5MiB–5GiB).
    #[serde(deserialize_with = "opt_size")]
    pub assets_multipart_part_size: Option<u64>,
    /// `ASSETS_MULTIPART_CONCURRENCY`: parts in flight at once (default 3).
    #[serde(deserialize_with = "opt_size")]
    pub assets_multipart_concurrency: Option<u64>,
    /// `ASSETS_CONNECT_TIMEOUT_SECS`: default 5.
    #[serde(deserialize_with = "opt_size")]
    pub assets_connect_timeout_secs: Option<u64>,
    /// `ASSETS_TIMEOUT_SECS`: time for one attempt of one S3 request, default 120.
    #[serde(deserialize_with = "opt_size")]
    pub assets_timeout_secs: Option<u64>,
    /// `ASSETS_MAX_ATTEMPTS`: attempts per S3 request for transient failures, default 4.
    #[serde(deserialize_with = "opt_size")]
    pub assets_max_attempts: Option<u64>,
    /// `ASSETS_SIZE_LIMITS`: per-category overrides such as `portraits=20MiB,clips=2GiB,other=1GiB`.
    #[serde(deserialize_with = "opt_string")]
    pub assets_size_limits: Option<String>,
}

/// Every variable the settings read, for documentation and for [`AssetSettings::from_env`].
pub const VARIABLES: [&str; 19] = [
    "ASSETS_BACKEND",
    "R2_ACCOUNT_ID",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "R2_BUCKET",
    "R2_PUBLIC_URL",
    "R2_ENDPOINT_URL",
    "R2_REGION",
    "ASSETS_DIR",
    "ASSETS_BASE_URL",
    "ASSETS_SIGNING_SECRET",
    "ASSETS_PUBLIC_URL",
    "ASSETS_MULTIPART_THRESHOLD",
    "ASSETS_MULTIPART_PART_SIZE",
    "ASSETS_MULTIPART_CONCURRENCY",
    "ASSETS_CONNECT_TIMEOUT_SECS",
    "ASSETS_TIMEOUT_SECS",
    "ASSETS_MAX_ATTEMPTS",
    "ASSETS_SIZE_LIMITS",
];

const DEFAULT_DIR: &str = "./data/assets";
const DEFAULT_BASE_URL: &str = "http://localhost:8000";

impl AssetSettings {
    /// Reads the variables of [`VARIABLES`] from the process environment.
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] naming the first malformed variable.
    pub fn from_env() -> Result<Self, AssetError> {
        Self::from_vars(
            VARIABLES
                .iter()
                .filter_map(|name| std::env::var(name).ok().map(|v| ((*name).to_owned(), v))),
        )
    }

    /// Reads settings from `(NAME, value)` pairs; names are matched case-insensitively and
    /// unknown names are ignored.
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] naming the first malformed variable.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, AssetError> {
        let map: serde_json::Map<String, serde_json::Value> = vars
            .into_iter()
            .filter(|(k, _)| VARIABLES.iter().any(|v| v.eq_ignore_ascii_case(k)))
            .map(|(k, v)| (k.to_ascii_lowercase(), serde_json::Value::String(v)))
            .collect();
        serde_path_to_error::deserialize(serde_json::Value::Object(map)).map_err(|e| {
            let field = e.path().to_string();
            let variable = VARIABLES
                .iter()
                .find(|v| v.eq_ignore_ascii_case(&field))
                .copied()
                .unwrap_or("ASSETS_*");
            AssetError::InvalidSettings {
                variable,
                message: e.into_inner().to_string(),
            }
        })
    }

    /// Every variable of [`VARIABLES`] with the value in effect, defaults included, for
    /// `drama-server config`. Secrets show only whether they are set; `None` means unset with
    /// no default.
    pub fn effective(&self) -> Vec<(&'static str, Option<String>)> {
        let multipart = MultipartSettings::default();
        let set = |s: &Option<SecretString>| s.as_ref().map(|_| "<set>".to_owned());
        let or = |v: &Option<u64>, default: u64| Some(v.unwrap_or(default).to_string());
        vec![
            (
                "ASSETS_BACKEND",
                Some(format!("{:?}", self.backend()).to_ascii_lowercase()),
            ),
            ("R2_ACCOUNT_ID", self.r2_account_id.clone()),
            ("R2_ACCESS_KEY_ID", self.r2_access_key_id.clone()),
            ("R2_SECRET_ACCESS_KEY", set(&self.r2_secret_access_key)),
            ("R2_BUCKET", self.r2_bucket.clone()),
            ("R2_PUBLIC_URL", self.r2_public_url.clone()),
            (
                "R2_ENDPOINT_URL",
                self.r2_endpoint_url.clone().map(|url| {
                    if self.r2_account_id.is_some() {
                        format!("{url} (ignored: R2_ACCOUNT_ID is set and wins)")
                    } else {
                        url
                    }
                }),
            ),
            (
                "R2_REGION",
                Some(self.r2_region.clone().unwrap_or_else(|| "auto".to_owned())),
            ),
            (
                "ASSETS_DIR",
                Some(
                    self.assets_dir
                        .clone()
                        .unwrap_or_else(|| DEFAULT_DIR.to_owned()),
                ),
            ),
            (
                "ASSETS_BASE_URL",
                Some(
                    self.assets_base_url
                        .clone()
                        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
                ),
            ),
            (
                "ASSETS_SIGNING_SECRET",
                Some(
                    set(&self.assets_signing_secret)
                        .unwrap_or_else(|| "<random per process>".to_owned()),
                ),
            ),
            ("ASSETS_PUBLIC_URL", self.assets_public_url.clone()),
            (
                "ASSETS_MULTIPART_THRESHOLD",
                or(&self.assets_multipart_threshold, multipart.threshold),
            ),
            (
                "ASSETS_MULTIPART_PART_SIZE",
                or(&self.assets_multipart_part_size, multipart.part_size),
            ),
            (
                "ASSETS_MULTIPART_CONCURRENCY",
                or(
                    &self.assets_multipart_concurrency,
                    multipart.concurrency as u64,
                ),
            ),
            (
                "ASSETS_CONNECT_TIMEOUT_SECS",
                or(&self.assets_connect_timeout_secs, 5),
            ),
            ("ASSETS_TIMEOUT_SECS", or(&self.assets_timeout_secs, 120)),
            ("ASSETS_MAX_ATTEMPTS", or(&self.assets_max_attempts, 4)),
            (
                "ASSETS_SIZE_LIMITS",
                Some(
                    self.assets_size_limits
                        .clone()
                        .unwrap_or_else(|| "<built-in>".to_owned()),
                ),
            ),
        ]
    }

    /// The backend these settings select.
    pub fn backend(&self) -> BackendKind {
        self.assets_backend.unwrap_or(
            if self.r2_bucket.is_some()
                || self.r2_account_id.is_some()
                || self.r2_endpoint_url.is_some()
            {
                BackendKind::S3
            } else {
                BackendKind::Local
            },
        )
    }

    /// The size limits, defaults overridden by `ASSETS_SIZE_LIMITS`.
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] (`ASSETS_SIZE_LIMITS`).
    pub fn limits(&self) -> Result<SizeLimits, AssetError> {
        self.assets_size_limits
            .as_deref()
            .map_or_else(|| Ok(SizeLimits::default()), SizeLimits::parse)
    }

    /// The S3 endpoint these settings name, unchecked: the account's R2 endpoint when
    /// `R2_ACCOUNT_ID` is set, else `R2_ENDPOINT_URL`. The old server chose in this order, so
    /// an environment carried over from it reaches the same bucket even when it still holds
    /// an `R2_ENDPOINT_URL` that the old server ignored.
    pub fn s3_endpoint(&self) -> Option<String> {
        match (&self.r2_account_id, &self.r2_endpoint_url) {
            (Some(account), _) => Some(format!("https://{account}.r2.cloudflarestorage.com")),
            (None, url) => url.clone(),
        }
    }

    /// What an operator should know about the endpoint: that `R2_ENDPOINT_URL` is set but
    /// ignored because `R2_ACCOUNT_ID` is set too.
    pub fn endpoint_note(&self) -> Option<String> {
        match (&self.r2_account_id, &self.r2_endpoint_url) {
            (Some(account), Some(url)) => Some(format!(
                "R2_ENDPOINT_URL ({url}) is ignored: R2_ACCOUNT_ID is set, so the endpoint is \
                 https://{account}.r2.cloudflarestorage.com (the old server's order); unset \
                 R2_ACCOUNT_ID to use R2_ENDPOINT_URL, or unset R2_ENDPOINT_URL"
            )),
            _ => None,
        }
    }

    /// The S3 options these settings describe, checked.
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] naming the missing or malformed variable.
    pub fn s3_options(&self) -> Result<S3Options, AssetError> {
        if let Some(note) = self.endpoint_note() {
            tracing::warn!("{note}");
        }
        let endpoint_url = match (&self.r2_account_id, &self.r2_endpoint_url) {
            (Some(account), _) => {
                if !account.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(AssetError::InvalidSettings {
                        variable: "R2_ACCOUNT_ID",
                        message: "must be the hexadecimal account id".to_owned(),
                    });
                }
                format!("https://{account}.r2.cloudflarestorage.com")
            }
            (None, Some(url)) => check_base_url(url, "R2_ENDPOINT_URL")?,
            (None, None) => {
                return Err(AssetError::InvalidSettings {
                    variable: "R2_ACCOUNT_ID",
                    message:
                        "set R2_ACCOUNT_ID (Cloudflare R2) or R2_ENDPOINT_URL (another S3 server)"
                            .to_owned(),
                });
            }
        };
        let missing = |variable: &'static str| AssetError::InvalidSettings {
            variable,
            message: "is required for the s3 backend".to_owned(),
        };
        let defaults = MultipartSettings::default();
        let multipart = MultipartSettings {
            threshold: self
                .assets_multipart_threshold
                .unwrap_or(defaults.threshold),
            part_size: self
                .assets_multipart_part_size
                .unwrap_or(defaults.part_size),
            concurrency: self
                .assets_multipart_concurrency
                .map_or(defaults.concurrency, |c| {
                    usize::try_from(c).unwrap_or(usize::MAX)
                }),
        };
        multipart.validate()?;
        let max_attempts = self.assets_max_attempts.unwrap_or(4);
        if !(1..=20).contains(&max_attempts) {
            return Err(AssetError::InvalidSettings {
                variable: "ASSETS_MAX_ATTEMPTS",
                message: format!("must be between 1 and 20, got {max_attempts}"),
            });
        }
        Ok(S3Options {
            endpoint_url,
            region: self.r2_region.clone().unwrap_or_else(|| "auto".to_owned()),
            bucket: self.r2_bucket.clone().ok_or_else(|| missing("R2_BUCKET"))?,
            access_key_id: self
                .r2_access_key_id
                .clone()
                .ok_or_else(|| missing("R2_ACCESS_KEY_ID"))?,
            secret_access_key: self
                .r2_secret_access_key
                .clone()
                .ok_or_else(|| missing("R2_SECRET_ACCESS_KEY"))?,
            public_base_url: self
                .r2_public_url
                .as_deref()
                .map(|u| check_base_url(u, "R2_PUBLIC_URL"))
                .transpose()?,
            multipart,
            limits: self.limits()?,
            connect_timeout: Duration::from_secs(self.assets_connect_timeout_secs.unwrap_or(5)),
            attempt_timeout: Duration::from_secs(self.assets_timeout_secs.unwrap_or(120)),
            max_attempts: u32::try_from(max_attempts).unwrap_or(4),
        })
    }

    /// The URL signer of the local and memory backends.
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] (`ASSETS_BASE_URL`, `ASSETS_SIGNING_SECRET`).
    pub fn url_signer(&self) -> Result<UrlSigner, AssetError> {
        let base = self.assets_base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        match &self.assets_signing_secret {
            Some(secret) => UrlSigner::new(secret.expose_secret().as_bytes(), base),
            None => {
                tracing::warn!(
                    "ASSETS_SIGNING_SECRET is not set: signed file URLs use a random key and stop working when this process exits"
                );
                UrlSigner::random(base)
            }
        }
    }

    /// The root directory of the local backend.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(self.assets_dir.as_deref().unwrap_or(DEFAULT_DIR))
    }

    fn local_public_url(&self) -> Result<Option<String>, AssetError> {
        self.assets_public_url
            .as_deref()
            .map(|u| check_base_url(u, "ASSETS_PUBLIC_URL"))
            .transpose()
    }
}

/// Builds the store the settings select. Checks every setting first and fails with the name
/// of the variable at fault; contacts nothing remote (run [`AssetStore::check`] for that).
///
/// # Errors
/// [`AssetError::InvalidSettings`].
pub async fn open_store(settings: &AssetSettings) -> Result<Arc<dyn AssetStore>, AssetError> {
    let store: Arc<dyn AssetStore> = match settings.backend() {
        #[cfg(feature = "s3")]
        BackendKind::S3 => Arc::new(S3Store::new(settings.s3_options()?)?),
        #[cfg(not(feature = "s3"))]
        BackendKind::S3 => {
            settings.s3_options()?;
            return Err(AssetError::InvalidSettings {
                variable: "ASSETS_BACKEND",
                message: "the s3 backend is not compiled into this build (cargo feature `s3` \
                          of drama-assets); choose local or memory"
                    .to_owned(),
            });
        }
        BackendKind::Local => Arc::new(
            LocalStore::open(
                settings.dir(),
                settings.limits()?,
                settings.url_signer()?,
                settings.local_public_url()?,
            )
            .await?,
        ),
        BackendKind::Memory => Arc::new(MemoryStore::with_signer(
            settings.limits()?,
            settings.url_signer()?,
            settings.local_public_url()?,
        )),
    };
    tracing::info!(backend = store.backend(), "asset store ready");
    Ok(store)
}

fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()))
}

fn opt_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    Ok(raw
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .map(SecretString::from))
}

fn opt_parsed<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BackendKind>, D::Error> {
    let raw: Option<String> = Option::deserialize(d)?;
    match raw.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => {
            BackendKind::deserialize(serde::de::value::StringDeserializer::<D::Error>::new(s))
                .map(Some)
        }
    }
}

/// Accepts a number, or a string holding a number with an optional size unit.
fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u64),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(n)) => Ok(Some(n)),
        Some(Raw::Text(s)) if s.trim().is_empty() => Ok(None),
        Some(Raw::Text(s)) => parse_size(&s).map(Some).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_effective_listing_names_every_variable_once() {
        let settings = vars(&[("R2_SECRET_ACCESS_KEY", "hidden"), ("R2_BUCKET", "b")]).unwrap();
        let listed = settings.effective();
        let names: Vec<&str> = listed.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, VARIABLES);
        let value = |name: &str| listed.iter().find(|(n, _)| *n == name).unwrap().1.clone();
        assert_eq!(value("R2_SECRET_ACCESS_KEY").as_deref(), Some("<set>"));
        assert_eq!(value("ASSETS_BACKEND").as_deref(), Some("s3"));
        assert_eq!(value("ASSETS_MAX_ATTEMPTS").as_deref(), Some("4"));
        assert_eq!(value("R2_PUBLIC_URL"), None);
    }

    fn vars(pairs: &[(&str, &str)]) -> Result<AssetSettings, AssetError> {
        AssetSettings::from_vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn the_account_id_wins_over_an_endpoint_url_as_in_the_old_server() {
        let both = vars(&[
            ("R2_ACCOUNT_ID", "abc123"),
            ("R2_ENDPOINT_URL", "http://127.0.0.1:9000"),
            ("R2_ACCESS_KEY_ID", "id"),
            ("R2_SECRET_ACCESS_KEY", "secret"),
            ("R2_BUCKET", "b"),
        ])
        .unwrap();
        let o = both.s3_options().unwrap();
        assert_eq!(o.endpoint_url, "https://abc123.r2.cloudflarestorage.com");
        assert_eq!(both.s3_endpoint().unwrap(), o.endpoint_url);
        let note = both.endpoint_note().unwrap();
        assert!(
            note.contains("R2_ENDPOINT_URL (http://127.0.0.1:9000) is ignored"),
            "{note}"
        );
        let shown = both
            .effective()
            .into_iter()
            .find(|(n, _)| *n == "R2_ENDPOINT_URL")
            .and_then(|(_, v)| v)
            .unwrap();
        assert!(shown.contains("ignored"), "{shown}");

        let endpoint_only = vars(&[
            ("R2_ENDPOINT_URL", "http://127.0.0.1:9000/"),
            ("R2_ACCESS_KEY_ID", "id"),
            ("R2_SECRET_ACCESS_KEY", "secret"),
            ("R2_BUCKET", "b"),
        ])
        .unwrap();
        assert_eq!(
            endpoint_only.s3_options().unwrap().endpoint_url,
            "http://127.0.0.1:9000"
        );
        assert!(endpoint_only.endpoint_note().is_none());
    }

    #[test]
    fn r2_settings_give_the_r2_endpoint() {
        let s = vars(&[
            ("R2_ACCOUNT_ID", "abc123"),
            ("R2_ACCESS_KEY_ID", "id"),
            ("R2_SECRET_ACCESS_KEY", "very-secret-value"),
            ("R2_BUCKET", "sfd-production"),
            ("R2_PUBLIC_URL", "https://pub.example.r2.dev/"),
            ("ASSETS_MULTIPART_PART_SIZE", "10MiB"),
            ("ASSETS_MULTIPART_THRESHOLD", "20971520"),
            ("UNRELATED", "x"),
        ])
        .unwrap();
        assert_eq!(s.backend(), BackendKind::S3);
        let o = s.s3_options().unwrap();
        assert_eq!(o.endpoint_url, "https://abc123.r2.cloudflarestorage.com");
        assert_eq!(o.region, "auto");
        assert_eq!(
            o.public_base_url.as_deref(),
            Some("https://pub.example.r2.dev")
        );
        assert_eq!(o.multipart.part_size, 10 * 1024 * 1024);
        assert_eq!(o.multipart.threshold, 20 * 1024 * 1024);
        let debug = format!("{s:?} {o:?}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
    }

    #[test]
    fn missing_and_malformed_values_name_their_variable() {
        let err = vars(&[
            ("R2_BUCKET", "b"),
            ("R2_ENDPOINT_URL", "http://127.0.0.1:9000"),
        ])
        .unwrap()
        .s3_options()
        .unwrap_err()
        .to_string();
        assert!(err.contains("R2_ACCESS_KEY_ID"), "{err}");
        let err = vars(&[("ASSETS_MULTIPART_PART_SIZE", "lots")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("ASSETS_MULTIPART_PART_SIZE"), "{err}");
        let err = vars(&[("ASSETS_BACKEND", "ftp")]).unwrap_err().to_string();
        assert!(err.contains("ASSETS_BACKEND"), "{err}");
        let err = vars(&[("ASSETS_SIGNING_SECRET", "short")])
            .unwrap()
            .url_signer()
            .unwrap_err()
            .to_string();
        assert!(err.contains("ASSETS_SIGNING_SECRET"), "{err}");
    }

    #[test]
    fn nothing_configured_means_local_disk() {
        let s = vars(&[("R2_BUCKET", "")]).unwrap();
        assert_eq!(s.backend(), BackendKind::Local);
        assert_eq!(s.dir(), PathBuf::from("./data/assets"));
        assert_eq!(
            vars(&[("ASSETS_BACKEND", "Memory")]).unwrap().backend(),
            BackendKind::Memory
        );
    }
}
