//! Tolerant reading of an old `drama.json`.
//!
//! Old files vary: older ones lack fields the model gained later (`voice_description`), some
//! carry keys the model never had, some repeat an asset (the old server appended a new record
//! each time a portrait or cover was regenerated). The reader
//!
//! - gives every missing field that has a default its default, and says which ones it filled;
//! - moves unknown keys of an entity into that entity's `metadata`, under [`EXTRA_KEY`];
//! - keeps only the last of several assets that share an id within one list (the newest
//!   regeneration; its object was written over the older ones in place);
//! - takes the owner from a top-level `user_id` (absent: the old default user `10000`);
//! - sets a URL field over [`drama_domain::MAX_URL_CHARS`] (a pasted `data:` URI) to null;
//! - refuses what it cannot repair (not JSON, a required field missing, a value of the wrong
//!   type, a broken model rule) with the path of the offending field.

use std::collections::HashMap;

use drama_domain::{DomainError, Drama, OLD_DEFAULT_OWNER};
use serde_json::{Map, Value};

/// Key, inside an entity's `metadata`, that holds the entity's unknown keys.
pub const EXTRA_KEY: &str = "legacy_extra";

/// Key, inside `metadata`, that holds an old `metadata` that was not an object when unknown
/// keys had to be added next to it.
pub const PREVIOUS_METADATA_KEY: &str = "legacy_metadata";

/// Top-level key naming the drama's owner in the old layout (written by the export).
pub const OWNER_KEY: &str = "user_id";

/// What a missing field becomes.
#[derive(Clone, Copy)]
enum Fallback {
    /// No default: the file is refused.
    Required,
    /// `null`.
    Null,
    /// `[]`.
    EmptyList,
    /// `""`.
    EmptyText,
    /// `false`.
    False,
}

impl Fallback {
    fn value(self) -> Option<Value> {
        match self {
            Self::Required => None,
            Self::Null => Some(Value::Null),
            Self::EmptyList => Some(Value::Array(Vec::new())),
            Self::EmptyText => Some(Value::String(String::new())),
            Self::False => Some(Value::Bool(false)),
        }
    }
}

type Spec = &'static [(&'static str, Fallback)];

use Fallback::{EmptyList, EmptyText, False, Null, Required};

/// The fields of each entity, in the old model's order, with their defaults.
const DRAMA: Spec = &[
    ("id", Required),
    ("title", Required),
    ("description", Required),
    ("premise", Required),
    ("url", Null),
    ("characters", EmptyList),
    ("episodes", EmptyList),
    ("assets", EmptyList),
    ("metadata", Null),
];
const CHARACTER: Spec = &[
    ("id", Required),
    ("name", Required),
    ("description", Required),
    ("gender", Required),
    ("voice_description", EmptyText),
    ("main", False),
    ("url", Null),
    ("premise_url", Null),
    ("assets", EmptyList),
    ("metadata", Null),
];
const EPISODE: Spec = &[
    ("id", Required),
    ("title", Required),
    ("description", Required),
    ("premise", Null),
    ("url", Null),
    ("scenes", EmptyList),
    ("assets", EmptyList),
    ("metadata", Null),
];
const SCENE: Spec = &[
    ("id", Required),
    ("description", Required),
    ("image_url", Null),
    ("video_url", Null),
    ("assets", EmptyList),
    ("metadata", Null),
];
const ASSET: Spec = &[
    ("id", Required),
    ("kind", Required),
    ("depends_on", EmptyList),
    ("prompt", Required),
    ("duration", Null),
    ("url", Null),
    ("metadata", Null),
];

