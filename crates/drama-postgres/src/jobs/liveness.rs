//! The connection a worker process keeps its registration alive on.
//!
//! Registration, heartbeats and deregistration do not take a connection from the pool: a
//! process whose handlers, claims and requests hold every pooled connection would wait for one
//! past its lease, lose its registration, and have every handler it runs cancelled — and a
//! handler cancelled in the middle of a provider call has checkpointed nothing, so its task
//! pays the provider again. One connection of its own, opened on first use and opened again
//! after any failure, keeps the lease independent of the pool's load.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use drama_jobs::JobError;
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::sync::Mutex;
use tracing::debug;

use super::error::Error;

/// What a statement on the liveness connection is: a future borrowing the connection.
pub(super) type OnConnection<'c, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'c>>;

/// The dedicated connection (`None` until first used and after a failure).
#[derive(Debug, Default)]
pub(super) struct Liveness {
    conn: Mutex<Option<PgConnection>>,
}

impl Liveness {
    /// Runs `statement` on the dedicated connection (connecting with the pool's options when
    /// there is none), giving up after `limit`. Any failure drops the connection, so the next
    /// call starts on a fresh one rather than on a socket in an unknown state.
    pub(super) async fn run<T>(
        &self,
        pool: &PgPool,
        limit: Duration,
        statement: impl for<'c> FnOnce(&'c mut PgConnection) -> OnConnection<'c, T>,
    ) -> Result<T, JobError> {
        // Calls take turns: one heartbeat loop per process, and registration only when it
        // was lost, so this lock is never contended for long.
        let mut slot = self.conn.lock().await;
        let outcome = tokio::time::timeout(limit, async {
            if slot.is_none() {
                let pooled = pool.connect_options();
                // Named apart from the pool's connections in `pg_stat_activity`.
                let name = format!(
                    "{} (heartbeat)",
                    pooled.get_application_name().unwrap_or("drama-server")
                );
                let options = (*pooled).clone().application_name(&name);
                *slot = Some(PgConnection::connect_with(&options).await?);
            }
            match slot.as_mut() {
                Some(conn) => statement(conn).await,
                None => Err(super::error::unexpected("the liveness connection vanished")),
            }
        })
        .await;
        let result = match outcome {
            Ok(result) => result.map_err(Error::into_job_error),
            Err(_) => Err(JobError::Unavailable(format!(
                "no answer on the worker's liveness connection within {limit:?}"
            ))),
        };
        if let Err(e) = &result {
            debug!(error = %e, "dropping the liveness connection; the next call reconnects");
            *slot = None;
        }
        result
    }
}

/// How long one statement on the liveness connection may take for a lease of `ttl`: long
/// enough to reconnect to a busy server, short enough that the next heartbeat still renews
/// the lease in time.
pub(super) fn limit_for(ttl: Duration) -> Duration {
    (ttl / 2).max(Duration::from_secs(1))
}
