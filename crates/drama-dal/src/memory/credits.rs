//! Users and the credit ledger in memory: every balance change goes through
//! [`State::move_credits`], which appends the ledger row with it.

use std::collections::HashMap;

use async_trait::async_trait;
use drama_domain::{User, UserId};

use super::{MemoryStore, State};
use crate::credits::{
    CreditLedger, CreditMove, CreditReason, LedgerEntry, LedgerMismatch, check_amount,
    check_ledger_limit, check_move,
};
use crate::error::{Entity, RepoError};
use crate::repos::{NewUser, UserRepository};

impl State {
    /// Changes a balance and records the movement, or changes nothing.
    pub(super) fn move_credits(&mut self, m: &CreditMove) -> Result<i64, RepoError> {
        check_move(m)?;
        let now = self.tick();
        let user = self
            .users
            .get_mut(&m.owner)
            .ok_or_else(|| RepoError::not_found(Entity::User, m.owner))?;
        let after = user
            .tokens
            .checked_add(m.amount)
            .filter(|b| *b >= 0)
            .ok_or(RepoError::InsufficientTokens {
                balance: user.tokens,
                needed: m.amount.saturating_neg(),
            })?;
        user.tokens = after;
        user.updated_at = now;
        let id = self.ledger.len() as i64 + 1;
        self.ledger.push(LedgerEntry {
            id,
            owner: m.owner,
            amount: m.amount,
            balance_after: after,
            reason: m.reason,
            run_id: m.run_id,
            task_id: m.task_id,
            note: m.note.clone(),
            created_at: now,
        });
        Ok(after)
    }

    /// Adds a user with its opening ledger row.
    fn insert_user(&mut self, user: User) {
        let now = user.created_at;
        self.ledger.push(LedgerEntry {
            id: self.ledger.len() as i64 + 1,
            owner: user.id,
            amount: user.tokens,
            balance_after: user.tokens,
            reason: CreditReason::Opening,
            run_id: None,
            task_id: None,
            note: Some("initial credits".to_owned()),
            created_at: now,
        });
        self.users.insert(user.id, user);
    }
}

impl MemoryStore {
    /// [`CreditLedger::move_credits`] without awaiting, for callers that must move credits
    /// while they hold another lock (the memory twin of a transaction).
    ///
    /// # Errors
    /// As [`CreditLedger::move_credits`].
    pub fn move_credits_now(&self, movement: &CreditMove) -> Result<i64, RepoError> {
        self.lock().move_credits(movement)
    }
}

#[async_trait]
impl UserRepository for MemoryStore {
    async fn get_user(&self, id: UserId) -> Result<User, RepoError> {
        self.lock()
            .users
            .get(&id)
            .cloned()
            .ok_or_else(|| RepoError::not_found(Entity::User, id))
    }

    async fn create_user(&self, user: &NewUser) -> Result<User, RepoError> {
        user.check()?;
        let mut s = self.lock();
        if s.users.contains_key(&user.id) {
            return Err(RepoError::AlreadyExists {
                entity: Entity::User,
                id: user.id.to_string(),
            });
        }
        let now = s.tick();
        let created = User {
            id: user.id,
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            tokens: user.tokens,
            subscription_tier: user.subscription_tier.clone(),
            created_at: now,
            updated_at: now,
        };
        s.insert_user(created.clone());
        Ok(created)
    }

    async fn upsert_from_auth(
        &self,
        subject: UserId,
        email: Option<&str>,
        opening_tokens: i64,
    ) -> Result<User, RepoError> {
        if opening_tokens < 0 {
            return Err(RepoError::invalid("tokens", "must not be negative"));
        }
        let mut s = self.lock();
        let now = s.tick();
        if !s.users.contains_key(&subject) {
            let new = NewUser::new(subject);
            s.insert_user(User {
                id: subject,
                email: None,
                display_name: None,
                tokens: opening_tokens,
                subscription_tier: new.subscription_tier,
                created_at: now,
                updated_at: now,
            });
        }
        let user = s
            .users
            .get_mut(&subject)
            .ok_or_else(|| RepoError::not_found(Entity::User, subject))?;
        if let Some(email) = email
            && user.email.as_deref() != Some(email)
        {
            user.email = Some(email.to_owned());
            user.updated_at = now;
        }
        Ok(user.clone())
    }

    async fn debit_tokens(&self, id: UserId, amount: i64) -> Result<i64, RepoError> {
        check_amount(amount)?;
        self.lock()
            .move_credits(&CreditMove::new(id, -amount, CreditReason::Adjustment))
    }

    async fn credit_tokens(&self, id: UserId, amount: i64) -> Result<i64, RepoError> {
        check_amount(amount)?;
        self.lock()
            .move_credits(&CreditMove::new(id, amount, CreditReason::Adjustment))
    }
}

#[async_trait]
impl CreditLedger for MemoryStore {
    async fn move_credits(&self, movement: &CreditMove) -> Result<i64, RepoError> {
        self.lock().move_credits(movement)
    }

    async fn ledger(
        &self,
        owner: UserId,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<LedgerEntry>, RepoError> {
        check_ledger_limit(limit)?;
        Ok(self
            .lock()
            .ledger
            .iter()
            .rev()
            .filter(|e| e.owner == owner)
            .skip(offset as usize)
            .take(limit as usize)
            .cloned()
            .collect())
    }

    async fn check_ledger(&self) -> Result<Vec<LedgerMismatch>, RepoError> {
        let s = self.lock();
        let mut sums: HashMap<UserId, i64> = HashMap::new();
        for e in &s.ledger {
            *sums.entry(e.owner).or_default() += e.amount;
        }
        let mut out: Vec<LedgerMismatch> = s
            .users
            .values()
            .filter_map(|u| {
                let sum = sums.get(&u.id).copied().unwrap_or(0);
                (sum != u.tokens).then_some(LedgerMismatch {
                    owner: u.id,
                    balance: u.tokens,
                    ledger_sum: sum,
                })
            })
            .collect();
        out.sort_by_key(|m| m.owner.0);
        Ok(out)
    }
}
