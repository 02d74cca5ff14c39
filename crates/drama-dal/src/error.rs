use std::fmt;

use drama_domain::DomainError;

use crate::repos::Version;

/// The kind of record an error is about; its name is the `Kind` of the peer's 404 details.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Entity {
    /// A drama.
    Drama,
    /// A character of a drama.
    Character,
    /// An episode of a drama.
    Episode,
    /// A scene of an episode.
    Scene,
    /// An asset.
    Asset,
    /// A user.
    User,
    /// An API key.
    ApiKey,
    /// A job.
    Job,
}

impl Entity {
    /// The name used in messages (`Drama not found`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Drama => "Drama",
            Self::Character => "Character",
            Self::Episode => "Episode",
            Self::Scene => "Scene",
            Self::Asset => "Asset",
            Self::User => "User",
            Self::ApiKey => "API key",
            Self::Job => "Job",
        }
    }
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong in a repository call, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    /// The record does not exist, or belongs to another owner (indistinguishable on purpose).
    #[error("{entity} {id} not found")]
    NotFound {
        /// Kind of record.
        entity: Entity,
        /// Its id.
        id: String,
    },
    /// A create used an id that is taken.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// Kind of record.
        entity: Entity,
        /// Its id.
        id: String,
    },
    /// An optimistic write carried a stale version; nothing was changed.
    #[error("version conflict: expected version {expected}, current version is {actual}")]
    VersionConflict {
        /// The version the caller based its change on.
        expected: Version,
        /// The stored version.
        actual: Version,
    },
    /// The input breaks a rule of the model.
    #[error(transparent)]
    Invalid(#[from] DomainError),
    /// A debit would take the balance below zero; nothing was debited.
    #[error("insufficient tokens: balance {balance}, needed {needed}")]
    InsufficientTokens {
        /// The current balance.
        balance: i64,
        /// The amount asked for.
        needed: i64,
    },
    /// The store cannot be reached or is overloaded; the call may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or an unmapped store error.
    #[error("unexpected storage error: {0}")]
    Unexpected(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl RepoError {
    /// `NotFound` for `entity` with `id`.
    pub fn not_found(entity: Entity, id: impl fmt::Display) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }

    /// `Invalid` naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(DomainError::field(field, message))
    }

    /// Whether the error is one of the 409 kinds.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Self::AlreadyExists { .. } | Self::VersionConflict { .. }
        )
    }

    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}
