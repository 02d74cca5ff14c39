//! `GenerationStore` on PostgreSQL: each method is one transaction that writes domain rows,
//! moves credits and transitions jobs together.
//!
//! # Lock order
//!
//! Every transaction that touches a run and a drama takes its locks in one order:
//!
//! 1. the run's root row in `job_groups` ([`lock_run`]; several runs in id order),
//! 2. the drama row ([`lock_drama`], or the `update` that bumps its version),
//! 3. the drama's entity rows (characters, episodes, scenes, assets; bulk writes send them in
//!    id order),
//! 4. the owner's `users` row (debits and refunds).
//!
//! Two transactions that follow it cannot wait on each other in a cycle, so completions,
//! scene expansions, edits and the refund loop never deadlock (40P01). Edits of a drama take
//! (2)–(3) without a run; the refund loop and a resume take (1) then (4); a submission
//! creates its run, which no other transaction can hold yet, then debits (4). The job engine locks the run
//! again when it completes the task, which is a no-op inside the same transaction.

use async_trait::async_trait;
use drama_dal::{
    Applied, CreditMove, CreditReason, DramaWrite, Entity, EntityUrl, GeneratedAsset,
    GenerationError, GenerationStore, Refund, RepoError, ResumeCharged, ScriptCompletion,
};
use drama_domain::{AssetId, Drama, DramaId, EpisodeId, Scene, UserId};
use drama_jobs::{Expansion, Fence, Graph, JobId, NodeType, RunId, Submitted};
use serde_json::Value;
use sqlx::{PgConnection, Postgres, Row as _, Transaction};
use uuid::Uuid;

use crate::PgStore;
use crate::credits::{apply, balance, try_move};
use crate::dramas::{bump_version, insert_drama, read_complete, write_children};
use crate::error::{db, map_err};
use crate::jobs::{
    complete_in_tx, resume_priced_in_tx, settle_in_tx, submit_in_tx, take_refund_in_tx,
};

/// Lock order, step 1: the run's root row, before any row of the drama. The engine takes the
/// same lock when it completes the task; taking it first makes every completing transaction
/// of a run wait here, holding nothing else.
async fn lock_run(conn: &mut PgConnection, run: RunId) -> Result<(), RepoError> {
    sqlx::query("select 1 from public.job_groups where id = $1 and run_id = $1 for no key update")
        .bind(run.0)
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    Ok(())
}

/// Lock order, step 2: the owner's drama row, with the strength its version bump takes
/// (`for no key update`, so the later `update` needs no stronger lock). `false` when the
/// drama is gone or not the owner's.
async fn lock_drama(
    conn: &mut PgConnection,
    owner: UserId,
    drama: &DramaId,
) -> Result<bool, RepoError> {
    let found: Option<i32> = sqlx::query_scalar(
        "select 1 from public.dramas where id = $1 and owner_id = $2 for no key update",
    )
    .bind(drama.as_str())
    .bind(owner.0)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db)?;
    Ok(found.is_some())
}

/// A script completion that stores nothing and adds nothing: only its call is settled.
fn without_expansion(completion: ScriptCompletion) -> ScriptCompletion {
    ScriptCompletion {
        expansion: Expansion::new(),
        expansion_cost: 0,
        ..completion
    }
}

fn with_applied(mut result: Value, applied: bool) -> Value {
    if let Value::Object(map) = &mut result {
        map.insert("applied".to_owned(), Value::Bool(applied));
    }
    result
}

/// Sets the entity url that goes with a generated asset.
async fn set_entity_url(
    conn: &mut PgConnection,
    drama: &DramaId,
    target: &EntityUrl,
    url: &str,
) -> Result<(), RepoError> {
    let (sql, id): (&'static str, Option<&str>) = match target {
        EntityUrl::None => return Ok(()),
        EntityUrl::Drama => (
            "update public.dramas set url = $3 where id = $1 and $2::text is null",
            None,
        ),
        EntityUrl::Character(c) => (
            "update public.characters set url = $3 where drama_id = $1 and id = $2",
            Some(c.as_str()),
        ),
        EntityUrl::SceneImage(s) => (
            "update public.scenes set image_url = $3 where drama_id = $1 and id = $2",
            Some(s.as_str()),
        ),
        EntityUrl::SceneVideo(s) => (
            "update public.scenes set video_url = $3 where drama_id = $1 and id = $2",
            Some(s.as_str()),
        ),
        EntityUrl::Episode(e) => (
            "update public.episodes set url = $3 where drama_id = $1 and id = $2",
            Some(e.as_str()),
        ),
    };
    sqlx::query(sql)
        .bind(drama.as_str())
        .bind(id)
        .bind(url)
        .execute(conn)
        .await
        .map_err(db)?;
    Ok(())
}

