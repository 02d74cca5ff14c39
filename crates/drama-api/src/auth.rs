//! Who is calling: a Supabase JWT or one of our API keys, on every route except health,
//! readiness and the API docs.
//!
//! `Authorization: Bearer <token>` carries either; `X-API-Key: <key>` carries a key. JWTs are
//! verified locally: HS256 with the project's JWT secret, or ES256/RS256 with the project's
//! JWKS (cached; refetched at most once a minute when an unknown `kid` shows up, which is how
//! key rotation appears). `exp`, `aud` (`authenticated`) and `iss`
//! (`{SUPABASE_URL}/auth/v1`) are checked. A first-seen subject gets its `users` row.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use drama_app::Caller;
use drama_dal::api_key::{self, KeyRejected};
use drama_dal::{RepoError, Store};
use drama_domain::{ApiKeyMeta, UserId};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::RwLock;

/// Authentication settings.
#[derive(Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `SUPABASE_JWT_SECRET`: the legacy HS256 secret of the Supabase project.
    pub jwt_secret: Option<String>,
    /// `SUPABASE_URL`: `https://<ref>.supabase.co`; gives the issuer and the JWKS location.
    pub supabase_url: Option<String>,
}

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("supabase_url", &self.supabase_url)
            .finish()
    }
}

/// Why a request is not authenticated. The message is safe to show to the client.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credentials were sent.
    #[error(
        "Missing API key. Provide via 'Authorization: Bearer <key>' or 'X-API-Key: <key>' header"
    )]
    Missing,
    /// The credentials are not valid (unknown key, bad signature, wrong audience, …).
    #[error("{0}")]
    Invalid(String),
    /// The store could not be asked.
    #[error("authentication unavailable: {0}")]
    Unavailable(String),
}

/// How long a verified API key is trusted before it is looked up again. A revocation takes
/// effect in other processes within this time (immediately in the revoking process).
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// A key's last use is written at most this often.
const LAST_USE_INTERVAL: Duration = Duration::from_secs(60);
/// How long a subject known to have a `users` row is not upserted again.
const USER_CACHE_TTL: Duration = Duration::from_secs(600);
/// How long a fetched JWKS is used.
const JWKS_TTL: Duration = Duration::from_secs(600);
/// Least time between two JWKS fetches (an unknown `kid` must not cause a fetch storm).
const JWKS_REFETCH_GAP: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

struct Jwks {
    url: String,
    http: reqwest::Client,
    state: RwLock<JwksState>,
}

#[derive(Default)]
struct JwksState {
    keys: Option<JwkSet>,
    fetched: Option<Instant>,
}

impl Jwks {
    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        {
            let state = self.state.read().await;
            let fresh = state.fetched.is_some_and(|t| t.elapsed() < JWKS_TTL);
            if fresh && let Some(jwk) = state.keys.as_ref().and_then(|k| k.find(kid)) {
                return DecodingKey::from_jwk(jwk)
                    .map_err(|e| AuthError::Invalid(format!("unusable signing key: {e}")));
            }
        }
        let mut state = self.state.write().await;
        // Reached with stale keys or an unknown kid; another task may have refetched meanwhile.
        if state
            .fetched
            .is_none_or(|t| t.elapsed() >= JWKS_REFETCH_GAP)
        {
            let fetched: JwkSet = self
                .http
                .get(&self.url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| AuthError::Unavailable(format!("cannot fetch the JWKS: {e}")))?
                .json()
                .await
                .map_err(|e| AuthError::Unavailable(format!("the JWKS does not parse: {e}")))?;
            state.keys = Some(fetched);
            state.fetched = Some(Instant::now());
        }
        let jwk = state
            .keys
            .as_ref()
            .and_then(|k| k.find(kid))
            .ok_or_else(|| AuthError::Invalid(format!("unknown signing key id {kid:?}")))?;
        DecodingKey::from_jwk(jwk)
            .map_err(|e| AuthError::Invalid(format!("unusable signing key: {e}")))
    }
}

/// Verifies credentials and turns them into a [`Caller`].
pub struct Authenticator {
    store: Arc<dyn Store>,
    hs256: Option<DecodingKey>,
    issuer: Option<String>,
    jwks: Option<Jwks>,
    keys: moka::future::Cache<Vec<u8>, ApiKeyMeta>,
    recent_use: moka::future::Cache<uuid::Uuid, ()>,
    known_users: moka::future::Cache<UserId, ()>,
}

