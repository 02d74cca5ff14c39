//! Eight dramas written and generated at once on PostgreSQL by `serve --no-workers` and two
//! `worker` processes, with the bytes in an S3 server: no transaction deadlocks or fails to
//! serialize (no 40P01/40001 in the job events), and the offline provider is called exactly
//! once per media task (the workers log their calls when they stop).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use drama_testkit::pg::ScratchDb;
use drama_testkit::s3::S3Server;
use serde_json::{Value, json};
use support::Server;

const DRAMAS: usize = 8;

const MEDIA_KINDS: [&str; 5] = ["portrait", "audition", "storyboard", "clip", "cover"];

struct Deployment {
    db: ScratchDb,
    s3: S3Server,
    logs: tempfile::TempDir,
    port: u16,
    http: reqwest::Client,
}

impl Deployment {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = support::binary(args);
        c.env("DATABASE_URL", self.db.url())
            .envs(self.s3.env())
            .env("HOST", "127.0.0.1")
            .env("PORT", self.port.to_string())
            .env("AI_OFFLINE", "true")
            // No worker dies here: leases long enough for heartbeats of loaded processes.
            .env("DRAMA__WORKER__LEASE_SECONDS", "30")
            // Wide class limits: more completions of different dramas overlap.
            .env("DRAMA__WORKER__IMAGE_LIMIT", "16")
            .env("DRAMA__WORKER__VIDEO_LIMIT", "8")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn,drama_server=info");
        c
    }

    fn spawn(&self, name: &str, args: &[&str]) -> Server {
        Server::spawn(self.command(args), self.port, self.logs.path(), name)
    }

    async fn call(&self, method: reqwest::Method, path: &str, key: &str) -> (u16, Value) {
        self.send(method, path, key, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        let mut request = self.http.request(method, url).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Polls every job until all settled; their final views.
    async fn settle_all(&self, key: &str, jobs: &[String], logs: &[&Server]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(300);
        let mut done = Vec::new();
        for job in jobs {
            loop {
                let (status, body) = self
                    .call(reqwest::Method::GET, &format!("/jobs/{job}"), key)
                    .await;
                assert_eq!(status, 200, "{body}");
                if ["completed", "failed", "cancelled"].contains(&body["status"].as_str().unwrap())
                {
                    done.push(body);
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "job {job} did not settle: {body}\n{}",
                    logs.iter().map(|s| s.logs()).collect::<Vec<_>>().join("\n")
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        done
    }
}

/// The media calls a stopped worker logged (images + videos); `None` without the log line.
fn media_calls(log: &str) -> Option<u64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "offline provider calls of this process")
        .map(|v| {
            v["offline_calls.images"].as_u64().unwrap_or(0)
                + v["offline_calls.videos"].as_u64().unwrap_or(0)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_generations_at_once_neither_deadlock_nor_pay_a_provider_twice() {
    let d = Deployment {
        db: ScratchDb::create("concurrent").await,
        s3: S3Server::start("drama-concurrent").await,
        logs: tempfile::tempdir().unwrap(),
        port: support::free_port(),
        http: reqwest::Client::new(),
    };
    let out = support::output(d.command(&["migrate"])).await;
    assert!(out.status.success(), "migrate: {}", support::text(&out));
    let out = support::output(d.command(&["keys", "create", "--name", "load"])).await;
    assert!(out.status.success(), "keys create: {}", support::text(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    let pool = d.db.pool().await;
    sqlx::query("update public.users set tokens = 10000000")
        .execute(&pool)
        .await
        .unwrap();

    let mut server = d.spawn("serve", &["serve", "--no-workers"]);
    server.wait_for("/health").await;
    let mut workers = [
        d.spawn("worker-1", &["worker"]),
        d.spawn("worker-2", &["worker"]),
    ];

    // Written at once, then generated at once.
    let created = futures::future::join_all((0..DRAMAS).map(|i| {
        let body = json!({
            "premise": format!("Bakery number {i} shares one oven with a rival, in 1 episode."),
            "id": format!("oven-{i}"),
        });
        d.send(reqwest::Method::POST, "/dramas", &key, Some(body))
    }))
    .await;
    let jobs: Vec<String> = created
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["jobId"].as_str().unwrap().to_owned()
        })
        .collect();
    let watch = [&server, &workers[0], &workers[1]];
    for view in d.settle_all(&key, &jobs, &watch).await {
        assert_eq!(view["status"], "completed", "{view}");
    }
    let paths: Vec<String> = (0..DRAMAS)
        .map(|i| format!("/dramas/oven-{i}/generate"))
        .collect();
    let started =
        futures::future::join_all(paths.iter().map(|p| d.call(reqwest::Method::POST, p, &key)))
            .await;
    let runs: Vec<String> = started
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["jobId"].as_str().unwrap().to_owned()
        })
        .collect();
    for view in d.settle_all(&key, &runs, &watch).await {
        assert_eq!(view["status"], "completed", "{view}");
    }

    let busy: Vec<(String, String)> = sqlx::query_as(
        "select key, detail::text from public.job_events \
         where detail::text like '%40P01%' or detail::text like '%40001%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        busy,
        Vec::<(String, String)>::new(),
        "transactions collided"
    );

    let media_tasks: i64 = sqlx::query_scalar(
        "select count(*) from public.jobs where node_type = 'task' and kind = any($1)",
    )
    .bind(MEDIA_KINDS.to_vec())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        media_tasks >= (DRAMAS * 4) as i64,
        "{media_tasks} media tasks"
    );
    let mut calls = 0;
    for worker in &mut workers {
        let status = worker.stop().await.expect("the worker stops on SIGTERM");
        assert!(status.success(), "{status}\n{}", worker.logs());
        calls += media_calls(&worker.logs())
            .unwrap_or_else(|| panic!("no call count in the log\n{}", worker.logs()));
    }
    assert_eq!(
        calls,
        u64::try_from(media_tasks).unwrap(),
        "provider calls for {media_tasks} media tasks"
    );

    server.stop().await;
    // The server's own count, for transactions that were retried before a job event saw them.
    let deadlocks: i64 = sqlx::query_scalar(
        "select deadlocks from pg_stat_database where datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(deadlocks, 0, "deadlocks detected by PostgreSQL");
    pool.close().await;
    d.db.drop_it().await;
}
