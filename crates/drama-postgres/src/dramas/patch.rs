//! The statements of a PATCH: one `update` of the addressed row that sets only the fields the
//! patch carries, and, when it touched no row, the reads that say what is missing.
//!
//! Every kind of part is described once as data (its table, the columns that address its row,
//! the columns the patch may set) and one function writes the statement from that.

use drama_dal::{Entity, RepoError};
use drama_domain::{AssetOwner, DramaId, EntityPatch};
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgConnection};

use crate::error::db;

/// One column a PATCH may set.
enum Set<'a> {
    /// A column the model requires: absent keeps it (`coalesce`).
    Required(&'static str, &'a Option<String>),
    /// A nullable text column: present sets it, `null` included, so a "present" flag is bound
    /// beside the value.
    Text(&'static str, &'a Option<Option<String>>),
    /// A nullable JSON column, bound as `Text`.
    Json(&'static str, &'a Option<Option<Value>>),
}

/// The statement of one patch: the table, the columns that must match (`None`: must be null),
/// the episode a scene asset's scene must be in (the asset row names its scene alone) and the
/// columns it may set.
struct Update<'a> {
    table: &'static str,
    row: Vec<(&'static str, Option<&'a str>)>,
    scene_in: Option<&'a str>,
    set: Vec<Set<'a>>,
}

impl<'a> Update<'a> {
    fn of(drama: &'a DramaId, patch: &'a EntityPatch) -> Self {
        use Set::{Json, Required, Text};
        let d = Some(drama.as_str());
        match patch {
            EntityPatch::Drama(p) => Self {
                table: "dramas",
                row: vec![("id", d)],
                scene_in: None,
                set: vec![
                    Required("title", &p.title),
                    Required("description", &p.description),
                    Required("premise", &p.premise),
                    Json("metadata", &p.metadata),
                ],
            },
            EntityPatch::Character { id, changes: p } => Self {
                table: "characters",
                row: vec![("drama_id", d), ("id", Some(id.as_str()))],
                scene_in: None,
                set: vec![
                    Required("name", &p.name),
                    Required("description", &p.description),
                    Json("metadata", &p.metadata),
                ],
            },
            EntityPatch::Episode { id, changes: p } => Self {
                table: "episodes",
                row: vec![("drama_id", d), ("id", Some(id.as_str()))],
                scene_in: None,
                set: vec![
                    Required("title", &p.title),
                    Required("description", &p.description),
                    Text("premise", &p.premise),
                    Json("metadata", &p.metadata),
                ],
            },
            EntityPatch::Scene {
                episode,
                id,
                changes: p,
            } => Self {
                table: "scenes",
                row: vec![
                    ("drama_id", d),
                    ("episode_id", Some(episode.as_str())),
                    ("id", Some(id.as_str())),
                ],
                scene_in: None,
                set: vec![
                    Required("description", &p.description),
                    Text("image_url", &p.image_url),
                    Text("video_url", &p.video_url),
                    Json("metadata", &p.metadata),
                ],
            },
            EntityPatch::Asset {
                owner,
                id,
                changes: p,
            } => {
                let mut row = vec![("drama_id", d), ("id", Some(id.as_str()))];
                let mut scene_in = None;
                // An asset of another entity of the same drama must not match.
                match owner {
                    AssetOwner::Drama => row.extend([
                        ("character_id", None),
                        ("episode_id", None),
                        ("scene_id", None),
                    ]),
                    AssetOwner::Character(c) => row.push(("character_id", Some(c.as_str()))),
                    AssetOwner::Episode(e) => row.push(("episode_id", Some(e.as_str()))),
                    AssetOwner::Scene { episode, scene } => {
                        row.push(("scene_id", Some(scene.as_str())));
                        scene_in = Some(episode.as_str());
                    }
                }
                Self {
                    table: "assets",
                    row,
                    scene_in,
                    set: vec![
                        Required("prompt", &p.prompt),
                        Text("url", &p.url),
                        Json("metadata", &p.metadata),
                    ],
                }
            }
        }
    }

