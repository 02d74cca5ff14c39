//! `LegacyTables` on PostgreSQL: the old server's tables, wherever they sit (`legacy` after
//! adoption, `public` before it, for a dry run), read row by row as JSON objects.
//!
//! The old schema varies between projects, so the statements are built once from the columns
//! the tables actually have: children are ordered by `sequence_number`, then `created_at`,
//! then id, as far as those columns exist; a missing table reads as empty.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_dal::RepoError;
use drama_dal::legacy_tables::{
    AuthStanding, LegacyDramaEntry, LegacyDramaRows, LegacyRow, LegacyTableAccess, LegacyTables,
};
use drama_domain::UserId;
use serde_json::Value;
use sqlx::{AssertSqlSafe, PgPool, Row as _};

use crate::error::db;
use crate::schema::quote_ident;

/// The old tables of one schema.
#[derive(Debug, Clone)]
pub struct PgLegacyTables {
    pool: PgPool,
    schema: String,
    list_dramas: String,
    read_drama: String,
    read_users: Option<String>,
    /// How to ask Supabase Auth about user ids (`$1`, uuid[]), when the database has
    /// `auth.users`.
    read_auth: Option<String>,
}

impl PgLegacyTables {
    /// The old tables in `schema`; reads which columns they have.
    ///
    /// # Errors
    /// `Unavailable`; `Unexpected` when `schema` has no `dramas` table.
    pub async fn open(pool: PgPool, schema: &str) -> Result<Self, RepoError> {
        let rows = sqlx::query(
            "select table_name::text, column_name::text from information_schema.columns \
             where table_schema = $1",
        )
        .bind(schema)
        .fetch_all(&pool)
        .await
        .map_err(db)?;
        let mut columns: HashMap<String, HashSet<String>> = HashMap::new();
        for row in rows {
            columns
                .entry(row.try_get(0).map_err(db)?)
                .or_default()
                .insert(row.try_get(1).map_err(db)?);
        }
        if !columns.contains_key("dramas") {
            return Err(RepoError::Unexpected(
                format!("schema {schema} has no dramas table").into(),
            ));
        }
        let s = quote_ident(schema);
        let list_dramas = format!(
            "select d.id::text, (to_jsonb(d) ->> 'created_at')::timestamptz, \
                    (to_jsonb(d) ->> 'updated_at')::timestamptz, \
                    nullif(btrim(to_jsonb(d) ->> 'user_id'), '') \
             from {s}.dramas d order by 1"
        );
        let children = |table: &str, filter: &str| -> String {
            let Some(cols) = columns.get(table) else {
                return "'[]'::jsonb".to_owned();
            };
            let order: Vec<String> = ["sequence_number", "position", "created_at", "id"]
                .iter()
                .filter(|c| cols.contains(**c))
                .map(|c| format!("x.{}", quote_ident(c)))
                .collect();
            let order = if order.is_empty() {
                String::new()
            } else {
                format!(" order by {}", order.join(", "))
            };
            format!(
                "coalesce((select jsonb_agg(to_jsonb(x){order}) from {s}.{} x where {filter}), \
                 '[]'::jsonb)",
                quote_ident(table)
            )
        };
        let episodes_of = if columns.contains_key("episodes") {
            format!("x.episode_id in (select e.id from {s}.episodes e where e.drama_id = $1)")
        } else {
            "false".to_owned()
        };
        // Scenes that say they belong to the drama but name none of its episodes are read too,
        // so that the import can report them instead of passing over them in silence.
        let scenes_of = if columns
            .get("scenes")
            .is_some_and(|cols| cols.contains("drama_id"))
        {
            format!("(x.drama_id = $1 or {episodes_of})")
        } else {
            episodes_of
        };
        let read_drama = format!(
            "select (select to_jsonb(d) from {s}.dramas d where d.id = $1), {}, {}, {}, {}",
            children("characters", "x.drama_id = $1"),
            children("episodes", "x.drama_id = $1"),
            children("scenes", &scenes_of),
            children("assets", "x.drama_id = $1"),
        );
        let read_users = columns
            .contains_key("users")
            .then(|| format!("select to_jsonb(u) from {s}.users u order by u.id"));
        let read_auth = auth_statement(&pool).await?;
        Ok(Self {
            pool,
            schema: schema.to_owned(),
            list_dramas,
            read_drama,
            read_users,
            read_auth,
        })
    }
}

/// The statement [`LegacyTables::auth_standing`] runs, when there is an `auth.users` (Supabase's
/// has `is_anonymous` since anonymous sign-ins came; an older one has only signed-up users).
async fn auth_statement(pool: &PgPool) -> Result<Option<String>, RepoError> {
    let (exists, anonymous): (bool, bool) = sqlx::query_as(
        "select to_regclass('auth.users') is not null, \
                exists (select 1 from information_schema.columns where table_schema = 'auth' \
                        and table_name = 'users' and column_name = 'is_anonymous')",
    )
    .fetch_one(pool)
    .await
    .map_err(db)?;
    let anonymous = if anonymous {
        "coalesce(a.is_anonymous, false)"
    } else {
        "false"
    };
    Ok(exists.then(|| {
        format!("select a.id, {anonymous} from auth.users a where a.id = any($1::uuid[])")
    }))
}

