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

impl App {
    /// Asks the database and the asset store a trivial question each.
    #[tracing::instrument(skip_all)]
    pub async fn readiness(&self) -> Readiness {
        let database = match self.store.get_user(UserId(uuid::Uuid::nil())).await {
            Ok(_) | Err(RepoError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        let storage = match ObjectKey::parse("health/readiness-probe") {
            Ok(key) => self
                .assets
                .exists(&key)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = &database {
            tracing::warn!(error = %e, "readiness: the database does not answer");
        }
        if let Err(e) = &storage {
            tracing::warn!(error = %e, "readiness: the asset store does not answer");
        }
        Readiness { database, storage }
    }
}
