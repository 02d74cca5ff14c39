//! Database statements per second while a generation runs, with 0, 1 and 1,000 Server-Sent
//! Events followers of it (docs/benchmarks/streams.md).
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p drama-api --example followers_bench -- 0 1 1000
//! ```
//!
//! Each round creates a drama, starts "generate everything" (offline provider, clips take
//! `CLIP_MS`), opens N followers of the run in process and reads them to their end, and
//! counts every statement the API and the worker send through a counting proxy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::test;
use drama_api::{ApiState, HttpSettings};
use drama_app::pipeline::engine::EngineJobs;
use drama_app::{App, Ports};
use drama_dal::{ApiKeyRepository as _, NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_postgres::PgStore;
use drama_postgres::jobs::PgJobStore;
use drama_testkit::StatementCounter;
use drama_testkit::pg::ScratchDb;

/// How long an offline clip takes.
const CLIP_MS: u64 = 3_000;

#[actix_web::main]
async fn main() {
    let rounds: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("follower counts"))
        .collect();
    let rounds = if rounds.is_empty() {
        vec![0, 1, 1000]
    } else {
        rounds
    };
    let db = ScratchDb::create("followers_bench").await;
    let setup = db.pool().await;
    drama_postgres::migrate(&setup).await.unwrap();
    let counter = StatementCounter::start(&db.url()).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .connect(&counter.url(&db.url()))
        .await
        .unwrap();
    let store = Arc::new(PgStore::new(pool.clone()));
    let jobs = Arc::new(PgJobStore::new(pool.clone()));
    let ai = drama_ai::AiProviders::from_settings(&drama_ai::AiSettings {
        ai_offline: true,
        offline_video_delay_ms: CLIP_MS,
        ..drama_ai::AiSettings::default()
    })
    .unwrap();
    let app = App::new(Ports {
        store: store.clone(),
        assets: Arc::new(drama_assets::MemoryStore::default()),
        generation: store.clone(),
        jobs: Arc::new(EngineJobs(jobs.clone())),
        ai,
    });
    let user = UserId::random();
    store.create_user(&NewUser::new(user)).await.unwrap();
    let key = store
        .create_api_key(user, "bench", &[], None)
        .await
        .unwrap()
        .key;
    let worker =
        drama_jobs::Worker::start(jobs, app.registry(), drama_jobs::WorkerConfig::default())
            .await
            .unwrap();
    let settings = HttpSettings {
        rate_per_second: 0,
        streams_per_user: 100_000,
        streams_per_process: 100_000,
        ..HttpSettings::default()
    };
    let svc = test::init_service(
        actix_web::App::new().configure(drama_api::configure(ApiState::new(app.clone(), settings))),
    )
    .await;

    println!("| followers | run (s) | statements | statements/s | events per follower |");
    println!("|---|---|---|---|---|");
    for (round, followers) in rounds.into_iter().enumerate() {
        let id = format!("bench{round}");
        let drama = drama_testkit::builders::drama_json(&id, 2, 2, 2);
        let created = test::call_service(
            &svc,
            test::TestRequest::post()
                .uri("/dramas")
                .insert_header(("Authorization", format!("Bearer {key}")))
                .set_json(serde_json::json!({"drama": drama}))
                .to_request(),
        )
        .await;
        assert_eq!(created.status(), 201);
        counter.reset();
        let started = Instant::now();
        let answer: serde_json::Value = test::call_and_read_body_json(
            &svc,
            test::TestRequest::post()
                .uri(&format!("/dramas/{id}/generate"))
                .insert_header(("Authorization", format!("Bearer {key}")))
                .to_request(),
        )
        .await;
        let job = answer["jobId"].as_str().expect("a job").to_owned();
        let mut streams = Vec::with_capacity(followers);
        for _ in 0..followers {
            let response = test::call_service(
                &svc,
                test::TestRequest::get()
                    .uri(&format!("/jobs/{job}/events"))
                    .insert_header(("Authorization", format!("Bearer {key}")))
                    .to_request(),
            )
            .await;
            assert_eq!(response.status(), 200);
            streams.push(test::read_body(response));
        }
        let events = if followers == 0 {
            // Nobody follows: wait for the run by looking at it once a second.
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let view = app
                    .job(&drama_app::Caller::user(user), job.parse().unwrap())
                    .await
                    .unwrap();
                if view.state.is_settled() {
                    break 0;
                }
            }
        } else {
            let bodies = futures::future::join_all(streams).await;
            let counts: Vec<usize> = bodies
                .iter()
                .map(|b| {
                    std::str::from_utf8(b)
                        .unwrap()
                        .lines()
                        .filter(|l| l.starts_with("id: "))
                        .count()
                })
                .collect();
            assert!(
                counts.iter().all(|c| *c == counts[0]),
                "every follower saw the same"
            );
            counts[0]
        };
        let elapsed = started.elapsed().as_secs_f64();
        let statements = counter.statements();
        #[expect(clippy::cast_precision_loss, reason = "a report")]
        let rate = statements as f64 / elapsed;
        println!("| {followers} | {elapsed:.1} | {statements} | {rate:.0} | {events} |");
    }
    worker.shutdown().await;
    pool.close().await;
    setup.close().await;
    db.drop_it().await;
}
