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
mod paging;
mod pricing;
mod request_schema;
mod schema;
mod socket;
mod subscription;

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use juniper::http::{GraphQLBatchRequest, GraphQLRequest, GraphQLResponse};

pub use context::Ctx;
pub use limits::{GraphqlLimits, LimitError, UNBOUNDED_LIST_ITEMS};
pub(crate) use request_schema::openapi;
pub use schema::{Schema, schema, schema_with_depth};
pub use socket::{
    CREDENTIALS_LAPSED_CLOSE, GOING_AWAY_CLOSE, IDLE_CLOSE, INIT_TIMEOUT_CLOSE,
    TOO_MANY_STREAMS_CLOSE,
};

use crate::endpoint::endpoint;
use crate::error::{ApiError, ErrorCode};
use crate::headers::header_text;
use crate::rest::openapi::schemas as doc;
use crate::state::{ApiState, Auth};

pub(crate) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/graphql").post(post).get(get))
        .service(endpoint("/subscriptions").get(subscriptions));
}

/// `GET /subscriptions`: the WebSocket of GraphQL subscriptions ([`socket::websocket`]).
#[utoipa::path(
    get,
    path = "/subscriptions",
    tag = "GraphQL",
    summary = "GraphQL subscriptions over WebSocket (graphql-transport-ws or graphql-ws)",
    description = "Credentials go in the `connection_init` payload: `{\"authorization\": \"Bearer …\"}` or `{\"x-api-key\": \"…\"}`.",
    responses(
        (status = 101, description = "Switching protocols."),
        (status = 400, description = "Not a WebSocket upgrade."),
    ),
    security(())
)]
async fn subscriptions(
    state: web::Data<ApiState>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    socket::websocket(state, req, body).await
}

async fn execute(
    state: &ApiState,
    caller: drama_app::Caller,
    named: crate::media_links::NamedOwners,
    request: GraphQLBatchRequest,
) -> Result<HttpResponse, ApiError> {
    let operations: Vec<&GraphQLRequest> = match &request {
        GraphQLBatchRequest::Single(one) => vec![one],
        GraphQLBatchRequest::Batch(many) => many.iter().collect(),
    };
    limits::check(&state.schema.schema, &operations, &state.settings.graphql)?;
    let ctx = Ctx::new(state.app().clone(), caller, state.realtime.clone())
        .with_legacy_user(state.legacy_user)
        .naming_into(named);
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
        let mut errors = [serde_json::json!({"message": message})];
        mark_refused(&mut errors);
        return serde_json::json!({"data": null, "errors": errors});
    }
    let result = request.execute(&state.schema, ctx).await.into_result();
    // juniper's errors of a request it did not run carry no code: each gets the one of the
    // error table, whatever the transport (see `request_error_code`).
    let refused = result.as_ref().err().map(request_error_code);
    let mut answer = serde_json::to_value(GraphQLResponse::from_result(result)).unwrap_or_else(
        |e| serde_json::json!({"data": null, "errors": [{"message": e.to_string()}]}),
    );
    if let Some(code) = refused
        && let Some(errors) = answer["errors"].as_array_mut()
    {
        mark_with(errors, code);
    }
    // juniper leaves `data` out when the document fails to parse or validate; the old server
    // answered `"data": null` beside the errors, and its clients read `data` first.
    if let serde_json::Value::Object(fields) = &mut answer {
        fields.entry("data").or_insert(serde_json::Value::Null);
        // A list served short of its `limit` (see `paging`) says so beside the data, where
        // clients that do not know it look no further, rather than among the errors, which
        // many clients treat as the failure of the whole answer.
        let truncated = ctx.take_truncations();
        if !truncated.is_empty() {
            fields.insert(
                "extensions".to_owned(),
                serde_json::json!({ "truncated": truncated }),
            );
        }
    }
    answer
}

