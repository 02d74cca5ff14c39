use std::time::Duration;

use drama_assets::ObjectKey;
use drama_dal::RepoError;
use drama_domain::UserId;

use crate::App;

/// Whether the dependencies of a request answer.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The database, or why not (for the log and operators' tools: the text may name
    /// addresses and tables, so the public route shows only whether it answers).
    pub database: Result<(), String>,
    /// The asset store, or why not (likewise).
    pub storage: Result<(), String>,
}

impl Readiness {
    /// Both answer.
    pub fn ready(&self) -> bool {
        self.database.is_ok() && self.storage.is_ok()
    }
}

/// How long each check may take: a dependency that does not answer at all (a blackholed
/// bucket, a database behind a dropped route) is reported as not ready within this, instead of
/// holding the probe until the client's own timeouts (which may be tens of seconds).
pub const READINESS_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl App {
    /// Asks the database and the asset store a trivial question each, at the same time, each
    /// within [`READINESS_CHECK_TIMEOUT`].
    #[tracing::instrument(skip_all)]
    pub async fn readiness(&self) -> Readiness {
        let unanswered = || {
            format!(
                "no answer within {} s",
                READINESS_CHECK_TIMEOUT.as_secs_f64()
            )
        };
        let database = async {
            match tokio::time::timeout(
                READINESS_CHECK_TIMEOUT,
                self.store.get_user(UserId(uuid::Uuid::nil())),
            )
            .await
            {
                Ok(Ok(_) | Err(RepoError::NotFound { .. })) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(unanswered()),
            }
        };
        let storage = async {
            let key = ObjectKey::parse("health/readiness-probe").map_err(|e| e.to_string())?;
            match tokio::time::timeout(READINESS_CHECK_TIMEOUT, self.assets.exists(&key)).await {
                Ok(answer) => answer.map(|_| ()).map_err(|e| e.to_string()),
                Err(_) => Err(unanswered()),
            }
        };
        let (database, storage) = tokio::join!(database, storage);
        if let Err(e) = &database {
            tracing::warn!(error = %e, "readiness: the database does not answer");
        }
        if let Err(e) = &storage {
            tracing::warn!(error = %e, "readiness: the asset store does not answer");
        }
        Readiness { database, storage }
    }
}