    /// The SQL: every settable column is in it whether or not the patch sets it, so each kind
    /// of part (and each kind of asset owner) has one statement text.
    fn sql(&self) -> String {
        let mut n = 0;
        let mut next = || {
            n += 1;
            n
        };
        let set: Vec<String> = self
            .set
            .iter()
            .map(|s| match s {
                Set::Required(col, _) => format!("{col} = coalesce(${}, {col})", next()),
                Set::Text(col, _) | Set::Json(col, _) => {
                    let (present, value) = (next(), next());
                    format!("{col} = case when ${present} then ${value} else {col} end")
                }
            })
            .collect();
        let row: Vec<String> = self
            .row
            .iter()
            .map(|(col, value)| match value {
                Some(_) => format!("{col} = ${}", next()),
                None => format!("{col} is null"),
            })
            .collect();
        let mut sql = format!(
            "update public.{} set {} where {}",
            self.table,
            set.join(", "),
            row.join(" and ")
        );
        if self.scene_in.is_some() {
            sql.push_str(&format!(
                " and exists (select 1 from public.scenes s where s.drama_id = {0}.drama_id \
                 and s.id = {0}.scene_id and s.episode_id = ${1})",
                self.table,
                next()
            ));
        }
        sql
    }

    /// Runs the statement; whether it touched the row.
    async fn run(&self, conn: &mut PgConnection) -> Result<bool, RepoError> {
        let mut query = sqlx::query(AssertSqlSafe(self.sql()));
        for s in &self.set {
            query = match s {
                Set::Required(_, v) => query.bind(v.as_deref()),
                Set::Text(_, v) => query.bind(v.is_some()).bind(Option::clone(v).flatten()),
                Set::Json(_, v) => query.bind(v.is_some()).bind(Option::clone(v).flatten()),
            };
        }
        for value in self.row.iter().filter_map(|(_, value)| *value) {
            query = query.bind(value);
        }
        if let Some(episode) = self.scene_in {
            query = query.bind(episode);
        }
        let done = query.execute(conn).await.map_err(db)?;
        Ok(done.rows_affected() > 0)
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
    if Update::of(drama, patch).run(&mut *conn).await? {
        Ok(())
    } else {
        Err(missing(conn, drama, patch).await?)
    }
}

/// Why a patch's `update` touched no row: the entity it is addressed through when that is
/// missing, otherwise the part itself.
async fn missing(
    conn: &mut PgConnection,
    drama: &DramaId,
    patch: &EntityPatch,
) -> Result<RepoError, RepoError> {
    // The entities the part is addressed through, outermost first, each with the episode it
    // must be in (a scene is addressed through its episode).
    let (through, (entity, id)): (Vec<(Entity, &str, Option<&str>)>, _) = match patch {
        EntityPatch::Drama(_) => (vec![], (Entity::Drama, drama.as_str())),
        EntityPatch::Character { id, .. } => (vec![], (Entity::Character, id.as_str())),
        EntityPatch::Episode { id, .. } => (vec![], (Entity::Episode, id.as_str())),
        EntityPatch::Scene { episode, id, .. } => (
            vec![(Entity::Episode, episode.as_str(), None)],
            (Entity::Scene, id.as_str()),
        ),
        EntityPatch::Asset { owner, id, .. } => {
            let through = match owner {
                AssetOwner::Drama => vec![],
                AssetOwner::Character(c) => vec![(Entity::Character, c.as_str(), None)],
                AssetOwner::Episode(e) => vec![(Entity::Episode, e.as_str(), None)],
                AssetOwner::Scene { episode, scene } => vec![
                    (Entity::Episode, episode.as_str(), None),
                    (Entity::Scene, scene.as_str(), Some(episode.as_str())),
                ],
            };
            (through, (Entity::Asset, id.as_str()))
        }
    };
    for (parent, parent_id, episode) in through {
        if !exists(conn, parent, drama, parent_id, episode).await? {
            return Ok(RepoError::not_found(parent, parent_id));
        }
    }
    Ok(RepoError::not_found(entity, id))
}

/// Whether the drama has a character, episode or scene with this id (a scene: in `episode`
/// when one is named).
async fn exists(
    conn: &mut PgConnection,
    entity: Entity,
    drama: &DramaId,
    id: &str,
    episode: Option<&str>,
) -> Result<bool, RepoError> {
    let sql = match entity {
        Entity::Character => {
            "select exists (select 1 from public.characters where drama_id = $1 and id = $2)"
        }
        Entity::Episode => {
            "select exists (select 1 from public.episodes where drama_id = $1 and id = $2)"
        }
        Entity::Scene => {
            "select exists (select 1 from public.scenes where drama_id = $1 and id = $2 \
             and ($3::text is null or episode_id = $3))"
        }
        // Nothing else holds parts; the drama itself was checked when its version was bumped.
        _ => return Ok(true),
    };
    let query = sqlx::query_scalar(sql).bind(drama.as_str()).bind(id);
    let query = if entity == Entity::Scene {
        query.bind(episode)
    } else {
        query
    };
    query.fetch_one(conn).await.map_err(db)
}
