//! Cross-tenant calls on PostgreSQL: Bob calls every REST route (from the OpenAPI document,
//! which `openapi.rs` keeps equal to the route table) and every GraphQL query, mutation and
//! subscription field (from introspection) with Alice's ids. None may succeed, and no answer
//! may carry anything of Alice's that Bob did not send himself. A route or field without an
//! entry in the tables below fails the test.

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::test::{self, TestRequest};
use drama_app::pipeline::Scope;
use drama_app::{App, Caller};
use drama_dal::{ApiKeyRepository as _, NewUser, UserRepository as _};
use drama_domain::{DramaId, UserId};
use drama_testkit::pg::ScratchDb;
use serde_json::{Value, json};

use crate::support::{
    Api, PNG, bearer, get, multipart, pg_app, plain_service_of, post_json, upload,
};

mod graphql;
mod routes;

use graphql::{graphql_fields, subscriptions};
use routes::{documented_operations, rest_calls};

/// Text only Alice's data contains; Bob never sends it.
const PRIVATE: &str = "ALICE-PRIVATE";

/// What Alice owns, by id.
struct Alice {
    user: UserId,
    key: String,
    key_id: String,
    job: String,
    library_id: String,
    object_key: String,
}

struct World {
    db: ScratchDb,
    pool: sqlx::PgPool,
    app: App,
    alice: Alice,
    bob_key: String,
}

/// Alice's key name is private; Bob's is not.
fn key_name(user: &str) -> String {
    if user == "alice" {
        format!("{user} {PRIVATE}")
    } else {
        user.to_owned()
    }
}

async fn world() -> World {
    let db = ScratchDb::create("api_tenancy").await;
    let pool = db.pool().await;
    let (store, app) = pg_app(&pool).await;
    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        let user = UserId::random();
        store.create_user(&NewUser::new(user)).await.unwrap();
        let created = store
            .create_api_key(user, &key_name(name), &[], None)
            .await
            .unwrap();
        users.push((user, created));
    }
    let (alice, alice_key) = (users[0].0, users[0].1.key.clone());
    let key_id = users[0].1.meta.id.to_string();
    let svc = service(&app).await;

    let mut drama = drama_testkit::builders::drama_json("alices", 2, 1, 1);
    drama["title"] = json!(format!("{PRIVATE} title"));
    drama["characters"][0]["name"] = json!(format!("{PRIVATE} name"));
    let (status, text) = call(
        &svc,
        post_json("/dramas", &alice_key, json!({ "drama": drama })),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let started = app
        .generate(
            &Caller::user(alice),
            &DramaId::parse("alices").unwrap(),
            Scope::Drama,
            false,
        )
        .await
        .unwrap();
    let body = multipart(
        &[
            ("project_name", "alices-project"),
            ("asset_type", "image"),
            ("tag", "character"),
            ("metadata", &json!({ "note": PRIVATE }).to_string()),
        ],
        Some(("private.png", "image/png", PNG)),
        false,
    );
    let (status, text) = call(&svc, upload(&alice_key, body)).await;
    assert_eq!(status, 200, "{text}");
    let uploaded: Value = serde_json::from_str(&text).unwrap();
    World {
        db,
        pool,
        app,
        alice: Alice {
            user: alice,
            key: alice_key,
            key_id,
            job: started.job_id.to_string(),
            library_id: uploaded["asset_id"].as_str().unwrap().to_owned(),
            object_key: uploaded["r2_key"].as_str().unwrap().to_owned(),
        },
        bob_key: users[1].1.key.clone(),
    }
}

async fn service(app: &App) -> impl Api + use<> {
    plain_service_of(app.clone()).await
}

