use drama_assets::AssetError;
use drama_dal::{Entity, RepoError, Version};
use drama_domain::DomainError;

/// What a use case reports; the API maps each variant to one status code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The entity does not exist or is not the caller's (indistinguishable on purpose).
    #[error("{entity} {id} not found")]
    NotFound {
        /// Kind of entity (`Drama`, `Character`, …).
        entity: Entity,
        /// Its id.
        id: String,
    },
    /// Creating something whose id is taken.
    #[error("{entity} {id} already exists")]
    AlreadyExists {
        /// Kind of entity.
        entity: Entity,
        /// Its id.
        id: String,
    },
    /// An optimistic write carried a stale version; nothing changed.
    #[error("version conflict: expected version {expected}, current version is {actual}")]
    VersionConflict {
        /// The version the client based its change on.
        expected: Version,
        /// The stored version.
        actual: Version,
    },
    /// The input breaks a rule; names the field.
    #[error(transparent)]
    Invalid(#[from] DomainError),
    /// A precondition of the operation does not hold; the API words it for the client.
    #[error("{0}")]
    Precondition(Precondition),
    /// Not enough credit for the work asked for; nothing was started.
    #[error("insufficient tokens: balance {balance}, needed {needed}")]
    InsufficientTokens {
        /// Current balance.
        balance: i64,
        /// Cost of the request.
        needed: i64,
    },
    /// A generation the client waited for failed (the message says why, in the old server's
    /// words where it had some).
    #[error("{0}")]
    GenerationFailed(String),
    /// An uploaded or generated object is too large.
    #[error("{0}")]
    TooLarge(String),
    /// A per-user quota would be exceeded; nothing was done.
    #[error("the {quota} quota of {limit} is reached ({used} in use)")]
    QuotaExceeded {
        /// Which quota: `dramas`, `stored_bytes`, `max_objects` or `active_runs`.
        quota: &'static str,
        /// The configured limit.
        limit: u64,
        /// What the user holds now (with the request, for stored bytes).
        used: u64,
    },
    /// The presented credentials do not name a caller (unknown, revoked or expired key); the
    /// message is for the client.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's credential does not allow the operation (the message says why and what
    /// to do instead).
    #[error("{0}")]
    Forbidden(String),
    /// A dependency (database, bucket, provider) is unavailable; retry later.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure of a dependency. Never shown to clients in detail.
    #[error("internal error: {0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What must hold before an operation can run and does not. It carries the facts, not a
/// sentence: the old server worded the same precondition differently on its REST routes and
/// in its GraphQL mutations, and each API answers its own clients' words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// A cover needs at least one main character.
    NoMainCharacter,
    /// A cover needs every main character's portrait; these main characters (their names, in
    /// order) have none.
    MissingPortraits(Vec<String>),
}

impl std::fmt::Display for Precondition {
    /// For logs; clients get the API's words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoMainCharacter => f.write_str("the drama has no main character"),
            Self::MissingPortraits(names) => {
                write!(
                    f,
                    "main characters without a portrait: {}",
                    names.join(", ")
                )
            }
        }
    }
}

impl AppError {
    /// `NotFound` for `entity` with `id`.
    pub fn not_found(entity: Entity, id: impl std::fmt::Display) -> Self {
        Self::NotFound {
            entity,
            id: id.to_string(),
        }
    }
}

impl From<RepoError> for AppError {
    fn from(e: RepoError) -> Self {
        match e {
            RepoError::NotFound { entity, id } => Self::NotFound { entity, id },
            RepoError::AlreadyExists { entity, id } => Self::AlreadyExists { entity, id },
            RepoError::VersionConflict { expected, actual } => {
                Self::VersionConflict { expected, actual }
            }
            RepoError::Invalid(d) => Self::Invalid(d),
            RepoError::InsufficientTokens { balance, needed } => {
                Self::InsufficientTokens { balance, needed }
            }
            RepoError::Unavailable(m) => Self::Unavailable(m),
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl From<AssetError> for AppError {
    fn from(e: AssetError) -> Self {
        if e.is_retryable() {
            return Self::Unavailable(e.to_string());
        }
        match e {
            AssetError::NotFound { .. } => Self::NotFound {
                entity: Entity::Asset,
                id: e.to_string(),
            },
            AssetError::TooLarge { .. } => Self::TooLarge(e.to_string()),
            AssetError::ContentMismatch { .. }
            | AssetError::UnsupportedContentType(_)
            | AssetError::InvalidKey { .. }
            | AssetError::InvalidRequest(_)
            | AssetError::Input(_) => Self::Invalid(DomainError::field("file", e.to_string())),
            other => Self::Internal(Box::new(other)),
        }
    }
}
