//! Writing trees: each kind of child is sent as one JSON array and upserted with
//! `jsonb_to_recordset`, so the number of statements never depends on the size of the drama; the
//! version bump that guards every write lives here too.

use std::collections::HashMap;

use drama_dal::{Entity, RepoError, Version};
use drama_domain::{AssetOwner, Drama, DramaId, UserId};
use serde_json::{Value, json};
use sqlx::PgConnection;
use sqlx::postgres::PgRow;

use crate::error::{db, map_err};

/// The rows of each child table, as JSON arrays for `jsonb_to_recordset`.
struct ChildRows {
    characters: Value,
    episodes: Value,
    scenes: Value,
    assets: Value,
    character_ids: Vec<String>,
    episode_ids: Vec<String>,
    scene_ids: Vec<String>,
    asset_ids: Vec<String>,
}

fn child_rows(d: &Drama) -> ChildRows {
    let characters: Vec<Value> = d
        .characters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            json!({"id": c.id, "position": i, "name": c.name, "description": c.description,
                   "gender": c.gender, "voice_description": c.voice_description, "main": c.main,
                   "url": c.url, "premise_url": c.premise_url, "metadata": c.metadata})
        })
        .collect();
    let episodes: Vec<Value> = d
        .episodes
        .iter()
        .enumerate()
        .map(|(i, e)| {
            json!({"id": e.id, "position": i, "title": e.title, "description": e.description,
                   "premise": e.premise, "url": e.url, "metadata": e.metadata})
        })
        .collect();
    let scenes: Vec<Value> = d
        .episodes
        .iter()
        .flat_map(|e| {
            e.scenes.iter().enumerate().map(move |(i, s)| {
                json!({"id": s.id, "episode_id": e.id, "position": i,
                       "description": s.description, "image_url": s.image_url,
                       "video_url": s.video_url, "metadata": s.metadata})
            })
        })
        .collect();
    let mut positions: HashMap<AssetOwner, usize> = HashMap::new();
    let assets: Vec<Value> = d
        .assets_with_owner()
        .map(|(owner, a)| {
            let position = positions.entry(owner.clone()).or_default();
            let (character_id, episode_id, scene_id) = match &owner {
                AssetOwner::Drama => (None, None, None),
                AssetOwner::Character(c) => (Some(c.as_str()), None, None),
                AssetOwner::Episode(e) => (None, Some(e.as_str()), None),
                // A scene asset's row names its scene alone; the scene row names the episode.
                AssetOwner::Scene { scene, .. } => (None, None, Some(scene.as_str())),
            };
            let row = json!({"id": a.id, "character_id": character_id, "episode_id": episode_id,
                   "scene_id": scene_id, "position": *position, "kind": a.kind,
                   "depends_on": a.depends_on, "prompt": a.prompt, "duration": a.duration,
                   "url": a.url, "metadata": a.metadata});
            *position += 1;
            row
        })
        .collect();
    ChildRows {
        character_ids: d.characters.iter().map(|c| c.id.to_string()).collect(),
        episode_ids: d.episodes.iter().map(|e| e.id.to_string()).collect(),
        scene_ids: d
            .episodes
            .iter()
            .flat_map(|e| e.scenes.iter().map(|s| s.id.to_string()))
            .collect(),
        asset_ids: d
            .assets_with_owner()
            .map(|(_, a)| a.id.to_string())
            .collect(),
        characters: in_id_order(characters),
        episodes: in_id_order(episodes),
        scenes: in_id_order(scenes),
        assets: in_id_order(assets),
    }
}

/// Rows are upserted in id order (their document order is in `position`): the lock order of
/// `generation.rs` takes entity rows in id order after the drama row.
fn in_id_order(mut rows: Vec<Value>) -> Value {
    rows.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    Value::Array(rows)
}

