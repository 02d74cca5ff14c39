//! Long-lived streams end with the credentials that opened them.
//!
//! A request is authenticated once; an SSE stream or a GraphQL WebSocket would otherwise go on
//! serving its caller after the API key was revoked or the token expired. Each stream keeps
//! what it was opened with and asks the authenticator again every
//! `http.stream_auth_interval` (through the same path as a request: the key cache, the app's
//! key lookup, the token's signature and claims), and at the credentials' own expiry. The
//! first answer that refuses them ends the stream; not being able to ask (the database is
//! down) does not.

use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpRequest;
use chrono::{DateTime, Utc};
use drama_app::Caller;

use crate::auth::AuthError;
use crate::error::Chain;
use crate::headers::header_text;
use crate::state::ApiState;

/// The shortest interval between re-checks, whatever the setting says: a re-check is an
/// authentication, not something to spin on.
const MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The credentials a stream was opened with, to present again. Deliberately not `Debug`:
/// they are secrets.
pub(crate) struct Credentials {
    authorization: Option<String>,
    api_key: Option<String>,
}

impl Credentials {
    /// The values of `Authorization` and `X-API-Key` (or of their stand-ins in a WebSocket's
    /// `connection_init`).
    pub(crate) fn new(authorization: Option<&str>, api_key: Option<&str>) -> Self {
        Self {
            authorization: authorization.map(str::to_owned),
            api_key: api_key.map(str::to_owned),
        }
    }

    /// Those of a request.
    pub(crate) fn of(req: &HttpRequest) -> Self {
        let header = |name: &str| header_text(req.headers(), name);
        Self::new(header("authorization"), header("x-api-key"))
    }
}

/// Until when a request's credentials are accepted by themselves, as its authentication found
/// (kept in the request's extensions for the stream routes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Until(pub(crate) Option<DateTime<Utc>>);

/// Why a stream's credentials stopped being accepted, for the client.
const EXPIRED: &str = "The credentials have expired";

/// Resolves, with the reason, once `credentials` no longer authenticate `caller`: at their
/// expiry `until`, or at the first re-check that refuses them. Never resolves otherwise.
pub(crate) async fn lapsed(
    state: Arc<ApiState>,
    credentials: Credentials,
    caller: Caller,
    mut until: Option<DateTime<Utc>>,
) -> String {
    let interval = state.settings.stream_auth_interval.max(MIN_INTERVAL);
    loop {
        let mut wait = interval;
        if let Some(end) = until {
            // A negative duration (the end has passed) does not convert: nothing is left.
            let left = (end - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if left.is_zero() {
                return EXPIRED.to_owned();
            }
            wait = wait.min(left);
        }
        tokio::time::sleep(wait).await;
        if until.is_some_and(|end| Utc::now() >= end) {
            return EXPIRED.to_owned();
        }
        let again = state
            .auth
            .authenticated(
                credentials.authorization.as_deref(),
                credentials.api_key.as_deref(),
            )
            .await;
        match again {
            Ok(now) if now.caller.user == caller.user && now.caller.service == caller.service => {
                until = now.until;
            }
            Ok(_) => return "The credentials now name another caller".to_owned(),
            Err(e @ AuthError::Unavailable(_)) => {
                // Not a refusal: the stream goes on, and the next re-check asks again.
                tracing::warn!(error = %Chain(&e), "re-checking a stream's credentials failed");
            }
            Err(refused) => return refused.to_string(),
        }
    }
}
