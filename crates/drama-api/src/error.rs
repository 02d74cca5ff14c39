//! Errors on the wire: the peer's `{"detail": …}` envelope plus a stable `code`.
//!
//! Every error body is JSON. Not-found details are objects (`{"error": "Drama not found",
//! "message": "Drama d1 not found", "code": "not_found"}`) as the peer sent them; validation
//! failures are FastAPI-style lists naming each field; server-side failures never carry the
//! text of the underlying error (it is logged once, with the request id and its whole chain of
//! causes). Codes and statuses come from [`table`], which GraphQL reads too.

mod table;

use std::error::Error as StdError;
use std::fmt;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use drama_app::store::Entity;
use drama_app::{AppError, Precondition};
use drama_domain::{DomainError, FieldError};
use serde_json::{Value, json};

pub use table::{ErrorCode, Row};

/// Seconds a client should wait before retrying a 503.
const RETRY_AFTER_UNAVAILABLE: u64 = 5;

/// A cause kept for the log.
pub type Cause = Box<dyn StdError + Send + Sync>;

/// An error answer of the API.
#[derive(Debug)]
pub struct ApiError {
    kind: ErrorCode,
    detail: Value,
    retry_after: Option<u64>,
    /// The cause, for the log line only.
    cause: Option<Cause>,
    /// GraphQL `errors` sent beside the envelope, for GraphQL clients.
    graphql_errors: Option<Box<Value>>,
}

impl ApiError {
    fn with_detail(kind: ErrorCode, detail: Value) -> Self {
        Self {
            kind,
            detail,
            retry_after: None,
            cause: None,
            graphql_errors: None,
        }
    }

    /// An error with a string detail, as the peer's cover-photo and auth errors.
    pub fn message(kind: ErrorCode, message: impl Into<String>) -> Self {
        Self::with_detail(kind, Value::String(message.into()))
    }

    /// An error with an object detail `{error, message, code}`.
    pub fn object(kind: ErrorCode, error: impl Into<String>, message: impl Into<String>) -> Self {
        Self::with_detail(
            kind,
            json!({"error": error.into(), "message": message.into(), "code": kind.code()}),
        )
    }

    /// 404 for a missing (or someone else's) entity, in the peer's words.
    pub fn not_found(entity: Entity, id: impl fmt::Display) -> Self {
        let kind = entity.as_str();
        Self::object(
            ErrorCode::NotFound,
            format!("{kind} not found"),
            format!("{kind} {id} not found"),
        )
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::message(ErrorCode::Unauthenticated, message)
    }

    /// 400 for a request that cannot be understood.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::message(ErrorCode::BadRequest, message)
    }

    /// 422 naming the fields, FastAPI style.
    pub fn validation(errors: &DomainError, location: &str) -> Self {
        let items: Vec<Value> = errors
            .errors
            .iter()
            .map(|e| field_item(e, location))
            .collect();
        Self::with_detail(ErrorCode::ValidationFailed, Value::Array(items))
    }

    /// 503 with `Retry-After`; the cause is logged, never sent.
    pub fn unavailable(cause: impl Into<Cause>) -> Self {
        let kind = ErrorCode::Unavailable;
        Self {
            retry_after: Some(RETRY_AFTER_UNAVAILABLE),
            cause: Some(cause.into()),
            ..Self::object(
                kind,
                "Service unavailable",
                "A dependency is unavailable; retry shortly.",
            )
        }
    }

    /// 500 that hides its cause from the client.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::object(
                ErrorCode::Internal,
                "Internal error",
                "The server failed; the request id identifies the failure in its logs.",
            )
        }
    }

    /// 500 for a failure while doing `what` (`cannot spool the upload`), keeping the cause as
    /// the source so the log line shows both.
    pub fn internal_while(what: &'static str, cause: impl Into<Cause>) -> Self {
        Self::internal(Doing {
            what,
            cause: cause.into(),
        })
    }

    /// Adds `Retry-After` (seconds).
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The row of the error table this answer belongs to.
    pub fn kind(&self) -> ErrorCode {
        self.kind
    }

    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
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
    pub fn cause(&self) -> Option<&(dyn StdError + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

/// What was being done when a cause happened; the cause stays its source.
#[derive(Debug)]
struct Doing {
    what: &'static str,
    cause: Cause,
}

impl fmt::Display for Doing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what)
    }
}

impl StdError for Doing {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.cause)
    }
}

/// An error and its sources on one line (`a: b: c`), for the one log line of a failure. A
/// source whose text its parent already quotes (thiserror's `{0}` with `#[source]`) is not
/// repeated.
pub struct Chain<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut next = self.0.source();
        while let Some(source) = next {
            let text = source.to_string();
            if !last.contains(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            next = source.source();
        }
        Ok(())
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
        write!(f, "{} {}", self.status().as_u16(), self.code())
    }
}

