//! GraphQL through `/graphql`: the old server's test cases and ours.

use actix_web::test::TestRequest;
use serde_json::{Value, json};

use crate::support::{
    Api, Harness, assert_committed, assert_graphql_error, create_drama, field_of_each, get,
    graphql_with, percent_encoded, post, post_json, send,
};

/// The status and answer of `query` by the holder of `key`, its variables `{}`.
async fn ask(svc: &impl Api, key: &str, query: &str) -> (u16, Value) {
    graphql_with(svc, key, query, json!({})).await
}

async fn seeded() -> Harness {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    for (key, id) in [
        (&h.alice_key, "a1"),
        (&h.alice_key, "a2"),
        (&h.bob_key, "b1"),
    ] {
        create_drama(&svc, key, id, (2, 2, 2)).await;
    }
    h
}

#[actix_web::test]
async fn the_old_servers_graphql_tests_answer_as_described() {
    let h = seeded().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;

    let (s, b) = ask(
        &svc,
        k,
        "{ dramaSummaries(limit: 10) { id title createdAt updatedAt } }",
    )
    .await;
    assert_eq!(s, 200);
    let ids = field_of_each(&b["data"]["dramaSummaries"], "id");
    assert_eq!(ids, ["a2", "a1"]);
    assert!(
        b["data"]["dramaSummaries"][0]["createdAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    let (s, b) = graphql_with(
        &svc,
        k,
        "query($userId: String) { dramaSummaries(limit: 10, userId: $userId) { id } }",
        json!({"userId": h.bob.to_string()}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        b["data"]["dramaSummaries"].as_array().unwrap().len(),
        2,
        "userId from an ordinary caller is ignored: still Alice's dramas"
    );

    let (s, b) = graphql_with(
        &svc,
        k,
        "query($limit: Int!, $offset: Int!) { dramas(limit: $limit, offset: $offset) \
         { id characters { id voiceDescription } episodes { id scenes { id imageUrl } } } }",
        json!({"limit": 10, "offset": 1}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["dramas"][0]["id"], "a1");
    assert_eq!(
        b["data"]["dramas"][0]["episodes"][1]["scenes"][0]["id"],
        "e1-s0"
    );

    let (s, b) = ask(&svc, k, r#"{ drama(id: "non-existent-drama-id") { id } }"#).await;
    assert_eq!((s, &b["data"]["drama"]), (200, &Value::Null));
    let (s, b) = ask(&svc, k, r#"{ drama(id: "b1") { id } }"#).await;
    assert_eq!(
        (s, &b["data"]["drama"]),
        (200, &Value::Null),
        "Bob's drama is invisible"
    );

    let (s, b) = ask(
        &svc,
        k,
        "{ __schema { queryType { name } mutationType { name } } }",
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["__schema"]["queryType"]["name"], "Query");
    assert_eq!(b["data"]["__schema"]["mutationType"]["name"], "Mutation");
    let (_, b) = ask(&svc, k, r#"{ __type(name: "Query") { fields { name } } }"#).await;
    let fields = field_of_each(&b["data"]["__type"]["fields"], "name");
    for f in ["drama", "dramas", "dramaSummaries"] {
        assert!(fields.contains(&f), "{f} in {fields:?}");
    }

    let (s, b) = ask(&svc, k, "{ dramas { nonexistentField } }").await;
    assert_eq!(s, 200);
    assert!(b["errors"].as_array().is_some_and(|e| !e.is_empty()), "{b}");
    let (s, b) = ask(&svc, k, "{ drama { id } }").await;
    assert_eq!(s, 200);
    assert!(b["errors"].as_array().is_some_and(|e| !e.is_empty()), "{b}");

    let (s, _, _) = send(
        &svc,
        post("/graphql", k)
            .insert_header(("content-type", "application/json"))
            .set_payload("invalid json"),
    )
    .await;
    assert_eq!(s, 400);
}

#[actix_web::test]
async fn service_callers_may_name_the_owner() {
    let h = seeded().await;
    let svc = h.service(Harness::settings()).await;
    let (s, b) = graphql_with(
        &svc,
        &h.service_key,
        "query($u: String) { dramaSummaries(userId: $u) { id } }",
        json!({"u": h.bob.to_string()}),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["dramaSummaries"], json!([{"id": "b1"}]));
    let (_, b) = ask(
        &svc,
        &h.service_key,
        r#"{ dramaSummaries(userId: "not-a-uuid") { id } }"#,
    )
    .await;
    assert_eq!(b["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
}

/// The old clients' `userId: "10000"` from a service caller names the user the old default
/// owner became (`LEGACY_USER_ID`), and is ignored when none is set: never `BAD_USER_INPUT`.
/// So does the demo user the old Supabase branch defaulted `userId` to.
#[actix_web::test]
async fn a_service_callers_old_default_user_is_the_legacy_user() {
    let h = seeded().await;
    let summaries = r#"{ dramaSummaries(userId: "10000") { id } }"#;
    let mut settings = Harness::settings();
    settings.auth.legacy_user = Some(h.alice.to_string());
    let svc = h.service(settings).await;
    for old in ["10000", "a1111111-1111-1111-1111-111111111111"] {
        let query = format!(r#"{{ dramaSummaries(userId: "{old}") {{ id }} }}"#);
        let (s, b) = ask(&svc, &h.service_key, &query).await;
        assert_eq!(s, 200);
        assert_eq!(
            b["data"]["dramaSummaries"],
            json!([{"id": "a2"}, {"id": "a1"}]),
            "{old}: {b}"
        );
    }
    let (_, b) = ask(&svc, &h.bob_key, summaries).await;
    assert_eq!(b["data"]["dramaSummaries"], json!([{"id": "b1"}]), "{b}");
    // Without a legacy user the argument is ignored: the service caller's own (none).
    let svc = h.service(Harness::settings()).await;
    let (_, b) = ask(&svc, &h.service_key, summaries).await;
    assert_eq!(b["data"]["dramaSummaries"], json!([]), "{b}");
}

#[actix_web::test]
async fn mutations_update_and_delete_with_versions() {
    let h = seeded().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    let (_, b) = ask(&svc, k, r#"mutation { updateDrama(id: "a1", input: {title: "New"}, version: 1) { title version } }"#)
    .await;
    assert_eq!(
        b["data"]["updateDrama"],
        json!({"title": "New", "version": 2})
    );
    let (_, b) = ask(
        &svc,
        k,
        r#"mutation { updateDrama(id: "a1", input: {title: "Stale"}, version: 1) { title } }"#,
    )
    .await;
    assert_eq!(b["errors"][0]["extensions"]["code"], "CONFLICT", "{b}");
    let (_, b) = ask(
        &svc,
        k,
        r#"mutation { updateDrama(id: "a1", input: {title: ""}) { title } }"#,
    )
    .await;
    assert_eq!(
        b["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{b}"
    );
    let (_, b) = ask(&svc, k, r#"mutation { deleteDrama(id: "b1") }"#).await;
    assert_eq!(
        b["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "Bob's drama"
    );
    let (_, b) = ask(&svc, k, r#"mutation { deleteDrama(id: "a2") }"#).await;
    assert_eq!(b["data"]["deleteDrama"], true);
}

#[actix_web::test]
async fn deep_queries_and_oversized_pages_are_refused() {
    let h = seeded().await;
    let svc = h.service(Harness::settings()).await;
    let deep = format!(
        "{{ {} __typename {} }}",
        "dramas { episodes { scenes { ".repeat(6),
        "} } } ".repeat(6)
    );
    let (s, b) = ask(&svc, &h.alice_key, &deep).await;
    assert_eq!(s, 400, "{b}");
    assert_graphql_error(
        &b,
        drama_api::ErrorCode::QueryTooDeep.graphql(),
        "nests deeper",
    );
    // The old server's lists had no upper bound: a larger `limit` is served as the most a
    // field serves (and priced as a page), `0` is an empty page, a negative one is refused.
    for query in [
        "{ dramas(limit: 5000) { id } }",
        "{ dramaSummaries(limit: 5000) { id } }",
    ] {
        let (s, b) = ask(&svc, &h.alice_key, query).await;
        assert_eq!(s, 200, "{query}: {b}");
        assert!(b.get("errors").is_none(), "{query}: {b}");
        let list = b["data"].as_object().unwrap().values().next().unwrap();
        assert_eq!(list.as_array().unwrap().len(), 2, "{query}: {b}");
    }
    let (_, b) = ask(&svc, &h.alice_key, "{ dramas(limit: 0) { id } }").await;
    assert_eq!(b["data"]["dramas"], json!([]), "{b}");
    let (_, b) = ask(&svc, &h.alice_key, "{ dramas(limit: -1) { id } }").await;
    assert_eq!(
        b["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{b}"
    );
}

#[actix_web::test]
async fn get_runs_queries_and_serves_graphiql_to_browsers() {
    let h = seeded().await;
    let svc = h.service(Harness::settings()).await;
    let (s, _, b) = send(
        &svc,
        get(
            "/graphql?query=%7B%20dramaSummaries%20%7B%20id%20%7D%20%7D",
            &h.alice_key,
        ),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(b["data"]["dramaSummaries"].as_array().unwrap().len(), 2);
    let response = actix_web::test::call_service(
        &svc,
        TestRequest::get()
            .uri("/graphql")
            .insert_header(("accept", "text/html"))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 200);
    let html = actix_web::test::read_body(response).await;
    assert!(String::from_utf8_lossy(&html).contains("GraphiQL"));
}

/// A GET may be repeated or prefetched by a proxy: a mutation (or a subscription) selected
/// over GET is refused with 405 and `Allow: POST` before anything runs or is charged, while a
/// query of a document that also holds a mutation still runs when `operationName` picks it.
#[actix_web::test]
async fn get_refuses_mutations_and_subscriptions_and_runs_nothing() {
    let h = seeded().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    let tokens = |b: &Value| b["data"]["me"]["tokens"].as_i64().unwrap();
    let (_, before) = ask(&svc, k, "{ me { tokens } }").await;
    let both = r#"query Mine { dramaSummaries { id } } mutation Gone { deleteDrama(id: "a2") }"#;
    for (document, operation) in [
        (r#"mutation { deleteDrama(id: "a2") }"#, None),
        (r#"mutation { generateDrama(id: "a1") { jobId } }"#, None),
        (both, Some("Gone")),
        (
            r#"subscription { jobProgress(jobId: "x") { eventId } }"#,
            None,
        ),
    ] {
        let mut uri = format!("/graphql?query={}", percent_encoded(document));
        if let Some(name) = operation {
            uri.push_str(&format!("&operationName={name}"));
        }
        let (status, headers, body) = send(&svc, get(&uri, k)).await;
        assert_eq!(status, 405, "{document}: {body}");
        assert_eq!(headers.get("allow").unwrap(), "POST", "{document}");
        assert_eq!(body["code"], "method_not_allowed", "{body}");
        let kind = document.split_whitespace().next().unwrap_or_default();
        let expected = if kind == "subscription" {
            "subscriptions"
        } else {
            "mutations"
        };
        assert_eq!(
            body["detail"],
            format!("{expected} are not allowed when using GET"),
            "the old server's words: {body}"
        );
    }
    let (status, _, body) = send(
        &svc,
        get(
            &format!(
                "/graphql?query={}&operationName=Mine",
                percent_encoded(both)
            ),
            k,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let ids = field_of_each(&body["data"]["dramaSummaries"], "id");
    assert!(ids.contains(&"a2"), "nothing was deleted: {body}");
    let (_, after) = ask(&svc, k, "{ me { tokens } }").await;
    assert_eq!(tokens(&after), tokens(&before), "nothing was charged");
    // The same mutation over POST runs.
    let (_, b) = ask(&svc, k, r#"mutation { deleteDrama(id: "a2") }"#).await;
    assert_eq!(b["data"]["deleteDrama"], true, "{b}");
}

#[test]
fn the_committed_sdl_matches_the_schema() {
    assert_committed(
        "schema.graphql",
        &drama_api::graphql::schema().as_sdl(),
        "UPDATE_SDL",
        "the_committed_sdl_matches_the_schema",
    );
}

#[actix_web::test]
async fn generation_mutations_and_nested_jobs() {
    let h = seeded().await;
    let worker = h.worker().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    let ask_alice = async |query: &str| ask(&svc, k, query).await.1;

    let b = ask_alice(
        r#"mutation { generateCharacterImage(dramaId: "missing", characterId: "c0") { id } }"#,
    )
    .await;
    assert_eq!(b["data"]["generateCharacterImage"], Value::Null, "{b}");
    let b = ask_alice(r#"mutation { generateCoverPhoto(dramaId: "missing") { id } }"#).await;
    assert_eq!(b["data"]["generateCoverPhoto"], Value::Null, "{b}");
    let b = ask_alice(r#"mutation { generateCoverPhoto(dramaId: "a1") { id } }"#).await;
    assert_eq!(
        b["errors"][0]["extensions"]["code"], "PRECONDITION_FAILED",
        "{b}"
    );
    let b = ask_alice(
        r#"mutation { generateCharacterImage(dramaId: "a1", characterId: "c0") { id url } }"#,
    )
    .await;
    assert!(
        b["data"]["generateCharacterImage"]["url"].is_string(),
        "{b}"
    );

    let b = ask_alice(r#"mutation { generateDrama(id: "a1") { jobId status } }"#).await;
    let job = b["data"]["generateDrama"]["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut status = String::new();
    for _ in 0..500 {
        let (_, b) = graphql_with(
            &svc,
            k,
            "query($id: String!) { job(id: $id) { status totalJobs completedJobs } }",
            json!({"id": job}),
        )
        .await;
        status = b["data"]["job"]["status"].as_str().unwrap().to_owned();
        if status == "completed" || status == "failed" {
            assert_eq!(
                b["data"]["job"]["totalJobs"],
                b["data"]["job"]["completedJobs"]
            );
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, "completed");

    let b = ask_alice(
        r#"{ drama(id: "a1") { jobs { jobId type status key }
              characters { id jobs { key status } }
              episodes { id jobs { key } scenes { id imageUrl jobs { key type r2Url } } } } }"#,
    )
    .await;
    let drama = &b["data"]["drama"];
    assert!(drama["jobs"].as_array().unwrap().len() > 10, "{b}");
    let scene_jobs = field_of_each(&drama["episodes"][0]["scenes"][0]["jobs"], "key");
    assert!(
        scene_jobs.contains(&"storyboard:e0-s0-img"),
        "the scene's own storyboard: {scene_jobs:?}"
    );
    assert!(scene_jobs.contains(&"clip:e0-s0-vid"));
    let portrait_jobs = drama["characters"][0]["jobs"].as_array().unwrap();
    assert!(
        portrait_jobs
            .iter()
            .any(|j| j["key"] == "portrait:c0_portrait_front_halfbody")
    );
    let episode_keys = field_of_each(&drama["episodes"][0]["jobs"], "key");
    assert!(
        episode_keys.contains(&"episode:e0") && episode_keys.contains(&"stitch:e0_episode_video"),
        "{episode_keys:?}"
    );

    let b = ask_alice(r#"{ jobs(dramaId: "a1", status: "completed") { key status } }"#).await;
    assert!(
        b["data"]["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|j| j["status"] == "completed")
    );
    let (_, b) = graphql_with(
        &svc,
        &h.bob_key,
        "query($id: String!) { job(id: $id) { jobId } }",
        json!({"id": job}),
    )
    .await;
    assert_eq!(b["data"]["job"], Value::Null, "Bob cannot see Alice's job");
    let (_, b) = ask(&svc, &h.bob_key, r#"{ jobs(dramaId: "a1") { key } }"#).await;
    assert_eq!(b["data"]["jobs"], json!([]));

    let b = ask_alice(r#"mutation { createDrama(premise: "Two robots fall in love. 1 episode.", id: "robots") { dramaId jobId status message } }"#).await;
    assert_eq!(b["data"]["createDrama"]["dramaId"], "robots", "{b}");
    assert_eq!(b["data"]["createDrama"]["status"], "pending");
    worker.shutdown().await;
}

#[actix_web::test]
async fn a_request_body_of_the_wrong_shape_is_refused_with_400() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    for (body, names) in [
        (
            json!({"query": "{ me { id } }", "operationName": 42}),
            "operationName",
        ),
        (
            json!({"query": "{ me { id } }", "operationName": ["a"]}),
            "operationName",
        ),
        (
            json!({"query": "{ me { id } }", "operationName": {}}),
            "operationName",
        ),
        (
            json!({"query": "{ me { id } }", "variables": [1]}),
            "variables",
        ),
        (
            json!({"query": "{ me { id } }", "variables": "{}"}),
            "variables",
        ),
        (
            json!({"query": "{ me { id } }", "variables": 3}),
            "variables",
        ),
        (json!({"query": 7}), "query"),
        (json!({"query": ["{ me { id } }"]}), "query"),
        (json!({"variables": {}}), "query"),
        (json!("{ me { id } }"), "object"),
        (
            json!([{"query": "{ me { id } }", "operationName": 1}]),
            "operationName",
        ),
    ] {
        let (status, _, answer) =
            send(&svc, post_json("/graphql", &h.alice_key, body.clone())).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["code"], "bad_request", "{body}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(names), "{body}: {detail}");
    }

    // Nulls are absent members, and a well-typed request is answered as before.
    let (status, _, answer) = send(
        &svc,
        post_json(
            "/graphql",
            &h.alice_key,
            json!({"query": "query Me { me { id } }", "operationName": "Me", "variables": null}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.get("errors").is_none(), "{answer}");
    let (status, _, answer) = send(
        &svc,
        post_json(
            "/graphql",
            &h.alice_key,
            json!([{"query": "{ me { id } }", "operationName": null, "variables": {}}]),
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.is_array(), "{answer}");
}

#[actix_web::test]
async fn a_document_that_fails_validation_answers_data_null_beside_its_errors() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    // A required argument missing, a field that does not exist, and a syntax error: the old
    // server answered each with 200, `"data": null` and the errors.
    for query in ["{ drama { id } }", "{ dramas { nope } }", "{ dramas { id "] {
        let (status, body) = ask(&svc, &h.alice_key, query).await;
        assert_eq!(status, 200, "{query}: {body}");
        assert!(
            body.get("data").is_some_and(Value::is_null),
            "{query}: {body}"
        );
        assert!(body["errors"][0]["message"].is_string(), "{query}: {body}");
    }
    // A batch answers each member the same way.
    let (status, _, body) = send(
        &svc,
        post_json(
            "/graphql",
            &h.alice_key,
            json!([{"query": "{ drama { id } }"}, {"query": "{ dramaSummaries { id } }"}]),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body[0].get("data").is_some_and(Value::is_null), "{body}");
    assert_eq!(body[1]["data"]["dramaSummaries"], json!([]), "{body}");
}

#[actix_web::test]
async fn every_document_juniper_refuses_carries_the_code_of_the_error_table() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    let cases = [
        // Does not parse.
        (json!({"query": "{ dramas { id "}), "BAD_USER_INPUT"),
        // Names an operation the document does not hold.
        (
            json!({"query": "query A { dramas { id } }", "operationName": "B"}),
            "BAD_USER_INPUT",
        ),
        // Holds several operations and names none.
        (
            json!({"query": "query A { dramas { id } } query B { dramas { id } }"}),
            "BAD_USER_INPUT",
        ),
        // A subscription, which is served over `/subscriptions`, as GET refuses it (405).
        (
            json!({"query": r#"subscription { dramaChanged(id: "x") { version } }"#}),
            "METHOD_NOT_ALLOWED",
        ),
    ];
    for (body, code) in cases {
        let (status, _, answer) = send(&svc, post_json("/graphql", k, body.clone())).await;
        assert_eq!(status, 200, "{body}: {answer}");
        assert!(answer["data"].is_null(), "{body}: {answer}");
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], code,
            "{body}: {answer}"
        );
    }
    // Over GET, a document that does not parse is coded as over POST.
    let (status, _, answer) = send(
        &svc,
        get(
            &format!("/graphql?query={}", percent_encoded("{ dramas { id ")),
            k,
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{answer}"
    );
}
