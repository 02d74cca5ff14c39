//! One-time sign-in codes: a link printed by the embedded quick start opens the console
//! signed in, without the secret ever being in a URL (so in no server log and no browser
//! history). The code travels in the URL's fragment, which browsers never send; the console
//! posts it to `/ui/sign-in` and gets the credential once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};
use crate::rest::openapi::schemas as doc;
use crate::state::ApiState;

/// How long a printed code can be used.
const LIFETIME: Duration = Duration::from_secs(600);
/// Most codes held at once (each is made by the operator's process, not by requests).
const MAX_CODES: usize = 64;

/// Codes waiting to be exchanged, each for one secret.
#[derive(Default)]
pub struct SignInCodes {
    codes: Mutex<HashMap<String, (String, Instant)>>,
}

impl std::fmt::Debug for SignInCodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInCodes").finish_non_exhaustive()
    }
}

impl SignInCodes {
    /// A new code for `secret`.
    pub fn issue(&self, secret: &str) -> String {
        // Two random UUIDs: 244 bits from the operating system's generator.
        let code = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut codes = self
            .codes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        codes.retain(|_, (_, made)| made.elapsed() < LIFETIME);
        if codes.len() >= MAX_CODES
            && let Some(oldest) = codes
                .iter()
                .min_by_key(|(_, (_, made))| *made)
                .map(|(c, _)| c.clone())
        {
            codes.remove(&oldest);
        }
        codes.insert(code.clone(), (secret.to_owned(), Instant::now()));
        code
    }

    /// The secret for `code`, once; `None` for an unknown, used or expired code.
    pub fn redeem(&self, code: &str) -> Option<String> {
        let mut codes = self
            .codes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (secret, made) = codes.remove(code)?;
        (made.elapsed() < LIFETIME).then_some(secret)
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct Exchange {
    code: String,
}

/// `POST /ui/sign-in` `{"code"}` → `{"token"}`, or 401 when the code is not (or no longer)
/// valid.
#[utoipa::path(
    post,
    path = "/ui/sign-in",
    tag = "Console",
    summary = "Exchange a one-time sign-in code (from the embedded quick start's link) for its credential",
    request_body = inline(doc::SignInCode),
    responses(
        (status = 200, description = "The credential, once.", body = inline(doc::SignInToken)),
        (status = 401, description = "The code is unknown, used or expired.", body = doc::Error),
        (status = 400, description = "No code in the body.", body = doc::Error),
        doc::TooLarge,
        doc::Invalid,
        (status = 429, description = "Too many requests; see `Retry-After`.", body = doc::Error),
        (status = 503, description = "A dependency (database, bucket, provider) is unavailable; see `Retry-After`.", body = doc::Error),
    ),
    security(())
)]
pub(super) async fn exchange(
    state: web::Data<ApiState>,
    body: web::Json<Exchange>,
) -> Result<HttpResponse, ApiError> {
    match state.sign_in.redeem(body.code.trim()) {
        Some(token) => Ok(HttpResponse::Ok()
            .insert_header(("Cache-Control", "no-store"))
            .json(serde_json::json!({ "token": token }))),
        None => Err(ApiError::message(
            ErrorCode::Unauthenticated,
            "This sign-in link was already used or has expired; sign in with your API key.",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once() {
        let codes = SignInCodes::default();
        let code = codes.issue("dk_secret");
        assert_eq!(code.len(), 64);
        assert_eq!(codes.redeem("nope"), None);
        assert_eq!(codes.redeem(&code).as_deref(), Some("dk_secret"));
        assert_eq!(codes.redeem(&code), None);
    }

    #[test]
    fn codes_are_bounded() {
        let codes = SignInCodes::default();
        let first = codes.issue("a");
        for _ in 0..MAX_CODES {
            codes.issue("b");
        }
        assert_eq!(codes.redeem(&first), None, "the oldest code made room");
    }
}
