//! Who is calling: a Supabase JWT or one of our API keys, on every route except health,
//! readiness and the API docs.
//!
//! `Authorization: Bearer <token>` carries either; `X-API-Key: <key>` carries a key. JWTs are
//! verified locally: HS256 with the project's JWT secret, or ES256/RS256 with the project's
//! JWKS (`jwks`: kept stale-while-revalidate; refetched at most once a minute when an unknown
//! `kid` shows up, which is how key rotation appears). `exp`, `aud` (`authenticated`) and `iss`
//! (`{SUPABASE_URL}/auth/v1`) are checked. A first-seen subject gets its `users` row.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drama_app::{App, AppError, Caller, KeyCaller};
use drama_domain::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Authentication settings.
#[derive(Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// `SUPABASE_JWT_SECRET`: the legacy HS256 secret of the Supabase project.
    pub jwt_secret: Option<String>,
    /// `SUPABASE_URL`: `https://<ref>.supabase.co`; gives the issuer and the JWKS location.
    pub supabase_url: Option<String>,
    /// `SUPABASE_SERVICE_KEY`: the project's service_role key (a legacy JWT or an
    /// `sb_secret_…` key); presented as a bearer token it makes a service caller.
    pub service_key: Option<String>,
    /// `LEGACY_API_KEYS` (or the old `API_KEYS`): comma-separated keys of the old server,
    /// accepted during the transition as the legacy user.
    pub legacy_api_keys: Option<String>,
    /// `LEGACY_USER_ID`: the user old credentials act as (the legacy keys, and `service_role`
    /// callers that name no other user).
    pub legacy_user: Option<String>,
}

impl AuthSettings {
    /// The legacy keys, trimmed, empty entries dropped (as the old server read `API_KEYS`).
    pub fn legacy_keys(&self) -> Vec<String> {
        self.legacy_api_keys
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Checks what cannot work: legacy keys without a user to map them to, a user that is not
    /// a user id.
    ///
    /// # Errors
    /// A message naming the variable to fix.
    pub fn validate(&self) -> Result<Option<UserId>, String> {
        let user = self
            .legacy_user
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| {
                u.parse::<UserId>()
                    .map_err(|_| format!("LEGACY_USER_ID {u:?} is not a user id (a UUID)"))
            })
            .transpose()?;
        if user.is_none() && !self.legacy_keys().is_empty() {
            return Err(
                "LEGACY_API_KEYS (or API_KEYS) is set but LEGACY_USER_ID is not: \
                 set it to the user the old keys act as (the owner chosen for the old user \
                 10000 at import)"
                    .to_owned(),
            );
        }
        Ok(user)
    }
}

/// The user a `service_role` caller acts as when it names none and no `LEGACY_USER_ID` is
/// set: a fixed id, so that what such callers create has one owner a service caller can
/// name again.
pub const SERVICE_USER: UserId = UserId(uuid::Uuid::from_u128(
    0x5e7f_1ce0_0000_4000_8000_0000_0000_0001,
));

impl fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("supabase_url", &self.supabase_url)
            .field("service_key", &self.service_key.as_ref().map(|_| "***"))
            .field(
                "legacy_api_keys",
                &self.legacy_api_keys.as_ref().map(|_| "***"),
            )
            .field("legacy_user", &self.legacy_user)
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
    /// The store could not be asked. The cause is its source, for the log: the text of this
    /// error may reach the client.
    #[error("authentication unavailable; retry shortly")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How long a verified API key is trusted before it is looked up again. A revocation takes
/// effect in other processes within this time (immediately in the revoking process).
const KEY_CACHE_TTL: Duration = Duration::from_secs(30);
/// A key's last use is written at most this often.
const LAST_USE_INTERVAL: Duration = Duration::from_secs(60);
/// How long a subject known to have a `users` row is not upserted again.
const USER_CACHE_TTL: Duration = Duration::from_secs(600);

/// Seconds a token's `exp` (and `nbf`) may be off, for clocks that disagree with Supabase's.
const JWT_LEEWAY: u64 = 30;

/// An authenticated caller, and until when its credentials are accepted by themselves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authenticated {
    pub(crate) caller: Caller,
    /// A token's `exp` or a key's expiry; `None` for credentials that do not expire. A key
    /// may still be revoked before. (The leeway of a token's check is for accepting a token
    /// from a clock that runs a little behind; a stream still ends at the `exp` it names.)
    pub(crate) until: Option<DateTime<Utc>>,
}

impl Authenticated {
    fn forever(caller: Caller) -> Self {
        Self {
            caller,
            until: None,
        }
    }
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive); `None`
/// for any other value (another scheme, no token, a malformed header).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The end of a token that expires at `exp` (seconds since the epoch).
fn token_end(exp: Option<i64>) -> Option<DateTime<Utc>> {
    exp.and_then(|exp| DateTime::from_timestamp(exp, 0))
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    email: Option<String>,
    /// Supabase's anonymous sign-ins: a session anyone can open without an identity.
    #[serde(default)]
    is_anonymous: bool,
}

/// What is read of a token before its signature is checked, to choose how to check it.
#[derive(Deserialize)]
struct Unverified {
    #[serde(default)]
    role: Option<String>,
}

