//! The console: a web page served at `/ui` from files compiled into the binary (no build
//! step, no CDN), under a Content-Security-Policy that allows only this origin's scripts and
//! styles. It talks to the same API as every client, with the credential the user signs in
//! with (kept in the tab's sessionStorage, sent as a header, never in a URL).

mod files;
pub(crate) mod signin;

pub use signin::SignInCodes;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use crate::endpoint::endpoint;
use crate::error::{ApiError, ErrorCode};
use crate::headers::header_text;
use crate::rest::openapi::schemas as doc;
use crate::state::ApiState;

/// What the console's pages may load: scripts and styles from this origin only (no inline
/// code, no `eval`), API calls to this origin, media from this origin, blobs made from it, or
/// any https store (buckets and their signed URLs). [`content_security_policy`] adds the
/// configured media origins to it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob: https:; media-src 'self' blob: https:; \
     connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The console's policy with `media_origins` (URLs whose origin media URLs may name: the
/// bucket's public URL and endpoint, the origin this server signs its file URLs for) allowed
/// for images and media too: an `http://` store (MinIO on a machine of one's own) or a
/// `PUBLIC_URL` other than the host the browser used would otherwise be blocked. Only the
/// origin of each is used; what is not an http(s) URL is left out.
pub fn content_security_policy(media_origins: &[String]) -> String {
    let mut extra: Vec<String> = Vec::new();
    for origin in media_origins.iter().filter_map(|u| origin(u)) {
        if !extra.contains(&origin) {
            extra.push(origin);
        }
    }
    if extra.is_empty() {
        return CONTENT_SECURITY_POLICY.to_owned();
    }
    let sources = format!("'self' blob: https: {}", extra.join(" "));
    CONTENT_SECURITY_POLICY
        .replace(
            "img-src 'self' blob: https:;",
            &format!("img-src {sources};"),
        )
        .replace(
            "media-src 'self' blob: https:;",
            &format!("media-src {sources};"),
        )
}

/// `scheme://host[:port]` of an http(s) URL, lower-cased; `None` for anything else, or for a
/// host with characters a policy's source expression cannot carry.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    if host.is_empty() || !host.chars().all(allowed) {
        return None;
    }
    Some(format!("{scheme}://{}", host.to_ascii_lowercase()))
}

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/ui").get(index))
        .service(endpoint("/ui/").get(index_slash))
        .service(endpoint("/ui/sign-in").post(signin::exchange))
        .service(endpoint("/ui/{file:.+}").get(file));
}

/// Headers every console response carries; `policy` is the Content-Security-Policy.
fn hardened(mut response: HttpResponse, policy: &HeaderValue) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, policy.clone());
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=(), payment=()",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The policy of this server's console (the built-in one without a state).
fn policy_of(req: &HttpRequest) -> HeaderValue {
    req.app_data::<web::Data<ApiState>>().map_or_else(
        || HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        |state| state.console_policy.clone(),
    )
}

/// A file answered with its ETag; `If-None-Match` with the same tag answers 304.
fn serve(req: &HttpRequest, file: &files::File) -> HttpResponse {
    let etag = file.etag();
    let fresh = header_text(req.headers(), header::IF_NONE_MATCH)
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut response = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response
        .insert_header((header::ETAG, etag))
        // Revalidated on every load, so a new binary's console is picked up at once.
        .insert_header((header::CACHE_CONTROL, "no-cache"));
    let response = if fresh {
        response.finish()
    } else {
        response.content_type(file.content_type).body(file.bytes)
    };
    hardened(response, &policy_of(req))
}

#[utoipa::path(
    get,
    path = "/ui",
    tag = "Console",
    summary = "The console (a web page; see docs/CONSOLE.md)",
    responses(
        (status = 200, description = "The console's page (HTML) under a strict Content-Security-Policy.", body = String, content_type = "text/html"),
    ),
    security(())
)]
async fn index(req: HttpRequest) -> HttpResponse {
    serve(&req, &files::INDEX)
}

/// `/ui/`: the same page as `/ui`.
#[utoipa::path(
    get,
    path = "/ui/",
    tag = "Console",
    summary = "The console (same as `/ui`)",
    responses(
        (status = 200, description = "The console's page (HTML) under a strict Content-Security-Policy.", body = String, content_type = "text/html"),
    ),
    security(())
)]
async fn index_slash(req: HttpRequest) -> HttpResponse {
    index(req).await
}

#[utoipa::path(
    get,
    path = "/ui/{file}",
    tag = "Console",
    summary = "A file of the console (scripts, styles, icon), embedded in the binary",
    params(
        ("file" = String, Path, description = "Path under /ui/, e.g. `js/main.js`."),
    ),
    responses(
        (status = 200, description = "The file, with an ETag; `If-None-Match` answers 304."),
        (status = 304, description = "Not modified."),
        (status = 404, description = "No such file.", body = doc::Error),
    ),
    security(())
)]
async fn file(req: HttpRequest, path: web::Path<String>) -> HttpResponse {
    match files::find(&path) {
        Some(file) => serve(&req, file),
        None => hardened(
            actix_web::ResponseError::error_response(&ApiError::message(
                ErrorCode::NotFound,
                format!("The console has no file {path}"),
            )),
            &policy_of(&req),
        ),
    }
}

/// A short page for browsers that open `/`: where the console and the API docs are.
pub(crate) fn landing() -> HttpResponse {
    hardened(
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(files::LANDING),
        &HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    )
}

impl ApiState {
    /// A one-time code that signs a browser in as the holder of `secret` at `/ui#signin=CODE`
    /// (the fragment never reaches a server; the code is exchanged by a POST, works once,
    /// within ten minutes, in this process). For the embedded quick start's printed link.
    pub fn console_sign_in_link(&self, base: &str, secret: &str) -> String {
        let code = self.sign_in.issue(secret);
        format!("{}/ui#signin={code}", base.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_allows_the_configured_media_origins_and_nothing_else() {
        assert_eq!(content_security_policy(&[]), CONTENT_SECURITY_POLICY);
        let policy = content_security_policy(&[
            "http://localhost:9000/drama".to_owned(),
            "http://s3:9000".to_owned(),
            "HTTP://LocalHost:9000/other".to_owned(),
            "https://media.example.com/x?y#z".to_owned(),
            "http://user:pw@files.internal:8000/".to_owned(),
            "javascript:alert(1)".to_owned(),
            "http://evil; script-src *".to_owned(),
            "ftp://old.example.com".to_owned(),
        ]);
        let sources = "'self' blob: https: http://localhost:9000 http://s3:9000 \
                       https://media.example.com http://files.internal:8000;";
        assert!(policy.contains(&format!("img-src {sources}")), "{policy}");
        assert!(policy.contains(&format!("media-src {sources}")), "{policy}");
        // Scripts, styles and connections stay this origin's only.
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert!(policy.contains("connect-src 'self';"), "{policy}");
        for refused in ["evil", "javascript", "ftp:", "pw@", "*"] {
            assert!(!policy.contains(refused), "{refused} in {policy}");
        }
        assert!(HeaderValue::from_str(&policy).is_ok());
    }
}
