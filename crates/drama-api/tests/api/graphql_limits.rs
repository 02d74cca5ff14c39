//! The bounds of GraphQL requests: batch length, aliases, price and depth, each refused with
//! 400 naming the limit (in the envelope and in GraphQL `errors`), and what stays allowed.

use drama_api::graphql::GraphqlLimits;
use drama_api::{ErrorCode, HttpSettings};
use serde_json::{Value, json};

use crate::support::{FULL_INTROSPECTION, Harness, create_drama, get, graphql, post_json, send};

/// Asserts a refusal naming `code` (in the envelope and in GraphQL's `errors`).
/// A request error naming one row of the error table, in the REST envelope and in GraphQL's
/// `errors` alike.
fn assert_refused(status: u16, body: &Value, kind: ErrorCode) {
    assert_eq!(status, kind.status().as_u16(), "{body}");
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], kind.code(), "{body}");
    assert_eq!(body["detail"]["code"], kind.code(), "{body}");
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        kind.graphql(),
        "{body}"
    );
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert!(
        body.get("data").is_none(),
        "a request error has no data: {body}"
    );
}

#[actix_web::test]
async fn a_batch_of_a_hundred_operations_is_refused_and_ten_are_served() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    create_drama(&svc, &h.alice_key, "a1", (1, 1, 1)).await;
    let one = json!({"query": "{ dramaSummaries(limit: 10) { id } }"});

    let hundred: Vec<Value> = (0..100).map(|_| one.clone()).collect();
    let (s, _, b) = send(&svc, post_json("/graphql", &h.alice_key, &hundred)).await;
    assert_refused(s, &b, ErrorCode::BatchTooLarge);
    assert_eq!(b["detail"]["limit"], 10);
    assert_eq!(b["detail"]["found"], 100);

    let ten: Vec<Value> = (0..10).map(|_| one.clone()).collect();
    let (s, _, b) = send(&svc, post_json("/graphql", &h.alice_key, &ten)).await;
    assert_eq!(s, 200, "{b}");
    let answers = b.as_array().unwrap();
    assert_eq!(answers.len(), 10);
    assert!(
        answers
            .iter()
            .all(|a| a["data"]["dramaSummaries"][0]["id"] == "a1"),
        "{b}"
    );
}

