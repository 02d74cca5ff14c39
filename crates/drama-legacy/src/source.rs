//! Where things are in the old bucket: the key layout under an optional prefix, the URLs that
//! point into the bucket, and the owners of the old dramas.

use std::collections::{BTreeMap, BTreeSet};

use drama_assets::{AssetSettings, BackendKind, KeyPrefix, ObjectKey};
use drama_domain::{DramaId, UserId};

use crate::error::LegacyError;
use drama_domain::{OLD_DEFAULT_OWNER, is_old_default_owner};

/// The old layout (`dramas/{id}/drama.json`, `dramas/index.json`) under an optional prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// Empty, or whole key segments ending in `/`.
    prefix: String,
}

impl Layout {
    /// The layout at the root of the bucket (`""`) or under `prefix` (`legacy` and `legacy/`
    /// mean the same).
    ///
    /// # Errors
    /// [`LegacyError::InvalidOption`] (`--prefix`) when the prefix breaks the key rules.
    pub fn new(prefix: &str) -> Result<Self, LegacyError> {
        let trimmed = prefix.trim();
        if trimmed.is_empty() {
            return Ok(Self::default());
        }
        let with_slash = if trimmed.ends_with('/') {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/")
        };
        KeyPrefix::parse(with_slash.clone())
            .map_err(|e| LegacyError::option("--prefix", e.to_string()))?;
        Ok(Self { prefix: with_slash })
    }

    /// The prefix (empty or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Where the drama files are: `{prefix}dramas/`.
    ///
    /// # Errors
    /// Never for a layout built by [`Layout::new`].
    pub fn dramas_prefix(&self) -> Result<KeyPrefix, LegacyError> {
        KeyPrefix::parse(format!("{}dramas/", self.prefix))
            .map_err(|e| LegacyError::option("--prefix", e.to_string()))
    }

    /// `{prefix}dramas/index.json`.
    ///
    /// # Errors
    /// Never for a layout built by [`Layout::new`].
    pub fn index_key(&self) -> Result<ObjectKey, LegacyError> {
        ObjectKey::parse(format!("{}dramas/index.json", self.prefix))
            .map_err(|e| LegacyError::option("--prefix", e.to_string()))
    }

    /// `{prefix}dramas/{id}/drama.json`.
    pub fn drama_key_text(&self, id: &str) -> String {
        format!("{}dramas/{id}/drama.json", self.prefix)
    }

    /// The key of a drama's file.
    ///
    /// # Errors
    /// Never for a valid drama id and a layout built by [`Layout::new`].
    pub fn drama_key(&self, id: &DramaId) -> Result<ObjectKey, LegacyError> {
        ObjectKey::parse(self.drama_key_text(id.as_str()))
            .map_err(|e| LegacyError::option("--prefix", e.to_string()))
    }

    /// Where the export moves the file of a drama deleted in the database:
    /// `{prefix}dramas-deleted/{id}/drama.json`, outside `dramas/`, where neither the old
    /// server nor the import looks.
    pub fn deleted_key_text(&self, id: &str) -> String {
        format!("{}dramas-deleted/{id}/drama.json", self.prefix)
    }

    /// Where the export keeps an old drama file it would otherwise overwrite without knowing
    /// what it is: one key per content, so no two such files meet.
    pub fn conflict_key_text(&self, id: &str, sha256: &str) -> String {
        format!("{}dramas-conflict/{id}/{sha256}/drama.json", self.prefix)
    }

    /// The drama id of a key of the form `{prefix}dramas/{id}/drama.json`.
    pub fn drama_id_of<'k>(&self, key: &'k str) -> Option<&'k str> {
        let rest = key.strip_prefix(self.prefix.as_str())?;
        let id = rest.strip_prefix("dramas/")?.strip_suffix("/drama.json")?;
        (!id.is_empty() && !id.contains('/')).then_some(id)
    }
}

/// The URL bases under which objects of the bucket are reachable (`{base}/{key}`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BucketUrls {
    bases: Vec<String>,
}

/// Where a URL of an old file points: into the bucket (and at which key) or elsewhere.
///
/// Not the drama field a generated asset's url is written to (`drama_dal::EntityUrl`): this
/// one classifies a url's destination, that one names a field of the drama.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlTarget {
    /// Into the bucket, at this key.
    Bucket(ObjectKey),
    /// Into the bucket, but the path is not a key the asset store accepts (the reason).
    BucketUnusable(String),
    /// Somewhere else.
    Foreign,
}

