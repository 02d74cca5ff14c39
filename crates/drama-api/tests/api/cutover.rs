//! What old clients send on the cutover day: an `Authorization` header beside their
//! `X-API-Key` that names nobody the server accepts, `null` as the body of a generation, and
//! the asset library's `user_id` they expect back.

use actix_web::test::TestRequest;
use chrono::Utc;
use drama_dal::ApiKeyRepository as _;
use drama_domain::UserId;
use serde_json::{Value, json};

use crate::auth::{ISSUER_BASE, claims, hs256, project_key, settings};
use crate::support::{Api, Harness, create_drama, field_of_each, get, post, send};
use crate::websocket::{connect, next};

/// A request with these two headers, each only when given.
fn with_headers(
    mut request: TestRequest,
    authorization: Option<&str>,
    api_key: Option<&str>,
) -> TestRequest {
    if let Some(value) = authorization {
        request = request.insert_header(("Authorization", value.to_owned()));
    }
    if let Some(value) = api_key {
        request = request.insert_header(("X-API-Key", value.to_owned()));
    }
    request
}

/// The ids of the dramas `GET /dramas` and GraphQL `dramas` list for these headers, with the
/// status of each answer.
async fn listed(
    svc: &impl Api,
    authorization: Option<&str>,
    api_key: Option<&str>,
) -> ((u16, Vec<String>), (u16, Vec<String>), Value) {
    let rest = with_headers(TestRequest::get().uri("/dramas"), authorization, api_key);
    let (status, _, body) = send(svc, rest).await;
    let rest_ids = body["dramas"]
        .as_array()
        .map(|_| field_of_each(&body["dramas"], "id"))
        .unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let graphql = with_headers(
        TestRequest::post()
            .uri("/graphql")
            .set_json(json!({"query": "{ dramas { id } }"})),
        authorization,
        api_key,
    );
    let (graphql_status, _, answer) = send(svc, graphql).await;
    let graphql_ids = answer["data"]["dramas"]
        .as_array()
        .map(|_| field_of_each(&answer["data"]["dramas"], "id"))
        .unwrap_or_default()
        .into_iter()
        .map(str::to_owned)
        .collect();
    ((status, rest_ids), (graphql_status, graphql_ids), body)
}

#[actix_web::test]
async fn x_api_key_authenticates_beside_an_authorization_that_names_no_accepted_user() {
    let h = Harness::new().await;
    let svc = h.service(settings(ISSUER_BASE)).await;
    create_drama(&svc, &h.alice_key, "alices", (1, 1, 1)).await;
    create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;
    let anon = hs256(&project_key("anon", "project"));
    let past = Utc::now().timestamp() - 7200;
    let expired = hs256(&claims(UserId::random(), json!({"exp": past})));
    let alices = vec!["alices".to_owned()];
    for authorization in [
        "Bearer null".to_owned(),
        "Bearer undefined".to_owned(),
        "Bearer".to_owned(),
        "Bearer    ".to_owned(),
        "Basic YWxpY2U6c2VjcmV0".to_owned(),
        "garbage".to_owned(),
        format!("Bearer {anon}"),
        format!("Bearer {expired}"),
    ] {
        let (rest, graphql, body) = listed(&svc, Some(&authorization), Some(&h.alice_key)).await;
        assert_eq!(rest, (200, alices.clone()), "{authorization}: {body}");
        assert_eq!(graphql, (200, alices.clone()), "{authorization}");
    }
    // Without the key, the same headers stay refused.
    let (rest, graphql, _) = listed(&svc, Some(&format!("Bearer {anon}")), None).await;
    assert_eq!((rest.0, graphql.0), (401, 401));
}

