//! Running the binary in tests: a clean environment, free ports, servers that are killed when
//! dropped, and their logs on failure.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

pub mod deployment;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary with an empty environment (only `PATH`), quiet logs.
pub fn binary(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_drama-server"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null());
    c
}

/// stdout and stderr together.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a command to completion without blocking the test's runtime.
pub async fn output(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

/// The API key `keys create` printed: its line starting `dk_`.
pub fn printed_key(printed: &str) -> String {
    printed
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("dk_"))
        .unwrap_or_else(|| panic!("no key in: {printed}"))
        .to_owned()
}

/// What `keys create` printed: the new user's id (its `owner:` line) and the key.
pub fn created_key(printed: &str) -> (uuid::Uuid, String) {
    let owner = printed
        .lines()
        .find_map(|l| l.strip_prefix("owner:"))
        .unwrap_or_else(|| panic!("no owner in: {printed}"))
        .trim()
        .parse()
        .unwrap();
    (owner, printed_key(printed))
}

/// `method url` as the holder of `key`, with a JSON body (or none): the status, the JSON answer
/// (null if none) and the ETag.
pub async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value, Option<String>) {
    let mut request = http.request(method, url).bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        etag,
    )
}

/// The URL of `path` on a server of this machine listening on `port`.
pub fn local_url(port: u16, path: &str) -> String {
    format!("http://127.0.0.1:{port}{path}")
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A running `serve`, killed (SIGTERM, then SIGKILL) when dropped; its output goes to a file.
pub struct Server {
    pub child: Child,
    pub log: PathBuf,
    pub port: u16,
}

impl Server {
    /// Starts `command` (which should bind 127.0.0.1:`port`) with its output in `dir`.
    pub fn spawn(mut command: Command, port: u16, dir: &Path, name: &str) -> Self {
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self { child, log, port }
    }

    pub fn url(&self, path: &str) -> String {
        local_url(self.port, path)
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `path` answers 2xx; panics with the logs if the process exits or 60 s pass.
    pub async fn wait_for(&mut self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let http = reqwest::Client::new();
        loop {
            if let Ok(r) = http.get(self.url(path)).send().await
                && r.status().is_success()
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited with {status}\n{}", self.logs());
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not answer within 60 s\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for the process to exit by itself within `limit`; its status.
    pub async fn exit_within(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running after {limit:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, as a crash would: nothing of the process runs after it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process id (a worker registers as `worker-<pid>`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, and the exit status once it stopped (SIGKILL after 30 s).
    pub async fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        // The server's own bounds: 30 s for HTTP requests, then 30 s of grace for running
        // handlers (WorkerConfig::shutdown_grace) and 10 s for their completions. On a loaded
        // machine a handler caught mid-task can use its grace; a stop beyond all of them fails.
        let deadline = Instant::now() + Duration::from_secs(80);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        None
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
