use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpMessage as _, HttpRequest, web};
use drama_app::{App, Caller, RequestKey};
use drama_domain::UserId;
use futures::future::LocalBoxFuture;
use serde::Deserialize;

use crate::auth::{AuthError, AuthSettings, Authenticator};
use crate::error::{ApiError, ErrorCode};
use crate::headers::header_text;
use crate::rate::KeyedRate;

/// HTTP settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Largest JSON body, in bytes (larger → 413 before the body is read).
    pub json_limit: usize,
    /// Largest upload, in bytes.
    pub upload_limit: u64,
    /// Uploads one user may send at once (0 turns the cap off); one more is refused with
    /// 429 before its body is read.
    pub uploads_per_user: usize,
    /// Longest an upload's body may send nothing before it is refused with 408.
    #[serde(with = "seconds")]
    pub upload_idle_timeout: Duration,
    /// Longest an upload's body may take to arrive whole before it is refused with 408.
    #[serde(with = "seconds")]
    pub upload_timeout: Duration,
    /// Requests per second allowed per caller (0 turns rate limiting off).
    pub rate_per_second: u32,
    /// Burst above the steady rate.
    pub rate_burst: u32,
    /// Longest a non-streaming request may take before it fails with 503.
    #[serde(with = "seconds")]
    pub request_timeout: Duration,
    /// Browser origins allowed to call the API: `*` (any, as the old server allowed), a
    /// comma-separated list of origins, or empty for none.
    pub cors_origins: String,
    /// Authentication.
    pub auth: AuthSettings,
    /// How long the signed media URLs in responses stay valid (at least; local signatures
    /// end on the next whole hour after it). At most seven days less an hour.
    #[serde(with = "seconds")]
    pub media_url_lifetime: Duration,
    /// Bounds of GraphQL requests.
    pub graphql: GraphqlLimits,
    /// How long a WebSocket may stay open without `connection_init` (then it is closed with
    /// 4408).
    #[serde(with = "seconds")]
    pub ws_init_timeout: Duration,
    /// How long an initialised WebSocket may run no subscription (and start no operation)
    /// before it is closed with 1000, giving back its place among the streams; 0 keeps idle
    /// sockets open.
    #[serde(with = "seconds")]
    pub ws_idle_timeout: Duration,
    /// Streams (SSE and GraphQL subscriptions) one user may hold open at once.
    pub streams_per_user: usize,
    /// Streams the process holds open at once.
    pub streams_per_process: usize,
    /// How often an open stream (SSE, GraphQL WebSocket) asks again whether the credentials
    /// it was opened with are still accepted; it ends at the first refusal (a revoked key)
    /// and at their expiry.
    #[serde(with = "seconds")]
    pub stream_auth_interval: Duration,
    /// How long a connection's peer may leave what was sent to it unacknowledged, or keep its
    /// receive window shut, before the kernel drops the connection (`TCP_USER_TIMEOUT`, on
    /// Linux; see [`crate::connection::on_connect`]); 0 leaves the kernel's own behaviour.
    #[serde(with = "seconds")]
    pub dead_peer_timeout: Duration,
    /// How long a `/ready` answer is reused, so probes cannot turn into load on the
    /// database and the bucket.
    #[serde(with = "seconds")]
    pub ready_cache: Duration,
    /// Requests per second allowed per client address for requests without valid
    /// credentials (0 turns it off).
    pub anonymous_per_second: u32,
    /// Burst above that rate.
    pub anonymous_burst: u32,
    /// Whether the client address comes from the header the proxy in front writes
    /// (`forwarded_header`: its last entry, the one that proxy appended) rather than from the
    /// connection.
    pub trust_forwarded: bool,
    /// The one header the proxy writes, read when `trust_forwarded` is set; the other is
    /// ignored (a proxy passes on whatever a client sent in a header it does not write).
    pub forwarded_header: ForwardedHeader,
    /// URLs whose origins the console may load images and clips from besides its own and any
    /// https one (the bucket's public URL and endpoint, the origin of the file URLs this server
    /// signs); not read from the configuration: the binary derives them from the asset
    /// settings.
    #[serde(skip)]
    pub media_origins: Vec<String>,
}

