//! The API on PostgreSQL: a GraphQL page of dramas with every nested part and every nested
//! `jobs` field costs a fixed handful of SQL statements, whatever the number of dramas.

use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::test;
use drama_api::ApiState;
use drama_app::pipeline::Scope;
use drama_app::pipeline::engine::EngineJobs;
use drama_app::{App, Caller, Ports};
use drama_dal::{ApiKeyRepository as _, DramaRepository as _, NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_postgres::PgStore;
use drama_postgres::jobs::PgJobStore;
use drama_testkit::StatementCounter;
use drama_testkit::pg::ScratchDb;
use serde_json::json;

use crate::support::{Harness, post_json, send};

const NESTED: &str = "{ dramas(limit: 50) { id title jobs { type status } \
    characters { name url jobs { type status } } \
    episodes { title url jobs { type status } scenes { imageUrl videoUrl jobs { type status } } } } }";

#[actix_web::test]
async fn a_nested_page_of_dramas_and_their_jobs_is_a_few_statements() {
    let db = ScratchDb::create("api_nested").await;
    let setup = db.pool().await;
    drama_postgres::migrate(&setup).await.unwrap();
    let counter = StatementCounter::start(&db.url()).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&counter.url(&db.url()))
        .await
        .unwrap();
    let store = Arc::new(PgStore::new(pool.clone()));
    let jobs = Arc::new(PgJobStore::new(pool.clone()));
    let app = App::new(Ports {
        store: store.clone(),
        assets: Arc::new(drama_assets::MemoryStore::default()),
        generation: store.clone(),
        jobs: Arc::new(EngineJobs(jobs)),
        ai: drama_ai::AiProviders::offline(0),
    });
    let user = UserId::random();
    store.create_user(&NewUser::new(user)).await.unwrap();
    let key = store
        .create_api_key(user, "nested", &[], None)
        .await
        .unwrap()
        .key;
    let svc = test::init_service(
        actix_web::App::new()
            .wrap(from_fn(drama_api::middleware::request_context))
            .configure(drama_api::configure(ApiState::new(
                app.clone(),
                Harness::settings(),
            ))),
    )
    .await;

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
        let (status, _, body) = send(
            &svc,
            post_json("/graphql", &key, json!({ "query": NESTED })),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        counter.reset();
        let (_, _, body) = send(
            &svc,
            post_json("/graphql", &key, json!({ "query": NESTED })),
        )
        .await;
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
    pool.close().await;
    setup.close().await;
    db.drop_it().await;
}
