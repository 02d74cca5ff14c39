//! Object keys: the one place where keys are built and checked.
//!
//! Layout: `{user_id}/{scope}/{category}/{asset_id}.{ext}`, where the scope is a drama id or
//! `~{project}` for the asset library (`~` cannot occur in a drama id, so a project can never
//! share a drama's prefix), and `ext` follows the real content type.
//!
//! Every key, whoever built it, passes [`ObjectKey::parse`]: at most 1024 bytes; segments
//! separated by single `/`; no leading or trailing `/`; no `.` or `..` segment; and only
//! URL-unreserved characters (`A-Z a-z 0-9 - . _ ~`), so a key never needs percent-encoding,
//! means the same on every backend and cannot climb out of its prefix.

use std::fmt;

use drama_domain::{DramaId, UserId};
use sha2::{Digest as _, Sha256};

use crate::error::AssetError;
use crate::media::{MediaKind, MediaType};

/// Longest key S3 and R2 accept, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest asset id inside a key, in characters (the domain's id limit).
pub const MAX_SEGMENT_CHARS: usize = 128;

/// Longest sanitised user-supplied name (project name), in characters. Short enough that a
/// whole key stays well under the file-name limits of disk-backed S3 servers.
pub const MAX_NAME_CHARS: usize = 64;

/// The characters a project name longer than [`MAX_NAME_CHARS`] keeps before its hash: the
/// segment is then as long as the longest name that fits (`~`, 47, `~`, 16), since S3
/// servers that keep objects on disk name a file after the key (s3s-fs, for one, after its
/// base64) and a longer segment pushes a library key past a file name's 255 bytes.
pub const LONG_NAME_KEPT: usize = 47;

/// What an object is for; the third segment of a built key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Category {
    /// Character portraits (images).
    Portraits,
    /// Character audition videos.
    Auditions,
    /// Scene storyboards (images).
    Storyboards,
    /// Scene video clips.
    Clips,
    /// Drama cover images.
    Covers,
    /// Stitched episode videos.
    Episodes,
    /// Voice lines and other sound.
    Audio,
    /// Reference images supplied by users for generation.
    References,
    /// Asset-library uploads (any accepted type).
    Uploads,
    /// JSON sidecars (e.g. asset-library metadata).
    Metadata,
}

impl Category {
    /// Every category.
    pub const ALL: [Self; 10] = [
        Self::Portraits,
        Self::Auditions,
        Self::Storyboards,
        Self::Clips,
        Self::Covers,
        Self::Episodes,
        Self::Audio,
        Self::References,
        Self::Uploads,
        Self::Metadata,
    ];

