//! Reading trees: each drama is aggregated into one JSON document inside the database, so a
//! read is one statement whatever the size of the tree; pages are keyset pages over
//! `(updated_at, id)`.

use chrono::{DateTime, Utc};
use drama_dal::{Entity, Page, PageRequest, RepoError, StoredDrama, Version};
use drama_domain::{Drama, DramaId, DramaSummary, UserId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::error::db;

/// JSON of one asset row `a`, in the field order of the REST model.
macro_rules! asset_json {
    () => {
        "json_build_object('id', a.id, 'kind', a.kind, 'depends_on', to_json(a.depends_on), \
         'prompt', a.prompt, 'duration', a.duration, 'url', a.url, 'metadata', a.metadata)"
    };
}

/// `select owner_id, version, created_at, updated_at, body` for every drama row `d` of `$from`.
macro_rules! drama_select {
    ($from:expr) => {
        concat!(
            "select d.owner_id, d.version, d.created_at, d.updated_at, json_build_object(\
               'id', d.id, 'title', d.title, 'description', d.description, \
               'premise', d.premise, 'url', d.url, \
               'characters', coalesce((select json_agg(json_build_object(\
                   'id', c.id, 'name', c.name, 'description', c.description, \
                   'gender', c.gender, 'voice_description', c.voice_description, \
                   'main', c.main, 'url', c.url, 'premise_url', c.premise_url, \
                   'assets', coalesce((select json_agg(",
            asset_json!(),
            " order by a.position) \
                       from public.assets a \
                       where a.drama_id = c.drama_id and a.character_id = c.id), '[]'::json), \
                   'metadata', c.metadata) order by c.position) \
                 from public.characters c where c.drama_id = d.id), '[]'::json), \
               'episodes', coalesce((select json_agg(json_build_object(\
                   'id', e.id, 'title', e.title, 'description', e.description, \
                   'premise', e.premise, 'url', e.url, \
                   'scenes', coalesce((select json_agg(json_build_object(\
                       'id', s.id, 'description', s.description, \
                       'image_url', s.image_url, 'video_url', s.video_url, \
                       'assets', coalesce((select json_agg(",
            asset_json!(),
            " order by a.position) \
                           from public.assets a \
                           where a.drama_id = s.drama_id and a.scene_id = s.id), '[]'::json), \
                       'metadata', s.metadata) order by s.position) \
                     from public.scenes s \
                     where s.drama_id = e.drama_id and s.episode_id = e.id), '[]'::json), \
                   'assets', coalesce((select json_agg(",
            asset_json!(),
            " order by a.position) \
                       from public.assets a \
                       where a.drama_id = e.drama_id and a.episode_id = e.id), '[]'::json), \
                   'metadata', e.metadata) order by e.position) \
                 from public.episodes e where e.drama_id = d.id), '[]'::json), \
               'assets', coalesce((select json_agg(",
            asset_json!(),
            " order by a.position) \
                   from public.assets a \
                   where a.drama_id = d.id and a.character_id is null \
                     and a.episode_id is null and a.scene_id is null), '[]'::json), \
               'metadata', d.metadata)::text as body \
             from ",
            $from
        )
    };
}

const GET_COMPLETE: &str = drama_select!("public.dramas d where d.id = $1 and d.owner_id = $2");

pub(super) const LIST_COMPLETE_FIRST: &str = drama_select!(
    "(select * from public.dramas where owner_id = $1 \
      order by updated_at desc, id desc limit $2 offset $3) d \
     order by d.updated_at desc, d.id desc"
);

pub(super) const LIST_COMPLETE_AFTER: &str = drama_select!(
    "(select * from public.dramas where owner_id = $1 and (updated_at, id) < ($4, $5) \
      order by updated_at desc, id desc limit $2 offset $3) d \
     order by d.updated_at desc, d.id desc"
);

/// The page of `LIST_COMPLETE_*` without the documents: what the cache is checked against.
pub(super) const LIST_HEADS_FIRST: &str = "select id, version, created_at, updated_at from public.dramas \
     where owner_id = $1 order by updated_at desc, id desc limit $2 offset $3";

pub(super) const LIST_HEADS_AFTER: &str = "select id, version, created_at, updated_at from public.dramas \
     where owner_id = $1 and (updated_at, id) < ($4, $5) \
     order by updated_at desc, id desc limit $2 offset $3";

pub(super) const GET_MANY_COMPLETE: &str =
    drama_select!("public.dramas d where d.owner_id = $1 and d.id = any($2)");

pub(super) const SUMMARY_COLUMNS: &str = "select id, title, description, premise, url, metadata, created_at, updated_at \
     from public.dramas where owner_id = $1";

pub(super) fn stored_from_row(row: &PgRow) -> Result<StoredDrama, RepoError> {
    let body: String = row.try_get("body").map_err(db)?;
    let drama: Drama = serde_json::from_str(&body)
        .map_err(|e| RepoError::Unexpected(format!("stored drama does not parse: {e}").into()))?;
    Ok(StoredDrama {
        drama,
        owner: UserId(row.try_get::<Uuid, _>("owner_id").map_err(db)?),
        version: row.try_get("version").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

/// Identity and version of a listed drama.
pub(super) struct Head {
    pub(super) id: DramaId,
    pub(super) version: Version,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
}

impl Head {
    pub(super) fn from_row(row: &PgRow) -> Result<Self, RepoError> {
        let id: String = row.try_get("id").map_err(db)?;
        Ok(Self {
            id: DramaId::parse(id).map_err(|e| RepoError::Unexpected(e.into()))?,
            version: row.try_get("version").map_err(db)?,
            created_at: row.try_get("created_at").map_err(db)?,
            updated_at: row.try_get("updated_at").map_err(db)?,
        })
    }
}

pub(super) fn summary_from_row(row: &PgRow) -> Result<DramaSummary, RepoError> {
    let id: String = row.try_get("id").map_err(db)?;
    Ok(DramaSummary {
        id: DramaId::parse(id).map_err(|e| RepoError::Unexpected(e.into()))?,
        title: row.try_get("title").map_err(db)?,
        description: row.try_get("description").map_err(db)?,
        premise: row.try_get("premise").map_err(db)?,
        url: row.try_get("url").map_err(db)?,
        metadata: row.try_get("metadata").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

pub(crate) async fn read_complete(
    conn: &mut PgConnection,
    owner: UserId,
    id: &DramaId,
) -> Result<StoredDrama, RepoError> {
    let row = sqlx::query(GET_COMPLETE)
        .bind(id.as_str())
        .bind(owner.0)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| RepoError::not_found(Entity::Drama, id))?;
    stored_from_row(&row)
}

pub(super) type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Binds owner, limit + 1 (to learn whether another page follows), offset and the cursor.
pub(super) fn bind_page<'q>(query: PgQuery<'q>, owner: UserId, page: &PageRequest) -> PgQuery<'q> {
    let query = query
        .bind(owner.0)
        .bind(i64::from(page.limit) + 1)
        .bind(i64::from(page.offset));
    match &page.after {
        Some(cursor) => query.bind(cursor.updated_at).bind(cursor.id.to_string()),
        None => query,
    }
}

pub(super) fn paginate<T>(
    mut items: Vec<T>,
    page: &PageRequest,
    key: impl Fn(&T) -> (DateTime<Utc>, &DramaId),
) -> Page<T> {
    let more = items.len() > page.limit as usize;
    items.truncate(page.limit as usize);
    let next = if more {
        items.last().map(|last| {
            let (updated_at, id) = key(last);
            drama_dal::Cursor {
                updated_at,
                id: id.clone(),
            }
        })
    } else {
        None
    };
    Page { items, next }
}