impl StdError for ApiError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn StdError + 'static))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status());
        if let Some(seconds) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&seconds.to_string())
        {
            response.insert_header((header::RETRY_AFTER, v));
        }
        let mut body = json!({"detail": self.detail, "code": self.code()});
        if let Some(errors) = &self.graphql_errors {
            body["errors"] = Value::clone(errors);
        }
        response.json(body)
    }
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        let kind = ErrorCode::of(&e);
        match e {
            AppError::NotFound { entity, id } => Self::not_found(entity, id),
            AppError::AlreadyExists { entity, id } => Self::object(
                kind,
                format!("{} already exists", entity.as_str()),
                format!("{} {id} already exists", entity.as_str()),
            ),
            AppError::VersionConflict { expected, actual } => Self::object(
                kind,
                "Version conflict",
                format!(
                    "The drama changed since version {expected}; it is now at version \
                     {actual}. Reload it and apply the change again."
                ),
            ),
            AppError::Invalid(d) => Self::validation(&d, "body"),
            AppError::InsufficientTokens { balance, needed } => Self::object(
                kind,
                "Insufficient tokens",
                format!("This request costs {needed} tokens; the balance is {balance}."),
            ),
            AppError::QuotaExceeded { quota, limit, used } => Self::with_detail(
                kind,
                json!({
                    "error": "Quota exceeded",
                    "message": quota_message(quota, limit, used),
                    "code": kind.code(),
                    "quota": quota,
                    "limit": limit,
                    "used": used,
                }),
            ),
            // Messages written for the client: the old server's sentence, the provider's reason
            // for a failed generation (a refused prompt can be edited), what is too large.
            AppError::Precondition(unmet) => {
                Self::message(kind, precondition_message(&unmet, Words::Rest))
            }
            AppError::TooLarge(message)
            | AppError::Unauthenticated(message)
            | AppError::Forbidden(message)
            | AppError::GenerationFailed(message) => Self::message(kind, message),
            other @ AppError::Unavailable(_) => Self::unavailable(other),
            other => Self::internal(other),
        }
    }
}

#[cfg(feature = "graphql")]
impl From<crate::graphql::LimitError> for ApiError {
    /// 400 naming the limit, with the same in GraphQL's `errors` (a request error: no `data`).
    fn from(e: crate::graphql::LimitError) -> Self {
        let kind = e.kind();
        let message = e.to_string();
        let mut detail = json!({
            "error": "Request over a limit",
            "message": message,
            "code": kind.code(),
            "limit": e.limit(),
        });
        let mut extensions = json!({"code": kind.graphql(), "limit": e.limit()});
        if let Some(found) = e.found() {
            detail["found"] = json!(found);
            extensions["found"] = json!(found);
        }
        Self {
            graphql_errors: Some(Box::new(
                json!([{"message": message, "extensions": extensions}]),
            )),
            ..Self::with_detail(kind, detail)
        }
    }
}

impl From<crate::realtime::TooManyStreams> for ApiError {
    /// 429 with `Retry-After`, naming the cap.
    fn from(e: crate::realtime::TooManyStreams) -> Self {
        let kind = ErrorCode::TooManyStreams;
        Self {
            retry_after: Some(e.retry_after()),
            ..Self::with_detail(
                kind,
                json!({
                    "error": "Too many streams",
                    "message": e.to_string(),
                    "code": kind.code(),
                    "scope": e.scope,
                    "limit": e.limit,
                }),
            )
        }
    }
}

/// Whose words an answer is in: the old server said the same thing differently on its REST
/// routes and in GraphQL, and each API keeps its clients' words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Words {
    Rest,
    // Only GraphQL's errors say it, and a build without the `graphql` feature has none.
    #[cfg_attr(not(feature = "graphql"), allow(dead_code))]
    Graphql,
}

/// What a client reads when a precondition does not hold: the old server's sentence on each
/// API (REST: `POST /dramas/{id}/cover_photo`; GraphQL: `generateCoverPhoto`).
pub(crate) fn precondition_message(unmet: &Precondition, words: Words) -> String {
    match (unmet, words) {
        (Precondition::NoMainCharacter, _) => {
            "Drama must have at least one main character".to_owned()
        }
        (Precondition::MissingPortraits(names), Words::Rest) => format!(
            "All main characters must have images generated first. Missing images for: {}",
            names.join(", ")
        ),
        (Precondition::MissingPortraits(names), Words::Graphql) => {
            format!("All main characters must have images: {}", names.join(", "))
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
        "max_objects" => format!(
            "You keep {limit} stored objects, the most allowed; delete dramas or library \
             uploads to store more."
        ),
        "active_runs" => format!(
            "You have {limit} generations in progress, the most allowed at once; wait for one \
             to finish or cancel one."
        ),
        "api_keys_per_day" => format!(
            "You made {used} API keys in the last 24 hours, the most allowed is {limit} \
             (revoked ones count); try again later."
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

    /// A cause with a cause of its own.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|l| l as &(dyn StdError + 'static))
        }
    }

    #[test]
    fn a_chain_names_every_cause_once_outermost_first() {
        let e = ApiError::internal_while(
            "cannot spool the upload",
            Layer("disk full", Some(Box::new(Layer("read-only", None)))),
        );
        assert_eq!(
            Chain(&e).to_string(),
            "500 internal: cannot spool the upload: disk full: read-only"
        );
        // thiserror's `internal error: {0}` already quotes its source: not repeated.
        let app = AppError::Internal(Box::new(Layer("boom", None)));
        assert_eq!(Chain(&app).to_string(), "internal error: boom");
        let e = ApiError::from(AppError::Unavailable("database busy".to_owned()));
        assert_eq!(
            Chain(&e).to_string(),
            "503 unavailable: service unavailable: database busy"
        );
        assert!(!e.detail().to_string().contains("busy"), "{}", e.detail());
    }
}