/// Which header carries the client address behind a proxy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For` (nginx, most load balancers).
    #[default]
    #[serde(rename = "x-forwarded-for")]
    XForwardedFor,
    /// The standard `Forwarded` (`for=`).
    #[serde(rename = "forwarded")]
    Forwarded,
}

/// The longest `media_url_lifetime`: a bucket presigns for at most seven days.
pub const MAX_MEDIA_URL_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600 - 3600);

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            json_limit: 4 * 1024 * 1024,
            upload_limit: 512 * 1024 * 1024,
            uploads_per_user: 2,
            upload_idle_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(900),
            rate_per_second: 50,
            rate_burst: 100,
            request_timeout: Duration::from_secs(30),
            cors_origins: "*".to_owned(),
            auth: AuthSettings::default(),
            media_url_lifetime: Duration::from_secs(6 * 3600),
            graphql: GraphqlLimits::default(),
            ws_init_timeout: Duration::from_secs(10),
            ws_idle_timeout: Duration::from_secs(300),
            streams_per_user: 20,
            streams_per_process: 10_000,
            stream_auth_interval: Duration::from_secs(60),
            dead_peer_timeout: Duration::from_secs(120),
            ready_cache: Duration::from_secs(1),
            anonymous_per_second: 20,
            anonymous_burst: 40,
            trust_forwarded: false,
            forwarded_header: ForwardedHeader::XForwardedFor,
            media_origins: Vec::new(),
        }
    }
}

/// The bounds of GraphQL requests (`http.graphql`); read, and unused, in a build without
/// GraphQL (cargo feature `graphql`), so one configuration serves every build.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct GraphqlLimits {
    /// Most operations in one batched POST.
    pub max_batch: usize,
    /// Most aliased fields in one operation (fragments expanded).
    pub max_aliases: usize,
    /// Highest price of one request (a batch: of all its operations).
    pub max_complexity: u64,
    /// Deepest nesting of a document (fragments expanded). The introspection query of
    /// graphql-js nests 14 levels through its `TypeRef` fragment.
    pub max_depth: usize,
    /// Most top-level fields of one request (a batch: of all its operations; aliases count,
    /// introspection does not): each is a resolver that reads the store.
    pub max_root_fields: usize,
}

impl Default for GraphqlLimits {
    fn default() -> Self {
        Self {
            max_batch: 10,
            max_aliases: 30,
            max_complexity: 100_000,
            max_depth: 16,
            max_root_fields: 30,
        }
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        f64::deserialize(d).and_then(|s| {
            Duration::try_from_secs_f64(s).map_err(|e| serde::de::Error::custom(e.to_string()))
        })
    }
}

/// Everything the handlers share; built once at startup.
pub struct ApiState {
    pub(crate) app: App,
    pub(crate) auth: Authenticator,
    pub(crate) settings: HttpSettings,
    #[cfg(feature = "graphql")]
    pub(crate) schema: Arc<crate::graphql::Schema>,
    pub(crate) realtime: Arc<crate::realtime::Realtime>,
    /// The uploads each user has in flight.
    pub(crate) uploads: Arc<crate::rest::upload_guard::UploadGate>,
    /// `LEGACY_USER_ID`, the user the old default owner `10000` became (none when unset or
    /// refused, as the authenticator reads it).
    pub(crate) legacy_user: Option<UserId>,
    pub(crate) sign_in: crate::console::SignInCodes,
    limiter: Option<KeyedRate<drama_domain::UserId>>,
    /// The rate of requests without valid credentials, per client address
    /// ([`crate::rate::client_key`]).
    anonymous: Option<KeyedRate<std::net::IpAddr>>,
    /// The last `/ready` answer and the check under way.
    pub(crate) readiness: crate::rest::health::ReadyCache,
    /// Cancelled when the server starts to stop: streams and sockets, which would otherwise
    /// hold the drain for its whole timeout, end then (clients reconnect elsewhere and resume).
    stopping: tokio_util::sync::CancellationToken,
    /// The console's Content-Security-Policy, with the configured media origins.
    pub(crate) console_policy: actix_web::http::header::HeaderValue,
}