impl PgStore {
    /// Settles a token-priced task: its cost drops to `usage_price` when that is less, and the
    /// difference is credited back (a `usage_settle` row). Lock order: the run (already held)
    /// and its task rows, then the user.
    async fn settle_usage(
        conn: &mut PgConnection,
        owner: UserId,
        fence: &Fence,
        usage_price: Option<i64>,
    ) -> Result<(), GenerationError> {
        let Some(price) = usage_price else {
            return Ok(());
        };
        let back = settle_in_tx(conn, fence, price).await?;
        if back > 0 {
            apply(conn, &CreditMove::usage_settle(owner, fence, back)).await?;
        }
        Ok(())
    }

    /// Debits the expansion's cost (an `expansion` ledger row) when the owner can pay;
    /// returns whether it was paid.
    async fn pay_for_expansion(
        conn: &mut PgConnection,
        owner: UserId,
        fence: &Fence,
        expansion: &Expansion,
        cost: i64,
    ) -> Result<bool, RepoError> {
        if expansion.is_empty() {
            return Ok(false);
        }
        let charge = CreditMove::expansion(owner, fence, cost);
        Ok(try_move(conn, &charge).await?.is_some())
    }

    /// Debits `charge` in `tx` and hands `tx` back; when the owner cannot pay, rolls it back
    /// and answers `InsufficientTokens` with the balance and `needed`.
    async fn debit_or_roll_back(
        mut tx: Transaction<'static, Postgres>,
        owner: UserId,
        charge: &CreditMove,
        needed: i64,
    ) -> Result<Transaction<'static, Postgres>, GenerationError> {
        if try_move(&mut tx, charge).await?.is_some() {
            return Ok(tx);
        }
        let available = balance(&mut tx, owner).await?;
        tx.rollback().await.map_err(db)?;
        Err(RepoError::InsufficientTokens {
            balance: available,
            needed,
        }
        .into())
    }

    /// Ends a task that wrote the drama, in its transaction `tx`, as `completion` says:
    /// settles the task's usage, pays for the expansion when the owner can, completes the
    /// job (with the expansion when it was paid) and commits. Returns whether it was paid.
    async fn settle_and_complete(
        mut tx: Transaction<'_, Postgres>,
        owner: UserId,
        fence: &Fence,
        completion: ScriptCompletion,
    ) -> Result<bool, GenerationError> {
        // Settled before the expansion is paid: what the hold gives back can pay for it.
        Self::settle_usage(&mut tx, owner, fence, completion.usage_price).await?;
        let expansion = completion.expansion;
        let paid =
            Self::pay_for_expansion(&mut tx, owner, fence, &expansion, completion.expansion_cost)
                .await?;
        let result = with_applied(completion.result, paid);
        if !completion.kept_objects.is_empty() {
            sqlx::query(
                "delete from public.orphaned_objects \
                 where storage_key = any($1) and owner_id = $2",
            )
            .bind(&completion.kept_objects)
            .bind(owner.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        complete_in_tx(&mut tx, fence, result, paid.then_some(expansion)).await?;
        tx.commit().await.map_err(db)?;
        Ok(paid)
    }
}

#[async_trait]
impl GenerationStore for PgStore {
    #[tracing::instrument(skip_all, fields(user.id = %owner, cost, nodes = graph.nodes.len()))]
    async fn submit_charged(
        &self,
        owner: UserId,
        cost: i64,
        graph: &Graph,
    ) -> Result<Submitted, GenerationError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        // Refuse early, before writing the graph, when the balance is plainly short; the
        // debit below is what decides. A keyed repeat of a request that was paid for answers
        // with its run even when the balance is spent by now.
        let available = balance(&mut tx, owner).await?;
        if available < cost {
            if let Some(key) = &graph.run.idempotency_key {
                let paid: Option<Uuid> = sqlx::query_scalar(
                    "select id from public.jobs where owner_id = $1 and idempotency_key = $2",
                )
                .bind(graph.run.owner)
                .bind(key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
                if let Some(run) = paid {
                    tx.rollback().await.map_err(db)?;
                    return Ok(Submitted {
                        run_id: JobId(run),
                        created: false,
                        ids: std::collections::BTreeMap::new(),
                    });
                }
            }
            return Err(RepoError::InsufficientTokens {
                balance: available,
                needed: cost,
            }
            .into());
        }
        let submitted = submit_in_tx(&mut tx, graph).await?;
        if !submitted.created {
            // The idempotency key matched an existing run: it was paid for already.
            tx.rollback().await.map_err(db)?;
            return Ok(submitted);
        }
        if !graph.nodes.iter().any(|n| n.node_type == NodeType::Task) {
            // Nothing was out of date: no credits move, so no ledger row is written (a
            // 0-credit row per such request would grow the ledger at the request rate).
            tx.commit().await.map_err(db)?;
            return Ok(submitted);
        }
        let charge = CreditMove::new(owner, -cost.max(0), CreditReason::RunCharge)
            .run(submitted.run_id.0)
            .note(graph.run.kind.clone());
        let tx = Self::debit_or_roll_back(tx, owner, &charge, cost).await?;
        tx.commit().await.map_err(db)?;
        Ok(submitted)
    }

    async fn asset_exists(
        &self,
        owner: UserId,
        drama: &DramaId,
        asset: &AssetId,
    ) -> Result<bool, GenerationError> {
        let found: Option<i32> = sqlx::query_scalar(
            "select 1 from public.assets a join public.dramas d on d.id = a.drama_id \
             where a.drama_id = $1 and a.id = $2 and d.owner_id = $3",
        )
        .bind(drama.as_str())
        .bind(asset.as_str())
        .bind(owner.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(found.is_some())
    }

    #[tracing::instrument(skip_all, fields(drama.id = %drama, asset.id = %generated.asset_id))]
    async fn complete_asset(
        &self,
        fence: &Fence,
        owner: UserId,
        drama: &DramaId,
        generated: &GeneratedAsset,
        result: Value,
    ) -> Result<Applied, GenerationError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_run(&mut tx, fence.run_id).await?;
        // The drama before its asset row: scene writing holds the drama and upserts every
        // asset of it, so locking the asset first would wait on it in the opposite order.
        let drama_there = lock_drama(&mut tx, owner, drama).await?;
        let o = &generated.object;
        let updated = if !drama_there {
            0
        } else {
            sqlx::query(
                "update public.assets a set url = $4, storage_key = $5, content_type = $6, \
                 size_bytes = $7, checksum = $8, input_hash = $9, usage = $10 \
             from public.dramas d \
             where a.drama_id = $1 and a.id = $2 and d.id = a.drama_id and d.owner_id = $3",
            )
            .bind(drama.as_str())
            .bind(generated.asset_id.as_str())
            .bind(owner.0)
            .bind(&generated.url)
            .bind(&o.storage_key)
            .bind(&o.content_type)
            .bind(o.size_bytes)
            .bind(&o.checksum)
            .bind(&o.input_hash)
            .bind(&o.usage)
            .execute(&mut *tx)
            .await
            .map_err(|e| map_err(e, Entity::Asset, generated.asset_id.as_str()))?
            .rows_affected()
        };
        let applied = if updated == 0 {
            sqlx::query(
                "insert into public.orphaned_objects (storage_key, owner_id, drama_id, reason) \
                 values ($1, $2, $3, $4) on conflict (storage_key) do nothing",
            )
            .bind(&o.storage_key)
            .bind(owner.0)
            .bind(drama.as_str())
            .bind(format!(
                "asset {drama}/{} deleted during generation",
                generated.asset_id
            ))
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            Applied::AssetGone
        } else {
            set_entity_url(&mut tx, drama, &generated.entity_url, &generated.url).await?;
            Applied::Recorded(bump_version(&mut tx, owner, drama, None).await?)
        };
        complete_in_tx(
            &mut tx,
            fence,
            with_applied(result, applied != Applied::AssetGone),
            None,
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(applied)
    }

    #[tracing::instrument(skip_all, fields(drama.id = %drama, episode.id = %episode))]
    async fn complete_scenes(
        &self,
        fence: &Fence,
        owner: UserId,
        drama: &DramaId,
        episode: &EpisodeId,
        scenes: &[Scene],
        completion: ScriptCompletion,
    ) -> Result<bool, GenerationError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_run(&mut tx, fence.run_id).await?;
        // Lock the drama before reading it: two episodes' scenes written at once must both
        // land, and a read taken before the lock would let the later writer drop the other's.
        // The call was made and billed whatever happened to the drama meanwhile. A drama or
        // episode deleted while it ran has nothing to take the scenes: the task completes
        // charged without writing (as a generated asset whose drama is gone does), where
        // failing it would refund a call the provider was paid for.
        if !lock_drama(&mut tx, owner, drama).await? {
            return Self::settle_and_complete(tx, owner, fence, without_expansion(completion))
                .await;
        }
        let mut stored = read_complete(&mut tx, owner, drama).await?;
        let Some(ep) = stored.drama.episodes.iter_mut().find(|e| &e.id == episode) else {
            return Self::settle_and_complete(tx, owner, fence, without_expansion(completion))
                .await;
        };
        if !ep.scenes.is_empty() {
            // Scenes stored while the call ran (by the user, or by another run) stay: the
            // call is settled, nothing is written and nothing follows.
            return Self::settle_and_complete(tx, owner, fence, without_expansion(completion))
                .await;
        }
        bump_version(&mut tx, owner, drama, None).await?;
        ep.scenes = scenes.to_vec();
        // Read under the drama's lock: scenes another episode stored meanwhile count against
        // the bounds of the drama's size as well.
        stored.drama.validate().map_err(RepoError::from)?;
        stored.drama.check_size().map_err(RepoError::from)?;
        write_children(&mut tx, &stored.drama, true).await?;
        Self::settle_and_complete(tx, owner, fence, completion).await
    }

    #[tracing::instrument(skip_all, fields(drama.id = %drama.id))]
    async fn complete_drama(
        &self,
        fence: &Fence,
        owner: UserId,
        drama: &Drama,
        write: DramaWrite,
        completion: ScriptCompletion,
    ) -> Result<bool, GenerationError> {
        drama.validate().map_err(RepoError::from)?;
        drama.check_size().map_err(RepoError::from)?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_run(&mut tx, fence.run_id).await?;
        match write {
            DramaWrite::Create => {
                insert_drama(&mut tx, owner, drama).await?;
                write_children(&mut tx, drama, false).await?;
            }
            DramaWrite::Replace => {
                bump_version(&mut tx, owner, &drama.id, None).await?;
                sqlx::query(
                    "update public.dramas set title = $2, description = $3, premise = $4, \
                         url = $5, metadata = $6 where id = $1",
                )
                .bind(drama.id.as_str())
                .bind(&drama.title)
                .bind(&drama.description)
                .bind(&drama.premise)
                .bind(&drama.url)
                .bind(&drama.metadata)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                write_children(&mut tx, drama, true).await?;
            }
        }
        Self::settle_and_complete(tx, owner, fence, completion).await
    }

    #[tracing::instrument(skip_all, fields(job.id = %fence.job_id))]
    async fn complete_script(
        &self,
        fence: &Fence,
        owner: UserId,
        usage_price: Option<i64>,
        result: Value,
    ) -> Result<(), GenerationError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        lock_run(&mut tx, fence.run_id).await?;
        Self::settle_usage(&mut tx, owner, fence, usage_price).await?;
        complete_in_tx(&mut tx, fence, result, None).await?;
        tx.commit().await.map_err(db)?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(job.id = %job, user.id = %owner))]
    async fn resume_charged(
        &self,
        owner: UserId,
        job: JobId,
    ) -> Result<ResumeCharged, GenerationError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let (run, queued, price) = resume_priced_in_tx(&mut tx, job).await?;
        if price > 0 {
            let charge = CreditMove::new(owner, -price, CreditReason::ResumeCharge)
                .run(run.0)
                .note(format!("{queued} tasks queued again"));
            tx = Self::debit_or_roll_back(tx, owner, &charge, price).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(ResumeCharged { run, queued, price })
    }

    #[tracing::instrument(skip_all)]
    async fn settle_refunds(&self, limit: u32) -> Result<Vec<Refund>, GenerationError> {
        // Refunds before claw-backs: a claw-back that stays refused must not hold up others.
        let due = sqlx::query(
            "select g.run_id, j.owner_id from public.job_groups g \
             join public.jobs j on j.id = g.run_id \
             where g.id = g.run_id and g.cost_refundable <> g.cost_refunded \
             order by g.cost_refundable < g.cost_refunded \
             limit $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut refunds = Vec::new();
        for row in due {
            let run: RunId = drama_jobs::JobId(row.try_get::<Uuid, _>("run_id").map_err(db)?);
            let owner = UserId(row.try_get("owner_id").map_err(db)?);
            let mut tx = self.pool.begin().await.map_err(db)?;
            // Lock order: the run (taken by `take_refund_in_tx`), then the user.
            let amount = take_refund_in_tx(&mut tx, run).await?;
            if amount == 0 {
                tx.commit().await.map_err(db)?;
                continue;
            }
            let reason = if amount > 0 {
                CreditReason::Refund
            } else {
                CreditReason::Clawback
            };
            let movement = CreditMove::new(owner, amount, reason).run(run.0);
            if try_move(&mut tx, &movement).await?.is_none() {
                // Never forgiven and never taken below zero: the run stays due.
                tx.rollback().await.map_err(db)?;
                tracing::warn!(user.id = %owner, run.id = %run, amount,
                    "claw-back refused: the balance cannot cover it");
                continue;
            }
            tx.commit().await.map_err(db)?;
            refunds.push(Refund { owner, amount });
        }
        Ok(refunds)
    }
}
