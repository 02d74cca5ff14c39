//! The project's JWKS, kept stale-while-revalidate.
//!
//! Keys younger than the TTL are used as they are. Older keys are still used (up to
//! [`MAX_STALE`]) while one background fetch refreshes them, so a slow or failing Supabase
//! never holds up or fails a request that carries a known key id. A key id not in the set
//! (how a rotation appears) fetches at once, at most once per [`REFETCH_GAP`]. Failed fetches
//! back off exponentially (1 s doubling to [`MAX_BACKOFF`]), so an outage does not turn every
//! request into a fetch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drama_domain::Backoff;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use tokio::sync::{Mutex, RwLock};

use crate::auth::AuthError;

/// How long fetched keys are used without asking again.
pub(crate) const TTL: Duration = Duration::from_secs(600);
/// Longest keys are used after their TTL when they cannot be refreshed.
pub(crate) const MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// Least time between two fetches after a success (an unknown `kid` must not cause a fetch
/// storm).
pub(crate) const REFETCH_GAP: Duration = Duration::from_secs(60);
/// Longest wait between failed fetches.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Waits after failed fetches: 1 s, doubling with each failure up to [`MAX_BACKOFF`].
const FAILED_FETCHES: Backoff = Backoff::doubling(Duration::from_secs(1), MAX_BACKOFF);

/// A JWKS endpoint and what was fetched from it.
pub(crate) struct Jwks {
    url: String,
    http: reqwest::Client,
    ttl: Duration,
    state: RwLock<State>,
    /// Held while fetching, so concurrent requests make one fetch.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct State {
    keys: Option<JwkSet>,
    /// When `keys` were fetched.
    fetched: Option<Instant>,
    /// The last attempt, successful or not.
    attempted: Option<Instant>,
    /// Failed attempts since the last success.
    failures: u32,
}

impl State {
    /// The wait before the next attempt is allowed, with keys kept for `ttl`.
    fn gap(&self, ttl: Duration) -> Duration {
        if self.failures == 0 {
            return REFETCH_GAP.min(ttl);
        }
        FAILED_FETCHES.delay(self.failures - 1)
    }

    fn may_fetch(&self, ttl: Duration) -> bool {
        self.attempted.is_none_or(|t| t.elapsed() >= self.gap(ttl))
    }
}

fn decode(jwk: &jsonwebtoken::jwk::Jwk) -> Result<DecodingKey, AuthError> {
    DecodingKey::from_jwk(jwk).map_err(|e| AuthError::Invalid(format!("unusable signing key: {e}")))
}

impl Jwks {
    /// The JWKS at `url`, fetched on first use.
    pub(crate) fn new(url: String, http: reqwest::Client) -> Arc<Self> {
        Self::with_ttl(url, http, TTL)
    }

    /// As [`Jwks::new`] with another TTL (tests).
    pub(crate) fn with_ttl(url: String, http: reqwest::Client, ttl: Duration) -> Arc<Self> {
        Arc::new(Self {
            url,
            http,
            ttl,
            state: RwLock::new(State::default()),
            fetching: Mutex::new(()),
        })
    }

    /// The key `kid` signs with.
    ///
    /// # Errors
    /// `Invalid` for a key id the project does not have; `Unavailable` when no keys could be
    /// fetched at all.
    pub(crate) async fn key(self: &Arc<Self>, kid: &str) -> Result<DecodingKey, AuthError> {
        {
            let state = self.state.read().await;
            let age = state.fetched.map(|t| t.elapsed());
            if let (Some(age), Some(jwk)) = (age, state.keys.as_ref().and_then(|k| k.find(kid)))
                && age < MAX_STALE
            {
                // One refresh at a time: skip when one is running.
                if age >= self.ttl && state.may_fetch(self.ttl) && self.fetching.try_lock().is_ok()
                {
                    // Serve the stale key now; refresh behind the request.
                    let this = self.clone();
                    tokio::spawn(async move {
                        this.refresh().await;
                    });
                }
                return decode(jwk);
            }
        }
        // No usable key for this id: fetch now, unless the last attempt was too recent.
        self.refresh().await;
        let state = self.state.read().await;
        let usable = state.fetched.is_some_and(|t| t.elapsed() < MAX_STALE);
        match state.keys.as_ref().filter(|_| usable) {
            Some(keys) => keys
                .find(kid)
                .ok_or_else(|| AuthError::Invalid(format!("unknown signing key id {kid:?}")))
                .and_then(decode),
            None => Err(AuthError::Unavailable(
                "the project's signing keys cannot be fetched".into(),
            )),
        }
    }

