//! What a script task's call comes to at the prices its task was submitted with.

use drama_jobs::JobContext;
use serde_json::Value;

use crate::pipeline::product::earlier_script_usage;

/// What a scenes task comes to: its call's usage at the token prices when this attempt made
/// the call (`called`). Scenes found stored made no call, so the task costs nothing in every
/// pricing mode (a per-call price included, or the whole hold would be kept for no call) —
/// unless an earlier attempt made the call, which the provider billed: it is priced from
/// that attempt's checkpoint, and a kept charge stays whole.
pub(super) fn scenes_price(
    ctx: &JobContext,
    prices: Option<drama_ai::TokenPrices>,
    usage: &Value,
    called: bool,
) -> Option<i64> {
    if called {
        return usage_price(prices, usage);
    }
    match earlier_script_usage(ctx) {
        Some(earlier) => usage_price(prices, &earlier),
        None if ctx.charge_kept() => None,
        None => Some(0),
    }
}

/// What a script call's `usage` (as checkpointed) comes to at the per-token prices its task was
/// submitted with; `None` keeps the task's per-call price (no token prices, or a call that
/// reported no tokens). No usage (no call was made) comes to nothing.
pub(super) fn usage_price(prices: Option<drama_ai::TokenPrices>, usage: &Value) -> Option<i64> {
    let prices = prices?;
    let usage: drama_ai::Usage = if usage.is_null() {
        drama_ai::Usage::default()
    } else {
        serde_json::from_value(usage.clone()).ok()?
    };
    let Some(price) = prices.price(&usage) else {
        tracing::warn!("a script call reported no token usage; it is billed its per-call price");
        return None;
    };
    Some(i64::try_from(price).unwrap_or(i64::MAX))
}
