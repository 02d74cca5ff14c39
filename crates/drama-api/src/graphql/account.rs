//! `me { id tokens ledger(limit, offset) { … } }`: the caller's balance and credit movements.

use drama_app::{LedgerEntry, MAX_LEDGER_PAGE};
use drama_domain::User;
use juniper::{FieldResult, graphql_object};

use super::context::Ctx;
use super::error::{GqlError, bad_input};

/// GraphQL's `Int` is 32 bits; balances and amounts beyond it are clamped (and would take
/// more credits than any deployment grants).
fn int(n: i64) -> i32 {
    i32::try_from(n).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX })
}

/// The signed-in user.
pub struct Me(pub(crate) User);

#[graphql_object(context = Ctx)]
impl Me {
    fn id(&self) -> String {
        self.0.id.to_string()
    }
    fn email(&self) -> Option<&str> {
        self.0.email.as_deref()
    }
    fn display_name(&self) -> Option<&str> {
        self.0.display_name.as_deref()
    }
    /// The credit balance.
    fn tokens(&self) -> i32 {
        int(self.0.tokens)
    }
    fn subscription_tier(&self) -> &str {
        &self.0.subscription_tier
    }
    /// Movements of the caller's credits, newest first.
    async fn ledger(
        ctx: &Ctx,
        #[graphql(default = 20)] limit: i32,
        #[graphql(default = 0)] offset: i32,
    ) -> FieldResult<Vec<CreditEntry>> {
        let limit = u32::try_from(limit)
            .ok()
            .filter(|l| (1..=MAX_LEDGER_PAGE).contains(l))
            .ok_or_else(|| {
                bad_input(format!(
                    "limit must be between 1 and {MAX_LEDGER_PAGE}, got {limit}"
                ))
            })?;
        let offset = u32::try_from(offset).map_err(|_| bad_input("offset must not be negative"))?;
        let entries = ctx
            .app
            .credit_ledger(&ctx.caller, limit, offset)
            .await
            .map_err(|e| juniper::IntoFieldError::into_field_error(GqlError(e)))?;
        Ok(entries.into_iter().map(CreditEntry).collect())
    }
}

/// One movement of credits.
pub struct CreditEntry(LedgerEntry);

#[graphql_object(context = Ctx)]
impl CreditEntry {
    /// Grows in the order movements were applied.
    fn id(&self) -> String {
        self.0.id.to_string()
    }
    /// Signed: positive gives, negative takes.
    fn amount(&self) -> i32 {
        int(self.0.amount)
    }
    /// The balance right after it.
    fn balance_after(&self) -> i32 {
        int(self.0.balance_after)
    }
    /// `opening`, `grant`, `adjustment`, `run_charge`, `expansion`, `resume_charge`,
    /// `refund`, `clawback` or `usage_settle`.
    fn reason(&self) -> &str {
        self.0.reason.as_str()
    }
    /// The run (job) it belongs to.
    fn run_id(&self) -> Option<String> {
        self.0.run_id.map(|r| r.to_string())
    }
    /// The task it belongs to.
    fn task_id(&self) -> Option<String> {
        self.0.task_id.map(|t| t.to_string())
    }
    fn note(&self) -> Option<&str> {
        self.0.note.as_deref()
    }
    /// RFC 3339.
    fn created_at(&self) -> String {
        self.0
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
}
