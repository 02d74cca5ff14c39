//! Query strings read so that a refusal names the parameter at fault: actix's own extractor
//! reports only serde's message (`invalid digit found in string`), which says neither which
//! parameter nor where. Here the path of the failing field is kept (`limit`), and the answer
//! is the usual 422 `validation_failed` with `loc: ["query", "limit"]`.

use std::ops::Deref;

use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use drama_domain::DomainError;
use futures::future::{Ready, ready};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A handler's query parameters, deserialised from the query string.
pub(crate) struct Query<T>(pub(crate) T);

impl<T> Deref for Query<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(parse(req.query_string()).map(Query))
    }
}

/// `query` as a `T`, or the 422 that names the parameter that does not fit.
fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let parameters = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(parameters).map_err(|e| {
        // A missing parameter fails at the top (`.`); serde's message names it.
        let field = match e.path().to_string() {
            path if path == "." => "query".to_owned(),
            path => path,
        };
        ApiError::validation(&DomainError::field(field, e.inner().to_string()), "query")
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Page {
        #[allow(dead_code)]
        limit: Option<u32>,
        #[allow(dead_code)]
        project_name: String,
    }

    async fn refusal(query: &str) -> serde_json::Value {
        let e = parse::<Page>(query).unwrap_err();
        let response = actix_web::ResponseError::error_response(&e);
        assert_eq!(response.status(), 422);
        let bytes = actix_web::body::to_bytes(response.into_body())
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[actix_web::test]
    async fn a_refusal_names_the_parameter() {
        let body = refusal("project_name=p&limit=abc").await;
        assert_eq!(body["detail"][0]["field"], "limit", "{body}");
        assert_eq!(
            body["detail"][0]["loc"],
            serde_json::json!(["query", "limit"])
        );
        let body = refusal("limit=1").await;
        assert!(body.to_string().contains("project_name"), "{body}");
        assert!(
            parse::<Page>("project_name=p&other=1").is_ok(),
            "unknown ones are ignored"
        );
    }
}
