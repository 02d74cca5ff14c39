//! A real `serve` on a scratch PostgreSQL database, offline AI with slow clips (so a run can be
//! watched), local assets; and a user with a key and credits.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drama_testkit::pg::ScratchDb;

use crate::support::{binary, call, created_key, free_port, local_url, text};
use serde_json::Value;

pub struct Server {
    pub db: ScratchDb,
    child: Child,
    pub port: u16,
    pub key: String,
    /// The user the key belongs to.
    pub owner: uuid::Uuid,
    pub http: reqwest::Client,
    _assets: tempfile::TempDir,
    log: std::path::PathBuf,
    /// Variables of `serve` besides the usual ones (they win over them).
    extra: Vec<(String, String)>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(db: &ScratchDb, port: u16, assets: &std::path::Path, args: &[&str]) -> Command {
    let mut c = binary(args);
    c.env("DATABASE_URL", db.url())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("ASSETS_BACKEND", "local")
        .env("ASSETS_DIR", assets)
        .env("AI_OFFLINE", "true")
        .env("PRICE_OFFLINE_CALLS", "true")
        .env("OFFLINE_VIDEO_DELAY_MS", "1500")
        // The operator's own list of models: the console offers what the server allows.
        .env(
            "SCRIPT_MODELS",
            "flash=gemini:gemini-2.5-flash,gemini-3-pro-preview=gemini,offline=offline",
        )
        // A killed process's tasks are taken over within seconds.
        .env("DRAMA__WORKER__LEASE_SECONDS", "5");
    c
}

fn output(c: &mut Command) -> String {
    let out = c.output().unwrap();
    let text = text(&out);
    assert!(out.status.success(), "{c:?} failed: {text}");
    text
}

fn spawn_serve(
    db: &ScratchDb,
    port: u16,
    assets: &std::path::Path,
    log: &std::path::Path,
    extra: &[(String, String)],
) -> Child {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    command(db, port, assets, &["serve"])
        .envs(extra.iter().map(|(k, v)| (k, v)))
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap()
}

impl Server {
    /// Kills `serve` (SIGKILL, mid-work) and starts a new one on the same port and database.
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn_serve(
            &self.db,
            self.port,
            self._assets.path(),
            &self.log,
            &self.extra,
        );
        self.wait_until_serving().await;
    }

    /// Sets a variable of `serve` from its next (re)start on.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra.retain(|(k, _)| k != key);
        self.extra.push((key.to_owned(), value.to_owned()));
    }

    pub async fn start(name: &str) -> Self {
        let extra: Vec<(String, String)> = Vec::new();
        let db = ScratchDb::create(name).await;
        let assets = tempfile::tempdir().unwrap();
        let port = free_port();
        output(&mut command(&db, port, assets.path(), &["migrate"]));
        let created = output(&mut command(
            &db,
            port,
            assets.path(),
            &["keys", "create", "--name", "console"],
        ));
        let (owner, key) = created_key(&created);
        // Enough credits for several priced generations.
        let pool = db.pool().await;
        sqlx::query(
            "select public.move_credits(id, 1000000 - tokens, 'grant', null, null, 'test credits') \
             from public.users where id = $1",
        )
        .bind(owner)
        .execute(&pool)
        .await
        .unwrap();
        pool.close().await;
        let log = assets.path().join("serve.log");
        let child = spawn_serve(&db, port, assets.path(), &log, &extra);
        let mut server = Self {
            db,
            child,
            port,
            key,
            owner,
            http: reqwest::Client::new(),
            _assets: assets,
            log,
            extra,
        };
        server.wait_until_serving().await;
        server
    }

    async fn wait_until_serving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(self.url("/health")).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited with {status}: {}", self.logs());
            }
            assert!(Instant::now() < deadline, "serve did not answer /health");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        local_url(self.port, path)
    }

    /// An API call as the test user: (status, JSON body, ETag).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value, Option<String>) {
        call(&self.http, method, self.url(path), &self.key, body).await
    }

    /// The run's task graph as the test user reads it: (status, body).
    pub async fn graph(&self, run: &str) -> (u16, Value) {
        let (status, graph, _) = self
            .call(reqwest::Method::GET, &format!("/jobs/{run}/graph"), None)
            .await;
        (status, graph)
    }

    /// The text of the run's event stream, read to its end (the run has settled).
    pub async fn events(&self, run: &str) -> String {
        self.http
            .get(self.url(&format!("/jobs/{run}/events")))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Waits until a run settles; returns its record.
    pub async fn settle(&self, job: &str, limit: Duration) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let (status, body, _) = self
                .call(reqwest::Method::GET, &format!("/jobs/{job}"), None)
                .await;
            // 503 says "retry shortly" (a busy pool on a loaded machine); a client waits.
            if status == 503 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            assert_eq!(status, 200, "{body}\n{}", self.logs());
            if ["completed", "failed", "cancelled"].contains(&body["status"].as_str().unwrap()) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "run {job} did not settle: {body}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `serve` as the quick start runs it: no `DATABASE_URL`, the in-memory store, the offline
/// provider; it prints a key and a console link that signs a browser in once.
pub struct QuickStart {
    child: Child,
    pub port: u16,
    /// The printed key.
    pub key: String,
    /// The printed `…/ui#signin=CODE` link.
    pub link: String,
    _dir: tempfile::TempDir,
}

impl Drop for QuickStart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl QuickStart {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = dir.path().join("serve.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_drama-server"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("EMBEDDED_POSTGRES", "false")
            .env("DATA_DIR", dir.path().join("data"))
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("PUBLIC_URL", format!("http://127.0.0.1:{port}"))
            .env("AI_OFFLINE", "true")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let mut quick = Self {
            child,
            port,
            key: String::new(),
            link: String::new(),
            _dir: dir,
        };
        // The banner is printed once the server is ready to answer.
        let deadline = Instant::now() + Duration::from_secs(30);
        let banner = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Console:") && text.contains("For production") {
                break text;
            }
            if let Some(status) = quick.child.try_wait().unwrap() {
                panic!("the quick start exited with {status}: {text}");
            }
            assert!(Instant::now() < deadline, "no quick-start banner: {text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        quick.key = banner
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("dk_"))
            .unwrap()
            .to_owned();
        quick.link = banner
            .lines()
            .find_map(|l| l.trim().strip_prefix("Console:"))
            .unwrap()
            .trim()
            .to_owned();
        let http = reqwest::Client::new();
        while !http
            .get(quick.url("/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                Instant::now() < deadline,
                "the quick start did not answer /health"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        quick
    }

    pub fn url(&self, path: &str) -> String {
        local_url(self.port, path)
    }
}
