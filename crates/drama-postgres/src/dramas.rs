//! `DramaRepository` on PostgreSQL.
//!
//! Reads aggregate a whole tree into one JSON document inside the database (one statement);
//! writes send each kind of child as one JSON array and upsert it with `jsonb_to_recordset`, so
//! the number of statements never depends on the size of the drama. The SQL of each direction
//! lives in its own module (`read`, `write`, `patch`); this one holds the repository methods
//! that combine them.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_dal::{
    AssetObject, DramaRepository, Entity, Page, PageRequest, RepoError, StoredDrama, Version,
};
use drama_domain::{AssetId, Drama, DramaId, DramaSummary, EntityPatch, UserId};
use sqlx::{AssertSqlSafe, Row as _};

use crate::PgStore;
use crate::error::{db, map_err};

mod patch;
mod read;
mod write;

pub(crate) use read::read_complete;
use read::{
    GET_MANY_COMPLETE, Head, LIST_COMPLETE_AFTER, LIST_COMPLETE_FIRST, LIST_HEADS_AFTER,
    LIST_HEADS_FIRST, SUMMARY_COLUMNS, bind_page, paginate, stored_from_row, summary_from_row,
};
use write::why_not_written;
pub(crate) use write::{bump_version, insert_drama, write_children};

#[async_trait]
impl DramaRepository for PgStore {
    #[tracing::instrument(skip_all, fields(drama.id = %drama.id))]
    async fn create(&self, owner: UserId, drama: &Drama) -> Result<StoredDrama, RepoError> {
        drama.validate()?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let row = insert_drama(&mut tx, owner, drama)
            .await
            .map_err(|e| match e {
                // `map_err` names the drama's id; the one missing is the owner.
                RepoError::NotFound {
                    entity: Entity::User,
                    ..
                } => RepoError::not_found(Entity::User, owner),
                other => other,
            })?;
        write_children(&mut tx, drama, false).await?;
        tx.commit().await.map_err(db)?;
        Ok(StoredDrama {
            drama: drama.clone(),
            owner,
            version: row.try_get("version").map_err(db)?,
            created_at: row.try_get("created_at").map_err(db)?,
            updated_at: row.try_get("updated_at").map_err(db)?,
        })
    }

