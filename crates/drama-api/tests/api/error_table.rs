//! The same failure asked over REST and over GraphQL is named by one row of the error table:
//! the REST status and `code`, and the GraphQL `extensions.code` of that row.

use actix_web::test::TestRequest;
use drama_api::ErrorCode;
use serde_json::{Value, json};

use crate::support::{
    Api, Captured, Harness, bearer, create_drama, create_drama_mentioning, delete, graphql, post,
    post_json, send,
};

/// The REST answer and the GraphQL answer of one failure, against the row of `kind`.
fn assert_pair(kind: ErrorCode, rest: (u16, &Value), graphql: &Value) {
    let (status, body) = rest;
    assert_eq!(status, kind.status().as_u16(), "{kind:?} over REST: {body}");
    assert_eq!(body["code"], kind.code(), "{kind:?} over REST: {body}");
    if let Some(inner) = body["detail"].get("code") {
        assert_eq!(inner, kind.code(), "{kind:?} over REST: {body}");
    }
    assert_eq!(
        graphql["errors"][0]["extensions"]["code"],
        kind.graphql(),
        "{kind:?} over GraphQL: {graphql}"
    );
}

/// The answer to `query`, which GraphQL answers with 200 whatever it says.
async fn gql(svc: &impl Api, key: &str, query: &str) -> Value {
    let (status, body) = graphql(svc, key, query).await;
    assert_eq!(status, 200, "{body}");
    body
}

#[actix_web::test]
async fn rest_and_graphql_name_a_failure_from_the_same_row() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    create_drama(&svc, k, "a1", (1, 1, 1)).await;

    // Missing.
    let (status, _, rest) = send(&svc, delete("/dramas/missing", k)).await;
    let graphql = gql(&svc, k, r#"mutation { deleteDrama(id: "missing") }"#).await;
    assert_pair(ErrorCode::NotFound, (status, &rest), &graphql);

    // A stale version.
    let (status, _, rest) = send(
        &svc,
        TestRequest::patch()
            .uri("/dramas/a1")
            .insert_header(bearer(k))
            .insert_header(("If-Match", "\"7\""))
            .set_payload(r#"{"title": "Lost"}"#),
    )
    .await;
    let graphql = gql(
        &svc,
        k,
        r#"mutation { updateDrama(id: "a1", input: {title: "Lost"}, version: 7) { title } }"#,
    )
    .await;
    assert_pair(ErrorCode::VersionConflict, (status, &rest), &graphql);

    // Input that breaks a rule.
    let (status, _, rest) = send(
        &svc,
        TestRequest::patch()
            .uri("/dramas/a1")
            .insert_header(bearer(k))
            .set_payload(r#"{"title": ""}"#),
    )
    .await;
    let graphql = gql(
        &svc,
        k,
        r#"mutation { updateDrama(id: "a1", input: {title: ""}) { title } }"#,
    )
    .await;
    assert_pair(ErrorCode::ValidationFailed, (status, &rest), &graphql);

    // An id that is taken.
    let (status, _, rest) = send(
        &svc,
        post_json("/dramas", k, json!({"premise": "A corgi", "id": "a1"})),
    )
    .await;
    let graphql = gql(
        &svc,
        k,
        r#"mutation { createDrama(premise: "A corgi", id: "a1") { jobId } }"#,
    )
    .await;
    assert_pair(ErrorCode::AlreadyExists, (status, &rest), &graphql);

    // A cover before the portraits.
    let (status, _, rest) = send(&svc, post("/dramas/a1/cover_photo", k)).await;
    let graphql = gql(
        &svc,
        k,
        r#"mutation { generateCoverPhoto(dramaId: "a1") { id } }"#,
    )
    .await;
    assert_pair(ErrorCode::PreconditionFailed, (status, &rest), &graphql);
}

#[actix_web::test]
async fn a_failed_generation_is_named_as_such_over_both_apis() {
    let h = Harness::refusing_images_of("forbidden").await;
    let worker = h.worker().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    let character = create_drama_mentioning(&svc, k, "refused", "forbidden").await;

    let (status, _, rest) = send(
        &svc,
        post(
            &format!("/dramas/refused/characters/{character}/generate"),
            k,
        ),
    )
    .await;
    let graphql = gql(
        &svc,
        k,
        &format!(
            r#"mutation {{ generateCharacterImage(dramaId: "refused", characterId: "{character}") {{ id }} }}"#
        ),
    )
    .await;
    assert_pair(ErrorCode::GenerationFailed, (status, &rest), &graphql);
    // The provider's reason reaches GraphQL clients too, not a generic failure.
    assert!(
        graphql["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("the prompt mentions forbidden"),
        "{graphql}"
    );
    worker.shutdown().await;
}

#[actix_web::test]
async fn a_failure_is_logged_once_with_its_whole_chain_and_never_answered_with_it() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // actix tests run on one thread, where the request is served too.
    let _guard = tracing::subscriber::set_default(subscriber);
    let svc = actix_web::test::init_service(
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(
                drama_api::middleware::request_context,
            ))
            .route(
                "/fails",
                actix_web::web::get().to(|| async {
                    Err::<actix_web::HttpResponse, _>(drama_api::ApiError::internal_while(
                        "cannot spool the upload",
                        std::io::Error::other("disk full: device sdb3 is read-only"),
                    ))
                }),
            ),
    )
    .await;
    let response =
        actix_web::test::call_service(&svc, TestRequest::get().uri("/fails").to_request()).await;
    assert_eq!(response.status(), 500);
    let body: Value = actix_web::test::read_body_json(response).await;
    assert_eq!(body["code"], ErrorCode::Internal.code(), "{body}");
    assert!(!body.to_string().contains("disk full"), "{body}");

    let text = logs.text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("disk full")).collect();
    assert_eq!(lines.len(), 1, "logged once:\n{text}");
    assert!(
        lines[0]
            .contains("500 internal: cannot spool the upload: disk full: device sdb3 is read-only"),
        "the whole chain, outermost first:\n{text}"
    );
}
