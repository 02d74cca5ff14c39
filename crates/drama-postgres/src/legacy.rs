//! `LegacyImportRepository` on PostgreSQL: an imported drama, its object records and its
//! import record are written in one transaction.
//!
//! The tree is written the way `save_complete` writes it (one JSON array per kind of child,
//! upserted with `jsonb_to_recordset`, then one statement for everything that is gone), so an
//! import costs a constant number of statements whatever the size of the drama.

use async_trait::async_trait;
use drama_dal::legacy::{
    DramaState, ImportRecord, ImportWrite, LegacyImport, LegacyImportRepository, RecordedImport,
};
use drama_dal::{Entity, RepoError, Version};
use drama_domain::{DramaId, UserId};
use serde_json::{Value, json};
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use crate::PgStore;
use crate::dramas::write_children;
use crate::error::{db, map_err};

const INSERT_DRAMA: &str = "\
insert into public.dramas (id, owner_id, title, description, premise, url, metadata, \
    created_at, updated_at) \
values ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()), coalesce($9, $8, now())) \
returning version";

const REPLACE_DRAMA: &str = "\
update public.dramas set title = $4, description = $5, premise = $6, url = $7, metadata = $8, \
    version = version + 1 \
where id = $1 and owner_id = $2 and version = $3 \
returning version";

const LOCK_DRAMA: &str =
    "select version from public.dramas where id = $1 and owner_id = $2 for update";

const BUMP_VERSION: &str =
    "update public.dramas set version = version + 1 where id = $1 returning version";

/// Sets the object columns of the named assets where they differ; counts the assets named,
/// those that exist and those changed.
const ATTACH_OBJECTS: &str = "\
with x as (select * from jsonb_to_recordset($2) as x(id text, storage_key text, \
        content_type text, size_bytes bigint, checksum text, input_hash text, usage jsonb)), \
     changed as (update public.assets a set storage_key = x.storage_key, \
            content_type = x.content_type, size_bytes = x.size_bytes, checksum = x.checksum, \
            input_hash = x.input_hash, usage = x.usage \
        from x \
        where a.drama_id = $1 and a.id = x.id \
          and (a.storage_key, a.content_type, a.size_bytes, a.checksum, a.input_hash, a.usage) \
              is distinct from \
              (x.storage_key, x.content_type, x.size_bytes, x.checksum, x.input_hash, x.usage) \
        returning a.id) \
select (select count(*) from x) as named, \
       (select count(*) from public.assets a join x on a.drama_id = $1 and a.id = x.id) as present, \
       (select count(*) from changed) as changed, \
       (select min(x.id) from x where not exists \
           (select 1 from public.assets a where a.drama_id = $1 and a.id = x.id)) as missing";

const UPSERT_RECORD: &str = "\
insert into public.legacy_imports as r (source_key, source_hash, drama_id, owner_id, \
    drama_version, imported_at) \
values ($1, $2, $3, $4, $5, now()) \
on conflict (source_key) do update set source_hash = excluded.source_hash, \
    drama_id = excluded.drama_id, owner_id = excluded.owner_id, \
    drama_version = excluded.drama_version, imported_at = excluded.imported_at \
returning imported_at";

const RECORDED_IMPORTS: &str = "\
select r.source_key, r.source_hash, r.drama_id, r.owner_id, r.drama_version, r.imported_at, \
       d.owner_id as current_owner, d.version as current_version \
from public.legacy_imports r left join public.dramas d on d.id = r.drama_id \
where starts_with(r.source_key, $1) \
order by r.source_key";

/// Why a guarded write of the owner's drama touched nothing.
async fn not_written(
    conn: &mut PgConnection,
    owner: UserId,
    id: &DramaId,
    expected: Version,
) -> RepoError {
    let actual: Result<Option<Version>, _> =
        sqlx::query_scalar("select version from public.dramas where id = $1 and owner_id = $2")
            .bind(id.as_str())
            .bind(owner.0)
            .fetch_optional(conn)
            .await;
    match actual {
        Ok(Some(actual)) => RepoError::VersionConflict { expected, actual },
        Ok(None) => RepoError::not_found(Entity::Drama, id),
        Err(e) => db(e),
    }
}

/// Writes the drama row as `write` says; returns its version afterwards.
async fn write_drama_row(
    conn: &mut PgConnection,
    import: &LegacyImport,
) -> Result<Version, RepoError> {
    let d = &import.drama;
    match &import.write {
        ImportWrite::Create {
            created_at,
            updated_at,
        } => sqlx::query_scalar(INSERT_DRAMA)
            .bind(d.id.as_str())
            .bind(import.owner.0)
            .bind(&d.title)
            .bind(&d.description)
            .bind(&d.premise)
            .bind(&d.url)
            .bind(&d.metadata)
            .bind(created_at)
            .bind(updated_at)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| match map_err(e, Entity::Drama, d.id.as_str()) {
                RepoError::NotFound {
                    entity: Entity::User,
                    ..
                } => RepoError::not_found(Entity::User, import.owner),
                other => other,
            }),
        ImportWrite::Replace { expected } => {
            let version: Option<Version> = sqlx::query_scalar(REPLACE_DRAMA)
                .bind(d.id.as_str())
                .bind(import.owner.0)
                .bind(expected)
                .bind(&d.title)
                .bind(&d.description)
                .bind(&d.premise)
                .bind(&d.url)
                .bind(&d.metadata)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
            match version {
                Some(v) => Ok(v),
                None => Err(not_written(conn, import.owner, &d.id, *expected).await),
            }
        }
        ImportWrite::Keep { expected } => {
            let version: Option<Version> = sqlx::query_scalar(LOCK_DRAMA)
                .bind(d.id.as_str())
                .bind(import.owner.0)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db)?;
            match version {
                Some(v) if v == *expected => Ok(v),
                Some(actual) => Err(RepoError::VersionConflict {
                    expected: *expected,
                    actual,
                }),
                None => Err(RepoError::not_found(Entity::Drama, &d.id)),
            }
        }
    }
}