impl Authenticator {
    /// An authenticator over `store` with `settings`.
    pub fn new(store: Arc<dyn Store>, settings: &AuthSettings) -> Self {
        let base = settings
            .supabase_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        let jwks = base.as_ref().map(|b| Jwks {
            url: format!("{b}/auth/v1/.well-known/jwks.json"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            state: RwLock::new(JwksState::default()),
        });
        Self {
            store,
            hs256: settings
                .jwt_secret
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| DecodingKey::from_secret(s.as_bytes())),
            issuer: base.map(|b| format!("{b}/auth/v1")),
            jwks,
            keys: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(KEY_CACHE_TTL)
                .support_invalidation_closures()
                .build(),
            recent_use: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(LAST_USE_INTERVAL)
                .build(),
            known_users: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(USER_CACHE_TTL)
                .build(),
        }
    }

    /// Authenticates the credentials of a request (the values of `Authorization` and
    /// `X-API-Key`).
    ///
    /// # Errors
    /// [`AuthError`] saying what is wrong.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<Caller, AuthError> {
        let bearer = match authorization {
            Some(value) => {
                let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Missing)?;
                if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                    return Err(AuthError::Missing);
                }
                Some(token.trim())
            }
            None => None,
        };
        match (bearer, api_key.map(str::trim).filter(|k| !k.is_empty())) {
            (Some(token), _) if token.starts_with(api_key::KEY_PREFIX) => self.api_key(token).await,
            (Some(token), _) => self.jwt(token).await,
            (None, Some(key)) => self.api_key(key).await,
            (None, None) => Err(AuthError::Missing),
        }
    }

    /// Forgets a key in this process at once (after it was revoked here). The cache is keyed
    /// by the presented key's hash, which a revocation by id does not know, so entries are
    /// matched by id.
    pub fn forget_key_id(&self, id: drama_domain::ApiKeyId) {
        if let Err(e) = self
            .keys
            .invalidate_entries_if(move |_, meta| meta.id == id)
        {
            tracing::warn!(error = %e, api_key.id = %id, "revoked key not evicted from the cache");
        }
    }

    async fn api_key(&self, presented: &str) -> Result<Caller, AuthError> {
        let hash = api_key::hash(presented);
        let now = Utc::now();
        let meta = match self.keys.get(&hash).await {
            Some(meta) if meta.expires_at.is_none_or(|e| e > now) => meta,
            _ => {
                let meta = api_key::authenticate(&*self.store, presented, now)
                    .await
                    .map_err(|e| match e {
                        KeyRejected::Store(e) => AuthError::Unavailable(e.to_string()),
                        KeyRejected::Invalid => AuthError::Invalid("Invalid API key".to_owned()),
                        other => AuthError::Invalid(other.to_string()),
                    })?;
                self.keys.insert(hash, meta.clone()).await;
                meta
            }
        };
        if self.recent_use.get(&meta.id).await.is_none() {
            self.recent_use.insert(meta.id, ()).await;
            let store = self.store.clone();
            let id = meta.id;
            tokio::spawn(async move {
                if let Err(e) = store.record_api_key_use(id, now).await {
                    tracing::debug!(error = %e, api_key.id = %id, "last use not recorded");
                }
            });
        }
        Ok(if meta.is_service() {
            Caller::service(meta.owner)
        } else {
            Caller::user(meta.owner)
        })
    }

    async fn jwt(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("Invalid API key".to_owned()))?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.clone().ok_or_else(|| {
                AuthError::Invalid(
                    "HS256 tokens are not accepted (no JWT secret configured)".into(),
                )
            })?,
            Algorithm::ES256 | Algorithm::RS256 => {
                let jwks = self.jwks.as_ref().ok_or_else(|| {
                    AuthError::Invalid(
                        "signed tokens are not accepted (no SUPABASE_URL configured)".into(),
                    )
                })?;
                let kid = header
                    .kid
                    .as_deref()
                    .ok_or_else(|| AuthError::Invalid("token has no key id".into()))?;
                jwks.key(kid).await?
            }
            other => {
                return Err(AuthError::Invalid(format!(
                    "token algorithm {other:?} is not accepted"
                )));
            }
        };
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&["authenticated"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.leeway = 30;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| AuthError::Invalid(format!("token rejected: {}", describe(&e))))?
            .claims;
        if claims.role.as_deref().is_some_and(|r| r != "authenticated") {
            return Err(AuthError::Invalid(
                "token role is not accepted; only authenticated users may call the API".into(),
            ));
        }
        let subject: UserId = claims
            .sub
            .parse()
            .map_err(|_| AuthError::Invalid("token subject is not a user id".into()))?;
        if self.known_users.get(&subject).await.is_none() {
            self.store
                .upsert_from_auth(subject, claims.email.as_deref())
                .await
                .map_err(|e: RepoError| AuthError::Unavailable(e.to_string()))?;
            self.known_users.insert(subject, ()).await;
        }
        Ok(Caller::user(subject))
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match e.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::ImmatureSignature => "not valid yet",
        ErrorKind::MissingRequiredClaim(_) => "a required claim is missing",
        _ => "malformed",
    }
}
