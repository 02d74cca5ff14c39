//! `GET /models`: the script models a request may name and what calls cost.

use actix_web::{HttpResponse, web};

use super::openapi::schemas as doc;
use crate::endpoint::endpoint;
use crate::state::ApiState;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/models").get(models));
}

/// The price list; public, like the prices on a shop's door.
#[utoipa::path(
    get,
    path = "/models",
    tag = "Service",
    summary = "The script models a request may name and what calls cost",
    responses(
        (status = 200, description = "The price list; unknown models are refused with 422 listing these names.", body = doc::Pricing),
    ),
    security(())
)]
async fn models(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(state.app().pricing())
}
