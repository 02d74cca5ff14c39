//! The OpenAPI document served at `/openapi.json`, generated from the handlers: each route's
//! `#[utoipa::path]` gives its method, path, parameters, body and answers, and the body types
//! (`schemas`, the domain's and the app's wire types) give the schemas. What every
//! authenticated operation shares is added once here ([`Shared`]).
//!
//! To add an operation: put `#[utoipa::path(...)]` on the handler, derive `ToSchema` on its
//! body types, list the handler in `paths(...)` below and run the `openapi` tests with
//! `UPDATE_OPENAPI=1` to rewrite the committed `openapi.json`.

mod answers;
pub(crate) mod schemas;

use std::sync::LazyLock;

use utoipa::openapi::path::{Operation, Parameter, PathItem};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{
    Content, Ref, RefOr, Required, ResponseBuilder, Schema, SecurityRequirement,
};
use utoipa::{Modify, OpenApi};

use super::{
    dramas, events, generate, health, jobs, keys, library, me, media, models, nested, runs,
};
use crate::console;

/// The REST routes; GraphQL's HTTP routes are added when that feature is on.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "drama-server",
        description = "REST API of drama-server. Authenticate with `Authorization: Bearer <Supabase JWT or API key>` or `X-API-Key: <key>`. Errors are `{\"detail\": …, \"code\": …}`. See docs/API.md. Text never contains NUL (U+0000): a body holding one is refused with 422."
    ),
    servers((url = "/")),
    security(("bearer" = []), ("apiKey" = [])),
    paths(
        health::health,
        health::ready,
        models::models,
        health::root,
        health::openapi,
        health::docs,
        health::redoc,
        dramas::list,
        dramas::create,
        dramas::get,
        dramas::patch,
        dramas::delete,
        nested::characters,
        nested::character,
        nested::patch_character,
        nested::episodes,
        nested::episode,
        nested::patch_episode,
        nested::scenes,
        nested::scene,
        nested::patch_scene,
        nested::scene_assets,
        nested::scene_asset,
        nested::patch_scene_asset,
        generate::improve,
        generate::critic,
        generate::critique,
        generate::generate_drama,
        generate::generate_episode,
        generate::generate_scene,
        generate::generate_asset,
        generate::stitch,
        generate::audition,
        generate::get_audition,
        generate::portrait,
        generate::get_cover,
        generate::cover,
        jobs::jobs_of_drama,
        jobs::job_of_drama,
        jobs::job,
        jobs::cancel,
        jobs::resume,
        events::events,
        events::drama_events,
        library::list,
        library::upload,
        library::download,
        library::delete,
        library::metadata,
        media::media,
        media::media_head,
        media::signed_get,
        media::signed_head,
        media::signed_put,
    )
)]
struct RestDoc;

/// The routes after GraphQL's in the document's order.
#[derive(OpenApi)]
#[openapi(paths(
    keys::list,
    keys::create,
    keys::revoke,
    me::me,
    runs::graph,
    runs::estimate,
    console::index,
    console::index_slash,
    console::file,
    console::signin::exchange,
))]
struct TailDoc;

/// The whole document as served (pretty JSON), built once.
pub(crate) fn document() -> &'static str {
    static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
        let mut doc = RestDoc::openapi();
        #[cfg(feature = "graphql")]
        doc.merge(crate::graphql::openapi());
        doc.merge(TailDoc::openapi());
        Shared.modify(&mut doc);
        let mut text = doc
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\": \"the document failed to render: {e}\"}}"));
        text.push('\n');
        text
    });
    &DOCUMENT
}

/// What the document states once instead of on every operation: the security schemes, the
/// answers any authenticated request may get (401, 429, 503), the `Idempotency-Key` header as a
/// shared parameter, and the `version` field the API layer reads from every PATCH body.
struct Shared;

/// Answers every authenticated operation may give, whatever it does.
const SHARED_ANSWERS: [(&str, &str); 3] = [
    ("401", "Missing or invalid credentials."),
    ("429", "Too many requests; see `Retry-After`."),
    (
        "503",
        "A dependency (database, bucket, provider) is unavailable; see `Retry-After`.",
    ),
];

/// The name of the shared `Idempotency-Key` parameter under `components/parameters`.
const IDEMPOTENCY_PARAMETER: &str = "IdempotencyKey";

/// The PATCH bodies: `rest::expected_version` reads `version` from each.
const PATCH_SCHEMAS: [&str; 5] = [
    "DramaPatch",
    "CharacterPatch",
    "EpisodePatch",
    "ScenePatch",
    "AssetPatch",
];

