//! The old server's file formats: `dramas/{id}/drama.json` and `dramas/index.json`.
//!
//! Files are written as the old server wrote them: 2-space indent, every field present (nulls
//! and empty lists included), fields in the old model's order, snake_case, and every character
//! outside ASCII escaped as `\uXXXX` (Python's `json.dumps` default). A drama file also carries
//! its owner as `user_id`, which the old server ignores and the import reads back.

use std::collections::BTreeMap;
use std::io;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use drama_domain::{Asset, AssetKind, Drama, UserId};
use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};
use serde_json::{Map, Value};

use crate::parse::OWNER_KEY;

/// Version number the old index carries.
pub const INDEX_VERSION: u32 = 1;

/// A pretty formatter (2 spaces) that escapes everything outside ASCII.
struct OldFormatter<'a> {
    pretty: PrettyFormatter<'a>,
}

impl OldFormatter<'_> {
    fn new() -> Self {
        Self {
            pretty: PrettyFormatter::with_indent(b"  "),
        }
    }
}

impl Formatter for OldFormatter<'_> {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if c.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        self.pretty.write_char_escape(writer, escape)
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_array(writer)
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array(writer)
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_array_value(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(writer)
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object(writer)
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object(writer)
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.pretty.begin_object_key(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(writer)
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.pretty.end_object_value(writer)
    }
}

fn to_old_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(16 * 1024);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, OldFormatter::new());
    value.serialize(&mut ser)?;
    Ok(out)
}

#[derive(Serialize)]
struct DramaFile<'a> {
    #[serde(flatten)]
    drama: &'a Drama,
    #[serde(rename = "user_id")]
    owner: String,
}

/// The old `drama.json` of `drama`, owned by `owner`.
///
/// # Errors
/// Only if a `metadata` value cannot be serialised, which a parsed drama never has.
pub fn drama_file(drama: &Drama, owner: UserId) -> Result<Vec<u8>, serde_json::Error> {
    debug_assert_eq!(OWNER_KEY, "user_id");
    to_old_json(&DramaFile {
        drama,
        owner: owner.to_string(),
    })
}

/// The drama as the old model can read it, and what had to change for that: the old model
/// knows assets of kind `image` and `video` only and refuses the whole drama for any other
/// (its server then answers 404 for it), so audio assets are left out, each named in the
/// returned repairs. The drama itself (the database) keeps them.
pub fn for_old_model(drama: &Drama) -> (Drama, Vec<String>) {
    let mut out = drama.clone();
    let mut repairs = Vec::new();
    let mut strip = |path: String, assets: &mut Vec<Asset>| {
        assets.retain(|a| {
            let readable = matches!(a.kind, AssetKind::Image | AssetKind::Video);
            if !readable {
                repairs.push(format!(
                    "{path}: {} asset {:?} left out (the old model reads image and video \
                     assets only); the database keeps it",
                    a.kind.as_str(),
                    a.id.as_str()
                ));
            }
            readable
        });
    };
    strip("assets".to_owned(), &mut out.assets);
    for (c, character) in out.characters.iter_mut().enumerate() {
        strip(format!("characters[{c}].assets"), &mut character.assets);
    }
    for (e, episode) in out.episodes.iter_mut().enumerate() {
        strip(format!("episodes[{e}].assets"), &mut episode.assets);
        for (n, scene) in episode.scenes.iter_mut().enumerate() {
            strip(
                format!("episodes[{e}].scenes[{n}].assets"),
                &mut scene.assets,
            );
        }
    }
    (out, repairs)
}

/// One entry of `dramas/index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Drama id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Logline.
    pub description: String,
    /// Premise.
    pub premise: String,
    /// Cover URL.
    pub url: Option<String>,
    /// Creation time, when known.
    pub created_at: Option<DateTime<Utc>>,
    /// Last save, when known.
    pub updated_at: Option<DateTime<Utc>>,
}

impl IndexEntry {
    /// The entry of a stored drama.
    pub fn of(drama: &Drama, created_at: DateTime<Utc>, updated_at: DateTime<Utc>) -> Self {
        Self {
            id: drama.id.to_string(),
            title: drama.title.clone(),
            description: drama.description.clone(),
            premise: drama.premise.clone(),
            url: drama.url.clone(),
            created_at: Some(created_at),
            updated_at: Some(updated_at),
        }
    }
}

fn text(m: &Map<String, Value>, k: &str) -> Option<String> {
    m.get(k).and_then(Value::as_str).map(str::to_owned)
}

