//! Connections a failover left behind are not handed out again.
//!
//! A pooled session that answered "read-only" (25006) is connected to a server that is a
//! standby now (a primary demoted during a failover) or to a database made read-only, and it
//! keeps answering so until it is closed: `test_before_acquire`'s ping passes on it. A session
//! the server ended for idling in its transaction (25P03) is gone. Every error of this crate
//! passes through [`note`] (the repositories' `map_err`, the job store's mapping), which
//! records when such an answer was last seen; the pools of [`crate::PgSettings`] drop, on
//! release and before handing one out, every connection opened before that moment
//! ([`keep`]). In a failover every such connection reached the old primary, so the pool is
//! renewed at once rather than one failed request per connection; nothing is asked of the
//! server to decide it.
//!
//! The moment is one per process: one process talks to one database, and in tests (one
//! process per test) a renewal elsewhere would cost reconnections, never a wrong answer.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnectionMetadata;

/// The instant the marks below count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds after [`epoch`] at which a session last answered 25006 or 25P03, plus one;
/// zero while none has.
static LAST_REFUSAL: AtomicU64 = AtomicU64::new(0);

fn now_nanos() -> u64 {
    u64::try_from(epoch().elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Whether `err` says the session that ran the statement cannot write again (read-only,
/// 25006) or is gone (25P03).
pub(crate) fn is_stale_session(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => matches!(db.code().as_deref(), Some("25006" | "25P03")),
        _ => false,
    }
}

/// Records `err` when it is a stale session's answer, so that the connections opened before
/// now are dropped.
pub(crate) fn note(err: &sqlx::Error) {
    if is_stale_session(err) {
        let mark = now_nanos().saturating_add(1);
        LAST_REFUSAL.fetch_max(mark, Ordering::Relaxed);
        tracing::warn!(
            error = %err,
            "a database session is read-only or was ended; the pool's older connections are replaced"
        );
    }
}

/// Whether a pooled connection may be used again: it was opened after the last stale
/// session's answer. Pure arithmetic, no statement.
pub(crate) fn keep(meta: &PoolConnectionMetadata) -> bool {
    opened_after_refusal(meta.age)
}

fn opened_after_refusal(age: Duration) -> bool {
    let last = LAST_REFUSAL.load(Ordering::Relaxed);
    if last == 0 {
        return true;
    }
    let age = u64::try_from(age.as_nanos()).unwrap_or(u64::MAX);
    // A connection opened before the epoch was set is older than any mark.
    let opened = now_nanos().checked_sub(age);
    opened.is_some_and(|opened| opened >= last)
}

/// Sets the epoch, so that connections opened from now on have a place on its scale.
pub(crate) fn start() {
    epoch();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_opened_before_a_refusal_are_dropped_and_later_ones_kept() {
        start();
        std::thread::sleep(Duration::from_millis(5));
        LAST_REFUSAL.fetch_max(now_nanos() + 1, Ordering::Relaxed);
        let marked = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        let opened_before = marked.elapsed() + Duration::from_millis(1);
        assert!(!opened_after_refusal(opened_before));
        assert!(!opened_after_refusal(Duration::from_secs(3600)));
        assert!(opened_after_refusal(Duration::ZERO));
    }
}
