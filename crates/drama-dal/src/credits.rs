//! The credit ledger: every movement of a user's tokens is a row, written together with the
//! balance it leaves, so `users.tokens = sum(ledger)` holds for every user at all times.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_domain::UserId;
use uuid::Uuid;

use crate::error::RepoError;

/// Why credits moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CreditReason {
    /// The balance a user started with (or had when the ledger started).
    Opening,
    /// Given by an operator.
    Grant,
    /// Changed by an operator or a maintenance task, not by a run.
    Adjustment,
    /// A run's estimated cost, debited when it was submitted.
    RunCharge,
    /// Tasks a run added while it ran (scenes, then their storyboards and clips).
    Expansion,
    /// Work re-queued by a resume, debited with the resume.
    ResumeCharge,
    /// Work that failed, was skipped or was cancelled before it cost anything, given back.
    Refund,
    /// A refund taken back (resumed work completed after it was refunded).
    Clawback,
    /// The part of a token-priced call's hold that its usage did not cost, given back when
    /// the call's task completed.
    UsageSettle,
}

impl CreditReason {
    /// Every reason, in a stable order.
    pub const ALL: [CreditReason; 9] = [
        Self::Opening,
        Self::Grant,
        Self::Adjustment,
        Self::RunCharge,
        Self::Expansion,
        Self::ResumeCharge,
        Self::Refund,
        Self::Clawback,
        Self::UsageSettle,
    ];

    /// The stored and wire name (`run_charge`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Opening => "opening",
            Self::Grant => "grant",
            Self::Adjustment => "adjustment",
            Self::RunCharge => "run_charge",
            Self::Expansion => "expansion",
            Self::ResumeCharge => "resume_charge",
            Self::Refund => "refund",
            Self::Clawback => "clawback",
            Self::UsageSettle => "usage_settle",
        }
    }
}

impl fmt::Display for CreditReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CreditReason {
    type Err = RepoError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| RepoError::invalid("reason", format!("unknown credit reason `{s}`")))
    }
}

/// One movement to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditMove {
    /// Whose balance.
    pub owner: UserId,
    /// Signed: positive gives, negative takes; zero records unbilled usage.
    pub amount: i64,
    /// Why.
    pub reason: CreditReason,
    /// The run it belongs to, if any.
    pub run_id: Option<Uuid>,
    /// The task it belongs to, if any.
    pub task_id: Option<Uuid>,
    /// Free text (an operator's reason for a grant).
    pub note: Option<String>,
}

impl CreditMove {
    /// A movement of `amount` for `reason`.
    pub fn new(owner: UserId, amount: i64, reason: CreditReason) -> Self {
        Self {
            owner,
            amount,
            reason,
            run_id: None,
            task_id: None,
            note: None,
        }
    }

    /// The debit of a scene expansion's `cost`, charged to the run and task holding `fence`
    /// (the same row on every backend).
    pub fn expansion(owner: UserId, fence: &drama_jobs::Fence, cost: i64) -> Self {
        Self::new(owner, -cost.max(0), CreditReason::Expansion)
            .run(fence.run_id.0)
            .task(fence.job_id.0)
    }

    /// The credit of what a token-priced task's hold exceeded its price by, to the run and
    /// task holding `fence` (the same row on every backend).
    pub fn usage_settle(owner: UserId, fence: &drama_jobs::Fence, back: i64) -> Self {
        Self::new(owner, back.max(0), CreditReason::UsageSettle)
            .run(fence.run_id.0)
            .task(fence.job_id.0)
    }

    /// Names the run it belongs to.
    #[must_use]
    pub fn run(mut self, run: Uuid) -> Self {
        self.run_id = Some(run);
        self
    }

    /// Names the task it belongs to.
    #[must_use]
    pub fn task(mut self, task: Uuid) -> Self {
        self.task_id = Some(task);
        self
    }

    /// Adds a note.
    #[must_use]
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }
}

/// Longest note a ledger row keeps.
pub const MAX_NOTE_LEN: usize = 1000;

/// A stored movement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Increasing in the order movements were applied.
    pub id: i64,
    /// Whose balance.
    pub owner: UserId,
    /// Signed amount.
    pub amount: i64,
    /// The balance right after it.
    pub balance_after: i64,
    /// Why.
    pub reason: CreditReason,
    /// The run, if any.
    pub run_id: Option<Uuid>,
    /// The task, if any.
    pub task_id: Option<Uuid>,
    /// Free text.
    pub note: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A user whose balance differs from the sum of their ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerMismatch {
    /// Who.
    pub owner: UserId,
    /// `users.tokens`.
    pub balance: i64,
    /// The sum of their ledger rows.
    pub ledger_sum: i64,
}

/// Checks a movement's fields before it is applied.
///
/// # Errors
/// `Invalid` naming `note` when it is too long.
pub fn check_move(m: &CreditMove) -> Result<(), RepoError> {
    if m.note.as_ref().is_some_and(|n| n.len() > MAX_NOTE_LEN) {
        return Err(RepoError::invalid(
            "note",
            format!("must be at most {MAX_NOTE_LEN} bytes"),
        ));
    }
    Ok(())
}

/// The ledger: the only way balances change.
#[async_trait]
pub trait CreditLedger: Send + Sync {
    /// Applies one movement: the balance and its ledger row change together. Returns the new
    /// balance.
    ///
    /// # Errors
    /// `InsufficientTokens` when the movement would take the balance below zero (nothing is
    /// written); `NotFound` (User); `Invalid` (note); `Unavailable`.
    async fn move_credits(&self, movement: &CreditMove) -> Result<i64, RepoError>;

    /// `owner`'s movements, newest first.
    ///
    /// # Errors
    /// `Invalid` for a limit of 0 or above [`crate::MAX_PAGE_SIZE`]; `Unavailable`.
    async fn ledger(
        &self,
        owner: UserId,
        limit: u32,
        offset: u32,
    ) -> Result<Vec<LedgerEntry>, RepoError>;

    /// Every user whose balance differs from the sum of their ledger (none, when the ledger
    /// is whole).
    ///
    /// # Errors
    /// `Unavailable`.
    async fn check_ledger(&self) -> Result<Vec<LedgerMismatch>, RepoError>;
}

/// Checks the amount of an operator's debit or credit (`debit_tokens`, `credit_tokens`): the
/// sign is the operation's, so the amount itself must be positive.
///
/// # Errors
/// `Invalid` naming `amount`.
pub fn check_amount(amount: i64) -> Result<(), RepoError> {
    if amount <= 0 {
        return Err(RepoError::invalid(
            "amount",
            format!("must be positive, got {amount}"),
        ));
    }
    Ok(())
}

/// Checks a ledger page request.
///
/// # Errors
/// `Invalid` naming `limit`.
pub fn check_ledger_limit(limit: u32) -> Result<(), RepoError> {
    if limit == 0 || limit > crate::MAX_PAGE_SIZE {
        return Err(RepoError::invalid(
            "limit",
            format!(
                "must be between 1 and {}, got {limit}",
                crate::MAX_PAGE_SIZE
            ),
        ));
    }
    Ok(())
}
