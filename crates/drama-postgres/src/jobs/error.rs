//! Errors of the job store, and their mapping to [`JobError`].

use drama_jobs::JobError;

/// A driver error or an engine error, until the boundary maps it to [`JobError`].
#[derive(Debug)]
pub(crate) enum Error {
    Sql(sqlx::Error),
    Job(JobError),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<JobError> for Error {
    fn from(e: JobError) -> Self {
        Self::Job(e)
    }
}

pub(crate) fn unexpected(message: impl Into<String>) -> Error {
    Error::Job(JobError::Unexpected(message.into()))
}

impl Error {
    /// Whether running the whole transaction again may succeed (a deadlock or serialization
    /// failure between concurrent transactions).
    pub(crate) fn is_transient_conflict(&self) -> bool {
        match self {
            Self::Sql(sqlx::Error::Database(db)) => {
                matches!(db.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }

    /// Whether the server refused a write because the session is read-only (25006): the
    /// connection reached a server that is a standby now (a demoted primary during a
    /// failover), and will until it is closed, so it is not handed out again.
    pub(crate) fn is_read_only(&self) -> bool {
        match self {
            Self::Sql(sqlx::Error::Database(db)) => db.code().as_deref() == Some("25006"),
            _ => false,
        }
    }

    pub(crate) fn into_job_error(self) -> JobError {
        match self {
            Self::Job(e) => e,
            Self::Sql(e) => map_sqlx(e),
        }
    }
}

fn map_sqlx(err: sqlx::Error) -> JobError {
    crate::failover::note(&err);
    match &err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // Conflicts, a lock not granted in time, shutdowns, too many connections:
                // retry later. So is a read-only session (25006: a failover left the
                // connection on a standby, or the database was made read-only for a while)
                // and a session the server ended for idling in its transaction (25P03): a
                // finish refused for good is never written, and its task stays running.
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300" | "53400"
                | "25006" | "25P03" => JobError::Unavailable(format!("database busy ({code})")),
                c if c.starts_with("08") => {
                    JobError::Unavailable(format!("database connection failed ({code})"))
                }
                // A check constraint or type error: input the engine's validation missed.
                "23514" | "23502" | "22021" | "22P05" | "22001" => JobError::Invalid {
                    field: "job",
                    reason: format!(
                        "violates the database rule {}",
                        db.constraint().unwrap_or(code.as_str())
                    ),
                },
                _ => JobError::Unexpected(err.to_string()),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => JobError::Unavailable(err.to_string()),
        _ => JobError::Unexpected(err.to_string()),
    }
}
