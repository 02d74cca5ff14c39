//! The old server's database as a source: each drama's rows are put back together into the
//! document the old server stored and served (the `drama.json` shape), so that everything
//! after reading — tolerant parsing, defaults, the owner mapping, the decisions, the report —
//! is the same as for a file of the old bucket.

use std::collections::HashSet;

use drama_dal::NewUser;
use drama_dal::legacy_tables::{LegacyDramaRows, LegacyRow};
use drama_domain::{MAX_DISPLAY_NAME, UserId};
use serde_json::{Map, Value};

/// Columns of the old `dramas` table that are bookkeeping, not part of a drama. (`user_id`
/// stays: it names the owner, as in a file written by the export.)
const DRAMA_BOOKKEEPING: [&str; 6] = [
    "created_at",
    "updated_at",
    "version",
    "status",
    "episode_count",
    "cover_url",
];

/// Columns of the child tables that are bookkeeping or say where the row belongs.
const CHILD_BOOKKEEPING: [&str; 7] = [
    "drama_id",
    "user_id",
    "created_at",
    "updated_at",
    "sequence_number",
    "position",
    "is_main",
];

/// The parent columns of an asset row.
const ASSET_PARENTS: [&str; 3] = ["character_id", "episode_id", "scene_id"];

/// A drama's rows as one document, and what had to be repaired to make it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Assembled {
    /// The `drama.json`-shaped document.
    pub(crate) document: Value,
    /// Repairs, for the report.
    pub(crate) repairs: Vec<String>,
}

