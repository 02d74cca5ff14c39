//! The one table of error codes. Every refusal or failure the API answers has a row here: its
//! REST `code`, its HTTP status and its GraphQL `extensions.code`. REST envelopes, GraphQL
//! field and request errors and WebSocket refusals all read their codes from it, so the two
//! APIs cannot name the same failure differently; the errors table of docs/API.md is checked
//! against it by a test.

use actix_web::http::StatusCode;
use drama_app::AppError;

/// A kind of error the API answers, one row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request cannot be understood (body not JSON, malformed header or path).
    BadRequest,
    /// A GraphQL batch with more operations than allowed.
    BatchTooLarge,
    /// A GraphQL operation with more aliases than allowed.
    TooManyAliases,
    /// A GraphQL request priced above the budget.
    QueryTooComplex,
    /// A GraphQL document nested deeper than allowed.
    QueryTooDeep,
    /// A precondition of the operation does not hold.
    PreconditionFailed,
    /// No credential, or a bad, expired or revoked one.
    Unauthenticated,
    /// Not enough credit for the work asked for.
    InsufficientTokens,
    /// A per-user quota would be exceeded.
    QuotaExceeded,
    /// A signed media URL that does not grant this access.
    Forbidden,
    /// The entity does not exist or is not the caller's.
    NotFound,
    /// A known path asked with a method it does not have.
    MethodNotAllowed,
    /// Creating an id that is taken.
    AlreadyExists,
    /// A write carried a stale version.
    VersionConflict,
    /// A body or upload above its limit.
    TooLarge,
    /// A byte range outside the object.
    RangeNotSatisfiable,
    /// Input that breaks a rule, naming the field.
    ValidationFailed,
    /// Over the request rate.
    RateLimited,
    /// Over the cap of open streams.
    TooManyStreams,
    /// Over the cap of one user's uploads at once.
    TooManyUploads,
    /// An upload's body stalled or took longer than allowed.
    RequestTimeout,
    /// A synchronous generation outlived the request deadline and goes on.
    StillRunning,
    /// A generation the client waited for failed.
    GenerationFailed,
    /// A server fault.
    Internal,
    /// A dependency is unavailable.
    Unavailable,
}

/// What a row says about its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// The REST `code` (snake case).
    pub code: &'static str,
    /// The HTTP status of a REST answer.
    pub status: u16,
    /// The GraphQL `extensions.code`: the upper case of `code`, except where GraphQL clients
    /// already knew a name of their own (`BAD_USER_INPUT`, `CONFLICT`).
    pub graphql: &'static str,
    /// When it is answered, for the documentation.
    pub when: &'static str,
}

impl ErrorCode {
    /// Every kind, in the order of the documentation's table (by status).
    pub const ALL: [Self; 25] = [
        Self::StillRunning,
        Self::BadRequest,
        Self::BatchTooLarge,
        Self::TooManyAliases,
        Self::QueryTooComplex,
        Self::QueryTooDeep,
        Self::PreconditionFailed,
        Self::Unauthenticated,
        Self::InsufficientTokens,
        Self::QuotaExceeded,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::AlreadyExists,
        Self::VersionConflict,
        Self::TooLarge,
        Self::RangeNotSatisfiable,
        Self::ValidationFailed,
        Self::RateLimited,
        Self::TooManyStreams,
        Self::TooManyUploads,
        Self::GenerationFailed,
        Self::Internal,
        Self::Unavailable,
    ];