/// The code of a request juniper refused to run. A document that does not parse or that the
/// schema refuses (`createDrama(premise: 123)`), or whose operation cannot be told (an unknown
/// `operationName`, several operations and none named) is input that breaks a rule, the twin
/// of REST's 422 `validation_failed`; a subscription is not served over HTTP, as a mutation is
/// not over GET: `method_not_allowed` (its socket is `/subscriptions`). The socket runs every
/// kind of operation, so its `error` messages only ever answer input errors, coded the same
/// way (`socket::serialized`).
fn request_error_code(error: &juniper::GraphQLError) -> ErrorCode {
    match error {
        juniper::GraphQLError::IsSubscription => ErrorCode::MethodNotAllowed,
        _ => ErrorCode::ValidationFailed,
    }
}

/// Gives errors of a document the schema refused (which juniper sends without extensions) the
/// code of a REST body that breaks a rule, `BAD_USER_INPUT`; errors with a code keep theirs.
pub(super) fn mark_refused(errors: &mut [serde_json::Value]) {
    mark_with(errors, ErrorCode::ValidationFailed);
}

/// Gives errors without extensions the GraphQL name of `code`; errors with a code keep theirs.
fn mark_with(errors: &mut [serde_json::Value], code: ErrorCode) {
    for error in errors {
        if let Some(error) = error.as_object_mut() {
            error
                .entry("extensions")
                .or_insert_with(|| serde_json::json!({"code": code.graphql()}));
        }
    }
}

/// `POST /graphql` with `{"query", "variables", "operationName"}` (or a batch), or
/// `application/graphql` with the query as the body.
#[utoipa::path(
    post,
    path = "/graphql",
    tag = "GraphQL",
    summary = "GraphQL (queries and mutations)",
    description = "The schema is `crates/drama-api/schema.graphql`.",
    request_body = inline(request_schema::GraphqlBody),
    responses(
        (status = 200, description = "`{data, errors}`; field errors carry `extensions.code`."),
        (status = 400, description = "The body is not JSON, a member has the wrong type (`query` a string, `operationName` a string or null, `variables` an object or null), or the request is over a limit.", body = doc::Error),
        doc::TooLarge,
        doc::Invalid,
    )
)]
async fn post(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let is_graphql = header_text(req.headers(), header::CONTENT_TYPE)
        .is_some_and(|v| v.starts_with("application/graphql"));
    let request = if is_graphql {
        let query = std::str::from_utf8(&body)
            .map_err(|_| ApiError::bad_request("Unable to parse request body as UTF-8"))?;
        GraphQLBatchRequest::Single(GraphQLRequest::new(query.to_owned(), None, None))
    } else {
        let value: serde_json::Value = serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("Unable to parse request body as JSON: {e}"))
        })?;
        batch_request(value).map_err(ApiError::bad_request)?
    };
    execute(
        &state,
        caller,
        crate::media_links::NamedOwners::of(&req),
        request,
    )
    .await
}

