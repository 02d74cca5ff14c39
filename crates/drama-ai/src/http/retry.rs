//! Exponential backoff with full jitter, honouring the provider's `Retry-After`.

use std::future::Future;
use std::time::Duration;

use rand::Rng as _;

use crate::error::AiError;

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first (the peer's `MAX_RETRIES`, default 2).
    pub max_retries: u32,
    /// Backoff before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Longest backoff between attempts.
    pub max_delay: Duration,
    /// Longest `Retry-After` we wait inside a call; a longer one is returned to the caller
    /// (the job engine reschedules instead of holding a worker).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The pause before retry number `retry` (0-based) after `error`, or `None` to give up.
    pub fn delay(&self, retry: u32, error: &AiError) -> Option<Duration> {
        if retry >= self.max_retries || !error.is_retryable() {
            return None;
        }
        if let Some(wait) = error.retry_after() {
            return (wait <= self.max_retry_after).then_some(wait);
        }
        let ceiling = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry))
            .min(self.max_delay);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        // Full jitter, but never less than half the ceiling so retries do not bunch up at 0.
        let ms = rand::rng().random_range(ceiling_ms / 2..=ceiling_ms);
        Some(Duration::from_millis(ms))
    }

    /// Runs `attempt` until it succeeds, fails permanently or the retries are used up.
    /// `attempt` gets the 0-based attempt number.
    pub(crate) async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, AiError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, AiError>>,
    {
        let mut n = 0;
        loop {
            match attempt(n).await {
                Ok(v) => return Ok(v),
                Err(e) => match self.delay(n, &e) {
                    Some(pause) => {
                        tracing::warn!(error = %e, attempt = n + 1, ?pause, "retrying provider call");
                        tokio::time::sleep(pause).await;
                        n += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }
}
