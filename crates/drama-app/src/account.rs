//! The caller's account: who they are, their balance and the movements of their credits.

use drama_dal::LedgerEntry;
use drama_domain::User;

use crate::{App, AppError, Caller};

/// Most ledger entries one page returns.
pub const MAX_LEDGER_PAGE: u32 = 100;

/// The caller as `GET /me` shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    /// The user (balance in `tokens`).
    pub user: User,
    /// Their newest ledger entries, newest first.
    pub ledger: Vec<LedgerEntry>,
    /// Whether older entries exist beyond this page.
    pub more: bool,
}

impl App {
    /// The caller's user record (balance in `tokens`).
    ///
    /// # Errors
    /// `NotFound` (a key whose user is gone); `Unavailable`.
    pub async fn me(&self, caller: &Caller) -> Result<User, AppError> {
        Ok(self.store.get_user(caller.user).await?)
    }

    /// The caller's account with a page of their ledger (`limit` entries after skipping
    /// `offset`, newest first).
    ///
    /// # Errors
    /// `Invalid` naming `limit` (1..=[`MAX_LEDGER_PAGE`]); `NotFound` (a key whose user is
    /// gone); `Unavailable`.
    #[tracing::instrument(skip_all, fields(user.id = %caller.user, limit, offset))]
    pub async fn account(
        &self,
        caller: &Caller,
        limit: u32,
        offset: u32,
    ) -> Result<Account, AppError> {
        let user = self.store.get_user(caller.user).await?;
        // One more than asked tells whether there is a next page.
        let mut ledger = self.ledger_page(caller, limit, offset, 1).await?;
        let more = ledger.len() > limit as usize;
        ledger.truncate(limit as usize);
        Ok(Account { user, ledger, more })
    }

    /// A page of the caller's ledger, newest first.
    ///
    /// # Errors
    /// `Invalid` naming `limit` (1..=[`MAX_LEDGER_PAGE`]); `Unavailable`.
    pub async fn credit_ledger(
        &self,
        caller: &Caller,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<LedgerEntry>, AppError> {
        self.ledger_page(caller, limit, offset, 0).await
    }

    async fn ledger_page(
        &self,
        caller: &Caller,
        limit: u32,
        offset: u32,
        extra: u32,
    ) -> Result<Vec<LedgerEntry>, AppError> {
        if limit == 0 || limit > MAX_LEDGER_PAGE {
            return Err(AppError::Invalid(drama_domain::DomainError::field(
                "limit",
                format!("must be between 1 and {MAX_LEDGER_PAGE}, got {limit}"),
            )));
        }
        Ok(self
            .store
            .ledger(caller.user, limit + extra, offset)
            .await?)
    }
}
