//! The one error type of the crate: what stops a whole run. Problems with one drama never do;
//! they end up in the report.

use drama_assets::AssetError;
use drama_dal::RepoError;

/// Why an import or export could not run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LegacyError {
    /// An option is malformed (prefix, owner map, bucket URL); the message names it.
    #[error("invalid option {option}: {message}")]
    InvalidOption {
        /// The option at fault, as the command line spells it.
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The bucket could not be listed, read or written where the whole run depends on it
    /// (listing the old layout, reading or writing `dramas/index.json`).
    #[error("bucket: {0}")]
    Bucket(#[source] AssetError),
    /// The database failed where the whole run depends on it (reading the import records,
    /// creating an owner).
    #[error("database: {0}")]
    Target(#[source] RepoError),
}

impl LegacyError {
    pub(crate) fn option(option: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidOption {
            option,
            message: message.into(),
        }
    }

    /// `--jobs` of every command: at least one item must be able to run.
    pub(crate) fn check_jobs(jobs: usize) -> Result<(), Self> {
        if jobs == 0 {
            return Err(Self::option("--jobs", "must be at least 1"));
        }
        Ok(())
    }
}