fn rows_of(value: Value) -> Vec<LegacyRow> {
    match value {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|v| match v {
                Value::Object(map) => Some(map),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[async_trait]
impl LegacyTables for PgLegacyTables {
    fn location(&self) -> &str {
        &self.schema
    }

    #[tracing::instrument(skip_all, fields(schema = self.schema))]
    async fn legacy_dramas(&self) -> Result<Vec<LegacyDramaEntry>, RepoError> {
        let rows = sqlx::query(AssertSqlSafe(self.list_dramas.clone()))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                Ok(LegacyDramaEntry {
                    id: row.try_get(0).map_err(db)?,
                    created_at: row.try_get::<Option<DateTime<Utc>>, _>(1).map_err(db)?,
                    updated_at: row.try_get::<Option<DateTime<Utc>>, _>(2).map_err(db)?,
                    owner: row.try_get(3).map_err(db)?,
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(schema = self.schema, drama.id = id))]
    async fn legacy_drama(&self, id: &str) -> Result<Option<LegacyDramaRows>, RepoError> {
        let row = sqlx::query(AssertSqlSafe(self.read_drama.clone()))
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        let Some(Value::Object(drama)) = row.try_get::<Option<Value>, _>(0).map_err(db)? else {
            return Ok(None);
        };
        Ok(Some(LegacyDramaRows {
            drama,
            characters: rows_of(row.try_get(1).map_err(db)?),
            episodes: rows_of(row.try_get(2).map_err(db)?),
            scenes: rows_of(row.try_get(3).map_err(db)?),
            assets: rows_of(row.try_get(4).map_err(db)?),
        }))
    }

    #[tracing::instrument(skip_all, fields(schema = self.schema))]
    async fn legacy_users(&self) -> Result<Vec<LegacyRow>, RepoError> {
        let Some(statement) = &self.read_users else {
            return Ok(Vec::new());
        };
        let rows: Vec<Value> = sqlx::query_scalar(AssertSqlSafe(statement.clone()))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows_of(Value::Array(rows)))
    }

    #[tracing::instrument(skip_all, fields(ids = ids.len()))]
    async fn auth_standing(
        &self,
        ids: &[UserId],
    ) -> Result<Option<HashMap<UserId, AuthStanding>>, RepoError> {
        let Some(statement) = &self.read_auth else {
            return Ok(None);
        };
        let ids: Vec<uuid::Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
        let rows: Vec<(uuid::Uuid, bool)> = sqlx::query_as(AssertSqlSafe(statement.clone()))
            .bind(&ids)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(Some(
            rows.into_iter()
                .map(|(id, anonymous)| {
                    let standing = if anonymous {
                        AuthStanding::Anonymous
                    } else {
                        AuthStanding::SignedUp
                    };
                    (UserId::from(id), standing)
                })
                .collect(),
        ))
    }
}

/// Who could write each table of `schema` from outside the server: for each of Supabase's
/// client roles that exists (`anon`, `authenticated`), whether it holds INSERT or UPDATE (on
/// the table or a column) and, where row security is on, whether a permissive policy for it
/// (or for everyone) lets inserts or updates through. Read it before adoption: adoption
/// revokes the roles' grants, after which every table reads as closed.
///
/// # Errors
/// `Unavailable`; `Unexpected`.
pub async fn legacy_table_access(
    pool: &PgPool,
    schema: &str,
) -> Result<Vec<LegacyTableAccess>, RepoError> {
    let rows = sqlx::query(
        "select c.relname::text, c.relrowsecurity, \
                coalesce((select array_agg(p.polname::text order by p.polname) from pg_policy p \
                          where p.polrelid = c.oid and p.polpermissive \
                            and p.polcmd in ('*', 'a', 'w')), '{}'), \
                coalesce((select array_agg(r.rolname::text order by r.rolname) from pg_roles r \
                          where r.rolname in ('anon', 'authenticated') \
                            and (has_table_privilege(r.oid, c.oid, 'INSERT') \
                                 or has_any_column_privilege(r.oid, c.oid, 'INSERT') \
                                 or has_any_column_privilege(r.oid, c.oid, 'UPDATE')) \
                            and (not c.relrowsecurity or r.rolbypassrls or exists ( \
                                 select 1 from pg_policy p where p.polrelid = c.oid \
                                   and p.polpermissive and p.polcmd in ('*', 'a', 'w') \
                                   and (0 = any(p.polroles) or r.oid = any(p.polroles))))), \
                         '{}') \
         from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = $1 and c.relkind in ('r', 'p') order by 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|row| {
            Ok(LegacyTableAccess {
                table: row.try_get(0).map_err(db)?,
                row_security: row.try_get(1).map_err(db)?,
                write_policies: row.try_get(2).map_err(db)?,
                writable_by: row.try_get(3).map_err(db)?,
            })
        })
        .collect()
}
