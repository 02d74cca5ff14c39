//! Latency and statements per call of `get_complete` and `save_complete`.
//!
//! `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!  cargo run --release -p drama-postgres --example repo_bench [iterations]`
//!
//! Creates a scratch database, measures a drama the size of the legacy fixture and one ten
//! times larger, prints a Markdown table, and drops the database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::{Duration, Instant};

use drama_dal::{DramaRepository, NewUser, UserRepository};
use drama_domain::{Drama, UserId};
use drama_postgres::{PgSettings, PgStore};
use drama_testkit::StatementCounter;
use drama_testkit::builders::{drama_json, fixture_drama};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ten_times_the_fixture() -> Drama {
    // 50 characters, 30 episodes of 5 scenes, 2 assets per scene: 10× the fixture's 5 / 3 / 16 / 32.
    let mut v = drama_json("fixture_x10", 50, 30, 5);
    let fixture = fixture_drama();
    let long = |i: usize| format!("{} ({i})", fixture.episodes[0].scenes[0].assets[0].prompt);
    let mut n = 0;
    for e in v["episodes"].as_array_mut().unwrap() {
        for s in e["scenes"].as_array_mut().unwrap() {
            for a in s["assets"].as_array_mut().unwrap() {
                a["prompt"] = long(n).into();
                n += 1;
            }
        }
    }
    Drama::from_value(v).unwrap()
}

async fn measure<F, Fut>(iterations: usize, mut call: F) -> (Duration, Duration)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..iterations.min(20) {
        call(i).await;
    }
    let mut samples = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let start = Instant::now();
        call(i).await;
        samples.push(start.elapsed());
    }
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.99))
}

#[tokio::main]
async fn main() {
    let iterations: usize = std::env::args()
        .nth(1)
        .map_or(500, |s| s.parse().expect("iterations is a number"));
    let base = std::env::var("DATABASE_URL").expect("set DATABASE_URL");
    let name = format!("drama_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&base).await.unwrap();
    sqlx::query(AssertSqlSafe(format!("create database {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);

    let pool = PgSettings::from_url(&url).connect().await.unwrap();
    drama_postgres::migrate(&pool).await.unwrap();
    let store = PgStore::new(pool);
    let counter = StatementCounter::start(&url).await;
    let counted = PgStore::new(
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&counter.url(&url))
            .await
            .unwrap(),
    );
    let owner = UserId::random();
    store.create_user(&NewUser::new(owner)).await.unwrap();

    println!("| drama | children | call | median | p99 | statements/call |");
    println!("|---|---|---|---|---|---|");
    for (label, drama) in [
        ("fixture", fixture_drama()),
        ("fixture ×10", ten_times_the_fixture()),
    ] {
        store.create(owner, &drama).await.unwrap();
        let children = drama.characters.len()
            + drama.episodes.len()
            + drama.episodes.iter().map(|e| e.scenes.len()).sum::<usize>()
            + drama.assets_with_owner().count();

        let (p50, p99) = measure(iterations, |_| {
            let (store, id) = (&store, &drama.id);
            async move {
                store.get_complete(owner, id).await.unwrap();
            }
        })
        .await;
        counted.get_complete(owner, &drama.id).await.unwrap();
        counter.reset();
        counted.get_complete(owner, &drama.id).await.unwrap();
        println!(
            "| {label} | {children} | get_complete | {:.2} ms | {:.2} ms | {} |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            counter.statements()
        );

        // Every save changes one scene's prompt, as an edit from a client would.
        let (p50, p99) = measure(iterations, |i| {
            let store = &store;
            let mut d = drama.clone();
            d.episodes[0].scenes[0].assets[0].prompt = format!("edited {i}");
            async move {
                store.save_complete(owner, &d, None).await.unwrap();
            }
        })
        .await;
        counter.reset();
        counted.save_complete(owner, &drama, None).await.unwrap();
        println!(
            "| {label} | {children} | save_complete | {:.2} ms | {:.2} ms | {} (+ BEGIN/COMMIT) |",
            p50.as_secs_f64() * 1e3,
            p99.as_secs_f64() * 1e3,
            counter.statements()
        );
    }
    drop(counted);
    drop(store);
    sqlx::query(AssertSqlSafe(format!("drop database {name} with (force)")))
        .execute(&mut admin)
        .await
        .unwrap();
}