impl ApiState {
    /// The shared state for `app` with `settings`.
    pub fn new(app: App, settings: HttpSettings) -> Arc<Self> {
        let limiter = KeyedRate::new(settings.rate_per_second, settings.rate_burst);
        // Synchronous routes answer with their run before the request deadline cuts them off.
        let app = app.with_sync_wait(
            settings
                .request_timeout
                .saturating_sub(Duration::from_secs(2))
                .max(Duration::from_secs(1)),
        );
        let anonymous = KeyedRate::new(settings.anonymous_per_second, settings.anonymous_burst);
        #[cfg(feature = "graphql")]
        let schema = crate::graphql::shared_schema(&settings.graphql);
        let realtime = Arc::new(crate::realtime::Realtime::with_caps(
            crate::realtime::StreamCaps {
                per_user: settings.streams_per_user,
                per_process: settings.streams_per_process,
            },
        ));
        let uploads = crate::rest::upload_guard::UploadGate::new(settings.uploads_per_user);
        let policy = crate::console::content_security_policy(&settings.media_origins);
        let console_policy = actix_web::http::header::HeaderValue::from_str(&policy)
            .unwrap_or_else(|_| {
                actix_web::http::header::HeaderValue::from_static(
                    crate::console::CONTENT_SECURITY_POLICY,
                )
            });
        Arc::new(Self {
            auth: Authenticator::new(app.clone(), &settings.auth),
            legacy_user: settings.auth.validate().ok().flatten(),
            app,
            settings,
            #[cfg(feature = "graphql")]
            schema,
            realtime,
            uploads,
            sign_in: crate::console::SignInCodes::default(),
            limiter,
            anonymous,
            readiness: crate::rest::health::ReadyCache::default(),
            stopping: tokio_util::sync::CancellationToken::new(),
            console_policy,
        })
    }

    /// Says the server has started to stop: every SSE stream ends and every GraphQL socket
    /// closes (1001, going away), so that draining waits only for ordinary requests.
    pub fn shut_down(&self) {
        self.stopping.cancel();
    }

    /// Resolves once [`Self::shut_down`] was called.
    pub(crate) fn stopping(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.stopping.clone().cancelled_owned()
    }

    /// The use cases.
    pub fn app(&self) -> &App {
        &self.app
    }

    /// Authenticates a request and applies the caller's rate limit.
    pub(crate) async fn caller(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let header = |name: &str| header_text(req.headers(), name).map(str::to_owned);
        let authenticated = self
            .authenticate_from(
                header("authorization").as_deref(),
                header("x-api-key").as_deref(),
                self.client_address(req),
            )
            .await
            .map_err(|refused| match refused {
                AuthRefusal::Credentials(e @ AuthError::Unavailable(_)) => ApiError::unavailable(e),
                AuthRefusal::Credentials(e) => ApiError::unauthenticated(e.to_string()),
                AuthRefusal::OverAnonymousRate(wait) => anonymous_limited(wait),
            })?;
        self.check_rate(&authenticated.caller)?;
        let caller = authenticated.caller.keyed(idempotency_key(req)?);
        // Kept for the response: its media URLs are signed for this caller (and, for a
        // service caller, for the users its handlers record as named).
        req.extensions_mut().insert(caller);
        req.extensions_mut()
            .insert(crate::media_links::NamedOwners::default());
        // Kept for a stream the request opens, which ends when the credentials do.
        req.extensions_mut()
            .insert(crate::lapse::Until(authenticated.until));
        Ok(caller)
    }

    /// Counts one request without valid credentials against its client address's rate.
    ///
    /// # Errors
    /// 429 `rate_limited` with the seconds to wait.
    pub(crate) fn check_anonymous(&self, req: &HttpRequest) -> Result<(), ApiError> {
        self.check_anonymous_from(self.client_address(req))
            .map_err(anonymous_limited)
    }

    /// Authenticates the credentials of a request or `connection_init` from `client`.
    ///
    /// Failed credentials cost the client's anonymous rate (guessing keys costs the guesser),
    /// counted after the lookup: a valid key is accepted from any address, also one that
    /// someone else behind it has taken over its rate.
    ///
    /// # Errors
    /// [`AuthRefusal`]: the credentials, or the client over its anonymous rate.
    pub(crate) async fn authenticate_from(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
        client: Option<std::net::IpAddr>,
    ) -> Result<crate::auth::Authenticated, AuthRefusal> {
        match self.auth.authenticated(authorization, api_key).await {
            Ok(known) => Ok(known),
            Err(e @ AuthError::Unavailable(_)) => Err(AuthRefusal::Credentials(e)),
            Err(e) => {
                self.check_anonymous_from(client)
                    .map_err(AuthRefusal::OverAnonymousRate)?;
                Err(AuthRefusal::Credentials(e))
            }
        }
    }