impl BucketUrls {
    /// Bases given explicitly (`https://pub-….r2.dev`, `http://127.0.0.1:9000/bucket`); a
    /// trailing `/` is ignored.
    ///
    /// # Errors
    /// [`LegacyError::InvalidOption`] (`--bucket-url`) for a base that is not an http(s) URL.
    pub fn new(bases: impl IntoIterator<Item = String>) -> Result<Self, LegacyError> {
        let mut out = BTreeSet::new();
        for base in bases {
            let base = base.trim().trim_end_matches('/').to_owned();
            let rest = base
                .strip_prefix("https://")
                .or_else(|| base.strip_prefix("http://"));
            match rest {
                Some(rest) if !rest.is_empty() && !rest.contains(['?', '#']) => {
                    out.insert(base);
                }
                _ => {
                    return Err(LegacyError::option(
                        "--bucket-url",
                        format!("{base:?} is not an http(s) URL base"),
                    ));
                }
            }
        }
        Ok(Self {
            bases: out.into_iter().collect(),
        })
    }

    /// The bases of the configured asset store: `R2_PUBLIC_URL`, the S3 endpoint with the
    /// bucket as first path segment, and the bucket as a subdomain of the endpoint; for the
    /// local and memory backends, `ASSETS_PUBLIC_URL`. `extra` adds more (for example the old
    /// server's default `r2.dev` base when the bucket now has a custom domain).
    ///
    /// # Errors
    /// As [`BucketUrls::new`].
    pub fn for_store(settings: &AssetSettings, extra: &[String]) -> Result<Self, LegacyError> {
        let mut bases: Vec<String> = extra.to_vec();
        match settings.backend() {
            BackendKind::S3 => {
                bases.extend(settings.r2_public_url.clone());
                // The endpoint the store uses (the account's when both are set), so that URLs
                // of an endpoint the store ignores are not taken for keys of this bucket.
                if let (Some(endpoint), Some(bucket)) =
                    (settings.s3_endpoint(), &settings.r2_bucket)
                {
                    let endpoint = endpoint.trim_end_matches('/');
                    bases.push(format!("{endpoint}/{bucket}"));
                    if let Some((scheme, host)) = endpoint.split_once("://") {
                        bases.push(format!("{scheme}://{bucket}.{host}"));
                    }
                }
            }
            BackendKind::Local | BackendKind::Memory => {
                bases.extend(settings.assets_public_url.clone());
            }
        }
        Self::new(bases)
    }

    /// The bases, sorted.
    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// Where `url` points. The query and fragment are ignored; the path is percent-decoded.
    pub fn target(&self, url: &str) -> UrlTarget {
        let url = url.trim();
        let Some(rest) = self.bases.iter().find_map(|base| {
            let head = url.get(..base.len())?;
            let rest = url.get(base.len()..)?;
            (head.eq_ignore_ascii_case(base) && rest.starts_with('/')).then(|| &rest[1..])
        }) else {
            return UrlTarget::Foreign;
        };
        let path = rest.split(['?', '#']).next().unwrap_or_default();
        let Ok(decoded) = percent_encoding::percent_decode_str(path).decode_utf8() else {
            return UrlTarget::BucketUnusable(format!("{path:?} is not valid UTF-8"));
        };
        match ObjectKey::parse(decoded) {
            Ok(key) => UrlTarget::Bucket(key),
            Err(e) => UrlTarget::BucketUnusable(e.to_string()),
        }
    }
}

/// Who the old owners become: the entries of `--owner-map`, and `--owner` for the old
/// server's implicit users ([`drama_domain::is_old_default_owner`]) the map does not name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnerMap {
    /// Old owner id → user; UUID keys in their canonical spelling.
    map: BTreeMap<String, UserId>,
    /// `--owner`: the user `10000` and the old demo user become.
    default_owner: Option<UserId>,
}

/// An old owner id as the map keys it: a UUID in its canonical spelling (the old tables wrote
/// Supabase Auth ids as text, in whatever case the client sent), anything else trimmed.
fn owner_key(old: &str) -> String {
    let old = old.trim();
    old.parse::<UserId>()
        .map_or_else(|_| old.to_owned(), |u| u.to_string())
}

/// The user an old owner becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerTarget {
    /// Named by the map (or `--owner`): created if missing.
    Mapped(UserId),
    /// Not in the map, but itself a user id (files written by the export): must exist.
    Direct(UserId),
}

impl OwnerTarget {
    /// The user.
    pub fn user(self) -> UserId {
        match self {
            Self::Mapped(u) | Self::Direct(u) => u,
        }
    }
}

