#![doc = include_str!("../README.md")]

mod error;
mod export;
pub mod format;
mod import;
mod library;
mod origin;
pub mod parse;
mod report;
mod source;
mod tables;

use std::sync::Arc;

use drama_dal::legacy::LegacyImportRepository;
use drama_dal::{DramaRepository, RepoError, UserRepository};
use drama_domain::{DramaId, UserId};

pub use error::LegacyError;
pub use export::{ExportOptions, ExportOwners, Exporter};
pub use import::{DEFAULT_MEMORY_BUDGET, ImportOptions, Importer};
pub use library::{LibraryImporter, LibraryItemReport, LibraryOptions, LibraryReport};
pub use origin::MAX_FILE_BYTES;
pub use parse::{LegacyDrama, LegacyFileError};
pub use report::{
    AssetLinks, Counts, DramaReport, ExportReport, ExportedDrama, ImportReport, MemoryUse,
    MovedFile, Outcome, Reason, ReasonCode, SourceSummary,
};
pub use source::{BucketUrls, Layout, OwnerMap, OwnerTarget, UrlTarget};
pub use tokio_util::sync::CancellationToken;

/// Hears about a run's progress (a progress bar, log lines). Called from several tasks at
/// once.
pub trait Progress: Send + Sync {
    /// The run found `total` items to handle.
    fn start(&self, total: usize) {
        let _ = total;
    }

    /// One item finished: its id, its outcome (`imported`, `unchanged`, `failed`, …) and why,
    /// for skipped and failed ones.
    fn step(&self, item: &str, outcome: &str, reason: Option<&Reason>) {
        let _ = (item, outcome, reason);
    }
}

/// A [`Progress`] that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {}

/// Deletes a drama the way the API's `DELETE /dramas/{id}` does: its rows, the records of its
/// objects (kept as orphans for the sweeper) and the objects under its key prefix. The import
/// uses it for a drama whose source is gone (`--delete-gone`); the binary wires the use case
/// of `drama-app`, which this crate may not name.
#[async_trait::async_trait]
pub trait DramaRemover: Send + Sync {
    /// Deletes `owner`'s drama `id`.
    ///
    /// # Errors
    /// `NotFound` (Drama); `Unavailable`.
    async fn delete_drama(&self, owner: UserId, id: &DramaId) -> Result<(), RepoError>;
}

/// The repositories a run reads and writes.
#[derive(Clone)]
pub struct Repositories {
    /// Whole dramas.
    pub dramas: Arc<dyn DramaRepository>,
    /// Owners.
    pub users: Arc<dyn UserRepository>,
    /// Import bookkeeping, and the transactional write of an imported drama.
    pub imports: Arc<dyn LegacyImportRepository>,
}

impl Repositories {
    /// All three from one store (e.g. `drama_postgres::PgStore`).
    pub fn of<S>(store: Arc<S>) -> Self
    where
        S: DramaRepository + UserRepository + LegacyImportRepository + 'static,
    {
        Self {
            dramas: store.clone(),
            users: store.clone(),
            imports: store,
        }
    }
}
