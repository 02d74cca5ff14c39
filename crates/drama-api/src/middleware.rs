//! Per-request context: an id, a tracing span, a deadline, and one log line per failure.

use std::time::{Duration, Instant};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage as _, web};
use tracing::Instrument as _;

use crate::error::{ApiError, Chain, ErrorCode};
use crate::headers::header_text;
use crate::state::ApiState;

/// Header carrying the request id, in and out.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id of the current request (also in its log lines and its `x-request-id` header).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

fn incoming_id(req: &ServiceRequest) -> Option<String> {
    let value = header_text(req.headers(), &REQUEST_ID)?;
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ok.then(|| value.to_owned())
}

/// Requests whose handler legitimately outlives the deadline: the two routes that read a
/// multipart upload before answering (a slow client's large file), and the streams. Chosen by
/// method and route, never by a header alone: a client that could switch the deadline off
/// with `Upgrade: x` or a `multipart/*` content type on any route could hold a heavy handler,
/// its connection and a database connection for as long as it liked. The route is the one
/// the path matches in the route table (`GET /dramas/events` reads the drama `events`, which
/// is no stream); the API may be mounted under a prefix, so it is matched at its end. (The
/// patterns are those `rest/jobs.rs`, `rest/library.rs`, `rest/dramas.rs` and `graphql/mod.rs`
/// register; the tests below ask the real route table.)
fn is_long_lived(req: &ServiceRequest) -> bool {
    let Some(route) = req.match_pattern() else {
        return false;
    };
    let is = |pattern: &str| route.ends_with(pattern);
    let method = req.method();
    let multipart =
        header_text(req.headers(), "content-type").is_some_and(|v| v.starts_with("multipart/"));
    let upload =
        *method == Method::POST && multipart && (is("/asset-library/upload") || is("/dramas"));
    let stream = *method == Method::GET
        && (is("/jobs/{job}/events") || is("/dramas/{d}/events") || is("/subscriptions"));
    upload || stream
}

/// A body announced larger than the JSON limit is refused before a byte of it is read.
/// (Uploads have their own, larger limit, enforced while streaming.)
fn oversized(req: &ServiceRequest) -> Option<ApiError> {
    let limit = req.app_data::<web::Data<ApiState>>()?.settings.json_limit;
    let length: u64 = req
        .headers()
        .get("content-length")?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    let multipart =
        header_text(req.headers(), "content-type").is_some_and(|v| v.starts_with("multipart/"));
    (!multipart && length > limit as u64).then(|| {
        ApiError::message(
            ErrorCode::TooLarge,
            format!("Request body is too large: {length} bytes, the limit is {limit}"),
        )
    })
}

/// A request without credentials beyond its address's rate (requests with credentials are
/// counted per caller once authenticated, or per address when the credentials fail).
///
/// Probes, the console's embedded files and signed media URLs are not counted: they cost next
/// to nothing, and one page of a drama loads dozens of images and clips (a video player asks
/// for many ranges) from one address without a header.
///
/// The upgrade of a GraphQL socket is counted whatever its headers: `/subscriptions` reads
/// its credentials from `connection_init`, after the upgrade, never from headers, so a header
/// of any value would otherwise open sockets past the rate, each held until its init timeout.
fn anonymous_over_rate(req: &ServiceRequest) -> Option<ApiError> {
    let headers = req.headers();
    let socket = *req.method() == Method::GET
        && req
            .match_pattern()
            .is_some_and(|route| route.ends_with("/subscriptions"));
    if !socket && (headers.contains_key("authorization") || headers.contains_key("x-api-key")) {
        return None;
    }
    let path = req.path();
    if matches!(path, "/health" | "/ready" | "/ui")
        || path.starts_with("/ui/")
        || path.starts_with("/media/")
        || path.starts_with("/files/")
    {
        return None;
    }
    let state = req.app_data::<web::Data<ApiState>>()?;
    state.check_anonymous(req.request()).err()
}

/// Assigns the request id, opens the request span, enforces the deadline and logs the outcome.
pub async fn request_context(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let id = incoming_id(&req).unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request.id = %id,
        http.method = %req.method(),
        http.path = %req.path(),
        http.status = tracing::field::Empty,
    );
    if let Some(refusal) = oversized(&req).or_else(|| anonymous_over_rate(&req)) {
        tracing::info!(request.id = %id, error = %refusal, "request refused");
        let mut response = req.error_response(refusal);
        if let Ok(value) = HeaderValue::from_str(&id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        return Ok(response);
    }
    let deadline = req
        .app_data::<web::Data<ApiState>>()
        .map(|s| s.settings.request_timeout)
        .filter(|_| !is_long_lived(&req))
        .unwrap_or(Duration::MAX);
    let started = Instant::now();
    // The request must not be cloned before routing (routing needs it unshared), so a request
    // that outlives its deadline is answered by the error itself, without the id header.
    let outcome = tokio::time::timeout(deadline, next.call(req))
        .instrument(span.clone())
        .await;
    let _entered = span.enter();
    let response = match outcome {
        Ok(Ok(response)) => response.map_into_boxed_body(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "request failed in a middleware");
            return Err(e);
        }
        Err(_) => {
            let error = ApiError::unavailable(format!(
                "the request took longer than {} s",
                deadline.as_secs()
            ));
            tracing::error!(error = %Chain(&error), "request timed out");
            return Err(error.into());
        }
    };
    let status = response.status();
    span.record("http.status", status.as_u16());
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    // The one log line of a failed request, with the whole chain of its causes (the layers
    // below return errors instead of logging them).
    if let Some(error) = response.response().error() {
        let chain = error
            .as_error::<ApiError>()
            .map_or_else(|| error.to_string(), |e| Chain(e).to_string());
        if status.is_server_error() {
            tracing::error!(error = %chain, duration_ms = elapsed_ms, "request failed");
        } else {
            tracing::info!(error = %chain, duration_ms = elapsed_ms, "request refused");
        }
    } else {
        tracing::debug!(duration_ms = elapsed_ms, "request served");
    }
    let mut response = crate::media_links::sign_response(response).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    Ok(response)
}