const UPSERT_CHARACTERS: &str = "\
insert into public.characters as t (drama_id, id, position, name, description, gender, \
    voice_description, main, url, premise_url, metadata) \
select $1, x.id, x.position, x.name, x.description, x.gender, x.voice_description, x.main, \
    x.url, x.premise_url, x.metadata \
from jsonb_to_recordset($2) as x(id text, position int, name text, description text, \
    gender text, voice_description text, main boolean, url text, premise_url text, metadata jsonb) \
on conflict (drama_id, id) do update set position = excluded.position, name = excluded.name, \
    description = excluded.description, gender = excluded.gender, \
    voice_description = excluded.voice_description, main = excluded.main, url = excluded.url, \
    premise_url = excluded.premise_url, metadata = excluded.metadata \
where (t.position, t.name, t.description, t.gender, t.voice_description, t.main, t.url, \
       t.premise_url, t.metadata) is distinct from \
      (excluded.position, excluded.name, excluded.description, excluded.gender, \
       excluded.voice_description, excluded.main, excluded.url, excluded.premise_url, \
       excluded.metadata)";

const UPSERT_EPISODES: &str = "\
insert into public.episodes as t (drama_id, id, position, title, description, premise, url, metadata) \
select $1, x.id, x.position, x.title, x.description, x.premise, x.url, x.metadata \
from jsonb_to_recordset($2) as x(id text, position int, title text, description text, \
    premise text, url text, metadata jsonb) \
on conflict (drama_id, id) do update set position = excluded.position, title = excluded.title, \
    description = excluded.description, premise = excluded.premise, url = excluded.url, \
    metadata = excluded.metadata \
where (t.position, t.title, t.description, t.premise, t.url, t.metadata) is distinct from \
      (excluded.position, excluded.title, excluded.description, excluded.premise, excluded.url, \
       excluded.metadata)";

const UPSERT_SCENES: &str = "\
insert into public.scenes as t (drama_id, id, episode_id, position, description, image_url, \
    video_url, metadata) \
select $1, x.id, x.episode_id, x.position, x.description, x.image_url, x.video_url, x.metadata \
from jsonb_to_recordset($2) as x(id text, episode_id text, position int, description text, \
    image_url text, video_url text, metadata jsonb) \
on conflict (drama_id, id) do update set episode_id = excluded.episode_id, \
    position = excluded.position, description = excluded.description, \
    image_url = excluded.image_url, video_url = excluded.video_url, metadata = excluded.metadata \
where (t.episode_id, t.position, t.description, t.image_url, t.video_url, t.metadata) \
      is distinct from (excluded.episode_id, excluded.position, excluded.description, \
      excluded.image_url, excluded.video_url, excluded.metadata)";

const UPSERT_ASSETS: &str = "\
insert into public.assets as t (drama_id, id, character_id, episode_id, scene_id, position, kind, \
    depends_on, prompt, duration, url, metadata) \
select $1, x.id, x.character_id, x.episode_id, x.scene_id, x.position, x.kind, \
    array(select jsonb_array_elements_text(x.depends_on)), x.prompt, x.duration, x.url, x.metadata \
from jsonb_to_recordset($2) as x(id text, character_id text, episode_id text, scene_id text, \
    position int, kind text, depends_on jsonb, prompt text, duration int, url text, metadata jsonb) \
on conflict (drama_id, id) do update set character_id = excluded.character_id, \
    episode_id = excluded.episode_id, scene_id = excluded.scene_id, position = excluded.position, \
    kind = excluded.kind, depends_on = excluded.depends_on, prompt = excluded.prompt, \
    duration = excluded.duration, url = excluded.url, metadata = excluded.metadata \
where (t.character_id, t.episode_id, t.scene_id, t.position, t.kind, t.depends_on, t.prompt, \
       t.duration, t.url, t.metadata) is distinct from \
      (excluded.character_id, excluded.episode_id, excluded.scene_id, excluded.position, \
       excluded.kind, excluded.depends_on, excluded.prompt, excluded.duration, excluded.url, \
       excluded.metadata)";