/// The claims of a project key (`service_role`): no subject, no audience.
#[derive(Deserialize)]
struct ProjectClaims {
    #[serde(default, rename = "ref")]
    project: Option<String>,
    #[serde(default)]
    exp: Option<i64>,
}

/// Verifies credentials and turns them into a [`Caller`].
pub struct Authenticator {
    /// Resolves keys and records users through the use cases.
    app: App,
    hs256: Option<DecodingKey>,
    issuer: Option<String>,
    jwks: Option<Arc<crate::jwks::Jwks>>,
    keys: moka::future::Cache<Vec<u8>, KeyCaller>,
    recent_use: moka::future::Cache<uuid::Uuid, ()>,
    known_users: moka::future::Cache<UserId, ()>,
    service_key: Option<String>,
    legacy_keys: Vec<String>,
    legacy_user: Option<UserId>,
    /// Legacy keys (by position) warned about recently: one deprecation line per key per
    /// interval, not one per request.
    legacy_warned: moka::future::Cache<usize, ()>,
}

/// How often a use of the same legacy key is logged as deprecated.
const LEGACY_WARN_INTERVAL: Duration = Duration::from_secs(600);

impl Authenticator {
    /// An authenticator over `app` with `settings` (legacy keys are ignored, with an error
    /// in the log, when [`AuthSettings::validate`] refuses them). Users seen for the first
    /// time open with the app's initial credits.
    pub fn new(app: App, settings: &AuthSettings) -> Self {
        let (legacy_user, legacy_keys) = match settings.validate() {
            Ok(user) => (user, settings.legacy_keys()),
            Err(e) => {
                tracing::error!("{e}; the legacy keys are refused");
                (None, Vec::new())
            }
        };
        if !legacy_keys.is_empty() {
            tracing::warn!(
                keys = legacy_keys.len(),
                "LEGACY_API_KEYS are accepted for the transition and deprecated: give each \
                 caller a key of its own (drama-server keys create) and remove them"
            );
        }
        let base = settings
            .supabase_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        let jwks = base.as_ref().map(|b| {
            crate::jwks::Jwks::new(
                format!("{b}/auth/v1/.well-known/jwks.json"),
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
            )
        });
        Self {
            app,
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
            service_key: settings
                .service_key
                .as_deref()
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(str::to_owned),
            legacy_keys,
            legacy_user,
            legacy_warned: moka::future::Cache::builder()
                .max_capacity(1_000)
                .time_to_live(LEGACY_WARN_INTERVAL)
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
        self.authenticated(authorization, api_key)
            .await
            .map(|a| a.caller)
    }

    /// [`Self::authenticate`], also saying until when the credentials are accepted: a
    /// stream they open ends then (`lapse`).
    ///
    /// Precedence (docs/API.md, "Authentication"): a bearer credential the server accepts
    /// wins; `X-API-Key` is used when `Authorization` is absent, malformed, of another scheme,
    /// or a bearer token that is refused and is not an API key (the project's `anon` key, a
    /// placeholder such as `Bearer null`, an expired session), because the old server
    /// ignored `Authorization` and its clients send whatever their HTTP layer adds. The
    /// caller is always the one credential that authenticated; a refused API key is never
    /// passed over, so a revoked or expired key stays refused whichever header carries it.
    ///
    /// # Errors
    /// [`AuthError`] saying what is wrong.
    pub(crate) async fn authenticated(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> Result<Authenticated, AuthError> {
        let key = api_key.map(str::trim).filter(|k| !k.is_empty());
        match (authorization.and_then(bearer_token), key) {
            (Some(token), None) => self.credential(token, true).await,
            (None, Some(key)) => self.credential(key, false).await,
            (None, None) => Err(AuthError::Missing),
            (Some(token), Some(key)) => match self.credential(token, true).await {
                Err(AuthError::Invalid(_)) if !drama_app::looks_like_api_key(token) => {
                    self.credential(key, false).await
                }
                outcome => outcome,
            },
        }
    }

    /// Authenticates one presented credential; `bearer` when it came as a bearer token,
    /// the only place a JWT is accepted from.
    async fn credential(&self, presented: &str, bearer: bool) -> Result<Authenticated, AuthError> {
        if drama_app::looks_like_api_key(presented) {
            return self.api_key(presented).await;
        }
        if self
            .service_key
            .as_deref()
            .is_some_and(|k| equal(k, presented))
        {
            return self.service_caller().await.map(Authenticated::forever);
        }
        if let Some(index) = self.legacy_keys.iter().position(|k| equal(k, presented))
            && let Some(user) = self.legacy_user
        {
            return self
                .legacy_caller(index, user)
                .await
                .map(Authenticated::forever);
        }
        if bearer {
            self.jwt(presented).await
        } else {
            Err(AuthError::Invalid("Invalid API key".to_owned()))
        }
    }

    /// The caller of the project's `service_role` key.
    async fn service_caller(&self) -> Result<Caller, AuthError> {
        let user = self.legacy_user.unwrap_or(SERVICE_USER);
        self.ensure_user(user, None, false).await?;
        Ok(Caller::service(user))
    }

    async fn legacy_caller(&self, index: usize, user: UserId) -> Result<Caller, AuthError> {
        if self.legacy_warned.get(&index).await.is_none() {
            self.legacy_warned.insert(index, ()).await;
            tracing::warn!(
                legacy_key = index + 1,
                user = %user,
                "a request used an old API key (LEGACY_API_KEYS), which is deprecated: give \
                 the caller a key of its own (drama-server keys create) and remove it"
            );
        }
        self.ensure_user(user, None, false).await?;
        Ok(Caller::legacy(user))
    }

    /// Makes sure `user` has its `users` row (once per cache period).
    async fn ensure_user(
        &self,
        user: UserId,
        email: Option<&str>,
        anonymous: bool,
    ) -> Result<(), AuthError> {
        if self.known_users.get(&user).await.is_none() {
            self.app
                .user_seen(user, email, anonymous)
                .await
                .map_err(|e| AuthError::Unavailable(Box::new(e)))?;
            self.known_users.insert(user, ()).await;
        }
        Ok(())
    }

    /// Forgets every key of `owner` in this process at once (after one was revoked here, and
    /// with it the keys made with it). The cache is keyed by the presented key's hash, which a
    /// revocation does not know, so entries are matched by owner; the owner's keys still in
    /// use are looked up again on their next request.
    pub fn forget_keys_of(&self, owner: UserId) {
        if let Err(e) = self
            .keys
            .invalidate_entries_if(move |_, key| key.caller.user == owner)
        {
            tracing::warn!(error = %e, user.id = %owner, "revoked keys not evicted from the cache");
        }
    }

    async fn api_key(&self, presented: &str) -> Result<Authenticated, AuthError> {
        let fingerprint = drama_app::key_fingerprint(presented);
        let now = Utc::now();
        let key = match self.keys.get(&fingerprint).await {
            Some(key) if key.is_usable_at(now) => key,
            _ => {
                let key = self
                    .app
                    .caller_for_key(presented, now)
                    .await
                    .map_err(|e| match e {
                        AppError::Unauthenticated(message) => AuthError::Invalid(message),
                        other => AuthError::Unavailable(Box::new(other)),
                    })?;
                self.keys.insert(fingerprint, key).await;
                key
            }
        };
        if self.recent_use.get(&key.id).await.is_none() {
            self.recent_use.insert(key.id, ()).await;
            let app = self.app.clone();
            let id = key.id;
            tokio::spawn(async move {
                if let Err(e) = app.key_used(id, now).await {
                    tracing::debug!(error = %e, api_key.id = %id, "last use not recorded");
                }
            });
        }
        Ok(Authenticated {
            caller: key.caller,
            until: key.expires_at,
        })
    }

    async fn jwt(&self, token: &str) -> Result<Authenticated, AuthError> {
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
        let role = jsonwebtoken::dangerous::insecure_decode_claims::<Unverified>(token)
            .ok()
            .and_then(|c| c.role);
        match role.as_deref() {
            Some("service_role") => return self.service_token(token, header.alg, &key).await,
            Some("anon") => {
                return Err(AuthError::Invalid(
                    "token role is not accepted: the anon key names no user; sign in as a \
                     user or use an API key"
                        .into(),
                ));
            }
            _ => {}
        }
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&["authenticated"]);
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
        }
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        // jsonwebtoken checks `nbf` only when asked: a token minted for later is refused
        // until then, as `exp` refuses it after.
        validation.validate_nbf = true;
        validation.leeway = JWT_LEEWAY;
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
        self.ensure_user(subject, claims.email.as_deref(), claims.is_anonymous)
            .await?;
        Ok(Authenticated {
            caller: Caller::user(subject),
            until: token_end(claims.exp),
        })
    }

