//! A deployment for whole-server tests: a scratch PostgreSQL database migrated by the binary,
//! an S3 server, and the `serve` and `worker` processes started against them with offline AI
//! and JSON logs in a directory of their own.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use drama_testkit::pg::ScratchDb;
use drama_testkit::s3::S3Server;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Server, binary, call, created_key, free_port, local_url, output, text};

/// The database, the bucket and what every process of the deployment is started with.
pub struct Deployment {
    pub db: ScratchDb,
    /// A small pool on the database, for the test's own reads.
    pub pool: PgPool,
    pub s3: S3Server,
    /// Where the processes' logs go.
    pub logs: tempfile::TempDir,
    /// The port `serve` listens on.
    pub port: u16,
    pub http: reqwest::Client,
    env: Vec<(String, String)>,
}

impl Deployment {
    /// A fresh database (named after `name`) that `drama-server migrate` has brought up to
    /// date, and a bucket. Every command gets `DATABASE_URL`, the bucket, `HOST`/`PORT`,
    /// `AI_OFFLINE=true`, `LOG_FORMAT=json` and `RUST_LOG=warn`, then `env`, which overrides
    /// them.
    pub async fn start(name: &str, env: &[(&str, &str)]) -> Self {
        let db = ScratchDb::create(name).await;
        let s3 = S3Server::start(&format!("drama-{}", name.replace('_', "-"))).await;
        let mut d = Self {
            pool: db.pool().await,
            db,
            s3,
            logs: tempfile::tempdir().unwrap(),
            port: free_port(),
            http: reqwest::Client::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let out = d.run(&["migrate"]).await;
        assert!(out.status.success(), "migrate: {}", text(&out));
        // Connections opened before the migration do not see the types it created.
        d.pool.close().await;
        d.pool = d.db.pool().await;
        d
    }

    /// Adds (or replaces) a variable of every command started from now on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// The binary with the deployment's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = binary(args);
        c.env("DATABASE_URL", self.db.url())
            .envs(self.s3.env())
            .env("HOST", "127.0.0.1")
            .env("PORT", self.port.to_string())
            .env("AI_OFFLINE", "true")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "warn");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs a command to completion.
    pub async fn run(&self, args: &[&str]) -> Output {
        output(self.command(args)).await
    }

    /// Starts a long-running command (`serve`, `worker`) logging to `<name>.log`.
    pub fn spawn(&self, name: &str, args: &[&str]) -> Server {
        Server::spawn(self.command(args), self.port, self.logs.path(), name)
    }

    /// `keys create`: a new user and a key of theirs, as (owner, key).
    pub async fn create_key(&self, name: &str) -> (Uuid, String) {
        let out = self.run(&["keys", "create", "--name", name]).await;
        assert!(out.status.success(), "keys create: {}", text(&out));
        created_key(&String::from_utf8(out.stdout).unwrap())
    }

    /// Sets a user's balance (through the ledger, as an operator's grant would).
    pub async fn set_balance(&self, owner: Uuid, tokens: i64) {
        sqlx::query(
            "select public.move_credits(id, $2 - tokens, 'grant', null, null, 'test credits') \
             from public.users where id = $1 and tokens <> $2",
        )
        .bind(owner)
        .bind(tokens)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    pub async fn tokens(&self, owner: Uuid) -> i64 {
        sqlx::query_scalar("select tokens from public.users where id = $1")
            .bind(owner)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        local_url(self.port, path)
    }

    /// A request with a JSON body (or none); the status and the JSON answer (null if none).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let (status, answer, _) = call(&self.http, method, self.url(path), key, body).await;
        (status, answer)
    }

    /// Polls a job (`path`: `/jobs/{id}` or `/dramas/{d}/jobs/{id}`) until it settles; its
    /// final view. Panics with the logs of `watch` after `limit`.
    pub async fn settle(&self, key: &str, path: &str, limit: Duration, watch: &[&Server]) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body) = self.call(reqwest::Method::GET, path, key, None).await;
            assert_eq!(status, 200, "{body}");
            if ["completed", "failed", "cancelled"].contains(&body["status"].as_str().unwrap()) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not settle: {body}\n{}",
                logs_of(watch)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`Deployment::settle`] for each of `jobs` (ids), within one `limit`.
    pub async fn settle_all(
        &self,
        key: &str,
        jobs: &[String],
        limit: Duration,
        watch: &[&Server],
    ) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        let mut done = Vec::new();
        for job in jobs {
            let left = deadline.saturating_duration_since(Instant::now());
            done.push(self.settle(key, &format!("/jobs/{job}"), left, watch).await);
        }
        done
    }

    /// Closes the pool and drops the database.
    pub async fn finish(self) {
        self.pool.close().await;
        self.db.drop_it().await;
    }
}

/// The end of each process's log, named, for failure messages.
pub fn logs_of(servers: &[&Server]) -> String {
    servers
        .iter()
        .map(|s| {
            let log = s.logs();
            let name = s
                .log
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            format!("--- {name} ---\n{}", tail(&log, 4000))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every warning and error a process logged (at most `max` lines), for failure messages that
/// must say why a task ran more than once.
pub fn warnings(log: &str, max: usize) -> String {
    log.lines()
        .filter(|l| l.contains("\"WARN\"") || l.contains("\"ERROR\""))
        .take(max)
        .collect::<Vec<_>>()
        .join("\n")
}

fn tail(s: &str, max: usize) -> &str {
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

/// The offline provider's media calls (images + videos) that a stopped process logged at
/// its end; `None` without that line.
pub fn media_calls(log: &str) -> Option<u64> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message"] == "offline provider calls of this process")
        .map(|v| {
            v["offline_calls.images"].as_u64().unwrap_or(0)
                + v["offline_calls.videos"].as_u64().unwrap_or(0)
        })
}