/// A JSON body as one operation or a batch of them. Each member is checked for its type
/// before juniper reads it: juniper takes any JSON value as `variables`, and a client whose
/// `operationName` or `variables` is of the wrong type would otherwise get an answer to a
/// request it did not mean.
fn batch_request(value: serde_json::Value) -> Result<GraphQLBatchRequest, String> {
    match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| one_operation(item).map_err(|e| format!("operation {i}: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(GraphQLBatchRequest::Batch),
        other => one_operation(other).map(GraphQLBatchRequest::Single),
    }
}

fn one_operation(value: serde_json::Value) -> Result<GraphQLRequest, String> {
    use serde_json::Value;
    let Value::Object(mut fields) = value else {
        return Err(format!(
            "a GraphQL request is an object with `query`, `operationName` and `variables`; got {}",
            json_type(&value)
        ));
    };
    let query = match fields.remove("query") {
        Some(Value::String(query)) => query,
        None | Some(Value::Null) => return Err("`query` is missing".to_owned()),
        Some(other) => {
            return Err(format!(
                "`query` must be a string; got {}",
                json_type(&other)
            ));
        }
    };
    let operation_name = match fields.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => Some(name),
        Some(other) => {
            return Err(format!(
                "`operationName` must be a string or null; got {}",
                json_type(&other)
            ));
        }
    };
    let variables = match fields.remove("variables") {
        None | Some(Value::Null) => None,
        Some(object @ Value::Object(_)) => {
            Some(serde_json::from_value(object).map_err(|e| format!("`variables`: {e}"))?)
        }
        Some(other) => {
            return Err(format!(
                "`variables` must be an object or null; got {}",
                json_type(&other)
            ));
        }
    };
    Ok(GraphQLRequest::new(query, operation_name, variables))
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[derive(serde::Deserialize)]
struct GetQuery {
    query: Option<String>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
    variables: Option<String>,
}

/// `GET /graphql?query=…` runs a query; a browser (no query, accepting HTML) gets GraphiQL.
/// A mutation or subscription is refused: a GET may be repeated or prefetched by a proxy or
/// a browser, and a mutation does paid, lasting work.
#[utoipa::path(
    get,
    path = "/graphql",
    tag = "GraphQL",
    summary = "GraphQL over GET (queries), or GraphiQL for browsers",
    params(
        ("query" = String, Query, description = "The query. Without it, a browser (`Accept: text/html`) gets GraphiQL and other clients a 400."),
        ("operationName" = Option<String>, Query, description = "The operation of the document to run, when it has several."),
        ("variables" = Option<String>, Query, description = "A JSON object."),
    ),
    responses(
        (status = 200, description = "`{data, errors}` or the GraphiQL page."),
        doc::Invalid,
        (status = 400, description = "`query` missing, `variables` not a JSON object.", body = doc::Error),
        (status = 405, description = "The selected operation is a mutation or a subscription (`method_not_allowed`, `Allow: POST`): send it with POST. Nothing was run.", body = doc::Error),
    )
)]
async fn get(
    state: web::Data<ApiState>,
    req: HttpRequest,
    query: web::Query<GetQuery>,
) -> Result<HttpResponse, ApiError> {
    let wants_html =
        header_text(req.headers(), header::ACCEPT).is_some_and(|v| v.contains("text/html"));
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
    if let Some(refused) =
        only_queries_over_get(&state.schema.schema, &text, query.operation_name.as_deref())
    {
        return Ok(refused);
    }
    let request =
        GraphQLBatchRequest::Single(GraphQLRequest::new(text, query.operation_name, variables));
    execute(
        &state,
        caller,
        crate::media_links::NamedOwners::of(&req),
        request,
    )
    .await
}

/// The refusal of a GET whose document selects a mutation or a subscription (the operation
/// named by `operationName`, or the document's only operation), in the old server's words;
/// `Allow: POST` says what to do instead. `None` for a query, or for a document that does not parse or selects no operation, which
/// juniper reports without running anything.
fn only_queries_over_get(
    schema: &juniper::SchemaType<juniper::DefaultScalarValue>,
    query: &str,
    operation_name: Option<&str>,
) -> Option<HttpResponse> {
    use juniper::{Definition, OperationType};
    let document = juniper::parser::parse_document_source(query, schema).ok()?;
    let mut operations = document.iter().filter_map(|d| match d {
        Definition::Operation(op) => Some(&op.item),
        Definition::Fragment(_) => None,
    });
    let selected = match operation_name {
        Some(name) => operations.find(|op| op.name.as_ref().is_some_and(|n| n.item == name))?,
        None => {
            let only = operations.next()?;
            if operations.next().is_some() {
                return None;
            }
            only
        }
    };
    let kind = match selected.operation_type {
        OperationType::Query => return None,
        OperationType::Mutation => "mutations",
        OperationType::Subscription => "subscriptions",
    };
    let error = ApiError::message(
        ErrorCode::MethodNotAllowed,
        format!("{kind} are not allowed when using GET"),
    );
    let mut response = actix_web::ResponseError::error_response(&error);
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static("POST"));
    Some(response)
}

/// The schema, built once.
pub(crate) fn shared_schema(limits: &GraphqlLimits) -> Arc<Schema> {
    Arc::new(schema_with_depth(limits.max_depth))
}
