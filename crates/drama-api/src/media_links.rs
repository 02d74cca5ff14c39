//! Media URLs that an `<img>` or a video player can load as they are.
//!
//! Objects without a public base URL are stored with the stable address
//! `{PUBLIC_URL}/media/{key}`, which needs the caller's credentials. A signed URL cannot be
//! stored instead, because it expires; so it is made on the way out: every JSON answer (REST,
//! GraphQL, library records, job results alike) has each such address of the caller's own
//! objects replaced by a time-limited URL that needs no header: the local and memory stores'
//! HMAC-signed `/files/{key}?expires&sig` (served with ranges by this API), a bucket's
//! presigned URL. Doing it in one place, after the handler, means no response shape can forget
//! it. Live streams are not answers the middleware sees whole: the Server-Sent Events frames and
//! the WebSocket messages (subscriptions, queries sent over the socket) pass through
//! [`sign_text`] one by one, with the same caller.
//!
//! The local signatures expire at the end of a whole hour at least `lifetime` away, so the
//! same object keeps the same URL for an hour and browsers can cache it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody as _};
use actix_web::dev::ServiceResponse;
use actix_web::http::header;
use actix_web::{HttpMessage as _, web};
use chrono::{DateTime, Utc};
use drama_app::media::ObjectKey;
use drama_app::{App, Caller};
use drama_domain::UserId;

use crate::headers::header_text;
use crate::state::ApiState;

/// Largest JSON answer whose media URLs are signed (pages are bounded far below this).
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Local signatures end on a multiple of this, so URLs stay the same for a while.
const ROUNDING_SECS: i64 = 3600;

/// Marks a response whose body is an object's stored bytes (a library download, a media
/// file): those are the user's content, not an answer of this API, and are sent as stored —
/// a JSON file is neither buffered, nor rewritten, nor cut from its `Content-Range`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoredBytes;

/// The users a service caller named in one request (`user_id`, GraphQL `userId`) or on one
/// WebSocket: its answers carry their data, whose text they wrote, so only their objects'
/// URLs are signed — a URL of someone else's object that a user put into their own text is
/// not made loadable by reading it through a service caller. Shared by the handlers and
/// resolvers that read the argument and the signer of the answer.
#[derive(Debug, Clone, Default)]
pub(crate) struct NamedOwners(Arc<Mutex<Vec<UserId>>>);

impl NamedOwners {
    /// Records that the request acts for `user`.
    pub(crate) fn name(&self, user: UserId) {
        let mut named = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !named.contains(&user) {
            named.push(user);
        }
    }

    /// The users named so far.
    fn list(&self) -> Vec<UserId> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The record of the request `req` (kept in its extensions, where the signer of its
    /// answer finds it).
    pub(crate) fn of(req: &actix_web::HttpRequest) -> Self {
        if let Some(named) = req.extensions().get::<Self>() {
            return named.clone();
        }
        let named = Self::default();
        req.extensions_mut().insert(named.clone());
        named
    }
}

/// Signs the media URLs in a JSON response of an authenticated request.
pub(crate) async fn sign_response(response: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
    if response
        .response()
        .extensions()
        .get::<StoredBytes>()
        .is_some()
    {
        return response;
    }
    let is_json = header_text(response.headers(), header::CONTENT_TYPE)
        .is_some_and(|v| v.starts_with("application/json"));
    let caller = response.request().extensions().get::<Caller>().copied();
    let state = response
        .request()
        .app_data::<web::Data<ApiState>>()
        .cloned();
    let (Some(caller), Some(state), true) = (caller, state, is_json) else {
        return response;
    };
    let named = response
        .request()
        .extensions()
        .get::<NamedOwners>()
        .map(NamedOwners::list)
        .unwrap_or_default();
    let (request, response) = response.into_parts();
    let (response, body) = response.into_parts();
    let bytes = match actix_web::body::to_bytes_limited(body, MAX_BODY).await {
        Ok(Ok(bytes)) => bytes,
        // Too large or unreadable: answered as an error rather than half-rewritten.
        // The request's log line is written already: these are logged here, once.
        Ok(Err(e)) => {
            tracing::error!(error = %e, "response body could not be read to sign its media URLs");
            return ServiceResponse::new(request, failed("response body unreadable"));
        }
        Err(_) => {
            tracing::error!("response too large to sign its media URLs");
            return ServiceResponse::new(request, failed("response body too large to sign"));
        }
    };
    let body = match Signer::of(&state, caller, named).rewrite(&bytes).await {
        Some(text) => bytes::Bytes::from(text),
        None => bytes,
    };
    let mut response = response.set_body(body.boxed());
    response.headers_mut().remove(header::CONTENT_LENGTH);
    ServiceResponse::new(request, response)
}

/// The usual 500 envelope, for a response that could not be signed.
fn failed(cause: &'static str) -> actix_web::HttpResponse {
    actix_web::ResponseError::error_response(&crate::error::ApiError::internal(cause))
}

/// Makes loadable URLs for one response.
pub(crate) struct Signer<'a> {
    pub(crate) app: &'a App,
    /// `{PUBLIC_URL}/media/`.
    pub(crate) prefix: String,
    pub(crate) caller: Caller,
    /// The users a service caller named (see [`NamedOwners`]).
    pub(crate) named: Vec<UserId>,
    pub(crate) lifetime: Duration,
    pub(crate) now: DateTime<Utc>,
}

