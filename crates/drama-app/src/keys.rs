//! API keys of the signed-in user: list, create, revoke. Always the caller's own keys; keys
//! made here never carry the `service` scope (only an operator's `keys create --service` does).

use chrono::{Duration, Utc};
use drama_dal::{CreatedApiKey, Entity, KeyCaps, KeyCreation};
use drama_domain::{ApiKeyId, ApiKeyMeta, DomainError};

use crate::{App, AppError, Caller};

/// Most keys one user may hold that are neither revoked nor expired (bounds listing and
/// authentication caches; revoke one to make another).
pub const MAX_ACTIVE_KEYS: usize = 50;
/// Most keys one user may create in any 24 hours, revoked and expired ones included:
/// revoking a key makes room for a usable one, not for endless rows.
pub const MAX_KEYS_PER_DAY: usize = 100;
/// Days a revoked or expired key is still listed (and kept) after it stopped working; the
/// sweeper deletes it then.
pub const KEY_HISTORY_DAYS: i64 = 30;
/// Most keys one listing holds: the usable ones first, then the newest of those that
/// stopped working in the last [`KEY_HISTORY_DAYS`].
pub const MAX_LISTED_KEYS: usize = 200;
/// Keys the sweeper deletes per statement.
const PURGE_BATCH: usize = 1_000;
/// Longest key name, in characters.
pub const MAX_KEY_NAME: usize = 100;
/// Longest lifetime a key may be given, in days.
pub const MAX_KEY_DAYS: u32 = 3650;

/// A key to create.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    /// A label that says where the key is used.
    pub name: String,
    /// Days until the key stops working (`None`: never).
    pub expires_in_days: Option<u32>,
}

impl App {
    /// The caller's keys, newest first: the usable ones, and those revoked or expired in the
    /// last [`KEY_HISTORY_DAYS`] (marked as such); at most [`MAX_LISTED_KEYS`], usable ones
    /// first.
    ///
    /// # Errors
    /// `Unavailable`.
    #[tracing::instrument(skip_all)]
    pub async fn api_keys(&self, caller: &Caller) -> Result<Vec<ApiKeyMeta>, AppError> {
        let since = Utc::now() - Duration::days(KEY_HISTORY_DAYS);
        Ok(self
            .store
            .list_recent_api_keys(caller.user, since, MAX_LISTED_KEYS)
            .await?)
    }

    /// Deletes the keys, of every user, that stopped working (revoked or expired) more than
    /// [`KEY_HISTORY_DAYS`] ago; answers how many. The sweeper calls it.
    #[tracing::instrument(skip_all)]
    pub async fn purge_lapsed_keys(&self) -> usize {
        let before = Utc::now() - Duration::days(KEY_HISTORY_DAYS);
        let mut purged = 0;
        loop {
            match self.store.purge_lapsed_api_keys(before, PURGE_BATCH).await {
                Ok(n) => {
                    purged += n;
                    if n < PURGE_BATCH {
                        return purged;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete lapsed API keys");
                    return purged;
                }
            }
        }
    }

    /// Creates a key for the caller; the secret is in the answer and nowhere else. A key made
    /// with an API key is revoked with that key and expires no later than it.
    ///
    /// # Errors
    /// `Forbidden` for a caller that may not make keys ([`Caller::may_make_keys`]: a legacy
    /// key, the service key); `Invalid` naming `name` or `expires_in_days`, or when the
    /// caller already holds [`MAX_ACTIVE_KEYS`] usable keys; `Unauthenticated` when the
    /// caller's key was revoked meanwhile; `Unavailable`.
    #[tracing::instrument(skip_all)]
    pub async fn create_api_key(
        &self,
        caller: &Caller,
        key: NewKey,
    ) -> Result<CreatedApiKey, AppError> {
        if !caller.may_make_keys() {
            return Err(AppError::Forbidden(
                "a legacy key or the service key cannot make API keys (a key made with one \
                 would outlive its removal or rotation): an operator makes keys with \
                 `drama-server keys create`"
                    .to_owned(),
            ));
        }
        let name = key.name.trim();
        if name.is_empty() {
            return Err(invalid("name", "must not be empty".to_owned()));
        }
        // The length counts what was sent, surrounding whitespace included, as the API
        // document's `maxLength` does; what is stored is trimmed.
        if key.name.chars().count() > MAX_KEY_NAME || name.chars().any(char::is_control) {
            return Err(invalid(
                "name",
                format!("must be at most {MAX_KEY_NAME} characters without control characters"),
            ));
        }
        let asked = match key.expires_in_days {
            None => None,
            Some(days) if (1..=MAX_KEY_DAYS).contains(&days) => {
                Some(Utc::now() + Duration::days(i64::from(days)))
            }
            Some(days) => {
                return Err(invalid(
                    "expires_in_days",
                    format!("must be between 1 and {MAX_KEY_DAYS}, got {days}"),
                ));
            }
        };
        // A key made with an expiring key expires with it at the latest: otherwise a key
        // handed out for a week (or taken) could mint itself a successor that never ends.
        let made_by = caller.key.map(|k| k.id);
        let expires_at = match (asked, caller.key.and_then(|k| k.expires_at)) {
            (Some(asked), Some(limit)) => Some(asked.min(limit)),
            (asked, limit) => asked.or(limit),
        };
        match self
            .store
            .create_api_key_capped(
                caller.user,
                name,
                expires_at,
                made_by,
                KeyCaps {
                    usable: MAX_ACTIVE_KEYS,
                    per_day: MAX_KEYS_PER_DAY,
                },
            )
            .await?
        {
            KeyCreation::Created(created) => Ok(created),
            KeyCreation::AtLimit { active } => Err(invalid(
                "name",
                format!(
                    "you already have {active} active keys (the most allowed is \
                     {MAX_ACTIVE_KEYS}); revoke one first"
                ),
            )),
            KeyCreation::DailyLimit { made } => Err(AppError::QuotaExceeded {
                quota: "api_keys_per_day",
                limit: u64::try_from(MAX_KEYS_PER_DAY).unwrap_or(u64::MAX),
                used: u64::try_from(made).unwrap_or(u64::MAX),
            }),
            KeyCreation::MakerUnusable => Err(AppError::Unauthenticated(
                "the API key of this request was revoked or has expired".to_owned(),
            )),
        }
    }

    /// Revokes one of the caller's keys (again is harmless), and with it every key made with
    /// it, down the line. Another user's key answers `NotFound`, exactly as a missing one
    /// does. A caller that came with an API key revokes only that key and the keys made with
    /// it, down the line: a key that was taken cannot revoke the keys its owner made elsewhere
    /// (or its own maker); any other key answers `NotFound` too. A session may revoke any.
    ///
    /// # Errors
    /// `NotFound`; `Unavailable`.
    #[tracing::instrument(skip_all, fields(api_key.id = %id))]
    pub async fn revoke_api_key(
        &self,
        caller: &Caller,
        id: ApiKeyId,
    ) -> Result<ApiKeyMeta, AppError> {
        let revoked = match caller.key {
            Some(own) => {
                self.store
                    .revoke_api_key_in_line(caller.user, id, own.id)
                    .await
            }
            None => self.store.revoke_api_key(caller.user, id).await,
        };
        revoked.map_err(|e| match AppError::from(e) {
            AppError::NotFound { .. } => AppError::not_found(Entity::ApiKey, id),
            other => other,
        })
    }
}

fn invalid(field: &str, message: String) -> AppError {
    AppError::Invalid(DomainError::field(field, message))
}