fn text(row: &LegacyRow, column: &str) -> Option<String> {
    match row.get(column)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn strip(mut row: LegacyRow, columns: &[&str]) -> LegacyRow {
    for column in columns {
        row.remove(*column);
    }
    row
}

/// The drama row: bookkeeping dropped, `cover_url` standing in for a missing `url`, a null
/// or blank `user_id` dropped (the old default owner then applies, as the owner pre-check of
/// `migrate` and the listing of the old dramas already treat it).
fn drama_entity(mut row: LegacyRow) -> LegacyRow {
    let url_missing = row.get("url").is_none_or(Value::is_null);
    if url_missing && let Some(cover) = row.get("cover_url").filter(|v| v.is_string()).cloned() {
        row.insert("url".to_owned(), cover);
    }
    let owner_absent = match row.get("user_id") {
        Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    };
    if owner_absent {
        row.remove("user_id");
    }
    strip(row, &DRAMA_BOOKKEEPING)
}

/// A character row. The old repository wrote and read `is_main`, never `main`, whose
/// column (from the SQL file, `default false`) then holds `false` on every row: a non-null
/// `is_main` is what the old server served, so it wins; `main` counts only where `is_main` is
/// missing or null. A disagreement is noted among the repairs.
fn character_entity(mut row: LegacyRow, repairs: &mut Vec<String>) -> LegacyRow {
    if let Some(flag) = row.get("is_main").and_then(Value::as_bool) {
        if let Some(main) = row.get("main").and_then(Value::as_bool)
            && main != flag
        {
            let id = text(&row, "id").unwrap_or_default();
            repairs.push(format!(
                "character {id:?}: main is {main} but is_main (what the old server read) is \
                 {flag}; took is_main"
            ));
        }
        row.insert("main".to_owned(), Value::Bool(flag));
    }
    strip(row, &CHILD_BOOKKEEPING)
}

/// Puts one drama's rows back together: assets under the character, episode or scene their
/// row names (or on the drama when it names none), scenes under their episode, in the order
/// the rows came in.
pub(crate) fn assemble(rows: LegacyDramaRows) -> Assembled {
    let mut repairs = Vec::new();
    let drama_id = text(&rows.drama, "id").unwrap_or_default();
    let character_ids: HashSet<String> = rows
        .characters
        .iter()
        .filter_map(|c| text(c, "id"))
        .collect();
    let episode_ids: HashSet<String> = rows.episodes.iter().filter_map(|e| text(e, "id")).collect();
    // Only scenes under an episode of this drama come over: the old server read scenes per
    // episode, so one without such an episode was never served, and the new model has no
    // place for a scene outside an episode. An asset naming one stays on the drama.
    let (scenes, orphans): (Vec<LegacyRow>, Vec<LegacyRow>) = rows
        .scenes
        .into_iter()
        .partition(|s| text(s, "episode_id").is_some_and(|episode| episode_ids.contains(&episode)));
    for orphan in orphans {
        let scene_id = text(&orphan, "id").unwrap_or_default();
        repairs.push(match text(&orphan, "episode_id") {
            Some(episode) => format!(
                "scene {scene_id:?}: its episode_id {episode:?} is not an episode of drama \
                 {drama_id:?}; not imported with this drama (it comes over with that episode's \
                 drama, if any)"
            ),
            None => format!(
                "scene {scene_id:?}: it names no episode, and a scene lives in an episode; not \
                 imported"
            ),
        });
    }
    let scene_ids: HashSet<String> = scenes.iter().filter_map(|s| text(s, "id")).collect();

    // Each asset goes to the first parent it names that exists in this drama.
    let mut drama_assets = Vec::new();
    let mut owned: Vec<(&'static str, String, LegacyRow)> = Vec::new();
    for asset in rows.assets {
        let asset_id = text(&asset, "id").unwrap_or_default();
        let mut placed = None;
        for (column, known) in [
            ("character_id", &character_ids),
            ("episode_id", &episode_ids),
            ("scene_id", &scene_ids),
        ] {
            let Some(parent) = text(&asset, column) else {
                continue;
            };
            if known.contains(&parent) {
                placed = Some((column, parent));
                break;
            }
            repairs.push(format!(
                "asset {asset_id:?}: its {column} {parent:?} is not part of drama {drama_id:?}; \
                 kept on the drama"
            ));
        }
        let mut entity = strip(asset, &CHILD_BOOKKEEPING);
        for column in ASSET_PARENTS {
            entity.remove(column);
        }
        match placed {
            Some((column, parent)) => owned.push((column, parent, entity)),
            None => drama_assets.push(Value::Object(entity)),
        }
    }
    let mut take_assets = |column: &str, id: &str| -> Value {
        let mut mine = Vec::new();
        owned.retain(|(c, parent, entity)| {
            if *c == column && parent == id {
                mine.push(Value::Object(entity.clone()));
                false
            } else {
                true
            }
        });
        Value::Array(mine)
    };

    let characters: Vec<Value> = rows
        .characters
        .into_iter()
        .map(|row| {
            let id = text(&row, "id").unwrap_or_default();
            let mut entity = character_entity(row, &mut repairs);
            entity.insert("assets".to_owned(), take_assets("character_id", &id));
            Value::Object(entity)
        })
        .collect();
    let mut scenes_by_episode: Vec<(String, LegacyRow)> = scenes
        .into_iter()
        .map(|row| {
            let episode = text(&row, "episode_id").unwrap_or_default();
            let id = text(&row, "id").unwrap_or_default();
            let mut entity = strip(row, &CHILD_BOOKKEEPING);
            entity.remove("episode_id");
            entity.insert("assets".to_owned(), take_assets("scene_id", &id));
            (episode, entity)
        })
        .collect();
    let episodes: Vec<Value> = rows
        .episodes
        .into_iter()
        .map(|row| {
            let id = text(&row, "id").unwrap_or_default();
            let mut entity = strip(row, &CHILD_BOOKKEEPING);
            let mut scenes = Vec::new();
            scenes_by_episode.retain(|(episode, scene)| {
                if *episode == id {
                    scenes.push(Value::Object(scene.clone()));
                    false
                } else {
                    true
                }
            });
            entity.insert("scenes".to_owned(), Value::Array(scenes));
            entity.insert("assets".to_owned(), take_assets("episode_id", &id));
            Value::Object(entity)
        })
        .collect();

    let mut drama: Map<String, Value> = drama_entity(rows.drama);
    drama.insert("characters".to_owned(), Value::Array(characters));
    drama.insert("episodes".to_owned(), Value::Array(episodes));
    drama.insert("assets".to_owned(), Value::Array(drama_assets));
    Assembled {
        document: Value::Object(drama),
        repairs,
    }
}

/// A row of the old `users` table as a user: id (a UUID), email, display name, balance
/// (`tokens`, the old default 30 when absent) and plan. Why not, for the report.
pub(crate) fn new_user(row: &LegacyRow) -> Result<NewUser, String> {
    let raw = text(row, "id").unwrap_or_default();
    let id: UserId = raw.trim().parse().map_err(|_| {
        format!("users row {raw:?}: the id is not a UUID, so it cannot become a user; not imported")
    })?;
    let mut user = NewUser::new(id);
    user.email = text(row, "email").filter(|e| !e.trim().is_empty());
    // A name is only shown: one longer than the schema allows is cut rather than costing
    // the user their import.
    user.display_name = text(row, "display_name")
        .filter(|n| !n.trim().is_empty())
        .map(|n| n.chars().take(MAX_DISPLAY_NAME).collect());
    if let Some(tokens) = row.get("tokens").and_then(Value::as_i64) {
        if tokens < 0 {
            return Err(format!(
                "users row {raw:?}: a negative balance ({tokens}) cannot be imported; not imported"
            ));
        }
        user.tokens = tokens;
    }
    if let Some(tier) = text(row, "subscription_tier").filter(|t| !t.trim().is_empty()) {
        user.subscription_tier = tier;
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;

    fn row(value: Value) -> LegacyRow {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("rows are objects"),
        }
    }

    #[test]
    fn rows_become_the_old_document_with_assets_under_their_parents() {
        let rows = LegacyDramaRows {
            drama: row(
                json!({"id": "d", "title": "T", "description": "D", "premise": "P",
                "url": null, "cover_url": "https://x/cover.png", "user_id": null, "version": 3,
                "metadata": {}, "created_at": "2025-01-01T00:00:00+00:00", "status": "draft"}),
            ),
            characters: vec![row(json!({"id": "c1", "drama_id": "d", "name": "N",
                "description": "x", "gender": "f", "voice_description": "v", "is_main": true,
                "url": null, "premise_url": null, "metadata": null, "user_id": "u"}))],
            episodes: vec![row(json!({"id": "e1", "drama_id": "d", "title": "E",
                "description": "d", "premise": null, "url": null, "metadata": null,
                "sequence_number": 1}))],
            scenes: vec![row(json!({"id": "s1", "episode_id": "e1", "drama_id": "d",
                "description": "s", "image_url": null, "video_url": null, "metadata": null}))],
            assets: vec![
                row(
                    json!({"id": "a-scene", "drama_id": "d", "character_id": null,
                    "episode_id": null, "scene_id": "s1", "kind": "image", "depends_on": ["c1"],
                    "prompt": "p", "duration": null, "url": null, "metadata": null}),
                ),
                row(
                    json!({"id": "a-char", "drama_id": "d", "character_id": "c1",
                    "episode_id": null, "scene_id": null, "kind": "image", "depends_on": [],
                    "prompt": "p", "duration": null, "url": null, "metadata": null}),
                ),
                row(
                    json!({"id": "a-lost", "drama_id": "d", "character_id": "c9",
                    "episode_id": null, "scene_id": null, "kind": "image", "depends_on": [],
                    "prompt": "p", "duration": null, "url": null, "metadata": null}),
                ),
            ],
        };
        let assembled = assemble(rows);
        let d = &assembled.document;
        assert_eq!(d["url"], "https://x/cover.png");
        assert!(d.get("user_id").is_none());
        assert!(d.get("version").is_none() && d.get("status").is_none());
        assert_eq!(d["characters"][0]["main"], true);
        assert!(d["characters"][0].get("is_main").is_none());
        assert!(d["characters"][0].get("drama_id").is_none());
        assert_eq!(d["characters"][0]["assets"][0]["id"], "a-char");
        assert_eq!(d["episodes"][0]["scenes"][0]["id"], "s1");
        assert!(d["episodes"][0]["scenes"][0].get("episode_id").is_none());
        assert_eq!(d["episodes"][0]["scenes"][0]["assets"][0]["id"], "a-scene");
        assert!(d["episodes"][0].get("sequence_number").is_none());
        assert_eq!(d["assets"][0]["id"], "a-lost");
        assert!(d["assets"][0].get("character_id").is_none());
        assert_eq!(assembled.repairs.len(), 1);
        assert!(
            assembled.repairs[0].contains("\"c9\""),
            "{:?}",
            assembled.repairs
        );
    }

    #[test]
    fn old_user_rows_become_users_or_say_why_not() {
        let id = "a1111111-1111-1111-1111-111111111111";
        let user = new_user(&row(json!({"id": id, "email": "demo@shortformdramas.com",
            "display_name": null, "tokens": 12, "subscription_tier": "pro"})))
        .unwrap();
        assert_eq!(user.id.to_string(), id);
        assert_eq!(user.email.as_deref(), Some("demo@shortformdramas.com"));
        assert_eq!(user.tokens, 12);
        assert_eq!(user.subscription_tier, "pro");
        assert_eq!(new_user(&row(json!({"id": id}))).unwrap().tokens, 30);
        let e = new_user(&row(json!({"id": "10000"}))).unwrap_err();
        assert!(e.contains("\"10000\"") && e.contains("not a UUID"), "{e}");
        assert!(new_user(&row(json!({"id": id, "tokens": -1}))).is_err());
        let long = "é".repeat(MAX_DISPLAY_NAME + 5);
        let named = new_user(&row(json!({"id": id, "display_name": long}))).unwrap();
        assert_eq!(
            named.display_name.map(|n| n.chars().count()),
            Some(MAX_DISPLAY_NAME),
            "a name longer than the schema allows is cut, not refused"
        );
    }

    #[test]
    fn an_owner_column_is_kept_for_the_owner_mapping() {
        let rows = LegacyDramaRows {
            drama: row(json!({"id": "d", "user_id": "alice"})),
            ..LegacyDramaRows::default()
        };
        assert_eq!(assemble(rows).document["user_id"], "alice");
        let blank = LegacyDramaRows {
            drama: row(json!({"id": "d", "user_id": " "})),
            ..LegacyDramaRows::default()
        };
        assert!(assemble(blank).document.get("user_id").is_none());
    }
}