    async fn id_taken(&self, id: &DramaId) -> Result<bool, RepoError> {
        sqlx::query_scalar("select exists (select 1 from public.dramas where id = $1)")
            .bind(id.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    async fn get_complete(&self, owner: UserId, id: &DramaId) -> Result<StoredDrama, RepoError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        if let Some(cache) = &self.cache {
            // Version and creation time together identify one state of one incarnation of
            // the drama (a deleted and re-created drama starts at version 1 again).
            let current: Option<(Version, DateTime<Utc>)> = sqlx::query_as(
                "select version, created_at from public.dramas where id = $1 and owner_id = $2",
            )
            .bind(id.as_str())
            .bind(owner.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?;
            let (version, created_at) =
                current.ok_or_else(|| RepoError::not_found(Entity::Drama, id))?;
            if let Some(hit) = cache.get(id, version, created_at) {
                return Ok((*hit).clone());
            }
        }
        let stored = read_complete(&mut conn, owner, id).await?;
        if let Some(cache) = &self.cache {
            cache.put(&stored);
        }
        Ok(stored)
    }

    #[tracing::instrument(skip_all, fields(drama.id = %drama.id, expected))]
    async fn save_complete(
        &self,
        owner: UserId,
        drama: &Drama,
        expected: Option<Version>,
    ) -> Result<Version, RepoError> {
        drama.validate()?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        let version: Option<Version> = sqlx::query_scalar(
            "update public.dramas set title = $4, description = $5, premise = $6, url = $7, \
                 metadata = $8, version = version + 1 \
             where id = $1 and owner_id = $2 and ($3::bigint is null or version = $3) \
             returning version",
        )
        .bind(drama.id.as_str())
        .bind(owner.0)
        .bind(expected)
        .bind(&drama.title)
        .bind(&drama.description)
        .bind(&drama.premise)
        .bind(&drama.url)
        .bind(&drama.metadata)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(version) = version else {
            return Err(why_not_written(&mut tx, owner, &drama.id, expected).await);
        };
        write_children(&mut tx, drama, true).await?;
        tx.commit().await.map_err(db)?;
        Ok(version)
    }

    #[tracing::instrument(skip_all, fields(drama.id = %drama, expected))]
    async fn patch(
        &self,
        owner: UserId,
        drama: &DramaId,
        patch: &EntityPatch,
        expected: Option<Version>,
    ) -> Result<StoredDrama, RepoError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        bump_version(&mut tx, owner, drama, expected).await?;
        patch::apply(&mut tx, drama, patch).await?;
        let stored = read_complete(&mut tx, owner, drama).await?;
        tx.commit().await.map_err(db)?;
        Ok(stored)
    }

    #[tracing::instrument(skip_all, fields(drama.id = %drama, asset.id = %asset))]
    async fn attach_asset_object(
        &self,
        owner: UserId,
        drama: &DramaId,
        asset: &AssetId,
        url: &str,
        object: &AssetObject,
    ) -> Result<Version, RepoError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let version = bump_version(&mut tx, owner, drama, None).await?;
        let done = sqlx::query(
            "update public.assets set url = $3, storage_key = $4, content_type = $5, \
                 size_bytes = $6, checksum = $7, input_hash = $8, usage = $9 \
             where drama_id = $1 and id = $2",
        )
        .bind(drama.as_str())
        .bind(asset.as_str())
        .bind(url)
        .bind(&object.storage_key)
        .bind(&object.content_type)
        .bind(object.size_bytes)
        .bind(&object.checksum)
        .bind(&object.input_hash)
        .bind(&object.usage)
        .execute(&mut *tx)
        .await
        .map_err(|e| map_err(e, Entity::Asset, asset.as_str()))?;
        if done.rows_affected() == 0 {
            return Err(RepoError::not_found(Entity::Asset, asset));
        }
        tx.commit().await.map_err(db)?;
        Ok(version)
    }