#[actix_web::test]
async fn a_document_of_a_thousand_aliases_is_refused() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let aliases = |n: usize| {
        let fields: Vec<String> = (0..n)
            .map(|i| format!("a{i}: dramaSummaries(limit: 100) {{ id }}"))
            .collect();
        format!("{{ {} }}", fields.join(" "))
    };
    let (s, _, b) = send(
        &svc,
        post_json("/graphql", &h.alice_key, json!({"query": aliases(1000)})),
    )
    .await;
    assert_refused(s, &b, ErrorCode::TooManyAliases);
    assert_eq!(b["errors"][0]["extensions"]["limit"], 30);
    assert_eq!(b["errors"][0]["extensions"]["found"], 1000);

    // Through fragments: an alias counts wherever its fragment is spread.
    let spread = format!(
        "fragment F on Query {{ {} }} {{ ...F x: dramaSummaries(limit: 1) {{ id }} }}",
        (0..30)
            .map(|i| format!("f{i}: dramaSummaries(limit: 1) {{ id }}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let (s, b) = graphql(&svc, &h.alice_key, &spread).await;
    assert_refused(s, &b, ErrorCode::TooManyAliases);

    // At the limit: served.
    let (s, _, b) = send(
        &svc,
        post_json("/graphql", &h.alice_key, json!({"query": aliases(30)})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["errors"].is_null(), "{b}");

    // GET is bounded the same way.
    let uri = format!(
        "/graphql?query={}",
        aliases(31)
            .replace(' ', "%20")
            .replace('{', "%7B")
            .replace('}', "%7D")
    );
    let (s, _, b) = send(&svc, get(&uri, &h.alice_key)).await;
    assert_refused(s, &b, ErrorCode::TooManyAliases);
}

#[actix_web::test]
async fn lists_are_priced_by_their_limit() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    // 1 + 100 × (1 + 5 × (1 + 5 × (1 + 5 × 3))) = 40,601 for one page of complete dramas.
    let page = "dramas(limit: $n) { episodes { scenes { jobs { jobId status createdAt } } } }";
    let query = format!("query($n: Int!) {{ a: {page} b: {page} c: {page} }}");
    let (s, _, b) = send(
        &svc,
        post_json(
            "/graphql",
            &h.alice_key,
            json!({"query": query, "variables": {"n": 100}}),
        ),
    )
    .await;
    assert_refused(s, &b, ErrorCode::QueryTooComplex);
    assert_eq!(b["detail"]["limit"], 100_000);
    assert_eq!(b["detail"]["found"], 3 * 40_601);

    // The same document with smaller pages costs less and is served.
    let (s, _, b) = send(
        &svc,
        post_json(
            "/graphql",
            &h.alice_key,
            json!({"query": query, "variables": {"n": 20}}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["errors"].is_null(), "{b}");

    // A batch is priced as a whole: three operations of 40,601 each.
    let one = json!({"query": format!("query($n: Int!) {{ {page} }}"), "variables": {"n": 100}});
    let (s, _, b) = send(
        &svc,
        post_json("/graphql", &h.alice_key, json!([one, one, one])),
    )
    .await;
    assert_refused(s, &b, ErrorCode::QueryTooComplex);
    let (s, _, b) = send(&svc, post_json("/graphql", &h.alice_key, json!([one, one]))).await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn too_deep_documents_are_refused_with_their_code() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let deep = format!(
        "{{ {} __typename {} }}",
        "dramas(limit: 1) { episodes { scenes { ".repeat(6),
        "} } } ".repeat(6)
    );
    let (s, b) = graphql(&svc, &h.alice_key, &deep).await;
    assert_refused(s, &b, ErrorCode::QueryTooDeep);
    assert_eq!(b["detail"]["limit"], 16);
}

#[actix_web::test]
async fn the_introspection_query_of_graphiql_is_served() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let (s, _, b) = send(
        &svc,
        post_json(
            "/graphql",
            &h.alice_key,
            json!({"query": FULL_INTROSPECTION, "operationName": "IntrospectionQuery"}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(b["errors"].is_null(), "{b}");
    assert!(
        !b["data"]["__schema"]["types"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[actix_web::test]
async fn the_limits_are_settings() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        graphql: GraphqlLimits {
            max_batch: 2,
            max_aliases: 1,
            max_complexity: 50,
            max_depth: 3,
        },
        ..Harness::settings()
    };
    let svc = h.service(settings).await;
    let call = |body: Value| post_json("/graphql", &h.alice_key, body);
    let one = json!({"query": "{ dramaSummaries(limit: 1) { id } }"});
    let (s, _, b) = send(&svc, call(json!([one, one, one]))).await;
    assert_refused(s, &b, ErrorCode::BatchTooLarge);
    let (s, _, b) = send(&svc, call(json!([one, one]))).await;
    assert_eq!(s, 200, "{b}");
    let (s, _, b) = send(
        &svc,
        call(json!({"query": "{ a: dramaSummaries(limit: 1) { id } b: dramaSummaries(limit: 1) { id } }"})),
    )
    .await;
    assert_refused(s, &b, ErrorCode::TooManyAliases);
    let (s, _, b) = send(
        &svc,
        call(json!({"query": "{ dramaSummaries(limit: 50) { id } }"})),
    )
    .await;
    assert_refused(s, &b, ErrorCode::QueryTooComplex);
    let (s, _, b) = send(
        &svc,
        call(json!({"query": "{ dramas(limit: 1) { episodes { scenes { id } } } }"})),
    )
    .await;
    assert_refused(s, &b, ErrorCode::QueryTooDeep);
}
