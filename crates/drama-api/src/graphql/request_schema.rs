//! The GraphQL HTTP routes in the OpenAPI document: the body of `POST /graphql` and the
//! JSON `variables` of `GET /graphql`.

// These types are never built: only their derived schemas are read.
#![allow(dead_code)]

use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{ContentBuilder, RefOr, Schema};
use utoipa::{OpenApi, PartialSchema, ToSchema};

/// One GraphQL operation over HTTP.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
struct GraphqlRequest {
    query: String,
    operation_name: Option<String>,
    #[schema(value_type = Option<Object>)]
    variables: Option<serde_json::Value>,
}

/// The body of `POST /graphql`: one operation, or a batch of them.
pub(super) struct GraphqlBody;

impl PartialSchema for GraphqlBody {
    fn schema() -> RefOr<Schema> {
        let batch = ArrayBuilder::new()
            .items(GraphqlRequest::schema())
            .max_items(Some(10))
            .description(Some(
                "A batch of at most `GRAPHQL_MAX_BATCH` (10 by default) operations, answered with an array of results in the same order.",
            ));
        OneOfBuilder::new()
            .item(GraphqlRequest::schema())
            .item(batch)
            .into()
    }
}

impl ToSchema for GraphqlBody {}

#[derive(OpenApi)]
#[openapi(paths(super::post, super::get, super::subscriptions))]
struct GraphqlDoc;

/// The GraphQL routes' part of the document.
pub(crate) fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = GraphqlDoc::openapi();
    for item in doc.paths.paths.values_mut() {
        if let Some(get) = item.get.as_mut() {
            json_variables(get);
        }
    }
    doc
}

/// `variables` of `GET /graphql` is a JSON object in the query string, which a parameter
/// states with `content` rather than a schema.
fn json_variables(operation: &mut Operation) {
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(p) = parameter
            && p.name == "variables"
        {
            p.schema = None;
            p.content.insert(
                "application/json".into(),
                ContentBuilder::new()
                    .schema(Some(ObjectBuilder::new().schema_type(Type::Object)))
                    .build()
                    .into(),
            );
        }
    }
}