/// Everything absent from the new tree, deepest first so that moved children survive.
const DELETE_GONE: &str = "\
with gone_assets as (delete from public.assets where drama_id = $1 and not (id = any($2)) returning 1), \
     gone_scenes as (delete from public.scenes where drama_id = $1 and not (id = any($3)) returning 1), \
     gone_episodes as (delete from public.episodes where drama_id = $1 and not (id = any($4)) returning 1), \
     gone_characters as (delete from public.characters where drama_id = $1 and not (id = any($5)) returning 1) \
select (select count(*) from gone_assets) + (select count(*) from gone_scenes) \
     + (select count(*) from gone_episodes) + (select count(*) from gone_characters)";

/// Inserts a new drama's own row (its children are [`write_children`]'s) and answers the row's
/// `version`, `created_at` and `updated_at`. A taken id is `AlreadyExists`; an owner that
/// does not exist is `NotFound` of a user, named by the drama id (`map_err` knows no other).
pub(crate) async fn insert_drama(
    conn: &mut PgConnection,
    owner: UserId,
    drama: &Drama,
) -> Result<PgRow, RepoError> {
    sqlx::query(
        "insert into public.dramas (id, owner_id, title, description, premise, url, metadata) \
         values ($1, $2, $3, $4, $5, $6, $7) returning version, created_at, updated_at",
    )
    .bind(drama.id.as_str())
    .bind(owner.0)
    .bind(&drama.title)
    .bind(&drama.description)
    .bind(&drama.premise)
    .bind(&drama.url)
    .bind(&drama.metadata)
    .fetch_one(conn)
    .await
    .map_err(|e| map_err(e, Entity::Drama, drama.id.as_str()))
}

/// Upserts every child of `d` (parents before children), then deletes what is gone.
pub(crate) async fn write_children(
    conn: &mut PgConnection,
    d: &Drama,
    delete_gone: bool,
) -> Result<(), RepoError> {
    let rows = child_rows(d);
    let id = d.id.as_str();
    for (sql, rows) in [
        (UPSERT_CHARACTERS, &rows.characters),
        (UPSERT_EPISODES, &rows.episodes),
        (UPSERT_SCENES, &rows.scenes),
        (UPSERT_ASSETS, &rows.assets),
    ] {
        sqlx::query(sql)
            .bind(id)
            .bind(rows)
            .execute(&mut *conn)
            .await
            .map_err(|e| map_err(e, Entity::Drama, id))?;
    }
    if delete_gone {
        sqlx::query(DELETE_GONE)
            .bind(id)
            .bind(&rows.asset_ids)
            .bind(&rows.scene_ids)
            .bind(&rows.episode_ids)
            .bind(&rows.character_ids)
            .execute(&mut *conn)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Bumps the version of an owned drama, checking `expected`; the row stays locked until the
/// transaction ends. Returns the new version.
pub(crate) async fn bump_version(
    conn: &mut PgConnection,
    owner: UserId,
    id: &DramaId,
    expected: Option<Version>,
) -> Result<Version, RepoError> {
    let bumped: Option<Version> = sqlx::query_scalar(
        "update public.dramas set version = version + 1 \
         where id = $1 and owner_id = $2 and ($3::bigint is null or version = $3) \
         returning version",
    )
    .bind(id.as_str())
    .bind(owner.0)
    .bind(expected)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    match bumped {
        Some(v) => Ok(v),
        None => Err(why_not_written(conn, owner, id, expected).await),
    }
}

/// After a guarded write touched no row: the drama is missing (or not the owner's), or the
/// expected version is stale.
pub(super) async fn why_not_written(
    conn: &mut PgConnection,
    owner: UserId,
    id: &DramaId,
    expected: Option<Version>,
) -> RepoError {
    let actual: Result<Option<Version>, _> =
        sqlx::query_scalar("select version from public.dramas where id = $1 and owner_id = $2")
            .bind(id.as_str())
            .bind(owner.0)
            .fetch_optional(conn)
            .await;
    match (actual, expected) {
        (Ok(Some(actual)), Some(expected)) => RepoError::VersionConflict { expected, actual },
        (Ok(_), _) => RepoError::not_found(Entity::Drama, id),
        (Err(e), _) => db(e),
    }
}
