//! Legacy migration benchmark: dramas per second importing fixture-sized dramas (the legacy
//! fixture under new ids: 5 characters, 3 episodes, 16 scenes, 32 assets, 38 KB) from an S3
//! server into PostgreSQL, at several concurrency levels; then the rerun that finds nothing to
//! do, and the export back.
//!
//! The S3 server is s3s + s3s-fs inside this process (127.0.0.1, data in a temporary
//! directory); PostgreSQL is the server of `DATABASE_URL` (a scratch database per
//! measurement, dropped at the end).
//!
//! Run: `DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!       cargo run --release -p drama-legacy --example import_bench [-- --dramas 1000 --jobs 1,4,8,16]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs,
    clippy::print_stderr,
    clippy::print_stdout
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{TestS3, drama_key, fixture_as, import};
use drama_domain::UserId;
use drama_legacy::{
    CancellationToken, ExportOptions, ExportOwners, Exporter, Layout, Repositories, Silent,
};
use drama_postgres::PgStore;
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

struct Scratch {
    name: String,
    server: String,
}

impl Scratch {
    async fn create(server: &str, tag: &str) -> Self {
        let name = format!("legacy_bench_{}_{tag}", std::process::id());
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!("drop database if exists {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        Self {
            name,
            server: server.to_owned(),
        }
    }

    async fn store(&self, connections: u32) -> PgStore {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            .connect(&format!("{}/{}", self.server, self.name))
            .await
            .unwrap();
        drama_postgres::migrate(&pool).await.unwrap();
        PgStore::new(pool)
    }

    async fn drop_it(self) {
        let mut admin = PgConnection::connect(&format!("{}/postgres", self.server))
            .await
            .unwrap();
        sqlx::query(AssertSqlSafe(format!(
            "drop database if exists {} with (force)",
            self.name
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

#[tokio::main]
async fn main() {
    let dramas: usize = arg("--dramas").map_or(1000, |v| v.parse().unwrap());
    let jobs: Vec<usize> = arg("--jobs")
        .unwrap_or_else(|| "1,4,8,16".to_owned())
        .split(',')
        .map(|j| j.trim().parse().unwrap())
        .collect();
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL names a PostgreSQL server");
    let (server, _) = url.rsplit_once('/').unwrap();

    let s3 = TestS3::start().await;
    let seed = Instant::now();
    let files: Vec<(String, Vec<u8>)> = (0..dramas)
        .map(|i| {
            let id = format!("bench-{i:05}");
            (
                drama_key(&id),
                serde_json::to_vec(&fixture_as(&id)).unwrap(),
            )
        })
        .collect();
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    s3.put_many(files).await;
    eprintln!(
        "seeded {dramas} dramas ({:.1} MB) in {:.1} s",
        bytes as f64 / 1e6,
        seed.elapsed().as_secs_f64()
    );

    println!("| jobs | import (dramas/s) | rerun, unchanged (dramas/s) | export (dramas/s) |");
    println!("|---:|---:|---:|---:|");
    for (n, &j) in jobs.iter().enumerate() {
        let scratch = Scratch::create(server, &n.to_string()).await;
        let store = Arc::new(scratch.store(u32::try_from(j).unwrap() + 2).await);
        let repos = Repositories::of(store);
        let mut options = common::options(&s3, UserId::random());
        options.jobs = j;

        let first = import(&s3, &repos, options.clone()).await;
        assert_eq!(first.counts.imported, dramas, "{:?}", first.counts);
        let rerun = import(&s3, &repos, options).await;
        assert_eq!(rerun.counts.unchanged, dramas, "{:?}", rerun.counts);
        let export = Exporter::new(
            s3.store.clone(),
            repos.clone(),
            ExportOptions {
                layout: Layout::new("bench-export").unwrap(),
                dry_run: false,
                jobs: j,
                owners: ExportOwners::default(),
            },
        )
        .unwrap()
        .run(&Silent, &CancellationToken::new())
        .await
        .unwrap();
        assert_eq!(export.exported, dramas);
        println!(
            "| {j} | {:.0} | {:.0} | {:.0} |",
            first.dramas_per_second, rerun.dramas_per_second, export.dramas_per_second
        );
        scratch.drop_it().await;
    }
}
