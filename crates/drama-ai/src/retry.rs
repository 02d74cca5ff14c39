//! Retries of provider calls: the shared [`Backoff`], a limit on attempts, and the provider's
//! `Retry-After` honoured up to a cap.

#[cfg(feature = "providers")]
use std::future::Future;
use std::time::Duration;

use drama_domain::{Backoff, Jitter};

use crate::error::AiError;

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Extra attempts after the first (the peer's `MAX_RETRIES`, default 2).
    pub max_retries: u32,
    /// Pauses between attempts when the provider names none.
    pub backoff: Backoff,
    /// Longest `Retry-After` we wait inside a call; a longer one is returned to the caller
    /// (the job engine reschedules instead of holding a worker).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            // Doubling, each pause drawn between half and all of its step so that retries
            // neither bunch up at zero nor exceed the cap.
            backoff: Backoff {
                initial: Duration::from_millis(500),
                max: Duration::from_secs(20),
                multiplier: 2.0,
                jitter: Jitter::Below(0.5),
            },
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
        Some(self.backoff.delay(retry))
    }

    /// Runs `attempt` until it succeeds, fails permanently or the retries are used up.
    /// `attempt` gets the 0-based attempt number.
    #[cfg(feature = "providers")]
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
