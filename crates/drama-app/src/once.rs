//! Idempotency keys. A client names a paid request (`Idempotency-Key` header, GraphQL
//! `idempotencyKey` argument) so that repeating it — after a timeout, a dropped connection or
//! a crash on its side — returns the first answer and charges nothing.
//!
//! The key is stored on the run the request started (the job store keeps one run per owner and
//! key, and the run's insert and its debit are one transaction), hashed so that a client's key
//! is never stored as sent. The run also records a fingerprint of the request, so reusing a key
//! for a different request is refused instead of silently answering the wrong thing.

use std::time::Duration;

use drama_domain::{DomainError, DramaId};
use drama_jobs::JobView;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::pipeline::Started;
use crate::{App, AppError, Caller};

/// How long a key names its request; after that the same key starts new work.
pub const KEY_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);
/// Longest key a client may send, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// The wire name of the key, used in error messages of both APIs.
const FIELD: &str = "Idempotency-Key";
/// Where a run records the fingerprint of the request that started it.
const FINGERPRINT: &str = "requestFingerprint";

/// A client's name for one paid request, as stored: `sha256` of the key the client sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestKey([u8; 32]);

impl RequestKey {
    /// Reads a key as the client sent it: 1 to 255 visible ASCII characters (what HTTP header
    /// values and the usual UUID or ULID keys are made of).
    ///
    /// # Errors
    /// `Invalid` naming `Idempotency-Key` and the rule it broke.
    pub fn parse(raw: &str) -> Result<Self, AppError> {
        let bad = |why: String| AppError::Invalid(DomainError::field(FIELD, why));
        if raw.is_empty() {
            return Err(bad("must not be empty".to_owned()));
        }
        if raw.len() > MAX_KEY_LEN {
            return Err(bad(format!(
                "must be at most {MAX_KEY_LEN} characters, got {}",
                raw.len()
            )));
        }
        if let Some(c) = raw.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(bad(format!(
                "must be visible ASCII characters (no spaces), found {c:?}"
            )));
        }
        Ok(Self(Sha256::digest(raw.as_bytes()).into()))
    }

    /// The stored form (64 hex digits).
    fn stored(self) -> String {
        hex::encode(self.0)
    }
}

/// What one keyed request is: its key and the fingerprint of what it asked for.
#[derive(Debug, Clone)]
pub(crate) struct Once {
    key: Option<String>,
    fingerprint: String,
}

impl Once {
    /// The run spec's idempotency key, when the client sent one.
    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// Adds the fingerprint to a run's payload.
    pub(crate) fn mark(&self, payload: &mut Value) {
        if self.key.is_some()
            && let Some(map) = payload.as_object_mut()
        {
            map.insert(
                FINGERPRINT.to_owned(),
                Value::String(self.fingerprint.clone()),
            );
        }
    }

    /// Whether `run` was started by this same request.
    pub(crate) fn started(&self, run: &JobView) -> bool {
        recorded(run) == Some(self.fingerprint.as_str())
    }

    /// The first answer, when `run` was started by this same request; refused when the key
    /// was used for another one.
    pub(crate) fn replay(&self, run: &JobView) -> Result<Started, AppError> {
        if !self.started(run) {
            return Err(AppError::Invalid(DomainError::field(
                FIELD,
                format!(
                    "was already used for a different request in the last {} hours; send a \
                     new key for a new request",
                    KEY_WINDOW.as_secs() / 3600
                ),
            )));
        }
        replayed(run)
    }
}

/// The fingerprint `run` recorded of the request that started it.
fn recorded(run: &JobView) -> Option<&str> {
    run.payload.get(FINGERPRINT).and_then(Value::as_str)
}

/// The fingerprint of the request `what` (a run kind) with `inputs`.
fn fingerprint(what: &str, inputs: &Value) -> String {
    let mut h = Sha256::new();
    h.update(what.as_bytes());
    h.update([0]);
    h.update(inputs.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Whether `run` recorded the request `what` with `inputs` as what started it: a request
/// an earlier build named otherwise than this one.
pub(crate) fn recorded_as(run: &JobView, what: &str, inputs: &Value) -> bool {
    recorded(run) == Some(fingerprint(what, inputs).as_str())
}

/// The answer of the run `run`, as its repeat: the first answer.
pub(crate) fn replayed(run: &JobView) -> Result<Started, AppError> {
    let drama_id = run
        .subject
        .as_deref()
        .and_then(|s| DramaId::parse(s).ok())
        .ok_or_else(|| AppError::Unavailable("the keyed run names no drama".to_owned()))?;
    Ok(Started {
        job_id: run.run_id,
        drama_id,
        replayed: true,
    })
}

impl App {
    /// The request `what` (a run kind) with `inputs` (everything the client asked for) under
    /// the caller's key; with `Some` answer the key was used before and that is the answer.
    pub(crate) async fn once(
        &self,
        caller: &Caller,
        what: &str,
        inputs: &Value,
    ) -> Result<(Once, Option<Started>), AppError> {
        let (once, found) = self.once_run(caller, what, inputs).await?;
        let replay = match found {
            Some(run) => Some(once.replay(&run)?),
            None => None,
        };
        Ok((once, replay))
    }

    /// As [`App::once`], with the run the key names instead of its answer, for a caller that
    /// also recognises a request an earlier build fingerprinted otherwise.
    pub(crate) async fn once_run(
        &self,
        caller: &Caller,
        what: &str,
        inputs: &Value,
    ) -> Result<(Once, Option<JobView>), AppError> {
        let once = Once {
            key: caller.request.map(RequestKey::stored),
            fingerprint: fingerprint(what, inputs),
        };
        let Some(key) = once.key() else {
            return Ok((once, None));
        };
        let found = self
            .jobs
            .keyed_run(caller.user.0, key, KEY_WINDOW)
            .await
            .map_err(crate::pipeline::job_error)?;
        Ok((once, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_stored_hashed() {
        let k = RequestKey::parse("9f1c6a2e-1b7d-4c55-8f1e-7a0e1d2c3b4a").unwrap();
        assert_eq!(k.stored().len(), 64);
        assert_ne!(k.stored(), "9f1c6a2e-1b7d-4c55-8f1e-7a0e1d2c3b4a");
        assert_eq!(
            k,
            RequestKey::parse("9f1c6a2e-1b7d-4c55-8f1e-7a0e1d2c3b4a").unwrap()
        );
        for bad in [
            "",
            "has space",
            "tab\there",
            "é",
            &"x".repeat(MAX_KEY_LEN + 1),
        ] {
            let e = RequestKey::parse(bad).unwrap_err().to_string();
            assert!(e.contains(FIELD), "{bad:?}: {e}");
        }
        assert!(RequestKey::parse(&"x".repeat(MAX_KEY_LEN)).is_ok());
    }
}
