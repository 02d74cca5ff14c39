#![doc = include_str!("../README.md")]

pub mod auth;
pub mod connection;
pub mod console;
mod endpoint;
mod error;
mod follow;
#[cfg(feature = "graphql")]
pub mod graphql;
mod headers;
mod jwks;
mod lapse;
mod media_links;
pub mod metrics;
pub mod middleware;
mod rate;
pub mod realtime;
mod rest;
mod state;

pub use auth::{AuthError, AuthSettings, Authenticator};
pub use error::{ApiError, ErrorCode, Row as ErrorRow};
pub use state::{
    ApiState, Auth, ForwardedHeader, GraphqlLimits, HttpSettings, MAX_MEDIA_URL_LIFETIME,
};

use std::sync::Arc;

use actix_web::{HttpResponse, web};

/// The OpenAPI document of the REST routes as served at `/openapi.json` (pretty JSON),
/// generated from the handlers and their body types.
pub fn openapi_json() -> &'static str {
    rest::openapi::document()
}

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

/// Unknown paths: the JSON 404, except that a path with a trailing slash is sent to the same
/// path without it (307, method and body kept), as the old server (FastAPI's
/// `redirect_slashes`) did for `/dramas/` and the like, which old clients still call.
async fn not_found(req: actix_web::HttpRequest) -> HttpResponse {
    if let Some(location) = without_trailing_slash(req.path(), req.query_string()) {
        return HttpResponse::TemporaryRedirect()
            .insert_header((actix_web::http::header::LOCATION, location))
            .json(serde_json::json!({"detail": "Moved to the path without its trailing slash"}));
    }
    actix_web::ResponseError::error_response(&ApiError::message(ErrorCode::NotFound, "Not Found"))
}

/// `path` without its trailing slashes (and `query` kept), when that is a local path. A path
/// that would start with `//` or `/\` is not: a browser reads it as another host, which
/// would make this an open redirect.
fn without_trailing_slash(path: &str, query: &str) -> Option<String> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.len() == path.len() || trimmed.is_empty() {
        return None;
    }
    let mut rest = trimmed.strip_prefix('/')?.chars();
    if !rest
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || "-_.~%".contains(c))
        || trimmed.chars().any(|c| c.is_control() || c == '\\')
    {
        return None;
    }
    Some(if query.is_empty() {
        trimmed.to_owned()
    } else {
        format!("{trimmed}?{query}")
    })
}

#[cfg(test)]
mod tests {
    use super::without_trailing_slash;

    #[test]
    fn only_local_paths_lose_their_trailing_slash() {
        assert_eq!(
            without_trailing_slash("/dramas/", ""),
            Some("/dramas".into())
        );
        assert_eq!(
            without_trailing_slash("/dramas/d1/", "limit=2"),
            Some("/dramas/d1?limit=2".into())
        );
        assert_eq!(
            without_trailing_slash("/dramas//", ""),
            Some("/dramas".into())
        );
        assert_eq!(without_trailing_slash("/dramas", ""), None);
        assert_eq!(without_trailing_slash("/", ""), None);
        assert_eq!(without_trailing_slash("//", ""), None);
        // Another host to a browser: never a Location.
        assert_eq!(without_trailing_slash("//evil.example/", ""), None);
        assert_eq!(without_trailing_slash("/\\evil.example/", ""), None);
        assert_eq!(without_trailing_slash("/a\\b/", ""), None);
    }
}
