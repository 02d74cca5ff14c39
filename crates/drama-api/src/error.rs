//! Errors on the wire: the peer's `{"detail": …}` envelope plus a stable `code`.
//!
//! Every error body is JSON. Not-found details are objects (`{"error": "Drama not found",
//! "message": "Drama d1 not found", "code": "not_found"}`) as the peer sent them; validation
//! failures are FastAPI-style lists naming each field; server-side failures never carry the
//! text of the underlying error (it is logged once, with the request id).

use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use drama_app::AppError;
use drama_app::store::Entity;
use drama_domain::{DomainError, FieldError};
use serde_json::{Value, json};

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_UNAVAILABLE: u64 = 5;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: Value,
    retry_after: Option<u64>,
    /// The cause, for the log line only.
    cause: Option<String>,
    /// GraphQL `errors` sent beside the envelope, for GraphQL clients.
    graphql_errors: Option<Box<Value>>,
}

impl ApiError {
    /// An error with a string detail, as the peer's cover-photo and auth errors.
    pub fn message(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: Value::String(message.into()),
            retry_after: None,
            cause: None,
            graphql_errors: None,
        }
    }

    /// An error with an object detail `{error, message, code}`.
    pub fn object(
        status: StatusCode,
        code: &'static str,
        error: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            detail: json!({"error": error.into(), "message": message.into(), "code": code}),
            retry_after: None,
            cause: None,
            graphql_errors: None,
        }
    }

    /// 404 for a missing (or someone else's) entity, in the peer's words.
    pub fn not_found(entity: Entity, id: impl fmt::Display) -> Self {
        let kind = entity.as_str();
        Self::object(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{kind} not found"),
            format!("{kind} {id} not found"),
        )
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::message(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 400 for a request that cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::message(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 422 naming the fields, FastAPI style.
    pub fn validation(errors: &DomainError, location: &str) -> Self {
        let items: Vec<Value> = errors
            .errors
            .iter()
            .map(|e| field_item(e, location))
            .collect();
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            detail: Value::Array(items),
            retry_after: None,
            cause: None,
            graphql_errors: None,
        }
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(cause: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "unavailable",
            detail: json!({"error": "Service unavailable",
                           "message": "A dependency is unavailable; retry shortly.",
                           "code": "unavailable"}),
            retry_after: Some(RETRY_AFTER_UNAVAILABLE),
            cause: Some(cause.into()),
            graphql_errors: None,
        }
    }

    /// 500 that hides its cause from the client.
    pub fn internal(cause: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            detail: json!({"error": "Internal error",
                           "message": "The server failed; the request id identifies the failure in its logs.",
                           "code": "internal"}),
            retry_after: None,
            cause: Some(cause.into()),
            graphql_errors: None,
        }
    }

    /// Adds `Retry-After` (seconds).
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The detail sent to the client.
    pub fn detail(&self) -> &Value {
        &self.detail
    }

    /// Seconds the client should wait before retrying, if any.
    pub fn retry_after(&self) -> Option<u64> {
        self.retry_after
    }

    /// The hidden cause, if any (for logs).
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }
}

