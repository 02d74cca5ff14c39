#![doc = include_str!("../README.md")]

pub mod auth;
pub mod console;
mod endpoint;
mod error;
mod follow;
#[cfg(feature = "graphql")]
pub mod graphql;
mod jwks;
mod lapse;
mod media_links;
pub mod metrics;
pub mod middleware;
pub mod realtime;
mod rest;
mod state;

pub use auth::{AuthError, AuthSettings, Authenticator};
pub use error::{ApiError, ErrorCode, Row as ErrorRow};
pub use state::{ApiState, Auth, GraphqlLimits, HttpSettings, MAX_MEDIA_URL_LIFETIME};

use std::sync::Arc;

use actix_web::{HttpResponse, web};

/// The whole route table at the root of an `App`, used by the server and by in-process tests
/// alike: it also answers every unknown path with the JSON 404 envelope.
pub fn configure(state: Arc<ApiState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        install(state, cfg);
        cfg.default_service(web::to(not_found));
    }
}

/// The API as a scope under `prefix` (e.g. `/drama`) for another service's actix `App`: its
/// extractor error handlers, body limits and JSON 404 apply inside the prefix only, so the
/// host's own routes and 404s are untouched. The console assumes the root mount; under a
/// prefix it is served but calls the API at the root.
pub fn scope(prefix: &str, state: Arc<ApiState>) -> actix_web::Scope {
    web::scope(prefix)
        .configure(move |cfg| install(state, cfg))
        .default_service(web::to(not_found))
}

fn install(state: Arc<ApiState>, cfg: &mut web::ServiceConfig) {
    let json_limit = state.settings.json_limit;
    cfg.app_data(web::Data::from(state))
        .app_data(web::PayloadConfig::new(json_limit))
        .app_data(
            web::JsonConfig::default()
                .limit(json_limit)
                .error_handler(|e, _| json_error(e)),
        )
        .app_data(web::QueryConfig::default().error_handler(|e, _| {
            ApiError::validation(
                &drama_domain::DomainError::field("query", e.to_string()),
                "query",
            )
            .into()
        }))
        .app_data(
            web::PathConfig::default()
                .error_handler(|e, _| ApiError::bad_request(e.to_string()).into()),
        );
    rest::configure(cfg);
    console::configure(cfg);
    #[cfg(feature = "graphql")]
    graphql::configure(cfg);
}

fn json_error(e: actix_web::error::JsonPayloadError) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    match e {
        JsonPayloadError::OverflowKnownLength { .. } | JsonPayloadError::Overflow { .. } => {
            ApiError::message(ErrorCode::TooLarge, "Request body is too large").into()
        }
        other => ApiError::bad_request(format!("Invalid JSON body: {other}")).into(),
    }
}

async fn not_found() -> HttpResponse {
    actix_web::ResponseError::error_response(&ApiError::message(ErrorCode::NotFound, "Not Found"))
}
