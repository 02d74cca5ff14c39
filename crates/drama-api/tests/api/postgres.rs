//! The API on PostgreSQL: a GraphQL page of dramas with every nested part and every nested
//! `jobs` field costs a fixed handful of SQL statements, whatever the number of dramas.

use std::sync::Arc;

use actix_web::test;
use drama_app::pipeline::Scope;
use drama_app::{App, Caller};
use drama_dal::{ApiKeyRepository as _, DramaRepository as _, NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_postgres::PgStore;
use drama_testkit::StatementCounter;
use drama_testkit::pg::ScratchDb;
use serde_json::json;

use crate::support::{Api, graphql, pg_app_on, plain_service_of, post_json, send};

const NESTED: &str = "{ dramas(limit: 50) { id title jobs { type status } \
    characters { name url jobs { type status } } \
    episodes { title url jobs { type status } scenes { imageUrl videoUrl jobs { type status } } } } }";

/// The API over PostgreSQL through a statement-counting proxy, with one user and a key.
pub struct PgApi {
    db: ScratchDb,
    setup: sqlx::PgPool,
    pool: sqlx::PgPool,
    pub counter: StatementCounter,
    pub store: Arc<PgStore>,
    pub app: App,
    pub user: UserId,
    pub key: String,
}

impl PgApi {
    pub async fn start(name: &str) -> Self {
        let db = ScratchDb::create(name).await;
        let setup = db.pool().await;
        drama_postgres::migrate(&setup).await.unwrap();
        let counter = StatementCounter::start(&db.url()).await;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&counter.url(&db.url()))
            .await
            .unwrap();
        let (store, app) = pg_app_on(&pool);
        let user = UserId::random();
        store.create_user(&NewUser::new(user)).await.unwrap();
        let key = store
            .create_api_key(user, "pg", &[], None)
            .await
            .unwrap()
            .key;
        Self {
            db,
            setup,
            pool,
            counter,
            store,
            app,
            user,
            key,
        }
    }

    async fn service(&self) -> impl Api + use<> {
        plain_service_of(self.app.clone()).await
    }

    pub async fn finish(self) {
        self.pool.close().await;
        self.setup.close().await;
        self.db.drop_it().await;
    }
}

#[actix_web::test]
async fn a_nested_page_of_dramas_and_their_jobs_is_a_few_statements() {
    let pg = PgApi::start("api_nested").await;
    let (store, app, user, key, counter) = (&pg.store, &pg.app, pg.user, &pg.key, &pg.counter);
    let svc = pg.service().await;

    let mut counts = Vec::new();
    for total in [5, 20] {
        while store
            .list_summaries(user, &drama_dal::PageRequest::first(100))
            .await
            .unwrap()
            .items
            .len()
            < total
        {
            let n = store
                .list_summaries(user, &drama_dal::PageRequest::first(100))
                .await
                .unwrap()
                .items
                .len();
            let d = drama_testkit::builders::drama(&format!("d{n:02}"), 2, 2, 3);
            store.create(user, &d).await.unwrap();
            // Each drama gets a run (nothing works on it: it stays pending, with every node).
            app.generate(&Caller::user(user), &d.id, Scope::Drama, false)
                .await
                .unwrap();
        }
        // Warm: the key and the dramas are cached after the first request, as in a server.
        let (status, body) = graphql(&svc, key, NESTED).await;
        assert_eq!(status, 200, "{body}");
        counter.reset();
        let (_, body) = graphql(&svc, key, NESTED).await;
        assert!(body["errors"].is_null(), "{body}");
        let dramas = body["data"]["dramas"].as_array().unwrap();
        assert_eq!(dramas.len(), total);
        let scene_jobs = dramas[0]["episodes"][0]["scenes"][0]["jobs"]
            .as_array()
            .unwrap();
        assert!(
            scene_jobs.iter().any(|j| j["type"] == "generate_image"),
            "a scene shows the jobs of its storyboard: {scene_jobs:?}"
        );
        assert!(!dramas[0]["jobs"].as_array().unwrap().is_empty());
        counts.push((total, counter.statements(), counter.statement_sql()));
    }
    let (_, five, _) = &counts[0];
    let (_, twenty, sql) = &counts[1];
    assert_eq!(
        five, twenty,
        "statements do not grow with the page: {counts:#?}"
    );
    assert!(*twenty <= 3, "{sql:#?}");
    drop(svc);
    pg.finish().await;
}

