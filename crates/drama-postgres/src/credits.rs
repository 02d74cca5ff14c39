//! The credit ledger on PostgreSQL. Every balance change is one call of the database function
//! `public.move_credits`, which updates `users.tokens` and appends the ledger row in one
//! statement; a check deferred to commit refuses a balance that moved any other way.

use std::str::FromStr as _;

use async_trait::async_trait;
use drama_dal::{
    CreditLedger, CreditMove, CreditReason, Entity, LedgerEntry, LedgerMismatch, RepoError,
    check_ledger_limit, check_move,
};
use drama_domain::UserId;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};

use crate::PgStore;
use crate::error::db;

/// Applies `m` inside the caller's transaction. `Ok(None)` when the owner cannot pay (or does
/// not exist); nothing was written then.
pub(crate) async fn try_move(
    conn: &mut PgConnection,
    m: &CreditMove,
) -> Result<Option<i64>, RepoError> {
    check_move(m)?;
    sqlx::query_scalar("select public.move_credits($1, $2, $3, $4, $5, $6)")
        .bind(m.owner.0)
        .bind(m.amount)
        .bind(m.reason.as_str())
        .bind(m.run_id)
        .bind(m.task_id)
        .bind(m.note.as_deref())
        .fetch_one(conn)
        .await
        .map_err(db)
}

/// The balance of `owner`.
pub(crate) async fn balance(conn: &mut PgConnection, owner: UserId) -> Result<i64, RepoError> {
    sqlx::query_scalar("select tokens from public.users where id = $1")
        .bind(owner.0)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| RepoError::not_found(Entity::User, owner))
}

/// Applies `m` inside the caller's transaction; the error says why it could not.
pub(crate) async fn apply(conn: &mut PgConnection, m: &CreditMove) -> Result<i64, RepoError> {
    match try_move(conn, m).await? {
        Some(after) => Ok(after),
        None => Err(RepoError::InsufficientTokens {
            balance: balance(conn, m.owner).await?,
            needed: m.amount.saturating_neg(),
        }),
    }
}

fn entry_from_row(row: &PgRow) -> Result<LedgerEntry, RepoError> {
    let reason: String = row.try_get("reason").map_err(db)?;
    Ok(LedgerEntry {
        id: row.try_get("id").map_err(db)?,
        owner: UserId(row.try_get("owner_id").map_err(db)?),
        amount: row.try_get("amount").map_err(db)?,
        balance_after: row.try_get("balance_after").map_err(db)?,
        reason: CreditReason::from_str(&reason)?,
        run_id: row.try_get("run_id").map_err(db)?,
        task_id: row.try_get("task_id").map_err(db)?,
        note: row.try_get("note").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
    })
}

#[async_trait]
impl CreditLedger for PgStore {
    #[tracing::instrument(skip_all, fields(user.id = %movement.owner, amount = movement.amount,
        reason = %movement.reason))]
    async fn move_credits(&self, movement: &CreditMove) -> Result<i64, RepoError> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        apply(&mut conn, movement).await
    }

    #[tracing::instrument(skip_all, fields(user.id = %owner))]
    async fn ledger(
        &self,
        owner: UserId,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<LedgerEntry>, RepoError> {
        check_ledger_limit(limit)?;
        // credit_ledger_owner_idx
        let rows = sqlx::query(
            "select id, owner_id, amount, balance_after, reason, run_id, task_id, note, \
                 created_at \
             from public.credit_ledger where owner_id = $1 \
             order by id desc limit $2 offset $3",
        )
        .bind(owner.0)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(entry_from_row).collect()
    }

    #[tracing::instrument(skip_all)]
    async fn check_ledger(&self) -> Result<Vec<LedgerMismatch>, RepoError> {
        let rows = sqlx::query(
            "select u.id, u.tokens, coalesce(l.total, 0)::bigint as total \
             from public.users u \
             left join (select owner_id, sum(amount) as total from public.credit_ledger \
                        group by owner_id) l on l.owner_id = u.id \
             where u.tokens <> coalesce(l.total, 0) \
             order by u.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(LedgerMismatch {
                    owner: UserId(r.try_get("id").map_err(db)?),
                    balance: r.try_get("tokens").map_err(db)?,
                    ledger_sum: r.try_get("total").map_err(db)?,
                })
            })
            .collect()
    }
}