    /// The row of this kind.
    #[must_use]
    pub const fn row(self) -> Row {
        const fn row(
            code: &'static str,
            status: u16,
            graphql: &'static str,
            when: &'static str,
        ) -> Row {
            Row {
                code,
                status,
                graphql,
                when,
            }
        }
        match self {
            Self::BadRequest => row(
                "bad_request",
                400,
                "BAD_REQUEST",
                "The body is not JSON, a header is malformed",
            ),
            Self::BatchTooLarge => row(
                "batch_too_large",
                400,
                "BATCH_TOO_LARGE",
                "A GraphQL batch with more operations than the [limit](#limits)",
            ),
            Self::TooManyAliases => row(
                "too_many_aliases",
                400,
                "TOO_MANY_ALIASES",
                "A GraphQL operation with more aliases than the [limit](#limits)",
            ),
            Self::QueryTooComplex => row(
                "query_too_complex",
                400,
                "QUERY_TOO_COMPLEX",
                "A GraphQL request priced or sized above the [limit](#limits)",
            ),
            Self::QueryTooDeep => row(
                "query_too_deep",
                400,
                "QUERY_TOO_DEEP",
                "A GraphQL document nested deeper than the [limit](#limits)",
            ),
            Self::PreconditionFailed => row(
                "precondition_failed",
                400,
                "PRECONDITION_FAILED",
                "The operation's precondition does not hold (cover before portraits; `detail` \
                 is the old server's sentence)",
            ),
            Self::Unauthenticated => row(
                "unauthenticated",
                401,
                "UNAUTHENTICATED",
                "No credential, or a bad, expired or revoked one",
            ),
            Self::InsufficientTokens => row(
                "insufficient_tokens",
                402,
                "INSUFFICIENT_TOKENS",
                "The price of a generation or of a resume exceeds the balance; nothing was \
                 started or re-queued",
            ),
            Self::QuotaExceeded => row(
                "quota_exceeded",
                403,
                "QUOTA_EXCEEDED",
                "A per-user quota would be exceeded; nothing was done ([Quotas](#quotas))",
            ),
            Self::Forbidden => row(
                "forbidden",
                403,
                "FORBIDDEN",
                "A signed media URL that has expired or does not grant the request; an API \
                 key asked for with a legacy key or the service key (an operator makes one: \
                 `drama-server keys create`)",
            ),
            Self::NotFound => row(
                "not_found",
                404,
                "NOT_FOUND",
                "The entity does not exist or is not the caller's",
            ),
            Self::MethodNotAllowed => row(
                "method_not_allowed",
                405,
                "METHOD_NOT_ALLOWED",
                "A known path asked with a method it does not have; `Allow` lists those it has",
            ),
            Self::AlreadyExists => row(
                "already_exists",
                409,
                "CONFLICT",
                "Creating an id that is taken (by anyone: [ids](#drama-ids-are-shared))",
            ),
            Self::VersionConflict => row(
                "version_conflict",
                409,
                "CONFLICT",
                "A write carried a stale version (below); nothing changed",
            ),
            Self::RequestTimeout => row(
                "request_timeout",
                408,
                "REQUEST_TIMEOUT",
                "An upload's body sent nothing for too long, or took longer than allowed \
                 ([uploads](#asset-library-uploads)); nothing was stored",
            ),
            Self::TooLarge => row(
                "too_large",
                413,
                "TOO_LARGE",
                "A body or upload above its limit",
            ),
            Self::RangeNotSatisfiable => row(
                "range_not_satisfiable",
                416,
                "RANGE_NOT_SATISFIABLE",
                "A media `Range` outside the object",
            ),
            Self::ValidationFailed => row(
                "validation_failed",
                422,
                "BAD_USER_INPUT",
                "Field errors, FastAPI-style: `detail` is a list of `{loc, msg, type, field}`",
            ),
            Self::RateLimited => row(
                "rate_limited",
                429,
                "RATE_LIMITED",
                "Over the rate limit; retry after `Retry-After`",
            ),
            Self::TooManyStreams => row(
                "too_many_streams",
                429,
                "TOO_MANY_STREAMS",
                "Over the cap of open [streams](#streams)",
            ),
            Self::TooManyUploads => row(
                "too_many_uploads",
                429,
                "TOO_MANY_UPLOADS",
                "Over the cap of one user's [uploads](#asset-library-uploads) at once; retry \
                 after `Retry-After`",
            ),
            Self::StillRunning => row(
                "still_running",
                202,
                "STILL_RUNNING",
                "A synchronous generation outlived the deadline and goes on; REST answers 202 \
                 with the job envelope, GraphQL an error naming `jobId`",
            ),
            Self::GenerationFailed => row(
                "generation_failed",
                500,
                "GENERATION_FAILED",
                "A synchronous generation failed; `detail` carries the provider's reason",
            ),
            Self::Internal => row(
                "internal",
                500,
                "INTERNAL",
                "A server fault; the `x-request-id` header names it in the logs",
            ),
            Self::Unavailable => row(
                "unavailable",
                503,
                "UNAVAILABLE",
                "The database, bucket or provider is unreachable; retry after `Retry-After`",
            ),
        }
    }