/// The cross-origin policy of `settings.cors_origins`. Wrap it outermost, so preflights are
/// answered before authentication and every answer, errors included, carries its headers.
/// Any method and header is allowed; clients can read the request id, the drama version
/// (`ETag`), `Retry-After` and redirects.
pub fn cors(settings: &crate::HttpSettings) -> actix_cors::Cors {
    let policy = actix_cors::Cors::default()
        .allow_any_method()
        .allow_any_header()
        .expose_headers([
            REQUEST_ID,
            actix_web::http::header::ETAG,
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::LOCATION,
            actix_web::http::header::HeaderName::from_static("idempotent-replayed"),
        ])
        .max_age(3600);
    let origins = settings.cors_origins.trim();
    if origins == "*" {
        // Credentials are allowed as the old server allowed them; the origin is echoed (a
        // wildcard may not be combined with credentials). The API uses no cookies, so no
        // ambient authority comes with them.
        return policy.allow_any_origin().supports_credentials();
    }
    origins
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .fold(policy.supports_credentials(), |p, origin| {
            p.allowed_origin(origin)
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use actix_web::test::{self, TestRequest};
    use drama_app::{App, Ports};

    use super::*;

    /// Whether a request outlives the deadline, asked before routing (where the middleware
    /// asks) in the real route table.
    async fn long_lived(req: TestRequest) -> bool {
        let assets = Arc::new(drama_assets::MemoryStore::default());
        let (ports, _, _) = Ports::memory(assets, drama_ai::AiProviders::offline(0));
        let state = ApiState::new(App::new(ports), crate::HttpSettings::default());
        let app = test::init_service(
            actix_web::App::new()
                .wrap(actix_web::middleware::from_fn(probe))
                .configure(crate::configure(state)),
        )
        .await;
        let answer = test::call_service(&app, req.to_request()).await;
        answer.headers().contains_key("x-long-lived")
    }

    async fn probe(
        req: ServiceRequest,
        next: Next<impl MessageBody + 'static>,
    ) -> Result<ServiceResponse<impl MessageBody>, Error> {
        let long = is_long_lived(&req);
        let mut answer = next.call(req).await?;
        if long {
            answer.headers_mut().insert(
                HeaderName::from_static("x-long-lived"),
                HeaderValue::from_static("1"),
            );
        }
        Ok(answer)
    }

    #[actix_web::test]
    async fn only_uploads_and_streams_outlive_the_deadline_whatever_the_headers_say() {
        let multipart = ("content-type", "multipart/form-data; boundary=x");
        for (method, path) in [
            (Method::POST, "/asset-library/upload"),
            (Method::POST, "/dramas"),
        ] {
            let req = TestRequest::default().method(method).uri(path);
            assert!(long_lived(req.insert_header(multipart)).await, "{path}");
        }
        let mut streams = vec!["/dramas/d/events", "/jobs/j/events"];
        if cfg!(feature = "graphql") {
            streams.push("/subscriptions");
        }
        for path in streams {
            assert!(long_lived(TestRequest::get().uri(path)).await, "{path}");
        }
        // Paths that end like a stream route but are not one: a drama named `events` or
        // `subscriptions`, a part's path, an unknown path.
        for path in [
            "/dramas/events",
            "/dramas/subscriptions",
            "/dramas/d/characters/events",
            "/x/subscriptions",
        ] {
            assert!(!long_lived(TestRequest::get().uri(path)).await, "{path}");
        }
        // Headers a client picks do not switch the deadline off on other routes.
        let graphql = || TestRequest::post().uri("/graphql");
        assert!(!long_lived(graphql().insert_header(("upgrade", "x"))).await);
        assert!(!long_lived(graphql().insert_header(("content-type", "multipart/x"))).await);
        assert!(
            !long_lived(
                TestRequest::post()
                    .uri("/dramas/d/generate")
                    .insert_header(multipart)
            )
            .await
        );
        // Nor a JSON premise, nor an upload route read with another method.
        assert!(!long_lived(TestRequest::post().uri("/dramas")).await);
        assert!(
            !long_lived(
                TestRequest::get()
                    .uri("/asset-library/upload")
                    .insert_header(multipart)
            )
            .await
        );
        assert!(!long_lived(TestRequest::post().uri("/dramas/d/events")).await);
    }

    /// Under a prefix (an embedding service's scope), the routes are matched at its end.
    #[actix_web::test]
    async fn the_routes_are_matched_under_a_prefix() {
        let assets = Arc::new(drama_assets::MemoryStore::default());
        let (ports, _, _) = Ports::memory(assets, drama_ai::AiProviders::offline(0));
        let state = ApiState::new(App::new(ports), crate::HttpSettings::default());
        let app = test::init_service(
            actix_web::App::new()
                .wrap(actix_web::middleware::from_fn(probe))
                .service(crate::scope("/drama", state)),
        )
        .await;
        for (path, long) in [
            ("/drama/dramas/d/events", true),
            ("/drama/jobs/j/events", true),
            ("/drama/dramas/events", false),
        ] {
            let answer = test::call_service(&app, TestRequest::get().uri(path).to_request()).await;
            assert_eq!(
                answer.headers().contains_key("x-long-lived"),
                long,
                "{path}"
            );
        }
    }
}
