//! The one error type of the crate.

/// What went wrong with an asset operation. Each variant is something a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// No object has this key.
    #[error("object {key} not found")]
    NotFound {
        /// The key that was asked for.
        key: String,
    },
    /// The store refused the credentials or the signature (wrong secret key, expired or
    /// tampered presigned URL, missing permission).
    #[error("access denied: {reason}")]
    AccessDenied {
        /// Why, as far as the store said.
        reason: String,
    },
    /// A key, prefix or name breaks the key rules (see the `keys` module).
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key or name (cut to 200 characters).
        key: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The object is larger than the limit of its category.
    #[error("object {key} is too large: the limit is {limit} bytes")]
    TooLarge {
        /// The key being written.
        key: String,
        /// The limit that applies, in bytes.
        limit: u64,
    },
    /// The bytes are not what the declared content type says.
    #[error("content does not match the declared type {declared}: {detail}")]
    ContentMismatch {
        /// The declared MIME type.
        declared: String,
        /// What the first bytes look like instead.
        detail: String,
    },
    /// The declared content type is not one this store accepts.
    #[error("unsupported content type {0:?}")]
    UnsupportedContentType(String),
    /// A byte range starts beyond the end of the object.
    #[error("range not satisfiable: object {key} has {size} bytes")]
    RangeNotSatisfiable {
        /// The key that was read.
        key: String,
        /// The object's length.
        size: u64,
    },
    /// The request itself is malformed (expiry out of bounds, length differs from the
    /// announced one, malformed presigned query, …).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A setting is missing or malformed; names the environment variable.
    #[error("invalid setting {variable}: {message}")]
    InvalidSettings {
        /// The environment variable (or config key) at fault.
        variable: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Reading the caller's byte stream failed (e.g. the client disconnected mid-upload).
    /// Nothing was stored.
    #[error("reading the upload failed: {0}")]
    Input(#[source] std::io::Error),
    /// The store could not be reached or answered with a transient failure (timeout,
    /// connection refused, 5xx, throttling). Retrying later may succeed.
    #[error("storage unavailable: {message}")]
    Unavailable {
        /// Details for logs.
        message: String,
    },
    /// Any other failure of the store (unexpected answer, missing bucket, local I/O error).
    #[error("storage error: {message}")]
    Backend {
        /// Details for logs.
        message: String,
    },
}

impl AssetError {
    /// Whether the same call may succeed if retried later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// Whether the object did not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    pub(crate) fn invalid_key(key: &str, reason: impl Into<String>) -> Self {
        let shown: String = key.chars().take(200).collect();
        Self::InvalidKey {
            key: shown,
            reason: reason.into(),
        }
    }

    pub(crate) fn backend(message: impl Into<String>) -> Self {
        Self::Backend {
            message: message.into(),
        }
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::Unavailable {
            message: message.into(),
        }
    }

    /// Maps a local file-system error, treating a missing file as a missing object.
    pub(crate) fn from_io(key: &str, err: &std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::NotFound => Self::NotFound {
                key: key.to_owned(),
            },
            std::io::ErrorKind::PermissionDenied => Self::AccessDenied {
                reason: format!("file system refused access to {key}: {err}"),
            },
            std::io::ErrorKind::NotADirectory | std::io::ErrorKind::IsADirectory => {
                Self::invalid_key(
                    key,
                    "conflicts with an existing object that is a prefix of it (or the reverse)",
                )
            }
            _ => Self::backend(format!("file system error on {key}: {err}")),
        }
    }
}

/// Result with [`AssetError`].
pub type AssetResult<T> = Result<T, AssetError>;
