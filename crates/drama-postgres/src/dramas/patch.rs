//! The statements of a PATCH: one `update` of the addressed row that sets only the fields the
//! patch carries, and, when it touched no row, the reads that say what is missing.
//!
//! A required field binds `null` when absent (`coalesce` keeps the column); a nullable field
//! binds a "present" flag beside its value, because `null` there means "clear it".

use drama_dal::{Entity, RepoError};
use drama_domain::{
    AssetId, AssetOwner, AssetPatch, CharacterId, CharacterPatch, DramaId, DramaPatch, EntityPatch,
    EpisodeId, EpisodePatch, SceneId, ScenePatch,
};
use sqlx::{AssertSqlSafe, PgConnection};

use crate::error::db;

/// `case when <present> then <value> else <column> end` binds for a nullable PATCH field.
fn nullable<T: Clone>(field: &Option<Option<T>>) -> (bool, Option<T>) {
    match field {
        Some(v) => (true, v.clone()),
        None => (false, None),
    }
}

/// Writes `patch` inside the caller's transaction (which has already checked and bumped the
/// drama's version).
///
/// # Errors
/// `NotFound` for the part the patch addresses or the entity it is addressed through;
/// `Unavailable`.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    drama: &DramaId,
    patch: &EntityPatch,
) -> Result<(), RepoError> {
    let written = match patch {
        EntityPatch::Drama(changes) => drama_fields(conn, drama, changes).await?,
        EntityPatch::Character { id, changes } => character(conn, drama, id, changes).await?,
        EntityPatch::Episode { id, changes } => episode(conn, drama, id, changes).await?,
        EntityPatch::Scene {
            episode,
            id,
            changes,
        } => scene(conn, drama, episode, id, changes).await?,
        EntityPatch::Asset { owner, id, changes } => asset(conn, drama, owner, id, changes).await?,
    };
    if written {
        Ok(())
    } else {
        Err(missing(conn, drama, patch).await?)
    }
}

async fn drama_fields(
    conn: &mut PgConnection,
    drama: &DramaId,
    patch: &DramaPatch,
) -> Result<bool, RepoError> {
    let (set_metadata, metadata) = nullable(&patch.metadata);
    let done = sqlx::query(
        "update public.dramas set title = coalesce($2, title), \
             description = coalesce($3, description), \
             premise = coalesce($4, premise), \
             metadata = case when $5 then $6 else metadata end \
         where id = $1",
    )
    .bind(drama.as_str())
    .bind(&patch.title)
    .bind(&patch.description)
    .bind(&patch.premise)
    .bind(set_metadata)
    .bind(metadata)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() > 0)
}

async fn character(
    conn: &mut PgConnection,
    drama: &DramaId,
    id: &CharacterId,
    patch: &CharacterPatch,
) -> Result<bool, RepoError> {
    let (set_metadata, metadata) = nullable(&patch.metadata);
    let done = sqlx::query(
        "update public.characters set name = coalesce($3, name), \
             description = coalesce($4, description), \
             metadata = case when $5 then $6 else metadata end \
         where drama_id = $1 and id = $2",
    )
    .bind(drama.as_str())
    .bind(id.as_str())
    .bind(&patch.name)
    .bind(&patch.description)
    .bind(set_metadata)
    .bind(metadata)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() > 0)
}

async fn episode(
    conn: &mut PgConnection,
    drama: &DramaId,
    id: &EpisodeId,
    patch: &EpisodePatch,
) -> Result<bool, RepoError> {
    let (set_premise, premise) = nullable(&patch.premise);
    let (set_metadata, metadata) = nullable(&patch.metadata);
    let done = sqlx::query(
        "update public.episodes set title = coalesce($3, title), \
             description = coalesce($4, description), \
             premise = case when $5 then $6 else premise end, \
             metadata = case when $7 then $8 else metadata end \
         where drama_id = $1 and id = $2",
    )
    .bind(drama.as_str())
    .bind(id.as_str())
    .bind(&patch.title)
    .bind(&patch.description)
    .bind(set_premise)
    .bind(premise)
    .bind(set_metadata)
    .bind(metadata)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() > 0)
}

