use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{SecondsFormat, Utc};
use drama_app::{App, Readiness};
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use serde_json::json;
use std::sync::PoisonError;

use super::openapi::schemas as doc;
use crate::endpoint::endpoint;
use crate::headers::header_text;
use crate::state::ApiState;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/health").get(health))
        .service(endpoint("/ready").get(ready))
        .service(endpoint("/openapi.json").get(openapi))
        .service(endpoint("/docs").get(docs))
        // The old server (FastAPI) served the same rendering here too.
        .service(endpoint("/redoc").get(redoc))
        .service(endpoint("/").get(root));
}

/// Liveness: the process answers.
#[utoipa::path(
    get,
    path = "/health",
    tag = "Service",
    summary = "Liveness",
    responses(
        (status = 200, description = "The process answers.", body = doc::Health),
    ),
    security(())
)]
async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ok",
        "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

/// Readiness: the database and the bucket answer, each within
/// [`drama_app::READINESS_CHECK_TIMEOUT`]. The answer is reused for `http.ready_cache`, so any
/// number of probes costs one check per interval.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "Service",
    summary = "Readiness: the database and the bucket answer",
    responses(
        (status = 200, description = "Ready."),
        (status = 503, description = "A dependency is down; see `Retry-After`."),
    ),
    security(())
)]
async fn ready(state: web::Data<ApiState>) -> HttpResponse {
    let report = state
        .readiness
        .report(state.app(), state.settings.ready_cache)
        .await;
    // The route answers anyone, so a failure is named, never described: its text can carry
    // the bucket's address, its name or the database's words. The log has the detail.
    let word = |r: &Result<(), String>| if r.is_ok() { "ok" } else { "unavailable" };
    let body = json!({
        "status": if report.ready() { "ready" } else { "not ready" },
        "database": word(&report.database),
        "storage": word(&report.storage),
    });
    if report.ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header(("Retry-After", "5"))
            .json(body)
    }
}

/// The old server's greeting for API clients; a browser (asking for HTML first) gets a page
/// with links to the console and the docs.
#[utoipa::path(
    get,
    path = "/",
    tag = "Service",
    summary = "Service banner",
    responses(
        (status = 200, description = "Name, version and documentation links."),
    ),
    security(())
)]
async fn root(req: HttpRequest) -> HttpResponse {
    let wants_html = header_text(req.headers(), header::ACCEPT)
        .and_then(|v| v.split(',').next())
        .is_some_and(|first| first.trim().starts_with("text/html"));
    if wants_html {
        return crate::console::landing();
    }
    HttpResponse::Ok().json(json!({
        "message": "Drama API Worker",
        "version": env!("CARGO_PKG_VERSION"),
        "docs": "/docs",
        "openapi": "/openapi.json",
        "console": "/ui",
    }))
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "Service",
    summary = "This document",
    responses(
        (status = 200, description = "OpenAPI 3.1 document."),
    ),
    security(())
)]
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(super::openapi::document())
}

/// The same page as `/docs`, at the old server's second address.
#[utoipa::path(
    get,
    path = "/redoc",
    tag = "Service",
    summary = "Browsable API documentation at the old server's address",
    responses(
        (status = 200, description = "HTML page."),
    ),
    security(())
)]
async fn redoc() -> HttpResponse {
    docs().await
}

/// A browsable rendering of the document (Redoc, loaded from its CDN).
#[utoipa::path(
    get,
    path = "/docs",
    tag = "Service",
    summary = "Browsable API documentation",
    responses(
        (status = 200, description = "HTML page."),
    ),
    security(())
)]
async fn docs() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            "<!doctype html><html><head><title>drama-server API</title><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
         <body><redoc spec-url=\"/openapi.json\"></redoc>\
         <script src=\"https://cdn.redoc.ly/redoc/latest/bundles/redoc.standalone.js\"></script>\
         </body></html>",
        )
}

/// The last `/ready` answer, and the check under way: probes that come while one runs wait
/// for it instead of each making its own, and none holds a lock while it waits.
#[derive(Default)]
pub(crate) struct ReadyCache(std::sync::Mutex<ReadyState>);

#[derive(Default)]
struct ReadyState {
    last: Option<(std::time::Instant, Readiness)>,
    running: Option<Shared<BoxFuture<'static, Readiness>>>,
}

impl ReadyCache {
    /// The answer taken less than `fresh` ago, or the one of the check under way, or a new
    /// check's. The check runs as a task of its own, so a probe that goes away does not stop
    /// it half-way for the others.
    async fn report(&self, app: &App, fresh: std::time::Duration) -> Readiness {
        let check = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((at, report)) = &state.last
                && at.elapsed() < fresh
            {
                return report.clone();
            }
            match &state.running {
                Some(check) => check.clone(),
                None => {
                    let app = app.clone();
                    let task = tokio::spawn(async move { app.readiness().await });
                    let check = async move {
                        task.await.unwrap_or_else(|e| Readiness {
                            database: Err(format!("the check ended: {e}")),
                            storage: Err(format!("the check ended: {e}")),
                        })
                    }
                    .boxed()
                    .shared();
                    state.running = Some(check.clone());
                    check
                }
            }
        };
        let report = check.await;
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.running = None;
        state.last = Some((std::time::Instant::now(), report.clone()));
        report
    }
}
