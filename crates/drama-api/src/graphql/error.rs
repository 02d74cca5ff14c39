//! Field errors with a stable `code` extension, never the text of an internal error.

use drama_app::AppError;
use juniper::{FieldError, IntoFieldError, ScalarValue, graphql_value};

/// An error a resolver returns.
#[derive(Debug)]
pub struct GqlError(pub AppError);

impl From<AppError> for GqlError {
    fn from(e: AppError) -> Self {
        Self(e)
    }
}

impl<S: ScalarValue> IntoFieldError<S> for GqlError {
    fn into_field_error(self) -> FieldError<S> {
        let (code, message) = match &self.0 {
            AppError::NotFound { .. } => ("NOT_FOUND", self.0.to_string()),
            AppError::AlreadyExists { .. } | AppError::VersionConflict { .. } => {
                ("CONFLICT", self.0.to_string())
            }
            AppError::Invalid(e) => ("BAD_USER_INPUT", e.to_string()),
            AppError::Precondition(m) => ("PRECONDITION_FAILED", m.clone()),
            AppError::InsufficientTokens { .. } => ("INSUFFICIENT_TOKENS", self.0.to_string()),
            AppError::TooLarge(m) => ("TOO_LARGE", m.clone()),
            AppError::Unauthenticated(m) => ("UNAUTHENTICATED", m.clone()),
            AppError::QuotaExceeded { quota, limit, used } => {
                let message = crate::error::quota_message(quota, *limit, *used);
                let (limit, used) = (limit.to_string(), used.to_string());
                return FieldError::new(
                    message,
                    graphql_value!({ "code": "QUOTA_EXCEEDED", "quota": *quota, "limit": limit, "used": used }),
                );
            }
            AppError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "GraphQL field failed: dependency unavailable");
                (
                    "UNAVAILABLE",
                    "A dependency is unavailable; retry shortly.".to_owned(),
                )
            }
            other => {
                tracing::error!(error = %other, "GraphQL field failed");
                ("INTERNAL", "The server failed; see its logs.".to_owned())
            }
        };
        FieldError::new(message, graphql_value!({ "code": code }))
    }
}

/// A field error for input the resolver itself rejects.
pub(crate) fn bad_input<S: ScalarValue>(message: impl Into<String>) -> FieldError<S> {
    FieldError::new(message.into(), graphql_value!({ "code": "BAD_USER_INPUT" }))
}
