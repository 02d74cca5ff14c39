//! The store-facing half of authentication: a presented API key becomes a caller, a key's use
//! is recorded, a user seen for the first time gets a row and the opening credits. Reading
//! headers, verifying tokens and caching what was verified stay with the API.

use chrono::{DateTime, Utc};
use drama_dal::api_key::{self, KeyRejected};
use drama_domain::{ApiKeyId, UserId};

use crate::{App, AppError, Caller, PresentedKey};

/// An API key a request presented, resolved to the caller it acts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyCaller {
    /// The key (a revocation names it; caches evict by it).
    pub id: ApiKeyId,
    /// Who the key acts as: its owner, as a service caller when the key has that scope.
    pub caller: Caller,
    /// When the key stops working (`None`: never); a cached key is not used past it.
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeyCaller {
    /// Whether the key still works at `now`, as far as its expiry goes.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// Whether `presented` is meant as one of our API keys (rather than a token or an old key),
/// judged by its prefix alone.
pub fn looks_like_api_key(presented: &str) -> bool {
    presented.starts_with(api_key::KEY_PREFIX)
}

/// A digest of a presented key to index caches by, so that no cache holds the secret itself.
pub fn key_fingerprint(presented: &str) -> Vec<u8> {
    api_key::hash(presented)
}

impl App {
    /// The caller a presented API key acts as at `now`.
    ///
    /// # Errors
    /// `Unauthenticated` (with the message for the client) when the key is unknown, malformed,
    /// revoked or expired; `Unavailable` when the store cannot be asked.
    #[tracing::instrument(skip_all)]
    pub async fn caller_for_key(
        &self,
        presented: &str,
        now: DateTime<Utc>,
    ) -> Result<KeyCaller, AppError> {
        let meta = api_key::authenticate(&*self.store, presented, now)
            .await
            .map_err(|e| match e {
                KeyRejected::Store(e) => AppError::from(e),
                KeyRejected::Invalid => AppError::Unauthenticated("Invalid API key".to_owned()),
                other => AppError::Unauthenticated(other.to_string()),
            })?;
        let caller = if meta.is_service() {
            Caller::service(meta.owner)
        } else {
            Caller::user(meta.owner)
        }
        .with_key(PresentedKey {
            id: meta.id,
            expires_at: meta.expires_at,
        });
        Ok(KeyCaller {
            id: meta.id,
            caller,
            expires_at: meta.expires_at,
        })
    }

    /// Records that key `id` was used at `at` (shown to its owner as the last use).
    ///
    /// # Errors
    /// `Unavailable`.
    #[tracing::instrument(skip_all, fields(api_key.id = %id))]
    pub async fn key_used(&self, id: ApiKeyId, at: DateTime<Utc>) -> Result<(), AppError> {
        Ok(self.store.record_api_key_use(id, at).await?)
    }

    /// Makes sure `subject` (a verified token's user, or the user old credentials act as) has
    /// its user row; one seen for the first time opens with [`App::initial_credits`] — or with
    /// none when it is an anonymous session (Supabase's anonymous sign-ins), which anyone can
    /// open again and again: credits given to each would be free generation without end.
    ///
    /// # Errors
    /// `Unavailable`.
    #[tracing::instrument(skip_all, fields(user = %subject, anonymous))]
    pub async fn user_seen(
        &self,
        subject: UserId,
        email: Option<&str>,
        anonymous: bool,
    ) -> Result<(), AppError> {
        let opening = if anonymous { 0 } else { self.initial_credits };
        self.store.upsert_from_auth(subject, email, opening).await?;
        Ok(())
    }
}
