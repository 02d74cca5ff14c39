//! What bounds an upload before and while its body arrives: a cap on one user's uploads at
//! once, and time bounds on the body (a stall between two chunks, the whole body).
//!
//! The request deadline does not cover uploads (a large file may take minutes on a slow
//! link), so without these a client that trickles a body holds a connection, a spool file
//! and an upload slot as long as it likes.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::error::PayloadError;
use bytes::Bytes;
use drama_domain::UserId;
use futures::{Stream, StreamExt as _};

use crate::error::{ApiError, ErrorCode};

/// Seconds a client refused by the cap is told to wait.
const RETRY_AFTER: u64 = 5;

/// The uploads each user has in flight in this process.
pub(crate) struct UploadGate {
    per_user: usize,
    open: Mutex<HashMap<UserId, usize>>,
}

/// One upload in flight; leaving it (answered or abandoned) frees the slot.
pub(crate) struct UploadPermit {
    gate: Arc<UploadGate>,
    user: UserId,
}

impl UploadGate {
    /// At most `per_user` uploads of one user at once; 0: no cap.
    pub(crate) fn new(per_user: usize) -> Arc<Self> {
        Arc::new(Self {
            per_user,
            open: Mutex::default(),
        })
    }

    /// Takes a slot for `caller`'s upload: one of its user's, or none for a service caller,
    /// which uploads for many users (they would otherwise share its slots, one user's stalled
    /// upload holding up everyone's); its uploads are bounded by the time limits alone.
    ///
    /// # Errors
    /// As [`UploadGate::enter`].
    pub(crate) fn enter_for(
        self: &Arc<Self>,
        caller: &drama_app::Caller,
    ) -> Result<Option<UploadPermit>, ApiError> {
        if caller.service {
            return Ok(None);
        }
        self.enter(caller.user).map(Some)
    }

    /// Takes one of `user`'s slots.
    ///
    /// # Errors
    /// 429 `too_many_uploads` with `Retry-After` when the user has all theirs in flight.
    pub(crate) fn enter(self: &Arc<Self>, user: UserId) -> Result<UploadPermit, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = open.entry(user).or_default();
        if self.per_user > 0 && *mine >= self.per_user {
            return Err(ApiError::message(
                ErrorCode::TooManyUploads,
                format!(
                    "You have {} uploads in progress, the most allowed at once; wait for one \
                     to finish.",
                    self.per_user
                ),
            )
            .with_retry_after(RETRY_AFTER));
        }
        *mine += 1;
        Ok(UploadPermit {
            gate: self.clone(),
            user,
        })
    }
}

impl Drop for UploadPermit {
    fn drop(&mut self) {
        let mut open = self
            .gate
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(mine) = open.get_mut(&self.user) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// A time bound of a body.
#[derive(Debug, Clone, Copy)]
enum Bound {
    /// Between two chunks.
    Idle(Duration),
    /// The whole body.
    Total(Duration),
}

/// Which time bound a body passed, once it has.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expiry(Rc<Cell<Option<Bound>>>);

impl Expiry {
    /// The answer for a body that passed a bound, if it did (the multipart parser only
    /// sees a failed stream, which it would answer as a malformed body).
    pub(crate) fn error(&self) -> Option<ApiError> {
        let seconds = |d: Duration| d.as_secs_f64();
        self.0.get().map(|bound| {
            let message = match bound {
                Bound::Idle(d) => format!(
                    "The upload sent nothing for {} s; nothing was stored.",
                    seconds(d)
                ),
                Bound::Total(d) => format!(
                    "The upload took longer than {} s to arrive; nothing was stored.",
                    seconds(d)
                ),
            };
            ApiError::message(ErrorCode::RequestTimeout, message)
        })
    }
}

/// A multipart request's form over its body bounded by the upload time limits of
/// `settings`; a read of the form that failed is answered with [`Expiry::error`] when a limit
/// was passed.
pub(crate) fn timed_form(
    req: &actix_web::HttpRequest,
    payload: actix_web::web::Payload,
    settings: &crate::HttpSettings,
) -> (actix_multipart::Multipart, Expiry) {
    let expiry = Expiry::default();
    let body = timed(
        payload,
        settings.upload_idle_timeout,
        settings.upload_timeout,
        &expiry,
    );
    (actix_multipart::Multipart::new(req.headers(), body), expiry)
}

/// The body as a stream that fails once no chunk arrived for `idle`, or once `total` has
/// passed since it began; `expiry` then says which.
pub(crate) fn timed<S>(
    body: S,
    idle: Duration,
    total: Duration,
    expiry: &Expiry,
) -> impl Stream<Item = Result<Bytes, PayloadError>> + 'static
where
    S: Stream<Item = Result<Bytes, PayloadError>> + 'static,
{
    let end = tokio::time::Instant::now() + total;
    let expiry = expiry.clone();
    futures::stream::unfold(Some(Box::pin(body)), move |state| {
        let expiry = expiry.clone();
        async move {
            let mut body = state?;
            let idle_end = tokio::time::Instant::now() + idle;
            let until = idle_end.min(end);
            match tokio::time::timeout_at(until, body.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(body))),
                Ok(None) => None,
                Err(_) => {
                    let passed = if idle_end <= end {
                        Bound::Idle(idle)
                    } else {
                        Bound::Total(total)
                    };
                    expiry.0.set(Some(passed));
                    let error = std::io::Error::from(std::io::ErrorKind::TimedOut);
                    Some((Err(PayloadError::Io(error)), None))
                }
            }
        }
    })
    // The multipart parser may poll again after the end; a fused stream keeps answering it.
    .fuse()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body that keeps sending, a chunk well within the idle bound each time, still ends
    /// at the total bound.
    #[actix_web::test]
    async fn a_trickle_that_never_stalls_ends_at_the_total_bound() {
        let trickle = futures::stream::unfold((), |()| async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Some((Ok(Bytes::from_static(b"x")), ()))
        });
        let expiry = Expiry::default();
        let body = timed(
            trickle,
            Duration::from_secs(5),
            Duration::from_millis(300),
            &expiry,
        );
        let items: Vec<_> = body.collect().await;
        assert!(items.len() > 1, "the trickle was read while it lasted");
        assert!(matches!(items.last(), Some(Err(PayloadError::Io(_)))));
        assert!(matches!(expiry.0.get(), Some(Bound::Total(_))));
        let error = expiry.error().expect("the total bound was passed");
        assert_eq!(error.kind(), ErrorCode::RequestTimeout);
    }
}
