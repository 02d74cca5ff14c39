//! Field errors with the `extensions.code` of the error table, never the text of an internal
//! error.

use drama_app::AppError;
use juniper::{FieldError, IntoFieldError, ScalarValue, graphql_value};

use crate::error::{Chain, ErrorCode, Words, precondition_message};

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
        let kind = ErrorCode::of(&self.0);
        let code = kind.graphql();
        // A GraphQL answer is a 200 that the request log does not see as failed: this is the
        // one place a server-side failure of a field is logged, as REST logs its 5xx.
        if kind.status().is_server_error() {
            tracing::error!(error = %Chain(&self.0), code, "GraphQL field failed");
        }
        let message = match &self.0 {
            AppError::Invalid(e) => e.to_string(),
            AppError::Precondition(unmet) => precondition_message(unmet, Words::Graphql),
            AppError::TooLarge(m)
            | AppError::Unauthenticated(m)
            | AppError::Forbidden(m)
            | AppError::GenerationFailed(m) => m.clone(),
            AppError::QuotaExceeded { quota, limit, used } => {
                let message = crate::error::quota_message(quota, *limit, *used);
                let (limit, used) = (limit.to_string(), used.to_string());
                return FieldError::new(
                    message,
                    graphql_value!({ "code": code, "quota": *quota, "limit": limit, "used": used }),
                );
            }
            AppError::Unavailable(_) => "A dependency is unavailable; retry shortly.".to_owned(),
            _ if kind == ErrorCode::Internal => "The server failed; see its logs.".to_owned(),
            other => other.to_string(),
        };
        FieldError::new(message, graphql_value!({ "code": code }))
    }
}

/// A field error for input the resolver itself rejects.
pub(crate) fn bad_input<S: ScalarValue>(message: impl Into<String>) -> FieldError<S> {
    FieldError::new(
        message.into(),
        graphql_value!({ "code": (ErrorCode::ValidationFailed.graphql()) }),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use actix_web::ResponseError as _;
    use drama_app::store::Entity;
    use drama_domain::DomainError;
    use juniper::DefaultScalarValue;

    use super::*;
    use crate::error::ApiError;

    /// One error of every variant a use case reports.
    fn every_app_error() -> Vec<AppError> {
        vec![
            AppError::not_found(Entity::Drama, "d1"),
            AppError::AlreadyExists {
                entity: Entity::Drama,
                id: "d1".to_owned(),
            },
            AppError::VersionConflict {
                expected: 1,
                actual: 2,
            },
            AppError::Invalid(DomainError::field("title", "must not be empty")),
            AppError::Precondition(drama_app::Precondition::NoMainCharacter),
            AppError::InsufficientTokens {
                balance: 1,
                needed: 2,
            },
            AppError::GenerationFailed("the provider refused the prompt".to_owned()),
            AppError::TooLarge("too large".to_owned()),
            AppError::QuotaExceeded {
                quota: "dramas",
                limit: 1,
                used: 2,
            },
            AppError::Unauthenticated("Invalid API key".to_owned()),
            AppError::Unavailable("database busy".to_owned()),
            AppError::Internal(Box::new(std::io::Error::other("disk on fire"))),
        ]
    }

    fn graphql_code(e: AppError) -> String {
        let field: FieldError<DefaultScalarValue> = GqlError(e).into_field_error();
        let extensions = serde_json::to_value(field.extensions()).unwrap_or_default();
        extensions["code"].as_str().unwrap_or_default().to_owned()
    }

    #[test]
    fn rest_and_graphql_name_every_app_error_from_the_same_row() {
        let mut seen = HashSet::new();
        for (rest, graphql) in every_app_error().into_iter().zip(every_app_error()) {
            let kind = ErrorCode::of(&rest);
            let label = format!("{rest:?}");
            let api = ApiError::from(rest);
            assert_eq!(api.kind(), kind, "{label}");
            assert_eq!(api.status(), kind.status(), "{label}");
            assert_eq!(api.error_response().status(), kind.status(), "{label}");
            assert_eq!(api.code(), kind.code(), "{label}");
            if let Some(inner) = api.detail().get("code") {
                assert_eq!(inner, kind.code(), "{label}");
            }
            assert_eq!(graphql_code(graphql), kind.graphql(), "{label}");
            seen.insert(kind);
        }
        assert_eq!(seen.len(), every_app_error().len(), "one sample per row");
    }

    #[test]
    fn a_failed_generation_is_not_hidden_and_a_fault_is() {
        let field: FieldError<DefaultScalarValue> = GqlError(AppError::GenerationFailed(
            "the provider refused".to_owned(),
        ))
        .into_field_error();
        assert_eq!(field.message(), "the provider refused");
        let field: FieldError<DefaultScalarValue> = GqlError(AppError::Internal(Box::new(
            std::io::Error::other("secret path"),
        )))
        .into_field_error();
        assert!(!field.message().contains("secret"), "{}", field.message());
    }

    #[tokio::test]
    async fn limits_name_their_row_in_both_envelopes() {
        let e = crate::graphql::LimitError::TooDeep { limit: 3 };
        let kind = e.kind();
        let body = actix_web::body::to_bytes(ApiError::from(e).error_response().into_body())
            .await
            .unwrap_or_default();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(body["code"], kind.code());
        assert_eq!(body["detail"]["code"], kind.code());
        assert_eq!(body["errors"][0]["extensions"]["code"], kind.graphql());
    }
}