/// What the console reads and writes, on PostgreSQL: the overview page costs the same few
/// statements whatever its size; keys, estimates and run graphs behave as in memory.
#[actix_web::test]
async fn the_console_api_on_postgres() {
    let pg = PgApi::start("api_console").await;
    let (store, app, user, key) = (&pg.store, &pg.app, pg.user, pg.key.clone());
    let svc = pg.service().await;
    let mut counts = Vec::new();
    for total in [4, 16] {
        for n in counts.len() * 4..total {
            let d = drama_testkit::builders::drama(&format!("o{n:02}"), 1, 1, 2);
            store.create(user, &d).await.unwrap();
            if n % 2 == 0 {
                app.generate(&Caller::user(user), &d.id, Scope::Drama, false)
                    .await
                    .unwrap();
            }
        }
        let page = "/dramas?view=overview&limit=50";
        send(&svc, crate::support::get(page, &key)).await;
        pg.counter.reset();
        let (status, _, body) = send(&svc, crate::support::get(page, &key)).await;
        assert_eq!(status, 200, "{body}");
        let dramas = body["dramas"].as_array().unwrap();
        assert_eq!(dramas.len(), total);
        let with_runs = dramas.iter().filter(|d| d["latestRun"].is_object()).count();
        assert_eq!(with_runs, total / 2, "{body}");
        counts.push((total, pg.counter.statements(), pg.counter.statement_sql()));
    }
    assert_eq!(counts[0].1, counts[1].1, "{counts:#?}");
    assert!(counts[1].1 <= 3, "{counts:#?}");

    // Keys: made, listed without secrets, revoked and refused.
    let (status, _, made) = send(
        &svc,
        post_json("/api-keys", &key, json!({"name": "pg key"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let secret = made["key"].as_str().unwrap().to_owned();
    let (_, _, list) = send(&svc, crate::support::get("/api-keys", &key)).await;
    assert_eq!(list["keys"].as_array().unwrap().len(), 2, "{list}");
    let (status, _, _) = send(&svc, crate::support::get("/dramas", &secret)).await;
    assert_eq!(status, 200);
    let revoke = test::TestRequest::delete()
        .uri(&format!("/api-keys/{}", made["id"].as_str().unwrap()))
        .insert_header(crate::support::bearer(&key));
    let (status, _, _) = send(&svc, revoke).await;
    assert_eq!(status, 200);
    let (status, _, _) = send(&svc, crate::support::get("/dramas", &secret)).await;
    assert_eq!(status, 401);

    // An estimate, then the run it describes, as a graph.
    let (status, _, estimate) =
        send(&svc, crate::support::post("/dramas/o01/estimate", &key)).await;
    assert_eq!(status, 200, "{estimate}");
    let (_, _, started) = send(&svc, crate::support::post("/dramas/o01/generate", &key)).await;
    let job = started["jobId"].as_str().unwrap();
    let (status, _, graph) = send(
        &svc,
        crate::support::get(&format!("/jobs/{job}/graph"), &key),
    )
    .await;
    assert_eq!(status, 200, "{graph}");
    let tasks = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["nodeType"] == "task")
        .count();
    assert_eq!(tasks as u64, estimate["tasks"].as_u64().unwrap(), "{graph}");
    let deps: usize = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["dependencies"].as_array().unwrap().len())
        .sum();
    assert_eq!(deps, graph["edges"].as_array().unwrap().len());
    drop(svc);
    pg.finish().await;
}

/// A drama's list of jobs shows every settled run with its result, on PostgreSQL in the same
/// few statements whatever the number of runs (their nodes are read together, not per run).
#[actix_web::test]
async fn a_dramas_job_list_with_results_is_a_few_statements() {
    let pg = PgApi::start("api_job_list").await;
    let (store, app, user, key) = (&pg.store, &pg.app, pg.user, pg.key.clone());
    let svc = pg.service().await;
    let caller = Caller::user(user);
    let d = drama_testkit::builders::drama("listed", 1, 1, 2);
    store.create(user, &d).await.unwrap();
    let mut counts = Vec::new();
    for total in [2, 6] {
        while app
            .jobs_of_drama(&caller, &d.id, false)
            .await
            .unwrap()
            .len()
            < total
        {
            // Nothing works on the run: cancelling it settles it at once.
            let started = app
                .generate(&caller, &d.id, Scope::Drama, true)
                .await
                .unwrap();
            app.cancel_job(&caller, started.job_id).await.unwrap();
        }
        let page = "/dramas/listed/jobs";
        send(&svc, crate::support::get(page, &key)).await;
        pg.counter.reset();
        let (status, _, body) = send(&svc, crate::support::get(page, &key)).await;
        assert_eq!(status, 200, "{body}");
        let jobs = body["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), total, "{body}");
        for job in jobs {
            assert_eq!(job["status"], "cancelled", "{job}");
            assert_eq!(job["result"], json!({"dramaId": "listed"}), "{job}");
        }
        // The list's own statements: a key's last use is recorded in the background, once a
        // minute, whenever that lands.
        let sql: Vec<String> = pg
            .counter
            .statement_sql()
            .into_iter()
            .filter(|s| !s.starts_with("update public.api_keys set last_used_at"))
            .collect();
        counts.push((total, sql.len(), sql));
    }
    assert_eq!(counts[0].1, counts[1].1, "{counts:#?}");
    assert!(counts[1].1 <= 3, "{counts:#?}");
    drop(svc);
    pg.finish().await;
}

/// After a failover, a pooled session still connected to the demoted primary answers writes
/// with "read-only" (25006). The write that meets it answers 503 `unavailable` with
/// `Retry-After` (not a 500), and the next write is served: the pool, made as the server makes
/// it, does not hand that session out again.
#[actix_web::test]
async fn a_write_refused_by_a_read_only_session_is_503_and_the_next_is_served() {
    let db = ScratchDb::create("api_failover").await;
    let setup = db.pool().await;
    drama_postgres::migrate(&setup).await.unwrap();
    let mut settings = drama_postgres::PgSettings::from_url(db.url());
    settings.max_connections = 1;
    let pool = settings.pool().unwrap();
    let (store, app) = pg_app_on(&pool);
    let user = UserId::random();
    store.create_user(&NewUser::new(user)).await.unwrap();
    let key = store
        .create_api_key(user, "pg", &[], None)
        .await
        .unwrap()
        .key;
    let svc = plain_service_of(app).await;
    // The key is looked up (and cached) and its use recorded before the session turns.
    let (status, _, _) = send(&svc, crate::support::get("/dramas", &key)).await;
    assert_eq!(status, 200);
    let mut recorded = false;
    for _ in 0..100 {
        recorded = sqlx::query_scalar("select bool_and(last_used_at is not null) from api_keys")
            .fetch_one(&setup)
            .await
            .unwrap_or(false);
        if recorded {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(recorded, "the key's use is recorded");
    sqlx::query("set default_transaction_read_only = on")
        .execute(&pool)
        .await
        .unwrap();

    let (status, headers, body) = send(
        &svc,
        post_json("/api-keys", &key, json!({"name": "during"})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "unavailable", "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");

    let (status, _, body) =
        send(&svc, post_json("/api-keys", &key, json!({"name": "after"}))).await;
    assert_eq!(status, 201, "the next write is served: {body}");
    drop(svc);
    pool.close().await;
    setup.close().await;
    db.drop_it().await;
}