impl OwnerMap {
    /// Reads a map file: a JSON object from old owner ids to user UUIDs, e.g.
    /// `{"10000": "6f1c…", "alice": "0b9e…"}`.
    ///
    /// # Errors
    /// [`LegacyError::InvalidOption`] (`--owner-map`) naming the bad entry.
    pub fn parse(json: &[u8]) -> Result<Self, LegacyError> {
        let bad = |m: String| LegacyError::option("--owner-map", m);
        let value: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| bad(format!("not JSON: {e}")))?;
        let serde_json::Value::Object(entries) = value else {
            return Err(bad(
                "expected a JSON object mapping old owner ids to user UUIDs".to_owned(),
            ));
        };
        let mut map = BTreeMap::new();
        for (old, new) in entries {
            let user = new
                .as_str()
                .and_then(|s| s.trim().parse::<UserId>().ok())
                .ok_or_else(|| bad(format!("{old:?} maps to {new}, which is not a UUID")))?;
            map.insert(owner_key(&old), user);
        }
        Ok(Self {
            map,
            default_owner: None,
        })
    }

    /// Gives the old server's implicit users to `user` (what `--owner` does): `10000` always
    /// (`--owner` is its entry), the demo user its Supabase branch wrote into every drama row
    /// unless the map names it (an operator who wants that user kept maps it to itself).
    #[must_use]
    pub fn with_default_owner(mut self, user: UserId) -> Self {
        self.default_owner = Some(user);
        self
    }

    /// The user `old` becomes, if any: `--owner` for `10000`; the map's entry; `--owner` for
    /// the old demo user; else the UUID itself (a Supabase Auth id, as files written by the
    /// export name their owner).
    pub fn resolve(&self, old: &str) -> Option<OwnerTarget> {
        let key = owner_key(old);
        let default = self.default_owner.filter(|_| is_old_default_owner(&key));
        if let Some(user) = default.filter(|_| key == OLD_DEFAULT_OWNER) {
            return Some(OwnerTarget::Mapped(user));
        }
        if let Some(user) = self.map.get(&key).copied().or(default) {
            return Some(OwnerTarget::Mapped(user));
        }
        key.parse::<UserId>().ok().map(OwnerTarget::Direct)
    }

    /// Every mapping: old owner id → user, by old id (`--owner` as the entry of `10000`).
    pub fn entries(&self) -> Vec<(String, UserId)> {
        let mut entries = self.map.clone();
        if let Some(user) = self.default_owner {
            entries.insert(OLD_DEFAULT_OWNER.to_owned(), user);
        }
        entries.into_iter().collect()
    }

    /// The users the map names, without repeats.
    pub fn users(&self) -> Vec<UserId> {
        let set: BTreeSet<UserId> = self
            .map
            .values()
            .copied()
            .chain(self.default_owner)
            .collect();
        set.into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_layout_finds_drama_files_only() {
        let root = Layout::new("").unwrap();
        assert_eq!(root.drama_id_of("dramas/d1/drama.json"), Some("d1"));
        assert_eq!(root.drama_id_of("dramas/d1/cover.png"), None);
        assert_eq!(root.drama_id_of("dramas/d1/x/drama.json"), None);
        assert_eq!(root.drama_id_of("dramas/index.json"), None);
        assert_eq!(root.index_key().unwrap().as_str(), "dramas/index.json");
        let nested = Layout::new("old/copy").unwrap();
        assert_eq!(nested.prefix(), "old/copy/");
        assert_eq!(
            nested.drama_id_of("old/copy/dramas/d1/drama.json"),
            Some("d1")
        );
        assert_eq!(nested.drama_id_of("dramas/d1/drama.json"), None);
        assert_eq!(nested.dramas_prefix().unwrap().as_str(), "old/copy/dramas/");
        assert!(Layout::new("../up").is_err());
        assert!(Layout::new("/abs").is_err());
    }

    #[test]
    fn bucket_urls_become_keys_and_others_stay_foreign() {
        let settings = AssetSettings::from_vars([
            (
                "R2_ENDPOINT_URL".to_owned(),
                "http://127.0.0.1:9000/".to_owned(),
            ),
            ("R2_BUCKET".to_owned(), "sfd".to_owned()),
            (
                "R2_PUBLIC_URL".to_owned(),
                "https://cdn.example.com".to_owned(),
            ),
        ])
        .unwrap();
        let urls =
            BucketUrls::for_store(&settings, &["https://pub-82a9.r2.dev/".to_owned()]).unwrap();
        assert_eq!(
            urls.bases(),
            [
                "http://127.0.0.1:9000/sfd",
                "http://sfd.127.0.0.1:9000",
                "https://cdn.example.com",
                "https://pub-82a9.r2.dev"
            ]
        );
        let key = |k: &str| UrlTarget::Bucket(ObjectKey::parse(k).unwrap());
        assert_eq!(
            urls.target("https://cdn.example.com/dramas/d1/cover.png"),
            key("dramas/d1/cover.png")
        );
        assert_eq!(
            urls.target("HTTPS://CDN.example.com/dramas/d1/cover.png?v=2#x"),
            key("dramas/d1/cover.png")
        );
        assert_eq!(
            urls.target("http://127.0.0.1:9000/sfd/dramas/d1/characters/c%2Dx.png"),
            key("dramas/d1/characters/c-x.png")
        );
        assert_eq!(
            urls.target("https://pub-82a9.r2.dev/dramas/d1/cover.png"),
            key("dramas/d1/cover.png")
        );
        assert_eq!(
            urls.target("https://cdn.example.com.evil.net/x.png"),
            UrlTarget::Foreign
        );
        assert_eq!(
            urls.target("https://images.example.org/x.png"),
            UrlTarget::Foreign
        );
        assert!(matches!(
            urls.target("https://cdn.example.com/a%20b/../x.png"),
            UrlTarget::BucketUnusable(_)
        ));
        assert!(BucketUrls::new(["ftp://x".to_owned()]).is_err());
    }

    #[test]
    fn the_bucket_is_found_at_the_endpoint_the_store_uses() {
        // An old environment with both: the account wins, as in the old server and the store.
        let settings = AssetSettings::from_vars([
            ("R2_ACCOUNT_ID".to_owned(), "abc123".to_owned()),
            (
                "R2_ENDPOINT_URL".to_owned(),
                "http://127.0.0.1:9000".to_owned(),
            ),
            ("R2_BUCKET".to_owned(), "sfd".to_owned()),
        ])
        .unwrap();
        let urls = BucketUrls::for_store(&settings, &[]).unwrap();
        assert_eq!(
            urls.bases(),
            [
                "https://abc123.r2.cloudflarestorage.com/sfd",
                "https://sfd.abc123.r2.cloudflarestorage.com"
            ]
        );
    }

    #[test]
    fn owners_map_by_name_and_uuids_pass_through() {
        let a = UserId(uuid::Uuid::from_u128(1));
        let b = UserId(uuid::Uuid::from_u128(2));
        let map = OwnerMap::parse(format!(r#"{{"alice": "{a}", "10000": "{a}"}}"#).as_bytes())
            .unwrap()
            .with_default_owner(b);
        assert_eq!(map.resolve("alice"), Some(OwnerTarget::Mapped(a)));
        assert_eq!(map.resolve("10000"), Some(OwnerTarget::Mapped(b)));
        assert_eq!(map.resolve(&a.to_string()), Some(OwnerTarget::Direct(a)));
        assert_eq!(map.resolve("bob"), None);
        assert_eq!(map.users(), vec![a, b]);
        assert_eq!(
            map.entries(),
            vec![("10000".to_owned(), b), ("alice".to_owned(), a)]
        );
        let e = OwnerMap::parse(br#"{"alice": "nope"}"#).unwrap_err();
        assert!(e.to_string().contains("\"alice\" maps to \"nope\""), "{e}");
        assert!(OwnerMap::parse(b"[]").is_err());
    }

    #[test]
    fn the_old_demo_user_is_the_default_owner_unless_the_map_names_it() {
        let demo = "a1111111-1111-1111-1111-111111111111";
        let owner = UserId(uuid::Uuid::from_u128(2));
        let defaulted = OwnerMap::default().with_default_owner(owner);
        for spelling in [demo, " A1111111-1111-1111-1111-111111111111 "] {
            assert_eq!(
                defaulted.resolve(spelling),
                Some(OwnerTarget::Mapped(owner))
            );
        }
        // Without --owner it is a user id like any other.
        let demo_id: UserId = demo.parse().unwrap();
        assert_eq!(
            OwnerMap::default().resolve(demo),
            Some(OwnerTarget::Direct(demo_id))
        );
        // An operator who keeps it maps it to itself (in any spelling).
        let kept =
            OwnerMap::parse(format!(r#"{{"{}": "{demo}"}}"#, demo.to_uppercase()).as_bytes())
                .unwrap()
                .with_default_owner(owner);
        assert_eq!(kept.resolve(demo), Some(OwnerTarget::Mapped(demo_id)));
        assert_eq!(kept.resolve("10000"), Some(OwnerTarget::Mapped(owner)));
    }
}