/// The defaults, as documented (`docs/MIGRATION.md` prints this table).
pub fn documented_defaults() -> Vec<(String, &'static str)> {
    let mut out = Vec::new();
    for (entity, spec) in [
        ("drama", DRAMA),
        ("character", CHARACTER),
        ("episode", EPISODE),
        ("scene", SCENE),
        ("asset", ASSET),
    ] {
        for (field, fallback) in spec {
            let shown = match fallback {
                Required => "required (the file is refused)",
                Null => "null",
                EmptyList => "[]",
                EmptyText => "\"\"",
                False => "false",
            };
            out.push((format!("{entity}.{field}"), shown));
        }
    }
    out
}

/// An old file, read and repaired.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyDrama {
    /// The drama, valid under the current model.
    pub drama: Drama,
    /// The owner as the file names it (`10000` when it names none).
    pub owner: String,
    /// Whether the file names an owner (a non-blank `user_id`).
    pub names_owner: bool,
    /// Paths of the fields that were missing (or `null` where the model allows no null) and
    /// took their default, e.g. `characters[0].voice_description`.
    pub defaulted: Vec<String>,
    /// Paths of the unknown keys kept in `metadata`, e.g. `episodes[1].mood`.
    pub kept_extra: Vec<String>,
    /// Other repairs, in words.
    pub repairs: Vec<String>,
}

/// Why an old file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyFileError {
    /// The bytes are not JSON.
    #[error("not JSON: {0}")]
    NotJson(String),
    /// The JSON does not describe a drama (a required field is missing, a value has the wrong
    /// type, or a model rule is broken); names the field.
    #[error("{0}")]
    Invalid(DomainError),
}

impl LegacyDrama {
    /// Reads an old `drama.json`.
    ///
    /// # Errors
    /// [`LegacyFileError`] naming what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Self, LegacyFileError> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| LegacyFileError::NotJson(e.to_string()))?;
        let Value::Object(mut top) = value else {
            return Err(LegacyFileError::Invalid(DomainError::field(
                "",
                format!("expected a JSON object, found {}", kind_of(&value)),
            )));
        };
        let mut notes = Notes::default();
        // A blank owner is no owner: the old server's default user, as for a missing one.
        let names_owner = top.get(OWNER_KEY).is_some_and(|v| match v {
            Value::Null => false,
            Value::String(s) => !s.trim().is_empty(),
            _ => true,
        });
        let owner = match top.remove(OWNER_KEY) {
            None | Some(Value::Null) => OLD_DEFAULT_OWNER.to_owned(),
            Some(Value::String(s)) if s.trim().is_empty() => {
                notes.repairs.push(format!(
                    "{OWNER_KEY} is blank; the old default owner {OLD_DEFAULT_OWNER} applies"
                ));
                OLD_DEFAULT_OWNER.to_owned()
            }
            Some(Value::String(s)) => s.trim().to_owned(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => {
                return Err(LegacyFileError::Invalid(DomainError::field(
                    OWNER_KEY,
                    format!(
                        "expected a user id (text or number), found {}",
                        kind_of(&other)
                    ),
                )));
            }
        };
        notes.entity(&mut top, DRAMA, "");
        for (list, spec) in [("characters", CHARACTER), ("episodes", EPISODE)] {
            notes.each(&mut top, list, "", spec);
        }
        if let Some(Value::Array(episodes)) = top.get_mut("episodes") {
            for (i, episode) in episodes.iter_mut().enumerate() {
                if let Value::Object(episode) = episode {
                    notes.each(episode, "scenes", &format!("episodes[{i}]"), SCENE);
                }
            }
        }
        notes.assets_everywhere(&mut top);
        let mut doc = Value::Object(top);
        // A URL over the bound every client write is held to is not a link anyone can use
        // (a pasted data URI, a corrupt field), and kept it would make every read of the
        // drama carry it; refusing the file would lose the whole drama at the cutover for one
        // unusable field. The field becomes null (every URL field may be), and says so.
        notes.drop_long_urls(&mut doc, "", "");
        let drama: Drama = DomainError::from_value(doc).map_err(LegacyFileError::Invalid)?;
        drama.validate().map_err(LegacyFileError::Invalid)?;
        // The bounds every write holds a drama to, far above what the old server's dramas
        // hold (a handful of characters, a dozen episodes of under ten scenes): a file over
        // them is not a drama a person wrote, and would make every read of it huge.
        drama.check_size().map_err(LegacyFileError::Invalid)?;
        Ok(Self {
            drama,
            owner,
            names_owner,
            defaulted: notes.defaulted,
            kept_extra: notes.kept_extra,
            repairs: notes.repairs,
        })
    }
}