/// `text` (a JSON message of a live stream: an SSE frame, a WebSocket message) with the media
/// URLs of `caller`'s objects signed, as every JSON answer has them (for a service caller,
/// those of the users `named` on the stream, when it named any).
pub(crate) async fn sign_text(
    state: &ApiState,
    caller: Caller,
    named: Option<&NamedOwners>,
    text: String,
) -> String {
    let named = named.map(NamedOwners::list).unwrap_or_default();
    match Signer::of(state, caller, named)
        .rewrite(text.as_bytes())
        .await
    {
        Some(signed) => signed,
        None => text,
    }
}

impl<'a> Signer<'a> {
    /// The signer of `caller`'s URLs with the server's store and settings, as of now.
    pub(crate) fn of(state: &'a ApiState, caller: Caller, named: Vec<UserId>) -> Self {
        Signer {
            app: state.app(),
            prefix: format!("{}/media/", state.app().public_base_url()),
            caller,
            named,
            lifetime: state.settings.media_url_lifetime,
            now: Utc::now(),
        }
    }

    /// The text with every signable media URL replaced; `None` when there was none.
    pub(crate) async fn rewrite(&self, body: &[u8]) -> Option<String> {
        let text = std::str::from_utf8(body).ok()?;
        if !text.contains(&self.prefix) {
            return None;
        }
        let mut out = String::with_capacity(text.len() + 256);
        let mut signed: HashMap<&str, Option<String>> = HashMap::new();
        let mut rest = text;
        let mut changed = false;
        while let Some(at) = rest.find(&self.prefix) {
            let after = &rest[at + self.prefix.len()..];
            let key_len = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-._~/".contains(c)))
                .unwrap_or(after.len());
            let key = &after[..key_len];
            // A URL that already carries a query is someone else's text, left alone.
            let has_query = after[key_len..].starts_with('?');
            let url = if has_query {
                None
            } else {
                match signed.get(key) {
                    Some(url) => url.clone(),
                    None => {
                        let url = self.sign(key).await;
                        signed.insert(key, url.clone());
                        url
                    }
                }
            };
            out.push_str(&rest[..at]);
            match url {
                Some(url) => {
                    out.push_str(&url);
                    changed = true;
                }
                None => {
                    out.push_str(&self.prefix);
                    out.push_str(key);
                }
            }
            rest = &after[key_len..];
        }
        out.push_str(rest);
        changed.then_some(out)
    }

    /// A loadable URL for `key`, when it is the caller's (for a service caller, any key, or
    /// when it named users, theirs).
    async fn sign(&self, key: &str) -> Option<String> {
        let under = |user: &UserId| key.starts_with(&format!("{user}/"));
        let allowed = match (self.caller.service, self.named.is_empty()) {
            (true, true) => true,
            (true, false) => self.named.iter().any(under),
            (false, _) => under(&self.caller.user),
        };
        if !allowed {
            return None;
        }
        let key = ObjectKey::parse(key).ok()?;
        if self.app.signs_media_urls() {
            return self.app.signed_media_url(&key, self.deadline());
        }
        match self.app.presigned_media_url(&key, self.lifetime).await {
            Ok(url) => Some(url),
            Err(e) => {
                tracing::warn!(error = %e, key = %key.as_str(), "media URL not presigned");
                None
            }
        }
    }

