//! `UserRepository` on PostgreSQL.

use async_trait::async_trait;
use drama_dal::{
    CreditMove, CreditReason, Entity, NewUser, RepoError, UserRepository, check_amount,
};
use drama_domain::{User, UserId};
use sqlx::Row as _;
use sqlx::postgres::PgRow;

use crate::PgStore;
use crate::credits;
use crate::error::{db, map_err};

fn user_from_row(row: &PgRow) -> Result<User, RepoError> {
    Ok(User {
        id: UserId(row.try_get("id").map_err(db)?),
        email: row.try_get("email").map_err(db)?,
        display_name: row.try_get("display_name").map_err(db)?,
        tokens: row.try_get("tokens").map_err(db)?,
        subscription_tier: row.try_get("subscription_tier").map_err(db)?,
        created_at: row.try_get("created_at").map_err(db)?,
        updated_at: row.try_get("updated_at").map_err(db)?,
    })
}

#[async_trait]
impl UserRepository for PgStore {
    #[tracing::instrument(skip_all, fields(user.id = %id))]
    async fn get_user(&self, id: UserId) -> Result<User, RepoError> {
        let row = sqlx::query(
            "select id, email, display_name, tokens, subscription_tier, created_at, updated_at \
             from public.users where id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| RepoError::not_found(Entity::User, id))?;
        user_from_row(&row)
    }

    #[tracing::instrument(skip_all, fields(user.id = %user.id))]
    async fn create_user(&self, user: &NewUser) -> Result<User, RepoError> {
        user.check()?;
        let row = sqlx::query(
            "insert into public.users (id, email, display_name, tokens, subscription_tier) \
             values ($1, $2, $3, $4, $5) \
             returning id, email, display_name, tokens, subscription_tier, created_at, updated_at",
        )
        .bind(user.id.0)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(user.tokens)
        .bind(&user.subscription_tier)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| map_err(e, Entity::User, &user.id.to_string()))?;
        user_from_row(&row)
    }

    #[tracing::instrument(skip_all, fields(user.id = %subject))]
    async fn upsert_from_auth(
        &self,
        subject: UserId,
        email: Option<&str>,
        opening_tokens: i64,
    ) -> Result<User, RepoError> {
        if opening_tokens < 0 {
            return Err(RepoError::invalid("tokens", "must not be negative"));
        }
        // The no-op update makes `returning` yield the existing row; it writes only when the
        // email actually changes. The insert's balance is opened in the ledger by the
        // `users` insert trigger.
        let row = sqlx::query(
            "insert into public.users as u (id, email, tokens) values ($1, $2, $3) \
             on conflict (id) do update set email = coalesce(excluded.email, u.email) \
             where u.email is distinct from coalesce(excluded.email, u.email) \
             returning id, email, display_name, tokens, subscription_tier, created_at, updated_at",
        )
        .bind(subject.0)
        .bind(email)
        .bind(opening_tokens)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match row {
            Some(row) => user_from_row(&row),
            None => self.get_user(subject).await,
        }
    }

    #[tracing::instrument(skip_all, fields(user.id = %id, amount))]
    async fn debit_tokens(&self, id: UserId, amount: i64) -> Result<i64, RepoError> {
        check_amount(amount)?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        credits::apply(
            &mut conn,
            &CreditMove::new(id, -amount, CreditReason::Adjustment),
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(user.id = %id, amount))]
    async fn credit_tokens(&self, id: UserId, amount: i64) -> Result<i64, RepoError> {
        check_amount(amount)?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        credits::apply(
            &mut conn,
            &CreditMove::new(id, amount, CreditReason::Adjustment),
        )
        .await
    }
}