    #[tracing::instrument(skip_all, fields(drama.id = %drama))]
    async fn asset_objects(
        &self,
        owner: UserId,
        drama: &DramaId,
    ) -> Result<HashMap<AssetId, AssetObject>, RepoError> {
        let rows = sqlx::query(
            "select a.id, a.storage_key, a.content_type, a.size_bytes, a.checksum, a.input_hash, \
                    a.usage \
             from public.dramas d \
             left join public.assets a on a.drama_id = d.id and a.storage_key is not null \
             where d.id = $1 and d.owner_id = $2",
        )
        .bind(drama.as_str())
        .bind(owner.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        if rows.is_empty() {
            return Err(RepoError::not_found(Entity::Drama, drama));
        }
        let mut objects = HashMap::new();
        for row in rows {
            let Some(id) = row.try_get::<Option<String>, _>("id").map_err(db)? else {
                continue;
            };
            let id = AssetId::parse(id).map_err(|e| RepoError::Unexpected(e.into()))?;
            objects.insert(
                id,
                AssetObject {
                    storage_key: row.try_get("storage_key").map_err(db)?,
                    content_type: row.try_get("content_type").map_err(db)?,
                    size_bytes: row.try_get("size_bytes").map_err(db)?,
                    checksum: row.try_get("checksum").map_err(db)?,
                    input_hash: row.try_get("input_hash").map_err(db)?,
                    usage: row.try_get("usage").map_err(db)?,
                },
            );
        }
        Ok(objects)
    }

    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    async fn delete(&self, owner: UserId, id: &DramaId) -> Result<Vec<String>, RepoError> {
        // The CTE's snapshot still sees the assets the cascade removes.
        let row = sqlx::query(
            "with gone as (delete from public.dramas where id = $1 and owner_id = $2 returning id) \
             select exists (select 1 from gone) as deleted, \
                    array(select a.storage_key from public.assets a join gone g on a.drama_id = g.id \
                          where a.storage_key is not null order by a.storage_key) as keys",
        )
        .bind(id.as_str())
        .bind(owner.0)
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        if !row.try_get::<bool, _>("deleted").map_err(db)? {
            return Err(RepoError::not_found(Entity::Drama, id));
        }
        if let Some(cache) = &self.cache {
            cache.forget(id);
        }
        row.try_get("keys").map_err(db)
    }

    #[tracing::instrument(skip_all)]
    async fn list_summaries(
        &self,
        owner: UserId,
        page: &PageRequest,
    ) -> Result<Page<DramaSummary>, RepoError> {
        page.validate()?;
        let rows = match &page.after {
            None => sqlx::query(AssertSqlSafe(format!(
                "{SUMMARY_COLUMNS} order by updated_at desc, id desc limit $2 offset $3"
            ))),
            Some(_) => sqlx::query(AssertSqlSafe(format!(
                "{SUMMARY_COLUMNS} and (updated_at, id) < ($4, $5) \
                 order by updated_at desc, id desc limit $2 offset $3"
            ))),
        };
        let rows = bind_page(rows, owner, page)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let items = rows
            .iter()
            .map(summary_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(paginate(items, page, |s| (s.updated_at, &s.id)))
    }

    #[tracing::instrument(skip_all)]
    async fn list_complete(
        &self,
        owner: UserId,
        page: &PageRequest,
    ) -> Result<Page<StoredDrama>, RepoError> {
        page.validate()?;
        let Some(cache) = &self.cache else {
            let query = match &page.after {
                None => sqlx::query(LIST_COMPLETE_FIRST),
                Some(_) => sqlx::query(LIST_COMPLETE_AFTER),
            };
            let rows = bind_page(query, owner, page)
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
            let items = rows
                .iter()
                .map(stored_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(paginate(items, page, |d| (d.updated_at, &d.drama.id)));
        };
        // The page's ids and versions first; only dramas the cache does not hold at that
        // version are aggregated, all in one more statement.
        let query = match &page.after {
            None => sqlx::query(LIST_HEADS_FIRST),
            Some(_) => sqlx::query(LIST_HEADS_AFTER),
        };
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let heads = bind_page(query, owner, page)
            .fetch_all(&mut *conn)
            .await
            .map_err(db)?;
        let mut found: Vec<(Head, Option<Arc<StoredDrama>>)> = Vec::with_capacity(heads.len());
        let mut missing: Vec<String> = Vec::new();
        for row in &heads {
            let head = Head::from_row(row)?;
            let hit = cache.get(&head.id, head.version, head.created_at);
            if hit.is_none() {
                missing.push(head.id.as_str().to_owned());
            }
            found.push((head, hit));
        }
        let mut fetched: HashMap<DramaId, Arc<StoredDrama>> = HashMap::new();
        if !missing.is_empty() {
            let rows = sqlx::query(GET_MANY_COMPLETE)
                .bind(owner.0)
                .bind(&missing)
                .fetch_all(&mut *conn)
                .await
                .map_err(db)?;
            for row in &rows {
                let stored = stored_from_row(row)?;
                cache.put(&stored);
                fetched.insert(stored.drama.id.clone(), Arc::new(stored));
            }
        }
        // A drama deleted between the two statements is left out.
        let listed: Vec<(Head, Arc<StoredDrama>)> = found
            .into_iter()
            .filter_map(|(head, hit)| {
                let stored = hit.or_else(|| fetched.remove(&head.id))?;
                Some((head, stored))
            })
            .collect();
        let page = paginate(listed, page, |(head, _)| (head.updated_at, &head.id));
        Ok(Page {
            items: page
                .items
                .into_iter()
                .map(|(_, stored)| Arc::unwrap_or_clone(stored))
                .collect(),
            next: page.next,
        })
    }
}