    /// A `service_role` token: signed by the project (its secret or its JWKS), not expired,
    /// and, when it names its project, of this project. Such keys carry no subject and no
    /// audience; the old Supabase keys name the issuer `supabase`.
    async fn service_token(
        &self,
        token: &str,
        alg: Algorithm,
        key: &DecodingKey,
    ) -> Result<Authenticated, AuthError> {
        let mut validation = Validation::new(alg);
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_nbf = true;
        validation.leeway = JWT_LEEWAY;
        let claims = jsonwebtoken::decode::<ProjectClaims>(token, key, &validation)
            .map_err(|e| AuthError::Invalid(format!("token rejected: {}", describe(&e))))?
            .claims;
        let ours = self
            .issuer
            .as_deref()
            .and_then(|i| i.strip_prefix("https://"))
            .and_then(|host| host.split('.').next());
        if let (Some(named), Some(ours)) = (claims.project.as_deref(), ours)
            && named != ours
        {
            return Err(AuthError::Invalid(format!(
                "token rejected: the service_role key of project {named:?}, not of this one"
            )));
        }
        Ok(Authenticated {
            caller: self.service_caller().await?,
            until: token_end(claims.exp),
        })
    }
}

/// Compares two secrets in constant time (for equal lengths).
fn equal(expected: &str, presented: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    expected.len() == presented.len() && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()))
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
