//! Database statements per second while a generation runs, with 0, 1 and 1,000 Server-Sent
//! Events followers of it (docs/benchmarks/streams.md).
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p drama-api --example followers_bench -- 0 1 1000
//! ```
//!
//! Each round creates a drama, submits "generate everything" (offline provider, clips take
//! `CLIP_MS`), opens N followers of the run in process and waits for each one's first frames
//! (what connecting costs), then starts a worker and reads every follower to the end of the
//! run, counting every statement the API and the worker send through a counting proxy.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody as _;
use actix_web::test;
use drama_api::{ApiState, HttpSettings};
use drama_app::pipeline::jobs_port::EngineJobs;
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
    let counter = Arc::new(StatementCounter::start(&db.url()).await);
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

    println!(
        "| followers | connect statements | run (s) | statements in the run | statements/s | events per follower |"
    );
    println!("|---|---|---|---|---|---|");
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
        // The run is submitted with no worker running: the followers connect to a run that
        // has not started, and the run is measured from its first task to its end.
        let answer: serde_json::Value = test::call_and_read_body_json(
            &svc,
            test::TestRequest::post()
                .uri(&format!("/dramas/{id}/generate"))
                .insert_header(("Authorization", format!("Bearer {key}")))
                .to_request(),
        )
        .await;
        let job = answer["jobId"].as_str().expect("a job").to_owned();
        counter.reset();
        let mut bodies = Vec::with_capacity(followers);
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
            let mut body = Box::pin(response.into_body());
            // The first frames: the follower has caught up and joined the run's follower.
            let first = std::future::poll_fn(|cx| body.as_mut().poll_next(cx))
                .await
                .expect("a first frame")
                .unwrap();
            bodies.push((body, first));
        }
        let connect = counter.statements();
        counter.reset();
        let started = Instant::now();
        let worker = drama_jobs::Worker::start(
            jobs.clone(),
            app.registry(),
            drama_jobs::WorkerConfig::default(),
        )
        .await
        .unwrap();
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
            let reads = bodies.into_iter().map(|(mut body, first)| async move {
                let mut text = String::from_utf8(first.to_vec()).unwrap();
                while let Some(chunk) = std::future::poll_fn(|cx| body.as_mut().poll_next(cx)).await
                {
                    text.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
                }
                text.lines().filter(|l| l.starts_with("id: ")).count()
            });
            let counts = futures::future::join_all(reads).await;
            assert!(
                counts.iter().all(|c| *c == counts[0]),
                "every follower saw the same"
            );
            counts[0]
        };
        let elapsed = started.elapsed().as_secs_f64();
        let statements = counter.statements();
        worker.shutdown().await;
        #[expect(clippy::cast_precision_loss, reason = "a report")]
        let rate = statements as f64 / elapsed;
        println!(
            "| {followers} | {connect} | {elapsed:.1} | {statements} | {rate:.0} | {events} |"
        );
    }
    pool.close().await;
    setup.close().await;
    db.drop_it().await;
}