/// Attaches the import's objects; returns how many assets changed.
async fn attach_objects(conn: &mut PgConnection, import: &LegacyImport) -> Result<i64, RepoError> {
    if import.objects.is_empty() {
        return Ok(0);
    }
    let rows: Vec<Value> = import
        .objects
        .iter()
        .map(|(asset, o)| {
            json!({"id": asset, "storage_key": o.storage_key, "content_type": o.content_type,
                   "size_bytes": o.size_bytes, "checksum": o.checksum,
                   "input_hash": o.input_hash, "usage": o.usage})
        })
        .collect();
    let row = sqlx::query(ATTACH_OBJECTS)
        .bind(import.drama.id.as_str())
        .bind(Value::Array(rows))
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| map_err(e, Entity::Asset, import.drama.id.as_str()))?;
    let named: i64 = row.try_get("named").map_err(db)?;
    let present: i64 = row.try_get("present").map_err(db)?;
    if present < named {
        let missing: Option<String> = row.try_get("missing").map_err(db)?;
        return Err(RepoError::not_found(
            Entity::Asset,
            missing.unwrap_or_default(),
        ));
    }
    row.try_get("changed").map_err(db)
}

/// The drama's references to objects outside its folder become exactly `$2` (one statement:
/// the ones no longer named go, new ones come).
const REPLACE_REFERENCES: &str = "\
with gone as (delete from public.legacy_object_references \
              where drama_id = $1 and storage_key <> all($2::text[])) \
insert into public.legacy_object_references (drama_id, storage_key) \
select $1, k from unnest($2::text[]) as k \
on conflict (drama_id, storage_key) do nothing";

fn parse_drama_id(id: String) -> Result<DramaId, RepoError> {
    DramaId::parse(id).map_err(|e| RepoError::Unexpected(e.into()))
}

#[async_trait]
impl LegacyImportRepository for PgStore {
    #[tracing::instrument(skip_all, fields(prefix = source_prefix))]
    async fn recorded_imports(
        &self,
        source_prefix: &str,
    ) -> Result<Vec<RecordedImport>, RepoError> {
        let rows = sqlx::query(RECORDED_IMPORTS)
            .bind(source_prefix)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|row| {
                let current_owner: Option<Uuid> = row.try_get("current_owner").map_err(db)?;
                let current_version: Option<Version> =
                    row.try_get("current_version").map_err(db)?;
                Ok(RecordedImport {
                    record: ImportRecord {
                        source_key: row.try_get("source_key").map_err(db)?,
                        source_hash: row.try_get("source_hash").map_err(db)?,
                        drama_id: parse_drama_id(row.try_get("drama_id").map_err(db)?)?,
                        owner: UserId(row.try_get("owner_id").map_err(db)?),
                        version: row.try_get("drama_version").map_err(db)?,
                        imported_at: row.try_get("imported_at").map_err(db)?,
                    },
                    current: current_owner.zip(current_version).map(|(owner, version)| {
                        DramaState {
                            owner: UserId(owner),
                            version,
                        }
                    }),
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    async fn drama_state(&self, id: &DramaId) -> Result<Option<DramaState>, RepoError> {
        let row = sqlx::query("select owner_id, version from public.dramas where id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|row| {
            Ok(DramaState {
                owner: UserId(row.try_get("owner_id").map_err(db)?),
                version: row.try_get("version").map_err(db)?,
            })
        })
        .transpose()
    }

    #[tracing::instrument(skip_all, fields(drama.id = %import.drama.id, source = import.source_key))]
    async fn apply_import(&self, import: &LegacyImport) -> Result<ImportRecord, RepoError> {
        import.drama.validate()?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let mut version = write_drama_row(&mut tx, import).await?;
        match import.write {
            ImportWrite::Create { .. } => write_children(&mut tx, &import.drama, false).await?,
            ImportWrite::Replace { .. } => write_children(&mut tx, &import.drama, true).await?,
            ImportWrite::Keep { .. } => {}
        }
        let changed = attach_objects(&mut tx, import).await?;
        if changed > 0 && matches!(import.write, ImportWrite::Keep { .. }) {
            version = sqlx::query_scalar(BUMP_VERSION)
                .bind(import.drama.id.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query(REPLACE_REFERENCES)
            .bind(import.drama.id.as_str())
            .bind(&import.references)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let imported_at = sqlx::query_scalar(UPSERT_RECORD)
            .bind(&import.source_key)
            .bind(&import.source_hash)
            .bind(import.drama.id.as_str())
            .bind(import.owner.0)
            .bind(version)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| map_err(e, Entity::Drama, import.drama.id.as_str()))?;
        tx.commit().await.map_err(db)?;
        Ok(ImportRecord {
            source_key: import.source_key.clone(),
            source_hash: import.source_hash.clone(),
            drama_id: import.drama.id.clone(),
            owner: import.owner,
            version,
            imported_at,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn drama_owners(&self) -> Result<Vec<UserId>, RepoError> {
        let owners: Vec<Uuid> =
            sqlx::query_scalar("select distinct owner_id from public.dramas order by owner_id")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        Ok(owners.into_iter().map(UserId).collect())
    }
}