fn time(m: &Map<String, Value>, k: &str) -> Option<DateTime<Utc>> {
    m.get(k).and_then(Value::as_str).and_then(parse_timestamp)
}

impl IndexEntry {
    /// The entry of drama `id` read leniently from an index entry or a drama file: missing
    /// text is empty, a missing url or time is `None`.
    fn lenient(id: String, m: &Map<String, Value>) -> Self {
        Self {
            id,
            title: text(m, "title").unwrap_or_default(),
            description: text(m, "description").unwrap_or_default(),
            premise: text(m, "premise").unwrap_or_default(),
            url: text(m, "url"),
            created_at: time(m, "created_at"),
            updated_at: time(m, "updated_at"),
        }
    }

    /// The entry of the drama file of `id`, from its raw fields whether or not the old model
    /// accepts it (as the old server's index rebuild did); `None` when it is not a JSON object
    /// of that id.
    pub fn of_file(id: &str, bytes: &[u8]) -> Option<Self> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let Ok(Value::Object(file)) = serde_json::from_slice::<Value>(bytes) else {
            return None;
        };
        (text(&file, "id").as_deref() == Some(id)).then(|| Self::lenient(id.to_owned(), &file))
    }
}

/// Whether a drama file names `owner` as its owner (`user_id`, as the export writes it).
pub fn names_owner(bytes: &[u8], owner: UserId) -> bool {
    exported_owner(bytes) == Some(owner)
}

/// The owner an export wrote into a drama file: its `user_id` as a user UUID. The old server
/// never writes one (it drops `user_id` when it saves; its own owners are names or `10000`),
/// so a file naming a UUID is one an export wrote and the old server has not saved since.
pub fn exported_owner(bytes: &[u8]) -> Option<UserId> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v.get(OWNER_KEY).and_then(Value::as_str).map(str::to_owned))
        .and_then(|u| u.trim().parse::<UserId>().ok())
}

/// `dramas/index.json`: the list of dramas the old server shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LegacyIndex {
    /// When the index was last written, when known.
    pub updated_at: Option<DateTime<Utc>>,
    /// Entries by drama id.
    pub dramas: BTreeMap<String, IndexEntry>,
}

/// The old timestamp format: UTC, microseconds, a literal `Z`.
pub fn old_timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Reads a timestamp the old server (or Python's `isoformat`) wrote: RFC 3339 with `Z` or an
/// offset, or naive (taken as UTC).
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
}

