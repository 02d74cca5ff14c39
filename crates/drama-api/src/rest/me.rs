//! `GET /me`: the caller, their credit balance and the newest movements of their credits.

use actix_web::{HttpResponse, web};
use drama_app::LedgerEntry;
use serde::Deserialize;
use serde_json::{Value, json};

use super::openapi::schemas as doc;
use super::query::Query;
use crate::endpoint::endpoint;
use crate::error::ApiError;
use crate::state::{ApiState, Auth};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/me").get(me));
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct MeQuery {
    /// Ledger entries to return.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 100, default = 20)]
    limit: Option<u32>,
    /// Newer entries to skip.
    #[param(value_type = Option<i64>, minimum = 0, maximum = 4294967295_i64, default = 0)]
    offset: Option<u32>,
}

/// A ledger entry on the wire.
pub(crate) fn entry_json(e: &LedgerEntry) -> Value {
    json!({
        "id": e.id,
        "amount": e.amount,
        "balance_after": e.balance_after,
        "reason": e.reason.as_str(),
        "run_id": e.run_id,
        "task_id": e.task_id,
        "note": e.note,
        "created_at": e.created_at,
    })
}

/// `GET /me?limit=20&offset=0`.
#[utoipa::path(
    get,
    path = "/me",
    tag = "Account",
    summary = "The caller: balance and the newest movements of their credits",
    params(MeQuery),
    responses(
        (status = 200, description = "The account.", body = doc::Me),
        (status = 422, description = "A limit outside 1..100.", body = doc::ValidationError),
    )
)]
async fn me(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    query: Query<MeQuery>,
) -> Result<HttpResponse, ApiError> {
    let (limit, offset) = (query.limit.unwrap_or(20), query.offset.unwrap_or(0));
    let account = state.app().account(&caller, limit, offset).await?;
    let u = &account.user;
    let next = account
        .more
        .then(|| offset.saturating_add(u32::try_from(account.ledger.len()).unwrap_or(u32::MAX)));
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "id": u.id,
            "email": u.email,
            "display_name": u.display_name,
            "tokens": u.tokens,
            "subscription_tier": u.subscription_tier,
            "ledger": account.ledger.iter().map(entry_json).collect::<Vec<_>>(),
            "limit": limit,
            "offset": offset,
            "next_offset": next,
        })))
}