    /// The REST `code`.
    #[must_use]
    pub const fn code(self) -> &'static str {
        self.row().code
    }

    /// The GraphQL `extensions.code`.
    #[must_use]
    pub const fn graphql(self) -> &'static str {
        self.row().graphql
    }

    /// The HTTP status.
    #[must_use]
    pub fn status(self) -> StatusCode {
        StatusCode::from_u16(self.row().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The kind of an application error: the only place an [`AppError`] is classified.
    #[must_use]
    pub fn of(e: &AppError) -> Self {
        match e {
            AppError::NotFound { .. } => Self::NotFound,
            AppError::AlreadyExists { .. } => Self::AlreadyExists,
            AppError::VersionConflict { .. } => Self::VersionConflict,
            AppError::Invalid(_) => Self::ValidationFailed,
            AppError::Precondition(_) => Self::PreconditionFailed,
            AppError::InsufficientTokens { .. } => Self::InsufficientTokens,
            AppError::GenerationFailed(_) => Self::GenerationFailed,
            AppError::TooLarge(_) => Self::TooLarge,
            AppError::QuotaExceeded { .. } => Self::QuotaExceeded,
            AppError::Unauthenticated(_) => Self::Unauthenticated,
            AppError::Forbidden(_) => Self::Forbidden,
            AppError::Unavailable(_) => Self::Unavailable,
            // `Internal` and any variant added later: a fault until it is given a row.
            _ => Self::Internal,
        }
    }

    /// The errors table of docs/API.md, generated from the rows.
    #[must_use]
    pub fn markdown_table() -> String {
        let mut out = String::from("| Status | `code` | GraphQL `extensions.code` | When |\n");
        out.push_str("|---|---|---|---|\n");
        for kind in Self::ALL {
            let row = kind.row();
            out.push_str(&format!(
                "| {} | `{}` | `{}` | {} |\n",
                row.status, row.code, row.graphql, row.when
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    /// Forces a new kind to be placed in [`ErrorCode::ALL`]: this match has no wildcard.
    fn position(kind: ErrorCode) -> usize {
        match kind {
            ErrorCode::StillRunning => 0,
            ErrorCode::BadRequest => 1,
            ErrorCode::BatchTooLarge => 2,
            ErrorCode::TooManyAliases => 3,
            ErrorCode::QueryTooComplex => 4,
            ErrorCode::QueryTooDeep => 5,
            ErrorCode::PreconditionFailed => 6,
            ErrorCode::Unauthenticated => 7,
            ErrorCode::InsufficientTokens => 8,
            ErrorCode::QuotaExceeded => 9,
            ErrorCode::Forbidden => 10,
            ErrorCode::NotFound => 11,
            ErrorCode::MethodNotAllowed => 12,
            ErrorCode::RequestTimeout => 13,
            ErrorCode::AlreadyExists => 14,
            ErrorCode::VersionConflict => 15,
            ErrorCode::TooLarge => 16,
            ErrorCode::RangeNotSatisfiable => 17,
            ErrorCode::ValidationFailed => 18,
            ErrorCode::RateLimited => 19,
            ErrorCode::TooManyStreams => 20,
            ErrorCode::TooManyUploads => 21,
            ErrorCode::GenerationFailed => 22,
            ErrorCode::Internal => 23,
            ErrorCode::Unavailable => 24,
        }
    }

    #[test]
    fn every_kind_is_listed_once() {
        for (i, kind) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(position(kind), i, "{kind:?}");
        }
    }

    #[test]
    fn codes_are_unique_and_graphql_codes_follow_them() {
        // GraphQL names clients knew before the table, kept; every other one is derived.
        let kept = [
            ("validation_failed", "BAD_USER_INPUT"),
            ("already_exists", "CONFLICT"),
            ("version_conflict", "CONFLICT"),
        ];
        let mut codes = HashSet::new();
        for kind in ErrorCode::ALL {
            let row = kind.row();
            assert!(codes.insert(row.code), "{} twice", row.code);
            assert!(
                row.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{}",
                row.code
            );
            let expected = kept
                .iter()
                .find(|(code, _)| *code == row.code)
                .map_or_else(|| row.code.to_ascii_uppercase(), |(_, g)| (*g).to_owned());
            assert_eq!(row.graphql, expected, "{kind:?}");
            assert_eq!(kind.status().as_u16(), row.status, "{kind:?}");
        }
    }

    #[test]
    fn statuses_are_errors_except_a_run_that_goes_on() {
        for kind in ErrorCode::ALL {
            let status = kind.status();
            assert_eq!(
                status.is_client_error() || status.is_server_error(),
                kind != ErrorCode::StillRunning,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn the_documentation_shows_the_table() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/API.md");
        let doc = std::fs::read_to_string(path).unwrap_or_default();
        let table = ErrorCode::markdown_table();
        assert!(
            doc.contains(&table),
            "docs/API.md's errors table differs from the code; it should read:\n{table}"
        );
    }
}