async fn scene(
    conn: &mut PgConnection,
    drama: &DramaId,
    episode: &EpisodeId,
    id: &SceneId,
    patch: &ScenePatch,
) -> Result<bool, RepoError> {
    let (set_image, image_url) = nullable(&patch.image_url);
    let (set_video, video_url) = nullable(&patch.video_url);
    let (set_metadata, metadata) = nullable(&patch.metadata);
    let done = sqlx::query(
        "update public.scenes set description = coalesce($4, description), \
             image_url = case when $5 then $6 else image_url end, \
             video_url = case when $7 then $8 else video_url end, \
             metadata = case when $9 then $10 else metadata end \
         where drama_id = $1 and episode_id = $2 and id = $3",
    )
    .bind(drama.as_str())
    .bind(episode.as_str())
    .bind(id.as_str())
    .bind(&patch.description)
    .bind(set_image)
    .bind(image_url)
    .bind(set_video)
    .bind(video_url)
    .bind(set_metadata)
    .bind(metadata)
    .execute(conn)
    .await
    .map_err(db)?;
    Ok(done.rows_affected() > 0)
}

async fn asset(
    conn: &mut PgConnection,
    drama: &DramaId,
    owner: &AssetOwner,
    id: &AssetId,
    patch: &AssetPatch,
) -> Result<bool, RepoError> {
    let (set_url, url) = nullable(&patch.url);
    let (set_metadata, metadata) = nullable(&patch.metadata);
    // An asset of another entity of the same drama must not match.
    let (owner_filter, owner_id) = match owner {
        AssetOwner::Drama => (
            "character_id is null and episode_id is null and scene_id is null \
             and $7::text is null",
            None,
        ),
        AssetOwner::Character(c) => ("character_id = $7", Some(c.as_str())),
        AssetOwner::Episode(e) => ("episode_id = $7", Some(e.as_str())),
        AssetOwner::Scene(s) => ("scene_id = $7", Some(s.as_str())),
    };
    let sql = format!(
        "update public.assets set prompt = coalesce($3, prompt), \
             url = case when $4 then $5 else url end, \
             metadata = case when $6 then $8 else metadata end \
         where drama_id = $1 and id = $2 and {owner_filter}"
    );
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(drama.as_str())
        .bind(id.as_str())
        .bind(&patch.prompt)
        .bind(set_url)
        .bind(url)
        .bind(set_metadata)
        .bind(owner_id)
        .bind(metadata)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(done.rows_affected() > 0)
}

/// Why a patch's `update` touched no row: the entity it is addressed through when that is
/// missing, otherwise the part itself.
async fn missing(
    conn: &mut PgConnection,
    drama: &DramaId,
    patch: &EntityPatch,
) -> Result<RepoError, RepoError> {
    let (through, (entity, id)) = match patch {
        EntityPatch::Drama(_) => (None, (Entity::Drama, drama.as_str())),
        EntityPatch::Character { id, .. } => (None, (Entity::Character, id.as_str())),
        EntityPatch::Episode { id, .. } => (None, (Entity::Episode, id.as_str())),
        EntityPatch::Scene { episode, id, .. } => (
            Some((Entity::Episode, episode.as_str())),
            (Entity::Scene, id.as_str()),
        ),
        EntityPatch::Asset { owner, id, .. } => {
            let through = match owner {
                AssetOwner::Drama => None,
                AssetOwner::Character(c) => Some((Entity::Character, c.as_str())),
                AssetOwner::Episode(e) => Some((Entity::Episode, e.as_str())),
                AssetOwner::Scene(s) => Some((Entity::Scene, s.as_str())),
            };
            (through, (Entity::Asset, id.as_str()))
        }
    };
    if let Some((parent, parent_id)) = through
        && !exists(conn, parent, drama, parent_id).await?
    {
        return Ok(RepoError::not_found(parent, parent_id));
    }
    Ok(RepoError::not_found(entity, id))
}

/// Whether the drama has a character, episode or scene with this id.
async fn exists(
    conn: &mut PgConnection,
    entity: Entity,
    drama: &DramaId,
    id: &str,
) -> Result<bool, RepoError> {
    let sql = match entity {
        Entity::Character => {
            "select exists (select 1 from public.characters where drama_id = $1 and id = $2)"
        }
        Entity::Episode => {
            "select exists (select 1 from public.episodes where drama_id = $1 and id = $2)"
        }
        Entity::Scene => {
            "select exists (select 1 from public.scenes where drama_id = $1 and id = $2)"
        }
        // Nothing else holds parts; the drama itself was checked when its version was bumped.
        _ => return Ok(true),
    };
    sqlx::query_scalar(sql)
        .bind(drama.as_str())
        .bind(id)
        .fetch_one(conn)
        .await
        .map_err(db)
}
