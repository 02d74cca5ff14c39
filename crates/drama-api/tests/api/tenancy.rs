//! Cross-tenant calls on PostgreSQL: Bob calls every REST route (from the OpenAPI document,
//! which `openapi.rs` keeps equal to the route table) and every GraphQL query, mutation and
//! subscription field (from introspection) with Alice's ids. None may succeed, and no answer
//! may carry anything of Alice's that Bob did not send himself. A route or field without an
//! entry in the tables below fails the test.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use actix_web::test::{self, TestRequest};
use drama_api::ApiState;
use drama_app::pipeline::Scope;
use drama_app::pipeline::engine::EngineJobs;
use drama_app::{App, Caller, Ports};
use drama_dal::{ApiKeyRepository as _, NewUser, UserRepository as _};
use drama_domain::{DramaId, UserId};
use drama_postgres::PgStore;
use drama_postgres::jobs::PgJobStore;
use drama_testkit::pg::ScratchDb;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::library::{BOUNDARY, PNG, multipart};
use crate::support::{Harness, bearer, listen_app};

const DOC: &str = include_str!("../../openapi.json");

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
    drama_postgres::migrate(&pool).await.unwrap();
    let store = Arc::new(PgStore::new(pool.clone()));
    let jobs = Arc::new(PgJobStore::new(pool.clone()));
    let app = App::new(Ports {
        store: store.clone(),
        assets: Arc::new(drama_assets::MemoryStore::default()),
        generation: store.clone(),
        jobs: Arc::new(EngineJobs(jobs)),
        ai: drama_ai::AiProviders::offline(0),
    });
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
        TestRequest::post()
            .uri("/dramas")
            .insert_header(bearer(&alice_key))
            .set_json(json!({ "drama": drama })),
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
    let (status, text) = call(
        &svc,
        TestRequest::post()
            .uri("/asset-library/upload")
            .insert_header(bearer(&alice_key))
            .insert_header((
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            ))
            .set_payload(body),
    )
    .await;
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