    /// Fetches the set if the backoff allows it; one fetch at a time.
    async fn refresh(&self) {
        let _one = self.fetching.lock().await;
        if !self.state.read().await.may_fetch(self.ttl) {
            return;
        }
        let fetched = self.fetch().await;
        let mut state = self.state.write().await;
        state.attempted = Some(Instant::now());
        match fetched {
            Ok(keys) => {
                state.keys = Some(keys);
                state.fetched = state.attempted;
                state.failures = 0;
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                tracing::warn!(
                    error = %e,
                    failures = state.failures,
                    retry_in_ms = u64::try_from(state.gap(self.ttl).as_millis()).unwrap_or(u64::MAX),
                    "cannot refresh the JWKS; known keys stay in use"
                );
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        self.http
            .get(&self.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("cannot fetch the JWKS: {e}"))?
            .json()
            .await
            .map_err(|e| format!("the JWKS does not parse: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;

    const SET: &str = include_str!("../tests/fixtures/es256-test-jwks.json");
    const KID: &str = "test-key-1";

    async fn requests(server: &MockServer) -> usize {
        server.received_requests().await.unwrap().len()
    }

    /// A JWKS endpoint that answers once, then fails.
    async fn answers_once() -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(SET, "application/json"))
            .up_to_n_times(1)
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/jwks"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        server
    }

    #[tokio::test]
    async fn stale_keys_serve_while_refreshes_fail_and_back_off() {
        let server = answers_once().await;
        // Every key is stale as soon as it is fetched.
        let jwks = Jwks::with_ttl(
            format!("{}/jwks", server.uri()),
            reqwest::Client::new(),
            Duration::ZERO,
        );
        assert!(jwks.key(KID).await.is_ok());
        for _ in 0..50 {
            assert!(jwks.key(KID).await.is_ok(), "the stale key is used");
            tokio::task::yield_now().await;
        }
        // The refresh started behind those requests fails...
        for _ in 0..500 {
            if requests(&server).await >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(
            jwks.key(KID).await.is_ok(),
            "...and the stale key stays in use"
        );
        // ...and backs off: fifty requests made a handful of fetches, not fifty.
        let made = requests(&server).await;
        assert!((2..10).contains(&made), "{made} fetches");
        // An unknown key id is not taken for a known one.
        assert!(matches!(
            jwks.key("rotated").await,
            Err(AuthError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn without_any_keys_the_answer_is_unavailable() {
        let server = MockServer::start().await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let jwks = Jwks::new(format!("{}/jwks", server.uri()), reqwest::Client::new());
        for _ in 0..10 {
            assert!(matches!(
                jwks.key(KID).await,
                Err(AuthError::Unavailable(_))
            ));
        }
        let made = requests(&server).await;
        assert!(
            (1..5).contains(&made),
            "{made} attempts: the backoff holds the rest"
        );
    }

    #[test]
    fn failures_back_off_exponentially_to_the_cap() {
        let mut state = State::default();
        assert_eq!(state.gap(TTL), REFETCH_GAP);
        let gaps: Vec<u64> = (1..=8)
            .map(|n| {
                state.failures = n;
                state.gap(TTL).as_secs()
            })
            .collect();
        assert_eq!(gaps, [1, 2, 4, 8, 16, 32, 60, 60]);
    }
}