/// `characters[3].voice_description` → `characters[].voice_description`: the field without the
/// positions, for counting across dramas.
pub fn field_pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Whether a URL is over [`drama_domain::MAX_URL_CHARS`] (counting stops one past it).
fn too_long(url: &str) -> bool {
    url.chars().take(drama_domain::MAX_URL_CHARS + 1).count() > drama_domain::MAX_URL_CHARS
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

#[derive(Default)]
struct Notes {
    defaulted: Vec<String>,
    kept_extra: Vec<String>,
    repairs: Vec<String>,
}

impl Notes {
    /// Sets every URL field over [`drama_domain::MAX_URL_CHARS`] to null, as
    /// [`drama_domain::long_urls`] finds them (`metadata` is not looked into).
    fn drop_long_urls(&mut self, value: &mut Value, path: &str, key: &str) {
        match value {
            Value::String(s) if drama_domain::is_url_field(key) && too_long(s) => {
                self.repairs.push(format!(
                    "{path}: a URL of {} characters (over {}) set to null",
                    s.chars().count(),
                    drama_domain::MAX_URL_CHARS
                ));
                *value = Value::Null;
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.drop_long_urls(item, &format!("{path}[{i}]"), key);
                }
            }
            Value::Object(map) => {
                for (name, item) in map.iter_mut() {
                    if name != "metadata" {
                        self.drop_long_urls(item, &join(path, name), name);
                    }
                }
            }
            _ => {}
        }
    }

    /// Fills defaults and moves unknown keys of one entity (not its children).
    fn entity(&mut self, map: &mut Map<String, Value>, spec: Spec, path: &str) {
        let extra_keys: Vec<String> = map
            .keys()
            .filter(|k| !spec.iter().any(|(name, _)| name == k))
            .cloned()
            .collect();
        let mut extra = Map::new();
        for key in extra_keys {
            if let Some(value) = map.remove(&key) {
                self.kept_extra.push(join(path, &key));
                extra.insert(key, value);
            }
        }
        for (field, fallback) in spec {
            let Some(default) = fallback.value() else {
                continue;
            };
            let missing = match map.get(*field) {
                None => true,
                Some(Value::Null) => !default.is_null(),
                Some(_) => false,
            };
            if missing {
                map.insert((*field).to_owned(), default);
                self.defaulted.push(join(path, field));
            }
        }
        if !extra.is_empty() {
            self.keep_extra(map, extra, path);
        }
    }

    /// Puts unknown keys into `metadata.legacy_extra`.
    fn keep_extra(&mut self, map: &mut Map<String, Value>, extra: Map<String, Value>, path: &str) {
        let metadata = map.remove("metadata").unwrap_or(Value::Null);
        let mut metadata = match metadata {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => {
                self.repairs.push(format!(
                    "{}: was {}, not an object; kept under {PREVIOUS_METADATA_KEY} next to the \
                     unknown keys",
                    join(path, "metadata"),
                    kind_of(&other)
                ));
                let mut m = Map::new();
                m.insert(PREVIOUS_METADATA_KEY.to_owned(), other);
                m
            }
        };
        match metadata.get_mut(EXTRA_KEY) {
            Some(Value::Object(existing)) => existing.extend(extra),
            Some(existing) => {
                self.repairs.push(format!(
                    "{}.{EXTRA_KEY}: was {}, replaced by the unknown keys",
                    join(path, "metadata"),
                    kind_of(existing)
                ));
                *existing = Value::Object(extra);
            }
            None => {
                metadata.insert(EXTRA_KEY.to_owned(), Value::Object(extra));
            }
        }
        map.insert("metadata".to_owned(), Value::Object(metadata));
    }

    /// Applies `entity` to every object of the list `list` of `map`.
    fn each(&mut self, map: &mut Map<String, Value>, list: &str, path: &str, spec: Spec) {
        if let Some(Value::Array(items)) = map.get_mut(list) {
            for (i, item) in items.iter_mut().enumerate() {
                if let Value::Object(item) = item {
                    self.entity(item, spec, &format!("{}[{i}]", join(path, list)));
                }
            }
        }
    }

    /// Fills asset defaults and drops earlier duplicates in every asset list of the drama.
    fn assets_everywhere(&mut self, top: &mut Map<String, Value>) {
        self.assets_of(top, "");
        for list in ["characters", "episodes"] {
            let Some(Value::Array(items)) = top.get_mut(list) else {
                continue;
            };
            for (i, item) in items.iter_mut().enumerate() {
                let Value::Object(item) = item else {
                    continue;
                };
                let path = format!("{list}[{i}]");
                self.assets_of(item, &path);
                if list == "episodes"
                    && let Some(Value::Array(scenes)) = item.get_mut("scenes")
                {
                    for (k, scene) in scenes.iter_mut().enumerate() {
                        if let Value::Object(scene) = scene {
                            self.assets_of(scene, &format!("{path}.scenes[{k}]"));
                        }
                    }
                }
            }
        }
    }

    fn assets_of(&mut self, owner: &mut Map<String, Value>, path: &str) {
        let list_path = join(path, "assets");
        let Some(Value::Array(assets)) = owner.get_mut("assets") else {
            return;
        };
        // Keep the last record of each id, where it stands.
        let mut last: HashMap<String, usize> = HashMap::new();
        for (i, asset) in assets.iter().enumerate() {
            if let Some(id) = asset.get("id").and_then(Value::as_str) {
                last.insert(id.to_owned(), i);
            }
        }
        let mut dropped: Vec<(String, usize)> = Vec::new();
        let mut index = 0;
        assets.retain(|asset| {
            let i = index;
            index += 1;
            match asset.get("id").and_then(Value::as_str) {
                Some(id) if last.get(id).is_some_and(|&keep| keep != i) => {
                    match dropped.iter_mut().find(|(d, _)| d == id) {
                        Some((_, n)) => *n += 1,
                        None => dropped.push((id.to_owned(), 1)),
                    }
                    false
                }
                _ => true,
            }
        });
        for (id, n) in dropped {
            self.repairs.push(format!(
                "{list_path}: {n} earlier record(s) of asset {id:?} dropped, the last one kept"
            ));
        }
        for (j, asset) in assets.iter_mut().enumerate() {
            if let Value::Object(asset) = asset {
                let path = format!("{list_path}[{j}]");
                self.entity(asset, ASSET, &path);
                self.meaningless_duration(asset, &path);
            }
        }
    }

    /// An image or audio asset has no length the model uses, and the old server stored any
    /// number (clients with a non-null integer field sent 0); the schema keeps a duration
    /// positive, so a zero or negative one of such an asset becomes null.
    fn meaningless_duration(&mut self, asset: &mut Map<String, Value>, path: &str) {
        if asset.get("kind").and_then(Value::as_str) == Some("video") {
            return;
        }
        let Some(d) = asset.get("duration").and_then(Value::as_f64) else {
            return;
        };
        if d <= 0.0 {
            self.repairs.push(format!(
                "{}: {d} on an asset that is not a video, set to null",
                join(path, "duration")
            ));
            asset.insert("duration".to_owned(), Value::Null);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::json;

    const FIXTURE: &str = include_str!("../../../fixtures/legacy-r2/corgi_musk_v5.json");

    fn parse(v: Value) -> Result<LegacyDrama, LegacyFileError> {
        LegacyDrama::parse(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn the_fixture_gets_empty_voice_descriptions_and_nothing_else() {
        let parsed = LegacyDrama::parse(FIXTURE.as_bytes()).unwrap();
        assert_eq!(parsed.owner, OLD_DEFAULT_OWNER);
        let n = parsed.drama.characters.len();
        assert!(n > 0);
        let expected: Vec<String> = (0..n)
            .map(|i| format!("characters[{i}].voice_description"))
            .collect();
        assert_eq!(parsed.defaulted, expected);
        assert!(parsed.kept_extra.is_empty());
        assert!(parsed.repairs.is_empty());
        assert!(
            parsed
                .drama
                .characters
                .iter()
                .all(|c| c.voice_description.is_empty())
        );
    }

    #[test]
    fn a_file_over_the_size_bounds_is_refused_naming_the_list() {
        let mut doc: Value = serde_json::from_str(FIXTURE).unwrap();
        let first = doc["episodes"][0]["scenes"][0].clone();
        let scenes: Vec<Value> = (0..=drama_domain::MAX_SCENES_PER_EPISODE)
            .map(|i| {
                let mut scene = first.clone();
                scene["id"] = json!(format!("bulk-{i}"));
                scene["assets"] = json!([]);
                scene
            })
            .collect();
        doc["episodes"][0]["scenes"] = json!(scenes);
        match parse(doc) {
            Err(LegacyFileError::Invalid(e)) => {
                let text = e.to_string();
                assert!(text.contains("episodes[0].scenes"), "{text}");
                assert!(text.contains("at most 200"), "{text}");
            }
            Ok(_) => panic!("a file over the bounds was accepted"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn unknown_keys_move_into_metadata_at_every_level() {
        let parsed = parse(json!({
            "id": "d", "title": "T", "description": "D", "premise": "P", "rating": 5,
            "metadata": {"source": "old"},
            "characters": [{"id": "c", "name": "N", "description": "X", "gender": "f",
                            "voice_description": "v", "age": 3, "metadata": "loose"}],
            "episodes": [{"id": "e", "title": "T", "description": "D",
                          "scenes": [{"id": "s", "description": "S", "mood": "dark",
                                      "assets": [{"id": "a", "kind": "image", "prompt": "p",
                                                  "seed": 7}]}]}]
        }))
        .unwrap();
        assert_eq!(
            parsed.kept_extra,
            [
                "rating",
                "characters[0].age",
                "episodes[0].scenes[0].mood",
                "episodes[0].scenes[0].assets[0].seed"
            ]
        );
        let d = &parsed.drama;
        assert_eq!(
            d.metadata,
            Some(json!({"source": "old", "legacy_extra": {"rating": 5}}))
        );
        assert_eq!(
            d.characters[0].metadata,
            Some(json!({"legacy_extra": {"age": 3}, "legacy_metadata": "loose"}))
        );
        assert_eq!(
            d.episodes[0].scenes[0].metadata,
            Some(json!({"legacy_extra": {"mood": "dark"}}))
        );
        assert_eq!(
            d.episodes[0].scenes[0].assets[0].metadata,
            Some(json!({"legacy_extra": {"seed": 7}}))
        );
        assert_eq!(parsed.repairs.len(), 1, "{:?}", parsed.repairs);
        assert!(parsed.repairs[0].starts_with("characters[0].metadata"));
    }

    #[test]
    fn missing_and_null_fields_take_defaults_and_are_listed() {
        let parsed = parse(json!({
            "id": "d", "title": "T", "description": "D", "premise": "P", "characters": null,
            "episodes": [{"id": "e", "title": "T", "description": "D", "scenes": [
                {"id": "s", "description": "S", "assets": [
                    {"id": "a", "kind": "video", "prompt": "p", "depends_on": null}]}]}]
        }))
        .unwrap();
        assert_eq!(
            parsed.defaulted,
            [
                "url",
                "characters",
                "assets",
                "metadata",
                "episodes[0].premise",
                "episodes[0].url",
                "episodes[0].assets",
                "episodes[0].metadata",
                "episodes[0].scenes[0].image_url",
                "episodes[0].scenes[0].video_url",
                "episodes[0].scenes[0].metadata",
                "episodes[0].scenes[0].assets[0].depends_on",
                "episodes[0].scenes[0].assets[0].duration",
                "episodes[0].scenes[0].assets[0].url",
                "episodes[0].scenes[0].assets[0].metadata",
            ]
        );
        assert!(parsed.drama.characters.is_empty());
    }

    #[test]
    fn duplicate_assets_keep_the_last_record() {
        let parsed = parse(json!({
            "id": "d", "title": "T", "description": "D", "premise": "P",
            "characters": [{"id": "c", "name": "N", "description": "X", "gender": "f",
                "voice_description": "v", "assets": [
                    {"id": "c_portrait", "kind": "image", "prompt": "p", "url": "https://x/1.png"},
                    {"id": "c_audition", "kind": "video", "prompt": "p"},
                    {"id": "c_portrait", "kind": "image", "prompt": "p", "url": "https://x/2.png"},
                    {"id": "c_portrait", "kind": "image", "prompt": "p", "url": "https://x/3.png"}]}]
        }))
        .unwrap();
        let assets = &parsed.drama.characters[0].assets;
        assert_eq!(assets.len(), 2);
        assert_eq!(assets[0].id.as_str(), "c_audition");
        assert_eq!(assets[1].url.as_deref(), Some("https://x/3.png"));
        assert_eq!(
            parsed.repairs,
            [
                "characters[0].assets: 2 earlier record(s) of asset \"c_portrait\" dropped, the last one kept"
            ]
        );
    }

    #[test]
    fn the_owner_comes_from_user_id() {
        let base = json!({"id": "d", "title": "T", "description": "D", "premise": "P"});
        let mut named = base.clone();
        named["user_id"] = json!("alice");
        assert_eq!(parse(named).unwrap().owner, "alice");
        let mut numeric = base.clone();
        numeric["user_id"] = json!(10000);
        assert_eq!(parse(numeric).unwrap().owner, "10000");
        let mut blank = base.clone();
        blank["user_id"] = json!("  ");
        let blank = parse(blank).unwrap();
        assert_eq!(blank.owner, OLD_DEFAULT_OWNER);
        assert!(blank.repairs[0].contains("blank"), "{:?}", blank.repairs);
        let mut bad = base;
        bad["user_id"] = json!([1]);
        let e = parse(bad).unwrap_err();
        assert!(
            e.to_string().starts_with("user_id: expected a user id"),
            "{e}"
        );
    }

    #[test]
    fn what_cannot_be_repaired_is_refused_with_its_field() {
        let e = LegacyDrama::parse(b"<html>nope</html>").unwrap_err();
        assert!(matches!(e, LegacyFileError::NotJson(_)), "{e}");
        let e = LegacyDrama::parse(b"[1, 2]").unwrap_err();
        assert_eq!(e.to_string(), "expected a JSON object, found a list");
        let e = parse(json!({"id": "d", "title": "T", "description": "D"})).unwrap_err();
        assert_eq!(e.to_string(), "premise: missing field `premise`");
        let e = parse(
            json!({"id": "d", "title": "T", "description": "D", "premise": "P",
            "characters": [{"id": "c", "name": "N", "description": "X"}]}),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("characters[0].gender"), "{e}");
        let e = parse(
            json!({"id": "d", "title": "T", "description": "D", "premise": "P",
            "assets": [{"id": "a", "kind": "video", "prompt": "p", "duration": 7}]}),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("assets[0].duration"), "{e}");
    }

    #[test]
    fn a_url_over_its_bound_becomes_null_and_the_rest_is_read() {
        let long = "x".repeat(drama_domain::MAX_URL_CHARS + 1);
        let at_bound = "y".repeat(drama_domain::MAX_URL_CHARS);
        let mut doc: Value = serde_json::from_str(FIXTURE).unwrap();
        doc["episodes"][0]["url"] = Value::String(long.clone());
        doc["episodes"][0]["scenes"][0]["image_url"] = Value::String(format!("data:{long}"));
        doc["characters"][0]["url"] = Value::String(at_bound.clone());
        doc["metadata"] = json!({"thumbnail_url": long});
        let old = parse(doc).unwrap();
        let episode = &old.drama.episodes[0];
        assert_eq!(episode.url, None);
        assert_eq!(episode.scenes[0].image_url, None);
        assert_eq!(
            old.drama.characters[0].url.as_deref(),
            Some(at_bound.as_str())
        );
        assert_eq!(
            old.repairs,
            vec![
                "episodes[0].scenes[0].image_url: a URL of 10006 characters (over 10000) set \
                 to null",
                "episodes[0].url: a URL of 10001 characters (over 10000) set to null",
            ]
        );
        // The rest of the drama is read as it was.
        assert!(!episode.scenes[0].assets.is_empty());
        assert_eq!(
            old.drama.metadata.as_ref().unwrap()["thumbnail_url"]
                .as_str()
                .map(str::len),
            Some(drama_domain::MAX_URL_CHARS + 1)
        );
    }

    #[test]
    fn a_zero_or_negative_duration_of_an_image_or_audio_asset_becomes_null() {
        let old = parse(
            json!({"id": "d", "title": "T", "description": "D", "premise": "P",
            "assets": [{"id": "i", "kind": "image", "prompt": "p", "duration": 0},
                       {"id": "a", "kind": "audio", "prompt": "p", "duration": -3},
                       {"id": "k", "kind": "audio", "prompt": "p", "duration": 4}]}),
        )
        .unwrap();
        let durations: Vec<Option<i32>> = old.drama.assets.iter().map(|a| a.duration).collect();
        assert_eq!(durations, vec![None, None, Some(4)]);
        assert_eq!(
            old.repairs,
            vec![
                "assets[0].duration: 0 on an asset that is not a video, set to null",
                "assets[1].duration: -3 on an asset that is not a video, set to null",
            ]
        );
        // A video's duration is not repaired: it is refused by its rule.
        let e = parse(
            json!({"id": "d", "title": "T", "description": "D", "premise": "P",
            "assets": [{"id": "v", "kind": "video", "prompt": "p", "duration": 0}]}),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("assets[0].duration"), "{e}");
    }

    /// Files written by the old server from what a Dart client sent hold `10.0` and `1`, which
    /// its Pydantic read as 10 and `true`: they import, with no repair to report.
    #[test]
    fn integral_floats_and_numeric_flags_import_as_the_old_server_read_them() {
        let old = parse(
            json!({"id": "d", "title": "T", "description": "D", "premise": "P",
            "characters": [{"id": "c", "name": "N", "description": "X", "gender": "f",
                            "voice_description": "v", "main": 1}],
            "assets": [{"id": "v", "kind": "video", "prompt": "p", "duration": 15.0}]}),
        )
        .unwrap();
        assert_eq!(old.drama.assets[0].duration, Some(15));
        assert!(old.drama.characters[0].main);
        assert!(old.repairs.is_empty(), "{:?}", old.repairs);
        let e = parse(
            json!({"id": "d", "title": "T", "description": "D", "premise": "P",
            "assets": [{"id": "v", "kind": "video", "prompt": "p", "duration": 10.5}]}),
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("assets[0].duration"), "{e}");
    }

    #[test]
    fn field_patterns_drop_positions() {
        assert_eq!(
            field_pattern("episodes[12].scenes[0].assets[3].url"),
            "episodes[].scenes[].assets[].url"
        );
        assert_eq!(field_pattern("title"), "title");
    }
}
