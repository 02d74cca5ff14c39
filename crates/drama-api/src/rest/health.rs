use actix_web::{HttpResponse, web};
use chrono::{SecondsFormat, Utc};
use serde_json::json;

use crate::state::ApiState;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/", web::get().to(root));
}

/// Liveness: the process answers.
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Readiness: the database and the bucket answer.
async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let report = state.app().readiness().await;
    let body = json!({
        "status": if report.ready() { "ready" } else { "not ready" },
        "database": report.database.as_ref().map_or_else(|e| e.clone(), |()| "ok".to_owned()),
        "storage": report.storage.as_ref().map_or_else(|e| e.clone(), |()| "ok".to_owned()),
    });
    if report.ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

async fn root() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "message": "Drama API Worker",
        "version": env!("CARGO_PKG_VERSION"),
        "docs": "/docs",
        "openapi": "/openapi.json",
    }))
}
