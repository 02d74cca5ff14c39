//! `GET /models`: the script models a request may name and what calls cost.

use actix_web::{HttpResponse, web};

use crate::endpoint::endpoint;
use crate::state::ApiState;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/models").get(models));
}

/// The price list; public, like the prices on a shop's door.
async fn models(state: web::Data<ApiState>) -> HttpResponse {
    HttpResponse::Ok().json(state.app().pricing())
}