impl LegacyIndex {
    /// Reads an index. Entries are read leniently (only the id is needed; it falls back to the
    /// entry's key); an entry without any id is left out.
    ///
    /// # Errors
    /// The reason, when the bytes are not JSON or not an index at all.
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let Value::Object(top) = value else {
            return Err("not a JSON object".to_owned());
        };
        let entries: Vec<(Option<String>, &Map<String, Value>)> = match top.get("dramas") {
            Some(Value::Object(map)) => map
                .iter()
                .filter_map(|(k, v)| v.as_object().map(|o| (Some(k.clone()), o)))
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_object().map(|o| (None, o)))
                .collect(),
            Some(_) => return Err("\"dramas\" is neither an object nor a list".to_owned()),
            None => return Err("no \"dramas\" key".to_owned()),
        };
        let mut dramas = BTreeMap::new();
        for (key, entry) in entries {
            let Some(id) = text(entry, "id").or(key) else {
                continue;
            };
            dramas.insert(id.clone(), IndexEntry::lenient(id, entry));
        }
        Ok(Self {
            updated_at: time(&top, "updated_at"),
            dramas,
        })
    }

    /// The index file, as the old server wrote it.
    ///
    /// # Errors
    /// Never in practice (only strings and numbers are written).
    pub fn to_file(&self, now: DateTime<Utc>) -> Result<Vec<u8>, serde_json::Error> {
        let mut dramas = Map::new();
        for (id, e) in &self.dramas {
            let at = |t: Option<DateTime<Utc>>| Value::String(old_timestamp(t.unwrap_or(now)));
            let mut entry = Map::new();
            entry.insert("id".to_owned(), Value::String(e.id.clone()));
            entry.insert("title".to_owned(), Value::String(e.title.clone()));
            entry.insert(
                "description".to_owned(),
                Value::String(e.description.clone()),
            );
            entry.insert("premise".to_owned(), Value::String(e.premise.clone()));
            entry.insert(
                "url".to_owned(),
                e.url.clone().map_or(Value::Null, Value::String),
            );
            entry.insert("created_at".to_owned(), at(e.created_at));
            entry.insert("updated_at".to_owned(), at(e.updated_at));
            dramas.insert(id.clone(), Value::Object(entry));
        }
        #[derive(Serialize)]
        struct File {
            version: u32,
            updated_at: String,
            count: usize,
            dramas: Map<String, Value>,
        }
        to_old_json(&File {
            version: INDEX_VERSION,
            updated_at: old_timestamp(now),
            count: dramas.len(),
            dramas,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::parse::LegacyDrama;

    const FIXTURE: &str = include_str!("../../../fixtures/legacy-r2/corgi_musk_v5.json");

    #[test]
    fn a_drama_file_has_every_field_in_order_and_reads_back_the_same() {
        let parsed = LegacyDrama::parse(FIXTURE.as_bytes()).unwrap();
        let owner = UserId(uuid::Uuid::from_u128(7));
        let bytes = drama_file(&parsed.drama, owner).unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.is_ascii());
        assert!(
            text.starts_with("{\n  \"id\": \"corgi_musk_v5\",\n  \"title\""),
            "{text:.80}"
        );
        assert!(text.contains("\\u2014"), "non-ASCII is escaped");
        let keys: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("  \"") && !l.starts_with("   "))
            .map(|l| l.trim_start().split('"').nth(1).unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "id",
                "title",
                "description",
                "premise",
                "url",
                "characters",
                "episodes",
                "assets",
                "metadata",
                "user_id"
            ]
        );
        assert!(text.contains("\"voice_description\": \"\""));
        assert!(text.contains("\"metadata\": null"));
        let back = LegacyDrama::parse(&bytes).unwrap();
        assert_eq!(back.drama, parsed.drama);
        assert_eq!(back.owner, owner.to_string());
        assert!(back.defaulted.is_empty());
        assert!(back.kept_extra.is_empty());
    }

    #[test]
    fn astral_characters_become_surrogate_pairs() {
        let mut drama = LegacyDrama::parse(FIXTURE.as_bytes()).unwrap().drama;
        drama.title = "Dog 🐕 é".to_owned();
        let bytes = drama_file(&drama, UserId(uuid::Uuid::nil())).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.contains("Dog \\ud83d\\udc15 \\u00e9"), "{text:.200}");
        assert_eq!(LegacyDrama::parse(&bytes).unwrap().drama.title, "Dog 🐕 é");
    }

    #[test]
    fn the_index_round_trips_in_the_old_shape() {
        let at = parse_timestamp("2025-11-20T07:58:35.123456Z").unwrap();
        let drama = LegacyDrama::parse(FIXTURE.as_bytes()).unwrap().drama;
        let mut index = LegacyIndex::default();
        index
            .dramas
            .insert(drama.id.to_string(), IndexEntry::of(&drama, at, at));
        let bytes = index.to_file(at).unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["version"], 1);
        assert_eq!(value["count"], 1);
        assert_eq!(value["updated_at"], "2025-11-20T07:58:35.123456Z");
        let entry = &value["dramas"]["corgi_musk_v5"];
        assert_eq!(entry["url"], Value::Null);
        assert_eq!(entry["created_at"], "2025-11-20T07:58:35.123456Z");
        let back = LegacyIndex::parse(&bytes).unwrap();
        assert_eq!(back.dramas, index.dramas);
    }

    #[test]
    fn lenient_index_reading() {
        let index = LegacyIndex::parse(
            br#"{"dramas": {"a": {"title": "A", "created_at": "2025-01-02T03:04:05.000006"},
                             "b": {"id": "b", "updated_at": "2025-01-02T03:04:05+02:00"},
                             "c": 3}}"#,
        )
        .unwrap();
        assert_eq!(index.dramas.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            index.dramas["a"].created_at.unwrap().to_rfc3339(),
            "2025-01-02T03:04:05.000006+00:00"
        );
        assert_eq!(
            index.dramas["b"].updated_at.unwrap().to_rfc3339(),
            "2025-01-02T01:04:05+00:00"
        );
        let listed =
            LegacyIndex::parse(br#"{"dramas": [{"id": "x"}, {"title": "no id"}]}"#).unwrap();
        assert_eq!(listed.dramas.keys().collect::<Vec<_>>(), ["x"]);
        assert!(LegacyIndex::parse(b"{}").unwrap_err().contains("dramas"));
        assert!(
            LegacyIndex::parse(b"nope")
                .unwrap_err()
                .starts_with("not JSON")
        );
    }
}