/// Status and body text; a stream that does not end within a few seconds fails the test.
async fn call(svc: &impl Api, request: TestRequest) -> (u16, String) {
    let response = test::call_service(svc, request.to_request()).await;
    let status = response.status().as_u16();
    let body = tokio::time::timeout(Duration::from_secs(5), test::read_body(response))
        .await
        .unwrap_or_else(|_| panic!("a {status} answer kept streaming"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// How an answer to Bob must look.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// Refused: a 4xx.
    Refused,
    /// About Bob's own things (lists, his own uploads and keys) or nobody's (health, docs):
    /// any status below 500, and nothing of Alice's.
    Own,
    /// Covered field by field by the GraphQL part of this test.
    GraphQl,
}

/// The markers of Alice's data that `request` (what Bob sent) does not itself contain.
fn leaks(alice: &Alice, request: &str, answer: &str) -> Vec<String> {
    let markers = [
        PRIVATE.to_owned(),
        alice.user.to_string(),
        alice.job.clone(),
        alice.library_id.clone(),
        alice.key_id.clone(),
        alice.object_key.clone(),
    ];
    markers
        .into_iter()
        .filter(|m| !request.contains(m.as_str()) && answer.contains(m.as_str()))
        .collect()
}

fn judge(alice: &Alice, what: &str, request: &str, expect: Expect, status: u16, text: &str) {
    let leaked = leaks(alice, request, text);
    assert!(
        leaked.is_empty(),
        "{what}: the answer ({status}) carries {leaked:?}: {text}"
    );
    match expect {
        Expect::Refused => {
            assert!(
                (400..500).contains(&status),
                "{what} answered {status}: {text}"
            );
        }
        Expect::Own => assert!(status < 500, "{what} answered {status}: {text}"),
        Expect::GraphQl => {}
    }
}

#[actix_web::test]
async fn bob_can_reach_nothing_of_alices_through_any_route_or_field() {
    let w = world().await;
    let a = &w.alice;
    let svc = service(&w.app).await;

    // Every documented operation has an entry, and every entry is documented.
    let calls = rest_calls(a);
    let listed: BTreeSet<(String, String)> = calls
        .iter()
        .map(|(m, p, ..)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    let documented = documented_operations();
    let missing: Vec<_> = documented.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes without a cross-tenant entry: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "entries for routes that do not exist: {stale:?}"
    );

    for (method, path, uri, body, expect) in &calls {
        if uri.is_empty() {
            continue;
        }
        let mut request = TestRequest::default()
            .method(method.to_uppercase().parse().unwrap())
            .uri(uri)
            .insert_header(bearer(&w.bob_key));
        let sent = format!("{uri} {}", body.clone().unwrap_or_default());
        if let Some(body) = body {
            request = request.set_json(body);
        }
        let (status, text) = call(&svc, request).await;
        judge(
            a,
            &format!("{method} {path}"),
            &sent,
            *expect,
            status,
            &text,
        );
    }

    // An upload that names Alice lands in Bob's own library.
    let body = multipart(
        &[
            ("project_name", "alices-project"),
            ("asset_type", "image"),
            ("tag", "character"),
            ("user_id", &a.user.to_string()),
        ],
        Some(("bob.png", "image/png", PNG)),
        false,
    );
    let (status, text) = call(&svc, upload(&w.bob_key, body)).await;
    judge(
        a,
        "post /asset-library/upload",
        &a.user.to_string(),
        Expect::Own,
        status,
        &text,
    );
    assert!(!text.contains(&format!("{}/", a.user)), "{text}");

    graphql_fields(&w, &svc).await;
    subscriptions(&w).await;
    alice_lost_nothing(&w, &svc).await;
    w.pool.close().await;
    w.db.drop_it().await;
}

/// After every attempt, Alice's drama, run, upload and key are as they were.
async fn alice_lost_nothing(w: &World, svc: &impl Api) {
    let a = &w.alice;
    let get = |uri: String| get(&uri, &a.key);
    let (status, text) = call(svc, get("/dramas/alices".into())).await;
    assert_eq!(status, 200, "{text}");
    let drama: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(drama["title"], format!("{PRIVATE} title"));
    assert_eq!(drama["characters"][0]["name"], format!("{PRIVATE} name"));
    let (status, text) = call(svc, get(format!("/jobs/{}", a.job))).await;
    assert_eq!(status, 200, "{text}");
    let run: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(run["status"], "pending", "{text}");
    assert_eq!(run["counts"]["cancelled"], 0, "{text}");
    let (status, _) = call(
        svc,
        get(format!(
            "/asset-library/{}?project_name=alices-project&asset_type=image",
            a.library_id
        )),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = call(svc, get(format!("/media/{}", a.object_key))).await;
    assert_eq!(status, 200);
    let (_, text) = call(svc, get("/api-keys".into())).await;
    let keys: Value = serde_json::from_str(&text).unwrap();
    let revoked = keys.to_string().contains("revoked_at\":\"");
    assert!(!revoked, "{keys}");
    let runs: i64 = sqlx::query_scalar(
        "select count(*) from public.jobs where node_type = 'run' and owner_id = $1",
    )
    .bind(a.user.0)
    .fetch_one(&w.pool)
    .await
    .unwrap();
    assert_eq!(runs, 1, "Bob started nothing on Alice's behalf");
}

/// Creating a drama whose id another user holds answers exactly what creating one's own
/// existing id answers: the answer does not tell whose it is.
#[actix_web::test]
async fn a_taken_id_answers_the_same_whoever_holds_it() {
    let w = world().await;
    let svc = service(&w.app).await;
    let body = json!({"drama": drama_testkit::builders::drama_json("alices", 1, 1, 1)});
    let mut answers = Vec::new();
    for key in [&w.alice.key, &w.bob_key] {
        let (status, text) = call(&svc, post_json("/dramas", key, body.clone())).await;
        answers.push((status, text));
    }
    assert_eq!(answers[0].0, 409, "{}", answers[0].1);
    assert_eq!(answers[0], answers[1]);
    w.pool.close().await;
    w.db.drop_it().await;
}