    /// The address a request is counted under when it has no valid credentials
    /// ([`crate::rate::client_key`]); `None` without one (a test request, a Unix socket).
    pub(crate) fn client_address(&self, req: &HttpRequest) -> Option<std::net::IpAddr> {
        let trusted = self
            .settings
            .trust_forwarded
            .then_some(self.settings.forwarded_header);
        crate::rate::client_key(req, trusted)
    }

    /// Counts one request of `client` against the anonymous rate (without an address there
    /// is nobody to count).
    ///
    /// # Errors
    /// How long the client must wait.
    fn check_anonymous_from(&self, client: Option<std::net::IpAddr>) -> Result<(), Duration> {
        match (&self.anonymous, client) {
            (Some(limiter), Some(ip)) => limiter.check(&ip),
            _ => Ok(()),
        }
    }

    /// Counts one request of `caller` against the per-user rate (HTTP requests and WebSocket
    /// operations alike).
    ///
    /// # Errors
    /// 429 `rate_limited` with the seconds to wait.
    pub(crate) fn check_rate(&self, caller: &Caller) -> Result<(), ApiError> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter.check(&caller.user).map_err(|wait| {
            ApiError::message(ErrorCode::RateLimited, "Too many requests; slow down.")
                .with_retry_after(wait.as_secs().max(1))
        })
    }
}

/// Why credentials were not accepted.
#[derive(Debug)]
pub(crate) enum AuthRefusal {
    /// They are not valid, or could not be checked.
    Credentials(AuthError),
    /// The client is over its anonymous rate and may retry after this long; the credentials
    /// were not looked up.
    OverAnonymousRate(Duration),
}

/// What a client over the anonymous rate is told.
pub(crate) const ANONYMOUS_LIMITED: &str =
    "Too many requests without credentials from this address; slow down.";

/// The refusal of a client over the anonymous rate, which may retry after `wait`.
pub(crate) fn anonymous_limited(wait: Duration) -> ApiError {
    ApiError::message(ErrorCode::RateLimited, ANONYMOUS_LIMITED)
        .with_retry_after(wait.as_secs().max(1))
}

/// The `Idempotency-Key` of a POST: paid requests name themselves with it so that a repeat
/// returns the first answer (other methods are idempotent already and ignore it).
///
/// # Errors
/// 422 naming `Idempotency-Key` when the key is empty, too long or not visible ASCII.
fn idempotency_key(req: &HttpRequest) -> Result<Option<RequestKey>, ApiError> {
    if req.method() != actix_web::http::Method::POST {
        return Ok(None);
    }
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(value) => RequestKey::parse(&String::from_utf8_lossy(value.as_bytes()))
            .map(Some)
            .map_err(ApiError::from),
    }
}

/// The owner a `user_id` argument (GraphQL `userId`) names, for service callers only: anyone
/// else's is ignored. The old server's implicit users — its clients' default `10000` and the
/// demo user its Supabase branch defaulted GraphQL's `userId` to — name the user the import
/// gave the old default owner's data to (`legacy_user`), or nobody (the caller itself) when
/// none is set.
///
/// # Errors
/// The argument, when it is neither an implicit user of the old server nor a user id.
pub(crate) fn named_owner<'a>(
    caller: &Caller,
    user_id: Option<&'a str>,
    legacy_user: Option<UserId>,
) -> Result<Option<UserId>, &'a str> {
    match user_id
        .map(str::trim)
        .filter(|u| !u.is_empty() && caller.service)
    {
        None => Ok(None),
        Some(u) if drama_domain::is_old_default_owner(u) => Ok(legacy_user),
        Some(u) => u.parse().map(Some).map_err(|_| u),
    }
}

/// The authenticated caller of a request (an extractor: a handler that takes it requires
/// credentials).
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub Caller);

impl FromRequest for Auth {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<ApiState>>()
                .ok_or_else(|| ApiError::internal("ApiState is not registered"))?
                .clone();
            state.caller(&req).await.map(Auth)
        })
    }
}