    /// `now + lifetime`, rounded up to a whole hour.
    fn deadline(&self) -> DateTime<Utc> {
        let lifetime = i64::try_from(self.lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let at = self.now.timestamp().saturating_add(lifetime);
        let rounded = at.div_euclid(ROUNDING_SECS).saturating_add(1) * ROUNDING_SECS;
        DateTime::from_timestamp(rounded, 0).unwrap_or(self.now)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drama_app::Ports;
    use drama_domain::UserId;

    use super::*;

    /// An app on an in-memory store, which signs its own URLs.
    fn memory_app() -> App {
        let assets = Arc::new(drama_assets::MemoryStore::default());
        let (ports, _, _) = Ports::memory(assets, drama_ai::AiProviders::offline(0));
        App::new(ports)
    }

    fn signer(app: &App, caller: Caller) -> Signer<'_> {
        Signer {
            app,
            prefix: "http://api.test/media/".to_owned(),
            caller,
            named: Vec::new(),
            lifetime: Duration::from_secs(6 * 3600),
            now: DateTime::from_timestamp(1_800_000_123, 0).unwrap_or_default(),
        }
    }

    #[tokio::test]
    async fn own_media_urls_are_signed_and_others_left_alone() {
        let app = memory_app();
        let me = UserId::random();
        let other = UserId::random();
        let body = format!(
            r#"{{"url":"http://api.test/media/{me}/d1/covers/c.png","b":"http://api.test/media/{other}/d2/covers/c.png","c":"http://api.test/media/{me}/d1/covers/c.png","d":"http://api.test/media/{me}/x.png?already=1","e":"see http://api.test/media/"}}"#
        );
        let out = signer(&app, Caller::user(me))
            .rewrite(body.as_bytes())
            .await
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let url = v["url"].as_str().unwrap_or_default();
        assert!(
            url.contains(&format!("/files/{me}/d1/covers/c.png?expires=")) && url.contains("&sig="),
            "{url}"
        );
        assert_eq!(v["c"], v["url"], "the same key gets the same URL");
        assert_eq!(
            v["b"],
            format!("http://api.test/media/{other}/d2/covers/c.png"),
            "another user's key is not signed"
        );
        assert_eq!(
            v["d"],
            format!("http://api.test/media/{me}/x.png?already=1")
        );
        assert_eq!(v["e"], "see http://api.test/media/");
        // Expiry: at least six hours away, on a whole hour.
        let expires: i64 = url
            .split("expires=")
            .nth(1)
            .and_then(|s| s.split('&').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_default();
        assert_eq!(expires % 3600, 0);
        assert!((1_800_000_123 + 6 * 3600..1_800_000_123 + 7 * 3600).contains(&expires));

        let service = signer(&app, Caller::service(me))
            .rewrite(body.as_bytes())
            .await
            .unwrap_or_default();
        assert!(
            service.contains(&format!("/files/{other}/d2/covers/c.png?expires=")),
            "a service caller's answers sign every key"
        );
        assert!(
            signer(&app, Caller::user(me))
                .rewrite(b"{\"x\":1}")
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn a_service_caller_that_names_a_user_signs_only_that_users_keys() {
        let app = memory_app();
        let (service, named, planted) = (UserId::random(), UserId::random(), UserId::random());
        let body = format!(
            r#"{{"a":"http://api.test/media/{named}/d1/c.png","b":"http://api.test/media/{planted}/d2/c.png","c":"http://api.test/media/{service}/d3/c.png"}}"#
        );
        let mut s = signer(&app, Caller::service(service).acting_for(Some(named)));
        s.named = vec![named];
        let v: serde_json::Value =
            serde_json::from_str(&s.rewrite(body.as_bytes()).await.unwrap_or_default())
                .unwrap_or_default();
        assert!(
            v["a"]
                .as_str()
                .is_some_and(|u| u.contains(&format!("/files/{named}/d1/c.png?expires="))),
            "{v}"
        );
        for (field, user) in [("b", planted), ("c", service)] {
            assert!(
                v[field]
                    .as_str()
                    .is_some_and(|u| u.starts_with(&format!("http://api.test/media/{user}/"))),
                "{field} left alone: {v}"
            );
        }
    }
}