    /// The key segment (and settings name) of the category.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Portraits => "portraits",
            Self::Auditions => "auditions",
            Self::Storyboards => "storyboards",
            Self::Clips => "clips",
            Self::Covers => "covers",
            Self::Episodes => "episodes",
            Self::Audio => "audio",
            Self::References => "references",
            Self::Uploads => "uploads",
            Self::Metadata => "metadata",
        }
    }

    /// Parses a key segment or settings name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether objects of this category may have type `media`.
    pub fn accepts(self, media: MediaType) -> bool {
        match self {
            Self::Portraits | Self::Storyboards | Self::Covers | Self::References => {
                media.kind() == MediaKind::Image
            }
            Self::Auditions | Self::Clips | Self::Episodes => media.kind() == MediaKind::Video,
            Self::Audio => media.kind() == MediaKind::Audio,
            Self::Uploads => true,
            Self::Metadata => media == MediaType::Json,
        }
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A checked object key. See the module docs for the rules.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Checks a key.
    ///
    /// # Errors
    /// [`AssetError::InvalidKey`] naming the broken rule.
    pub fn parse(key: impl Into<String>) -> Result<Self, AssetError> {
        let key = key.into();
        check_path(&key, false)?;
        Ok(Self(key))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key as an owned string.
    pub fn into_inner(self) -> String {
        self.0
    }

    /// The category, when the key has the built layout `{user}/{scope}/{category}/{file}`.
    pub fn category(&self) -> Option<Category> {
        let mut parts = self.0.split('/');
        let (_user, _scope, category, _file) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        Category::parse(category)
    }

    /// The extension of the last segment (after its last `.`), if any.
    pub fn extension(&self) -> Option<&str> {
        let file = self.0.rsplit('/').next().unwrap_or_default();
        file.rsplit_once('.')
            .map(|(_, ext)| ext)
            .filter(|e| !e.is_empty())
    }

    /// The type the extension stands for, if it is a known one.
    pub fn media_type(&self) -> Option<MediaType> {
        self.extension().and_then(MediaType::from_extension)
    }

    /// Whether the key lies under `prefix`.
    pub fn is_under(&self, prefix: &KeyPrefix) -> bool {
        self.0.starts_with(prefix.as_str())
    }

    /// Checks that this key can hold an object of type `media`: for keys with the built
    /// layout, the category must accept the type and the extension must be the type's.
    ///
    /// # Errors
    /// [`AssetError::ContentMismatch`].
    pub fn check_media(&self, media: MediaType) -> Result<(), AssetError> {
        let Some(category) = self.category() else {
            return Ok(());
        };
        if !category.accepts(media) {
            return Err(AssetError::ContentMismatch {
                declared: media.mime().to_owned(),
                detail: format!("{category} do not hold {media} objects"),
            });
        }
        let expected = media.extension();
        match self.extension() {
            Some(ext) if ext == expected => Ok(()),
            // Bytes declared as octet-stream make no claim, so any extension may name them.
            _ if media == MediaType::Binary => Ok(()),
            other => Err(AssetError::ContentMismatch {
                declared: media.mime().to_owned(),
                detail: format!(
                    "key {} has extension {:?}, expected {expected:?}",
                    self.0,
                    other.unwrap_or("")
                ),
            }),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for ObjectKey {
    type Err = AssetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A checked key prefix: one or more whole segments followed by `/`. It can never be empty,
/// so "delete everything under a prefix" can never mean the whole bucket.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Checks a prefix (same rules as keys, plus a mandatory trailing `/`).
    ///
    /// # Errors
    /// [`AssetError::InvalidKey`].
    pub fn parse(prefix: impl Into<String>) -> Result<Self, AssetError> {
        let prefix = prefix.into();
        check_path(&prefix, true)?;
        Ok(Self(prefix))
    }

    /// The prefix as text (ends with `/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

fn check_path(path: &str, is_prefix: bool) -> Result<(), AssetError> {
    let what = if is_prefix { "prefix" } else { "key" };
    if path.is_empty() {
        return Err(AssetError::invalid_key(path, format!("{what} is empty")));
    }
    if path.len() > MAX_KEY_BYTES {
        return Err(AssetError::invalid_key(
            path,
            format!(
                "{what} is {} bytes long, the limit is {MAX_KEY_BYTES}",
                path.len()
            ),
        ));
    }
    if let Some(bad) = path.chars().find(|c| !is_key_char(*c)) {
        let reason = match bad {
            '\\' => "backslashes are not allowed".to_owned(),
            c if c.is_control() => format!("control character {c:?} is not allowed"),
            c => format!("character {c:?} is not allowed (keys use A-Z a-z 0-9 - . _ ~ and /)"),
        };
        return Err(AssetError::invalid_key(path, reason));
    }
    if path.starts_with('/') {
        return Err(AssetError::invalid_key(
            path,
            "absolute paths are not allowed (leading '/')",
        ));
    }
    let body = if is_prefix {
        match path.strip_suffix('/') {
            Some(body) => body,
            None => return Err(AssetError::invalid_key(path, "a prefix must end with '/'")),
        }
    } else {
        if path.ends_with('/') {
            return Err(AssetError::invalid_key(path, "a key must not end with '/'"));
        }
        path
    };
    for segment in body.split('/') {
        match segment {
            "" => return Err(AssetError::invalid_key(path, "empty segment ('//')")),
            "." | ".." => {
                return Err(AssetError::invalid_key(
                    path,
                    "'.' and '..' segments are not allowed",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/')
}

/// The second segment of a built key: whose assets these are besides the user.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Scope(String);

impl Scope {
    /// The scope of a drama's generated assets.
    ///
    /// # Errors
    /// [`AssetError::InvalidKey`] for the ids `.` and `..`, which drama ids allow but keys
    /// cannot hold.
    pub fn drama(id: &DramaId) -> Result<Self, AssetError> {
        let s = id.as_str();
        if s.chars().all(|c| c == '.') {
            return Err(AssetError::invalid_key(
                s,
                "a drama id made only of dots cannot be part of a key",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The scope of an asset-library project, from the user's project name. The name is
    /// sanitised with [`sanitize_name`] and prefixed with `~`. A name with no ASCII letter
    /// or digit (`短剧`, an emoji, `!!!`, empty), which the old server accepted (it stored
    /// such a project under an empty segment), gets `~_` and the first 16 hex digits of the
    /// SHA-256 of the trimmed name: the same scope for the same name every time, and never one
    /// a sanitised name takes (those never start with `_`).
    ///
    /// A name whose sanitised form is longer than [`MAX_NAME_CHARS`] keeps its first
    /// [`LONG_NAME_KEPT`] characters and gets `~` and the first 16 hex digits of the SHA-256
    /// of the whole sanitised form appended (`~{first 47}~{hex}`, 65 characters like the
    /// longest name that fits): two long names that share their beginning stay two projects, and no name that fits takes such a scope (a sanitised name holds no
    /// `~`). Names that differ only where sanitising erases the difference (case,
    /// punctuation) share a project, long or short. The library routes and the legacy
    /// library import both name projects through this function alone.
    ///
    /// # Errors
    /// None today; kept so that a future rule can refuse a name.
    pub fn project(name: &str) -> Result<Self, AssetError> {
        let hex16 = |text: &str| hex::encode(&Sha256::digest(text.as_bytes())[..8]);
        Ok(Self(match sanitize_name(name) {
            Ok(clean) => {
                let whole = sanitize_uncut(name);
                if whole == clean {
                    format!("~{clean}")
                } else {
                    // Every cleaned name is ASCII, so a byte cut is a character cut.
                    format!(
                        "~{}~{}",
                        clean.get(..LONG_NAME_KEPT).unwrap_or(&clean),
                        hex16(&whole)
                    )
                }
            }
            Err(_) => format!("~_{}", hex16(name.trim())),
        }))
    }

    /// The segment as it appears in keys.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Builds the key of an asset: `{user}/{scope}/{category}/{asset_id}.{ext}` with the
/// extension of `media`, which should be the type detected from the bytes.
///
/// # Errors
/// [`AssetError::InvalidKey`] when `asset_id` is not 1–128 characters of `[A-Za-z0-9_.-]`;
/// [`AssetError::ContentMismatch`] when the category does not hold this type (a video among
/// portraits).
pub fn asset_key(
    user: UserId,
    scope: &Scope,
    category: Category,
    asset_id: &str,
    media: MediaType,
) -> Result<ObjectKey, AssetError> {
    check_asset_id(asset_id)?;
    let key = ObjectKey::parse(format!(
        "{user}/{}/{}/{asset_id}.{}",
        scope.as_str(),
        category.as_str(),
        media.extension()
    ))?;
    key.check_media(media)?;
    Ok(key)
}

/// Everything a user owns: `{user}/`.
pub fn user_prefix(user: UserId) -> KeyPrefix {
    KeyPrefix(format!("{user}/"))
}

/// Everything of one drama or project: `{user}/{scope}/`.
pub fn scope_prefix(user: UserId, scope: &Scope) -> KeyPrefix {
    KeyPrefix(format!("{user}/{}/", scope.as_str()))
}

/// One category of a drama or project: `{user}/{scope}/{category}/`.
pub fn category_prefix(user: UserId, scope: &Scope, category: Category) -> KeyPrefix {
    KeyPrefix(format!("{user}/{}/{}/", scope.as_str(), category.as_str()))
}

fn check_asset_id(id: &str) -> Result<(), AssetError> {
    if id.is_empty() {
        return Err(AssetError::invalid_key(id, "asset id is empty"));
    }
    if let Some(bad) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(AssetError::invalid_key(
            id,
            format!("asset id may only use A-Z a-z 0-9 _ . -, found {bad:?}"),
        ));
    }
    if id.len() > MAX_SEGMENT_CHARS {
        return Err(AssetError::invalid_key(
            id,
            format!("asset id is longer than {MAX_SEGMENT_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Turns a name typed by a user (a project name) into a key segment: ASCII letters and
/// digits lowercased, `-` kept, everything else (dots, slashes, spaces, non-ASCII look-alikes)
/// becomes `_`; runs of `_` collapse; `_` and `-` are trimmed from both ends; the result is
/// cut to [`MAX_NAME_CHARS`].
///
/// # Errors
/// [`AssetError::InvalidKey`] when nothing is left (the name had no letter or digit).
pub fn sanitize_name(raw: &str) -> Result<String, AssetError> {
    let mut out = String::with_capacity(raw.len().min(MAX_NAME_CHARS));
    for c in raw.chars() {
        let mapped = name_char(c);
        if mapped == '_' && out.ends_with('_') {
            continue;
        }
        out.push(mapped);
        if out.len() > MAX_NAME_CHARS * 2 {
            break;
        }
    }
    let trimmed: String = out
        .trim_matches(|c| c == '_' || c == '-')
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    let trimmed = trimmed.trim_end_matches(['_', '-']).to_owned();
    if !trimmed.chars().any(|c| c.is_ascii_alphanumeric()) {
        return Err(AssetError::invalid_key(
            raw,
            "name has no letter or digit left after sanitising",
        ));
    }
    Ok(trimmed)
}

/// What [`sanitize_name`] makes of one character.
fn name_char(c: char) -> char {
    if c.is_ascii_alphanumeric() {
        c.to_ascii_lowercase()
    } else if c == '-' {
        '-'
    } else {
        '_'
    }
}

/// The whole sanitised name, uncut: what [`sanitize_name`] cuts (and stops reading after
/// [`MAX_NAME_CHARS`] twice over).
fn sanitize_uncut(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        let mapped = name_char(c);
        if mapped == '_' && out.ends_with('_') {
            continue;
        }
        out.push(mapped);
    }
    out.trim_matches(|c| c == '_' || c == '-').to_owned()
}

/// Cleans an uploaded file's original name for display and metadata (it never becomes part
/// of a key): like [`sanitize_name`] but keeping one `.` before the extension. Returns
/// `None` when nothing usable is left.
pub fn sanitize_filename(raw: &str) -> Option<String> {
    // Only the last path component counts, whichever separator the client used.
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let (stem, ext) = match base.rsplit_once('.') {
        Some((stem, ext)) if !stem.trim_matches('.').is_empty() => (stem, Some(ext)),
        _ => (base, None),
    };
    let stem = sanitize_name(stem).ok()?;
    let ext = ext.and_then(|e| sanitize_name(e).ok()).map(|e| {
        let e: String = e.chars().take(16).collect();
        e.replace(['_', '-'], "")
    });
    match ext {
        Some(e) if !e.is_empty() => Some(format!("{stem}.{e}")),
        _ => Some(stem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserId {
        UserId(uuid::Uuid::from_u128(0x1234))
    }

    #[test]
    fn builds_the_documented_layout() {
        let drama = DramaId::parse("drama_abc").unwrap();
        let key = asset_key(
            user(),
            &Scope::drama(&drama).unwrap(),
            Category::Portraits,
            "char-corgi",
            MediaType::Png,
        )
        .unwrap();
        assert_eq!(
            key.as_str(),
            "00000000-0000-0000-0000-000000001234/drama_abc/portraits/char-corgi.png"
        );
        assert_eq!(key.category(), Some(Category::Portraits));
        assert_eq!(key.media_type(), Some(MediaType::Png));
        assert!(key.is_under(&scope_prefix(user(), &Scope::drama(&drama).unwrap())));
        let clip = asset_key(
            user(),
            &Scope::drama(&drama).unwrap(),
            Category::Clips,
            "ep1-sc1",
            MediaType::QuickTime,
        )
        .unwrap();
        assert!(clip.as_str().ends_with("/clips/ep1-sc1.mov"));
    }

    #[test]
    fn the_category_must_hold_the_type() {
        let scope = Scope::drama(&DramaId::parse("d").unwrap()).unwrap();
        let err = asset_key(user(), &scope, Category::Portraits, "a", MediaType::Mp4).unwrap_err();
        assert!(matches!(err, AssetError::ContentMismatch { .. }), "{err}");
        assert!(asset_key(user(), &scope, Category::Uploads, "a", MediaType::Mp4).is_ok());
        assert!(asset_key(user(), &scope, Category::Metadata, "a", MediaType::Text).is_err());
    }

    #[test]
    fn rejects_each_broken_rule_with_a_reason() {
        let cases = [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("a/../b", "'..'"),
            ("./a", "'.'"),
            ("a//b", "empty segment"),
            ("a/b/", "end with"),
            ("a\\b", "backslash"),
            ("a\u{0}b", "control"),
            ("a\nb", "control"),
            ("a b", "not allowed"),
            ("a/\u{ff0f}b", "not allowed"),
            ("caf\u{e9}", "not allowed"),
        ];
        for (key, reason) in cases {
            let err = ObjectKey::parse(key).unwrap_err();
            assert!(err.to_string().contains(reason), "{key:?}: {err}");
        }
        let long = "a".repeat(MAX_KEY_BYTES + 1);
        assert!(
            ObjectKey::parse(long)
                .unwrap_err()
                .to_string()
                .contains("1025 bytes")
        );
        assert!(ObjectKey::parse("a".repeat(MAX_KEY_BYTES)).is_ok());
        assert!(KeyPrefix::parse("a/b").is_err());
        assert!(KeyPrefix::parse("/").is_err());
        assert!(KeyPrefix::parse("a/b/").is_ok());
    }

    #[test]
    fn malicious_names_stay_inside_their_prefix() {
        let names = [
            "../../etc/passwd",
            "a/../../b",
            "..",
            ".",
            "..\\..\\windows",
            "\u{ff0e}\u{ff0e}\u{ff0f}\u{ff0e}\u{ff0e}\u{ff0f}etc",
            "\u{2025}/x",
            "evil\u{202e}gnp.exe",
            "zero\u{200b}width",
            "/absolute/path",
            "C:\\Windows\\System32",
            "%2e%2e%2f%2e%2e%2f",
            &"x/".repeat(1024),
        ];
        for name in names {
            let Ok(scope) = Scope::project(name) else {
                continue;
            };
            let prefix = scope_prefix(user(), &scope);
            let key = asset_key(user(), &scope, Category::Uploads, "id1", MediaType::Png).unwrap();
            assert!(key.is_under(&prefix), "{name:?} -> {key}");
            assert_eq!(key.as_str().matches('/').count(), 3, "{name:?} -> {key}");
            assert!(!key.as_str().contains(".."), "{name:?} -> {key}");
        }
        for id in ["../x", "a/b", "..\\x", "x\u{0}", &"y".repeat(2048)] {
            let scope = Scope::project("p").unwrap();
            assert!(
                asset_key(user(), &scope, Category::Uploads, id, MediaType::Png).is_err(),
                "{id:?}"
            );
        }
        assert!(Scope::drama(&DramaId::parse("..").unwrap()).is_err());
    }

    #[test]
    fn sanitises_names() {
        assert_eq!(sanitize_name("My Project!").unwrap(), "my_project");
        assert_eq!(sanitize_name("  ../Über--Ding__ ").unwrap(), "ber--ding");
        assert_eq!(
            sanitize_name(&"a".repeat(2048)).unwrap().len(),
            MAX_NAME_CHARS
        );
        assert!(sanitize_name("../..").is_err());
        assert!(sanitize_name("").is_err());
    }

    #[test]
    fn project_names_without_a_letter_or_digit_get_a_scope_of_their_own() {
        let drama = Scope::project("短剧").unwrap();
        assert!(drama.as_str().starts_with("~_"), "{drama:?}");
        assert_eq!(drama.as_str().len(), 2 + 16);
        assert_eq!(Scope::project(" 短剧 ").unwrap(), drama, "trimmed, stable");
        let others = ["🎬", "!!!", "", "電影"].map(|n| Scope::project(n).unwrap());
        for (i, a) in others.iter().enumerate() {
            assert_ne!(a, &drama);
            assert!(others[i + 1..].iter().all(|b| b != a), "{a:?}");
        }
        let user = UserId::random();
        let key = asset_key(user, &drama, Category::Uploads, "f", MediaType::Png).unwrap();
        assert!(ObjectKey::parse(key.as_str()).is_ok(), "{key}");
        assert_eq!(
            Scope::project("My Project!").unwrap().as_str(),
            "~my_project"
        );
        assert_eq!(
            sanitize_filename("C:\\Users\\me\\Photo 1.PNG").as_deref(),
            Some("photo_1.png")
        );
        assert_eq!(
            sanitize_filename("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(sanitize_filename(".bashrc").as_deref(), Some("bashrc"));
        assert_eq!(sanitize_filename("..."), None);
    }

    #[test]
    fn long_project_names_that_share_their_cut_stay_apart() {
        let stem = "Storyboards for the second season of the corgi drama, episodes 1 to";
        let one = Scope::project(&format!("{stem} 12")).unwrap();
        let two = Scope::project(&format!("{stem} 24")).unwrap();
        assert_ne!(one, two, "they used to merge into one project");
        for scope in [&one, &two] {
            let (cut, hash) = scope.as_str()[1..].split_once('~').unwrap();
            assert_eq!(cut, "storyboards_for_the_second_season_of_the_corgi_");
            assert_eq!(hash.len(), 16, "{scope:?}");
            assert_eq!(
                scope.as_str().len(),
                MAX_NAME_CHARS + 1,
                "no longer than one that fits"
            );
        }
        assert_eq!(
            one,
            Scope::project(&format!("  {stem} 12  ")).unwrap(),
            "stable"
        );
        // Past the 128 characters sanitising used to read, too.
        let long = "x".repeat(300);
        assert_ne!(
            Scope::project(&format!("{long}a")).unwrap(),
            Scope::project(&format!("{long}b")).unwrap()
        );
        // Every name that fits keeps its scope, up to the bound itself.
        let fits = "a".repeat(MAX_NAME_CHARS);
        assert_eq!(Scope::project(&fits).unwrap().as_str(), format!("~{fits}"));
        for (name, scope) in [
            ("my-project", "~my-project"),
            ("My Project!", "~my_project"),
            ("  Corgi  Musk v5 ", "~corgi_musk_v5"),
        ] {
            assert_eq!(Scope::project(name).unwrap().as_str(), scope);
        }
        let user = UserId::random();
        let key = asset_key(user, &two, Category::Uploads, "f", MediaType::Png).unwrap();
        assert!(key.is_under(&scope_prefix(user, &two)), "{key}");
        assert_eq!(ObjectKey::parse(key.as_str()).unwrap(), key);
    }

    proptest::proptest! {
        #[test]
        fn any_project_name_yields_a_key_inside_its_prefix(name in "\\PC{0,300}") {
            if let Ok(scope) = Scope::project(&name) {
                let key = asset_key(user(), &scope, Category::Uploads, "a", MediaType::Json).unwrap();
                proptest::prop_assert!(key.is_under(&scope_prefix(user(), &scope)));
                proptest::prop_assert_eq!(key.as_str().split('/').count(), 4);
            }
        }

        #[test]
        fn parse_never_accepts_a_climbing_key(key in "[a./\\\\~-]{0,12}") {
            if let Ok(k) = ObjectKey::parse(key) {
                proptest::prop_assert!(k.as_str().split('/').all(|s| s != ".." && s != "." && !s.is_empty()));
                proptest::prop_assert!(!k.as_str().contains('\\'));
            }
        }
    }
}
