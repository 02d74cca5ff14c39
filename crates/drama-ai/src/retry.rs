//! Retries of provider calls: the shared [`Backoff`], a limit on attempts, the provider's
//! `Retry-After` honoured up to a cap, and the caller's cancellation, which stops a call
//! between its tries.

use std::future::Future;
use std::time::Duration;

use drama_domain::{Backoff, Jitter};
use tokio_util::sync::CancellationToken;

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
    ///
    /// A cancellation of the call (see [`cancellable`]) that fires before a retry is sent ends
    /// the call with the error of the last try: every retry is a request the provider may bill,
    /// and a job cancelled during the pause wants no more of them. A try already sent is
    /// awaited whatever the cancellation says (the provider bills it anyway).
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
                        if !pause_unless_cancelled(pause).await {
                            tracing::info!(error = %e, attempt = n + 1, "the call was cancelled during its pause; the retry is not sent");
                            return Err(e);
                        }
                        n += 1;
                    }
                    None => return Err(e),
                },
            }
        }
    }
}

tokio::task_local! {
    /// The cancellation of the calls made inside [`cancellable`].
    static CANCELLATION: CancellationToken;
}

/// Runs `call` (one or more provider calls) under `token`: once `token` fires, no further try
/// of a call is sent — a retry waiting for its pause (a backoff, a 429's `Retry-After`) gives
/// up and the call returns the error of its last try. A request already sent is not abandoned
/// (the provider bills it whether or not its answer is read), so whoever needs to stop at once
/// races `call` with the token itself.
///
/// A job handler wraps its paid calls in it with the job's cancellation, so that a job
/// cancelled while a call waits to try again does not send (and pay for) that try.
pub async fn cancellable<F: Future>(token: CancellationToken, call: F) -> F::Output {
    CANCELLATION.scope(token, call).await
}

/// Waits `pause`; `false` when the cancellation of the current [`cancellable`] scope fired
/// first or fires at its end (then nothing more is to be sent).
#[cfg(feature = "providers")]
async fn pause_unless_cancelled(pause: Duration) -> bool {
    let Ok(token) = CANCELLATION.try_with(CancellationToken::clone) else {
        tokio::time::sleep(pause).await;
        return true;
    };
    tokio::select! {
        biased;
        () = token.cancelled() => false,
        () = tokio::time::sleep(pause) => !token.is_cancelled(),
    }
}
