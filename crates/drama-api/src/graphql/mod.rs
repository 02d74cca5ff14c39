//! GraphQL at `/graphql`: the old server's newest schema, field for field, plus the additions
//! of the contract. Queries of nested data cost a fixed number of SQL statements: a page of
//! complete dramas is one statement, and the `jobs` of every entity in a response are loaded
//! together (see `context`).

mod account;
mod compat;
mod context;
mod error;
mod jobs;
mod limits;
mod pricing;
mod schema;
mod socket;
mod subscription;

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use juniper::http::{GraphQLBatchRequest, GraphQLRequest};

pub use context::Ctx;
pub use limits::{GraphqlLimits, LimitError, UNBOUNDED_LIST_ITEMS};
pub use schema::{Schema, schema, schema_with_depth};
pub use socket::INIT_TIMEOUT_CLOSE;

use crate::error::ApiError;
use crate::state::{ApiState, Auth};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/graphql")
            .route(web::post().to(post))
            .route(web::get().to(get)),
    )
    .route("/subscriptions", web::get().to(socket::websocket));
}

async fn execute(
    state: &ApiState,
    caller: drama_app::Caller,
    request: GraphQLBatchRequest,
) -> Result<HttpResponse, ApiError> {
    let operations: Vec<&GraphQLRequest> = match &request {
        GraphQLBatchRequest::Single(one) => vec![one],
        GraphQLBatchRequest::Batch(many) => many.iter().collect(),
    };
    limits::check(&state.schema.schema, &operations, &state.settings.graphql)?;
    let ctx = Ctx::new(state.app().clone(), caller, state.realtime.clone());
    // Validation and resolver errors are answered with 200 and `errors`, as the old server
    // (and the GraphQL-over-HTTP convention for application/json) did.
    Ok(match request {
        GraphQLBatchRequest::Single(one) => {
            HttpResponse::Ok().json(one_request(state, &ctx, one).await)
        }
        GraphQLBatchRequest::Batch(many) => {
            let mut answers = Vec::with_capacity(many.len());
            for one in many {
                answers.push(one_request(state, &ctx, one).await);
            }
            HttpResponse::Ok().json(answers)
        }
    })
}

/// One operation, normalised for the old clients first (see `compat`).
async fn one_request(
    state: &ApiState,
    ctx: &Ctx,
    mut request: GraphQLRequest,
) -> serde_json::Value {
    if let Err(message) = compat::normalise(&state.schema.schema, &mut request) {
        return serde_json::json!({"data": null, "errors": [{"message": message}]});
    }
    serde_json::to_value(request.execute(&state.schema, ctx).await).unwrap_or_else(
        |e| serde_json::json!({"data": null, "errors": [{"message": e.to_string()}]}),
    )
}

/// `POST /graphql` with `{"query", "variables", "operationName"}` (or a batch), or
/// `application/graphql` with the query as the body.
async fn post(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let is_graphql = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/graphql"));
    let request = if is_graphql {
        let query = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("Unable to parse request body as UTF-8"))?;
        GraphQLBatchRequest::Single(GraphQLRequest::new(query.to_owned(), None, None))
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("Unable to parse request body as JSON: {e}"))
        })?
    };
    execute(&state, caller, request).await
}

#[derive(serde::Deserialize)]
struct GetQuery {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
}

/// `GET /graphql?query=…` runs a query; a browser (no query, accepting HTML) gets GraphiQL.
async fn get(
    state: web::Data<ApiState>,
    req: HttpRequest,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    let wants_html = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"));
    let query = query.into_inner();
    let Some(text) = query.query else {
        if wants_html {
            return Ok(HttpResponse::Ok()
                .content_type("text/html; charset=utf-8")
                .body(juniper::http::graphiql::graphiql_source(
                    "/graphql",
                    Some("/subscriptions"),
                )));
        }
        return Err(ApiError::bad_request("missing the `query` parameter"));
    };
    let caller = state.caller(&req).await?;
    let variables = query
        .variables
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("`variables` is not JSON: {e}")))?;
    let request =
        GraphQLBatchRequest::Single(GraphQLRequest::new(text, query.operation_name, variables));
    execute(&state, caller, request).await
}

/// The schema, built once.
pub(crate) fn shared_schema(limits: &GraphqlLimits) -> Arc<Schema> {
    Arc::new(schema_with_depth(limits.max_depth))
}