/// `field` = `drama.characters[0].name` → `loc` = `["body", "drama", "characters", 0, "name"]`.
fn field_item(e: &FieldError, location: &str) -> Value {
    let mut loc = vec![Value::String(location.to_owned())];
    for part in e.field.split('.').filter(|p| !p.is_empty()) {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            loc.push(Value::String(rest[..open].to_owned()));
            rest = &rest[open..];
            while let Some(inner) = rest.strip_prefix('[') {
                let close = inner.find(']').unwrap_or(inner.len());
                match inner[..close].parse::<u64>() {
                    Ok(n) => loc.push(json!(n)),
                    Err(_) => loc.push(Value::String(inner[..close].to_owned())),
                }
                rest = inner.get(close + 1..).unwrap_or("");
            }
        } else {
            loc.push(Value::String(rest.to_owned()));
        }
    }
    loc.retain(|v| v.as_str() != Some(""));
    json!({"type": "value_error", "loc": loc, "msg": e.message, "field": e.field})
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.code)?;
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            response.insert_header((header::RETRY_AFTER, v));
        }
        let mut body = json!({"detail": self.detail, "code": self.code});
        if let Some(errors) = &self.graphql_errors {
            body["errors"] = Value::clone(errors);
        }
        response.json(body)
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        match e {
            AppError::NotFound { entity, id } => Self::not_found(entity, id),
            AppError::AlreadyExists { entity, id } => Self::object(
                StatusCode::CONFLICT,
                "already_exists",
                format!("{} already exists", entity.as_str()),
                format!("{} {id} already exists", entity.as_str()),
            ),
            AppError::VersionConflict { expected, actual } => Self::object(
                StatusCode::CONFLICT,
                "version_conflict",
                "Version conflict",
                format!(
                    "The drama changed since version {expected}; it is now at version \
                     {actual}. Reload it and apply the change again."
                ),
            ),
            AppError::Invalid(d) => Self::validation(&d, "body"),
            AppError::Precondition(message) => {
                Self::message(StatusCode::BAD_REQUEST, "precondition_failed", message)
            }
            AppError::InsufficientTokens { balance, needed } => Self::object(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_tokens",
                "Insufficient tokens",
                format!("This request costs {needed} tokens; the balance is {balance}."),
            ),
            AppError::QuotaExceeded { quota, limit, used } => Self {
                status: StatusCode::FORBIDDEN,
                code: "quota_exceeded",
                detail: json!({
                    "error": "Quota exceeded",
                    "message": quota_message(quota, limit, used),
                    "code": "quota_exceeded",
                    "quota": quota,
                    "limit": limit,
                    "used": used,
                }),
                retry_after: None,
                cause: None,
                graphql_errors: None,
            },
            AppError::TooLarge(message) => {
                Self::message(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
            }
            AppError::Unavailable(cause) => Self::unavailable(cause),
            AppError::Unauthenticated(message) => Self::unauthenticated(message),
            // The provider's reason is the client's business (a refused prompt can be edited).
            AppError::GenerationFailed(message) => Self::message(
                StatusCode::INTERNAL_SERVER_ERROR,
                "generation_failed",
                message,
            ),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<crate::graphql::LimitError> for ApiError {
    /// 400 naming the limit, with the same in GraphQL's `errors` (a request error: no `data`).
    fn from(e: crate::graphql::LimitError) -> Self {
        let message = e.to_string();
        let mut detail = json!({
            "error": "Request over a limit",
            "message": message,
            "code": e.code(),
            "limit": e.limit(),
        });
        let mut extensions = json!({"code": e.code(), "limit": e.limit()});
        if let Some(found) = e.found() {
            detail["found"] = json!(found);
            extensions["found"] = json!(found);
        }
        Self {
            status: StatusCode::BAD_REQUEST,
            code: e.code(),
            detail,
            retry_after: None,
            cause: None,
            graphql_errors: Some(Box::new(
                json!([{"message": message, "extensions": extensions}]),
            )),
        }
    }
}

impl From<crate::realtime::TooManyStreams> for ApiError {
    /// 429 with `Retry-After`, naming the cap.
    fn from(e: crate::realtime::TooManyStreams) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_streams",
            detail: json!({
                "error": "Too many streams",
                "message": e.to_string(),
                "code": "too_many_streams",
                "scope": e.scope,
                "limit": e.limit,
            }),
            retry_after: Some(e.retry_after()),
            cause: None,
            graphql_errors: None,
        }
    }
}

/// What a client reads when a quota is reached: which one, and what frees it.
pub(crate) fn quota_message(quota: &str, limit: u64, used: u64) -> String {
    match quota {
        "dramas" => {
            format!("You have reached the limit of {limit} dramas; delete one to create another.")
        }
        "stored_bytes" => format!(
            "Your stored media would take {used} bytes, above the limit of {limit}; delete \
             dramas or library uploads to free space."
        ),
        "active_runs" => format!(
            "You have {limit} generations in progress, the most allowed at once; wait for one \
             to finish or cancel one."
        ),
        _ => format!("The {quota} quota of {limit} is reached."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_become_fastapi_locations() {
        let item = field_item(
            &FieldError::new("drama.episodes[1].scenes[0].id", "bad"),
            "body",
        );
        assert_eq!(
            item["loc"],
            json!(["body", "drama", "episodes", 1, "scenes", 0, "id"])
        );
        assert_eq!(item["field"], "drama.episodes[1].scenes[0].id");
        let item = field_item(&FieldError::new("", "not JSON"), "body");
        assert_eq!(item["loc"], json!(["body"]));
    }
}