#[actix_web::test]
async fn an_accepted_bearer_credential_wins_and_a_refused_key_is_never_passed_over() {
    let h = Harness::new().await;
    let svc = h.service(settings(ISSUER_BASE)).await;
    create_drama(&svc, &h.alice_key, "alices", (1, 1, 1)).await;
    create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;

    // A signed-in user's session wins over the key: the caller is the token's user alone.
    let subject = UserId::random();
    let session = format!("Bearer {}", hs256(&claims(subject, json!({}))));
    let (rest, graphql, body) = listed(&svc, Some(&session), Some(&h.alice_key)).await;
    assert_eq!(rest, (200, Vec::new()), "{body}");
    assert_eq!(graphql, (200, Vec::new()));
    // So does an API key sent as a bearer.
    let bobs = format!("Bearer {}", h.bob_key);
    let (rest, graphql, _) = listed(&svc, Some(&bobs), Some(&h.alice_key)).await;
    assert_eq!(rest, (200, vec!["bobs".to_owned()]));
    assert_eq!(graphql, (200, vec!["bobs".to_owned()]));

    // A revoked key is refused in either header, whatever the other one holds.
    let revoked = h
        .store
        .create_api_key(h.alice, "old", &[], None)
        .await
        .unwrap();
    h.store
        .revoke_api_key(h.alice, revoked.meta.id)
        .await
        .unwrap();
    let expired = h
        .store
        .create_api_key(
            h.alice,
            "short",
            &[],
            Some(Utc::now() - chrono::Duration::seconds(1)),
        )
        .await
        .unwrap();
    for (authorization, api_key, detail) in [
        (
            "Bearer null".to_owned(),
            revoked.key.as_str(),
            "API key revoked",
        ),
        (
            "Basic eA==".to_owned(),
            expired.key.as_str(),
            "API key expired",
        ),
        (
            format!("Bearer {}", revoked.key),
            h.bob_key.as_str(),
            "API key revoked",
        ),
    ] {
        let (rest, graphql, body) = listed(&svc, Some(&authorization), Some(api_key)).await;
        assert_eq!((rest.0, graphql.0), (401, 401), "{authorization}: {body}");
        assert_eq!(body["detail"], detail, "{authorization}");
    }
}

#[actix_web::test]
async fn streams_take_x_api_key_beside_a_placeholder_authorization() {
    let h = Harness::new().await;
    let server = h.listen(settings(ISSUER_BASE));
    crate::support::store_drama_over_http(&server, &h.alice_key, "followed").await;
    let anon = hs256(&project_key("anon", "project"));

    // SSE, through the request path.
    let response = reqwest::Client::new()
        .get(format!("http://{}/dramas/followed/events", server.base))
        .header("Authorization", format!("Bearer {anon}"))
        .header("X-API-Key", &h.alice_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);

    // The GraphQL WebSocket's `connection_init`.
    let mut ws = connect(&server).await;
    crate::websocket::send(
        &mut ws,
        json!({"type": "connection_init",
               "payload": {"Authorization": "Bearer null", "X-API-Key": h.alice_key}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    crate::websocket::send(
        &mut ws,
        json!({"id": "follow", "type": "subscribe", "payload": {
            "query": r#"subscription { dramaChanged(id: "followed") { version } }"#
        }}),
    )
    .await;
    let first = next(&mut ws).await.unwrap();
    assert_eq!(first["type"], "next", "{first}");
}

#[actix_web::test]
async fn a_null_body_is_no_options_on_every_route_whose_body_is_optional() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    for (n, body) in ["null", " null\n"].into_iter().enumerate() {
        let id = format!("nully{n}");
        create_drama(&svc, &h.alice_key, &id, (1, 1, 1)).await;
        for (uri, expected) in [
            (format!("/dramas/{id}/estimate"), 200),
            (format!("/dramas/{id}/episodes/e0/generate"), 202),
            (format!("/dramas/{id}/generate"), 202),
            (format!("/dramas/{id}/critique"), 202),
            // A key needs a name: refused for the missing name, as an empty body is.
            ("/api-keys".to_owned(), 422),
        ] {
            let request = post(&uri, &h.alice_key)
                .insert_header(("Content-Type", "application/json"))
                .set_payload(body);
            let (status, _, answer) = send(&svc, request).await;
            assert_eq!(status, expected, "{uri} {body:?}: {answer}");
            if expected == 422 {
                assert!(answer.to_string().contains("\"name\""), "{answer}");
            }
        }
    }
    // Anything else that is not an object of options is still refused naming the body.
    let request = post("/dramas/nully0/generate", &h.alice_key)
        .insert_header(("Content-Type", "application/json"))
        .set_payload("nul");
    let (status, _, answer) = send(&svc, request).await;
    assert_eq!(status, 422, "{answer}");
}

#[actix_web::test]
async fn the_library_list_echoes_the_user_id_it_was_given_else_the_old_default() {
    let h = Harness::new().await;
    let mut s = Harness::settings();
    s.auth.legacy_user = Some(h.alice.to_string());
    let svc = h.service(s).await;
    let bob = h.bob.to_string();
    for (key, query, echoed) in [
        (&h.alice_key, "project_name=p", "10000"),
        (&h.alice_key, "project_name=p&user_id=10000", "10000"),
        // The service caller acting for the user `10000` stands for: not that user's id.
        (&h.service_key, "project_name=p&user_id=10000", "10000"),
        (
            &h.service_key,
            &format!("project_name=p&user_id={bob}"),
            &bob,
        ),
    ] {
        let (status, _, body) = send(&svc, get(&format!("/asset-library/list?{query}"), key)).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert_eq!(body["user_id"], echoed, "{query}");
        assert_eq!(body["project_name"], "p");
    }
}