impl Modify for Shared {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi.info.license = None;
        openapi.info.contact = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            "bearer".into(),
            RefOr::T(SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build(),
            )),
        );
        components.security_schemes.insert(
            "apiKey".into(),
            RefOr::T(SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new(
                "X-API-Key",
            )))),
        );
        for name in PATCH_SCHEMAS {
            if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(name) {
                object
                    .properties
                    .insert("version".into(), version_schema().into());
            }
        }
        let mut idempotency: Option<Parameter> = None;
        for item in openapi.paths.paths.values_mut() {
            for operation in operations(item) {
                // Handler names repeat across modules (`list`, `get` …); the document has
                // never named its operations.
                operation.operation_id = None;
                match operation.security.as_ref() {
                    // `security(())` marks a public route: no credentials at all.
                    Some(requirements)
                        if requirements
                            .iter()
                            .all(|r| *r == SecurityRequirement::default()) =>
                    {
                        operation.security = Some(Vec::new());
                    }
                    Some(_) => {}
                    None => add_shared_answers(operation),
                }
                optional_body_not_null(operation);
                for parameter in operation.parameters.iter_mut().flatten() {
                    if let RefOr::T(p) = parameter
                        && p.name == "Idempotency-Key"
                    {
                        idempotency.get_or_insert_with(|| p.clone());
                        *parameter = RefOr::Ref(Ref::new(format!(
                            "#/components/parameters/{IDEMPOTENCY_PARAMETER}"
                        )));
                    }
                }
            }
        }
        if let Some(parameter) = idempotency {
            components
                .parameters
                .insert(IDEMPOTENCY_PARAMETER.into(), RefOr::T(parameter));
        }
        for path in NULL_IS_NO_OPTIONS {
            if let Some(operation) = openapi
                .paths
                .paths
                .get_mut(*path)
                .and_then(|item| item.post.as_mut())
            {
                body_may_be_null(operation);
            }
        }
    }
}

/// The operations whose body is read by `rest::generate::options` and needs no member: JSON
/// `null` is the same as no options there (a Dart client's `jsonEncode(null)`), so the
/// document lists it as a form. (`POST /api-keys` reads its body the same way, but a key needs
/// a `name`: `null` is refused there, as the document's object says.)
const NULL_IS_NO_OPTIONS: &[&str] = &[
    "/dramas/{drama_id}/generate",
    "/dramas/{drama_id}/episodes/{episode_id}/generate",
    "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/generate",
    "/dramas/{drama_id}/estimate",
    "/dramas/{drama_id}/critique",
    "/dramas/{drama_id}/critic",
];

/// Makes the JSON body of `operation` `oneOf: [its schema, null]`.
fn body_may_be_null(operation: &mut Operation) {
    let Some(RefOr::T(body)) = operation.request_body.as_mut() else {
        return;
    };
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        if let Some(schema) = content.schema.take() {
            content.schema = Some(RefOr::T(Schema::OneOf(
                OneOfBuilder::new()
                    .item(schema)
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .build(),
            )));
        }
    }
}

/// Each operation of a path.
fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// An optional body (`request_body = Option<T>`) may be left out, but JSON `null` is not one of
/// its forms: the derive writes `oneOf: [T, null]`, the handlers read an absent body as the
/// defaults and refuse `null`.
fn optional_body_not_null(operation: &mut Operation) {
    let Some(RefOr::T(body)) = operation.request_body.as_mut() else {
        return;
    };
    if matches!(body.required, Some(Required::True)) {
        return;
    }
    for content in body.content.values_mut() {
        let RefOr::T(content) = content else { continue };
        let Some(RefOr::T(Schema::OneOf(one_of))) = content.schema.as_mut() else {
            continue;
        };
        let is_null = |s: &RefOr<Schema>| matches!(s, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null));
        if one_of.items.len() == 2
            && let Some(null) = one_of.items.iter().position(is_null)
        {
            let schema = one_of.items.remove(1 - null);
            content.schema = Some(schema);
        }
    }
}

fn add_shared_answers(operation: &mut Operation) {
    for (status, description) in SHARED_ANSWERS {
        operation
            .responses
            .responses
            .entry(status.into())
            .or_insert_with(|| {
                ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        Content::new(Some(Ref::from_schema_name("Error"))),
                    )
                    .into()
            });
    }
}

/// `version` of a PATCH body (`rest::expected_version`).
fn version_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
        .minimum(Some(0))
        .maximum(Some(i64::MAX))
        .description(Some(
            "The version the change is based on (or `If-Match`); a stale one is 409. `null` or absent: any version.",
        ))
}