async fn service(
    app: &App,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse,
    Error = actix_web::Error,
> + use<> {
    test::init_service(
        actix_web::App::new()
            .wrap(from_fn(drama_api::middleware::request_context))
            .configure(drama_api::configure(ApiState::new(
                app.clone(),
                Harness::settings(),
            ))),
    )
    .await
}

/// Status and body text; a stream that does not end within a few seconds fails the test.
async fn call(
    svc: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
    request: TestRequest,
) -> (u16, String) {
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

/// Every REST route, as Bob calls it with Alice's ids: method, documented path, URI, JSON body
/// (None: no body), expectation.
fn rest_calls(a: &Alice) -> Vec<(&'static str, &'static str, String, Option<Value>, Expect)> {
    use Expect::{GraphQl, Own, Refused};
    let d = "/dramas/alices";
    let s = format!("{d}/episodes/e0/scenes/e0-s0");
    let lib = format!(
        "/asset-library/{}?project_name=alices-project&asset_type=image&user_id={}",
        a.library_id, a.user
    );
    let j = format!("/jobs/{}", a.job);
    let none = None;
    let empty = Some(json!({}));
    vec![
        ("get", "/health", "/health".into(), none.clone(), Own),
        ("get", "/ready", "/ready".into(), none.clone(), Own),
        ("get", "/", "/".into(), none.clone(), Own),
        (
            "get",
            "/openapi.json",
            "/openapi.json".into(),
            none.clone(),
            Own,
        ),
        ("get", "/docs", "/docs".into(), none.clone(), Own),
        ("get", "/ui", "/ui".into(), none.clone(), Own),
        ("get", "/ui/", "/ui/".into(), none.clone(), Own),
        ("get", "/ui/{file}", "/ui/app.js".into(), none.clone(), Own),
        (
            "post",
            "/ui/sign-in",
            "/ui/sign-in".into(),
            Some(json!({"code": "x"})),
            Refused,
        ),
        (
            "get",
            "/dramas",
            format!("/dramas?user_id={}", a.user),
            none.clone(),
            Own,
        ),
        (
            "post",
            "/dramas",
            "/dramas".into(),
            Some(json!({"drama": drama_testkit::builders::drama_json("alices", 1, 1, 1)})),
            Refused,
        ),
        ("get", "/dramas/{drama_id}", d.into(), none.clone(), Refused),
        (
            "patch",
            "/dramas/{drama_id}",
            d.into(),
            Some(json!({"title": "Bob's"})),
            Refused,
        ),
        (
            "delete",
            "/dramas/{drama_id}",
            d.into(),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/characters",
            format!("{d}/characters"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/characters/{character_id}",
            format!("{d}/characters/c0"),
            none.clone(),
            Refused,
        ),
        (
            "patch",
            "/dramas/{drama_id}/characters/{character_id}",
            format!("{d}/characters/c0"),
            Some(json!({"name": "Bob's"})),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes",
            format!("{d}/episodes"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}",
            format!("{d}/episodes/e0"),
            none.clone(),
            Refused,
        ),
        (
            "patch",
            "/dramas/{drama_id}/episodes/{episode_id}",
            format!("{d}/episodes/e0"),
            Some(json!({"title": "Bob's"})),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes",
            format!("{d}/episodes/e0/scenes"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}",
            s.clone(),
            none.clone(),
            Refused,
        ),
        (
            "patch",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}",
            s.clone(),
            Some(json!({"description": "Bob's"})),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets",
            format!("{s}/assets"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}",
            format!("{s}/assets/e0-s0-img"),
            none.clone(),
            Refused,
        ),
        (
            "patch",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}",
            format!("{s}/assets/e0-s0-img"),
            Some(json!({"prompt": "Bob's"})),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/improve",
            format!("{d}/improve"),
            Some(json!({"feedback": "more", "newDramaId": "bobs-copy"})),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/critic",
            format!("{d}/critic"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/critique",
            format!("{d}/critique"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/generate",
            format!("{d}/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/episodes/{episode_id}/generate",
            format!("{d}/episodes/e0/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/generate",
            format!("{s}/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}/generate",
            format!("{s}/assets/e0-s0-img/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/episodes/{episode_id}/stitch",
            format!("{d}/episodes/e0/stitch"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/characters/{character_id}/audition",
            format!("{d}/characters/c0/audition"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/characters/{character_id}/audition",
            format!("{d}/characters/c0/audition"),
            none.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/characters/{character_id}/generate",
            format!("{d}/characters/c0/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/cover_photo",
            format!("{d}/cover_photo"),
            none.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/cover_photo",
            format!("{d}/cover_photo"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            // Bob's own runs about that id: none, the same answer as for a missing drama.
            "/dramas/{drama_id}/jobs",
            format!("{d}/jobs"),
            none.clone(),
            Own,
        ),
        (
            "get",
            "/dramas/{drama_id}/jobs/{job_id}",
            format!("{d}/jobs/{}", a.job),
            none.clone(),
            Refused,
        ),
        ("get", "/jobs/{job_id}", j.clone(), none.clone(), Refused),
        (
            "post",
            "/jobs/{job_id}/cancel",
            format!("{j}/cancel"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/jobs/{job_id}/resume",
            format!("{j}/resume"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            "/jobs/{job_id}/events",
            format!("{j}/events"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/jobs/{job_id}/graph",
            format!("{j}/graph"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/events",
            format!("{d}/events"),
            none.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/estimate",
            format!("{d}/estimate"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            "/asset-library/list",
            format!(
                "/asset-library/list?project_name=alices-project&user_id={}",
                a.user
            ),
            none.clone(),
            Own,
        ),
        // Multipart: called separately (below); an upload naming Alice lands in Bob's library.
        (
            "post",
            "/asset-library/upload",
            String::new(),
            none.clone(),
            Own,
        ),
        (
            "get",
            "/asset-library/{asset_id}",
            lib.clone(),
            none.clone(),
            Refused,
        ),
        (
            "delete",
            "/asset-library/{asset_id}",
            lib.clone(),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/asset-library/{asset_id}/metadata",
            lib.replacen('?', "/metadata?", 1),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/media/{key}",
            format!("/media/{}", a.object_key),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/files/{key}",
            format!("/files/{}", a.object_key),
            none.clone(),
            Refused,
        ),
        (
            "put",
            "/files/{key}",
            format!("/files/{}", a.object_key),
            empty.clone(),
            Refused,
        ),
        ("get", "/graphql", String::new(), none.clone(), GraphQl),
        ("post", "/graphql", String::new(), none.clone(), GraphQl),
        (
            "get",
            "/subscriptions",
            String::new(),
            none.clone(),
            GraphQl,
        ),
        ("get", "/api-keys", "/api-keys".into(), none.clone(), Own),
        (
            "post",
            "/api-keys",
            "/api-keys".into(),
            Some(json!({"name": "bob's"})),
            Own,
        ),
        (
            "delete",
            "/api-keys/{key_id}",
            format!("/api-keys/{}", a.key_id),
            none.clone(),
            Refused,
        ),
    ]
}

/// The (method, path) pairs of the OpenAPI document.
fn documented_operations() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(DOC).unwrap();
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                found.insert((method.to_owned(), path.clone()));
            }
        }
    }
    found
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
    let (status, text) = call(
        &svc,
        TestRequest::post()
            .uri("/asset-library/upload")
            .insert_header(bearer(&w.bob_key))
            .insert_header((
                "content-type",
                format!("multipart/form-data; boundary={BOUNDARY}"),
            ))
            .set_payload(body),
    )
    .await;
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

/// Every query and mutation field, as Bob calls it with Alice's ids.
fn graphql_calls(a: &Alice) -> Vec<(&'static str, &'static str, String, Expect)> {
    use Expect::{Own, Refused};
    let (job, user) = (&a.job, a.user);
    vec![
        ("query", "drama", r#"{ drama(id: "alices") { id title } }"#.into(), Refused),
        (
            "query",
            "dramaSummaries",
            format!(r#"{{ dramaSummaries(userId: "{user}") {{ id title }} }}"#),
            Own,
        ),
        ("query", "dramas", "{ dramas { id title characters { name } } }".into(), Own),
        ("query", "job", format!(r#"{{ job(id: "{job}") {{ id status }} }}"#), Refused),
        // Bob's own runs about that id: none, as for a missing drama.
        ("query", "jobs", r#"{ jobs(dramaId: "alices") { id status } }"#.into(), Own),
        (
            "mutation",
            "updateDrama",
            r#"mutation { updateDrama(id: "alices", input: {title: "Bob's"}) { id } }"#.into(),
            Refused,
        ),
        ("mutation", "deleteDrama", r#"mutation { deleteDrama(id: "alices") }"#.into(), Refused),
        (
            "mutation",
            "createDrama",
            r#"mutation { createDrama(premise: "mine", id: "alices") { dramaId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "improveDrama",
            r#"mutation { improveDrama(id: "alices", feedback: "more", newDramaId: "bobs-copy") { dramaId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "critiqueDrama",
            r#"mutation { critiqueDrama(id: "alices") { dramaId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "generateDrama",
            r#"mutation { generateDrama(id: "alices") { jobId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "generateEpisode",
            r#"mutation { generateEpisode(dramaId: "alices", episodeId: "e0") { jobId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "generateScene",
            r#"mutation { generateScene(dramaId: "alices", sceneId: "e0-s0") { jobId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "generateAsset",
            r#"mutation { generateAsset(dramaId: "alices", assetId: "e0-s0-img") { jobId } }"#.into(),
            Refused,
        ),
        ("mutation", "cancelJob", format!(r#"mutation {{ cancelJob(id: "{job}") {{ id }} }}"#), Refused),
        ("mutation", "resumeJob", format!(r#"mutation {{ resumeJob(id: "{job}") {{ id }} }}"#), Refused),
        (
            "mutation",
            "generateCharacterImage",
            format!(
                r#"mutation {{ generateCharacterImage(dramaId: "alices", characterId: "c0", userId: "{user}") {{ id }} }}"#
            ),
            Refused,
        ),
        (
            "mutation",
            "generateCoverPhoto",
            format!(r#"mutation {{ generateCoverPhoto(dramaId: "alices", userId: "{user}") {{ id }} }}"#),
            Refused,
        ),
    ]
}

/// Every subscription field, as Bob subscribes with Alice's ids.
fn subscription_calls(a: &Alice) -> Vec<(&'static str, String)> {
    vec![
        (
            "dramaChanged",
            r#"subscription { dramaChanged(id: "alices") { version } }"#.into(),
        ),
        (
            "jobProgress",
            format!(
                r#"subscription {{ jobProgress(jobId: "{}") {{ eventId state }} }}"#,
                a.job
            ),
        ),
    ]
}

async fn introspect(
    svc: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
    key: &str,
) -> Vec<(String, String)> {
    let query = "{ __schema { queryType { fields { name } } mutationType { fields { name } } \
                 subscriptionType { fields { name } } } }";
    let (status, text) = call(
        svc,
        TestRequest::post()
            .uri("/graphql")
            .insert_header(bearer(key))
            .set_json(json!({ "query": query })),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let mut fields = Vec::new();
    for (root, kind) in [
        ("queryType", "query"),
        ("mutationType", "mutation"),
        ("subscriptionType", "subscription"),
    ] {
        for f in body["data"]["__schema"][root]["fields"].as_array().unwrap() {
            fields.push((kind.to_owned(), f["name"].as_str().unwrap().to_owned()));
        }
    }
    fields
}

async fn graphql_fields(
    w: &World,
    svc: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
) {
    let a = &w.alice;
    let calls = graphql_calls(a);
    let subscriptions = subscription_calls(a);
    let schema: BTreeSet<(String, String)> =
        introspect(svc, &w.bob_key).await.into_iter().collect();
    let listed: BTreeSet<(String, String)> = calls
        .iter()
        .map(|(k, f, ..)| ((*k).to_owned(), (*f).to_owned()))
        .chain(
            subscriptions
                .iter()
                .map(|(f, _)| ("subscription".to_owned(), (*f).to_owned())),
        )
        .collect();
    let missing: Vec<_> = schema.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&schema).collect();
    assert!(
        missing.is_empty(),
        "GraphQL fields without a cross-tenant entry: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "entries for fields that do not exist: {stale:?}"
    );

    for (kind, field, document, expect) in &calls {
        for method in ["POST", "GET"] {
            if method == "GET" && *kind == "mutation" {
                continue;
            }
            let request = if method == "POST" {
                TestRequest::post().set_json(json!({ "query": document }))
            } else {
                TestRequest::get().uri(&format!("/graphql?query={}", percent(document)))
            };
            let request = match method {
                "POST" => request.uri("/graphql"),
                _ => request,
            }
            .insert_header(bearer(&w.bob_key));
            let (status, text) = call(svc, request).await;
            let what = format!("{method} {kind} {field}");
            judge(a, &what, document, Expect::Own, status, &text);
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if *expect == Expect::Refused {
                let refused = body["errors"].as_array().is_some_and(|e| !e.is_empty())
                    || body["data"][*field].is_null();
                assert!(refused, "{what} succeeded: {text}");
            }
        }
    }
}

/// Percent-encodes everything but unreserved characters.
fn percent(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn subscriptions(w: &World) {
    let server = listen_app(w.app.clone(), Harness::settings());
    for (field, document) in subscription_calls(&w.alice) {
        let mut request = format!("ws://{}/subscriptions", server.base)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        let init = json!({"type": "connection_init", "payload": {"x-api-key": w.bob_key}});
        ws.send(Message::Text(init.to_string().into()))
            .await
            .unwrap();
        let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": document}});
        ws.send(Message::Text(subscribe.to_string().into()))
            .await
            .unwrap();
        let mut answers = Vec::new();
        // Until the subscription ends (error or complete) or a second of silence.
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        {
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "ping" || value["type"] == "pong" {
                continue;
            }
            answers.push(value.clone());
            if value["type"] == "error" || value["type"] == "complete" {
                break;
            }
        }
        let text = serde_json::to_string(&answers).unwrap();
        judge(&w.alice, field, &document, Expect::Own, 0, &text);
        let delivered = answers
            .iter()
            .any(|m| m["type"] == "next" && m["payload"]["errors"].is_null());
        assert!(!delivered, "subscription {field} delivered data: {text}");
        let refused = answers.iter().any(|m| {
            m["type"] == "error" || (m["type"] == "next" && !m["payload"]["errors"].is_null())
        });
        assert!(refused, "subscription {field} was not refused: {text}");
    }
}

/// After every attempt, Alice's drama, run, upload and key are as they were.
async fn alice_lost_nothing(
    w: &World,
    svc: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
) {
    let a = &w.alice;
    let get = |uri: String| TestRequest::get().uri(&uri).insert_header(bearer(&a.key));
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
        let (status, text) = call(
            &svc,
            TestRequest::post()
                .uri("/dramas")
                .insert_header(bearer(key))
                .set_json(body.clone()),
        )
        .await;
        answers.push((status, text));
    }
    assert_eq!(answers[0].0, 409, "{}", answers[0].1);
    assert_eq!(answers[0], answers[1]);
    w.pool.close().await;
    w.db.drop_it().await;
}
