//! The acceptance path on a machine without ffmpeg: `serve` (with its workers) on PostgreSQL
//! and an S3 bucket without a public URL, offline AI, and a `PATH` with no ffmpeg on it.
//! Premise → drama → generate everything → every episode is stitched, its URL loads without
//! any header, and our MP4 reader finds the joined file as long as its scenes' clips together.
//! `check` says ffmpeg is absent and what that means.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use drama_app::pipeline::stitch::probe;
use drama_testkit::pg::ScratchDb;
use drama_testkit::s3::S3Server;
use serde_json::{Value, json};

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Machine {
    db: ScratchDb,
    s3: S3Server,
    /// An empty directory: the whole `PATH` of the server.
    bare_path: tempfile::TempDir,
    port: u16,
    http: reqwest::Client,
}

impl Machine {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_drama-server"));
        c.args(args)
            .env_clear()
            .env("PATH", self.bare_path.path())
            .env("DATABASE_URL", self.db.url())
            .envs(self.s3.env())
            .env("HOST", "127.0.0.1")
            .env("PORT", self.port.to_string())
            .env("PUBLIC_URL", format!("http://127.0.0.1:{}", self.port))
            .env("AI_OFFLINE", "true")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    async fn run(&self, args: &[&str]) -> std::process::Output {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn call(&self, method: reqwest::Method, path: &str, key: &str) -> (u16, Value) {
        self.call_json(method, path, key, None).await
    }

    async fn call_json(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, self.url(path)).bearer_auth(key);
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

    async fn settle(&self, key: &str, drama: &str, job: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let (status, body) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/dramas/{drama}/jobs/{job}"),
                    key,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            if ["completed", "failed", "cancelled"].contains(&body["status"].as_str().unwrap()) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "job {job} did not settle: {body}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The bytes behind a URL from a response, fetched with no header at all.
    async fn fetch(&self, url: &str) -> Vec<u8> {
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200, "{url}");
        response.bytes().await.unwrap().to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premise_to_stitched_episodes_without_ffmpeg() {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let m = Machine {
        db: ScratchDb::create("no_ffmpeg").await,
        s3: S3Server::start("no-ffmpeg").await,
        bare_path: tempfile::tempdir().unwrap(),
        port,
        http: reqwest::Client::new(),
    };
    let out = m.run(&["migrate"]).await;
    assert!(out.status.success(), "migrate: {out:?}");
    let out = m.run(&["check"]).await;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("ffmpeg: absent") && said.contains("are still stitched"),
        "{said}"
    );
    let out = m.run(&["keys", "create", "--name", "no-ffmpeg"]).await;
    assert!(out.status.success(), "keys create: {out:?}");
    let key = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_owned();
    let _server = Process(m.command(&["serve"]).stdout(Stdio::null()).spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    while m.http.get(m.url("/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, created) = m
        .call_json(
            reqwest::Method::POST,
            "/dramas",
            &key,
            Some(
                json!({"premise": "A lighthouse keeper and a lost whale, in 2 episodes.",
                        "id": "lighthouse"}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let written = m
        .settle(&key, "lighthouse", created["jobId"].as_str().unwrap())
        .await;
    assert_eq!(written["status"], "completed", "{written}");
    let (status, started) = m
        .call(reqwest::Method::POST, "/dramas/lighthouse/generate", &key)
        .await;
    assert_eq!(status, 202, "{started}");
    let done = m
        .settle(&key, "lighthouse", started["jobId"].as_str().unwrap())
        .await;
    assert_eq!(done["status"], "completed", "{done}");

    let (_, drama) = m
        .call(reqwest::Method::GET, "/dramas/lighthouse", &key)
        .await;
    let episodes = drama["episodes"].as_array().unwrap();
    assert!(episodes.len() >= 2, "{drama}");
    for episode in episodes {
        let url = episode["url"]
            .as_str()
            .unwrap_or_else(|| panic!("not stitched: {episode}"));
        let joined = probe(&m.fetch(url).await).unwrap();
        let mut sum = 0.0;
        for scene in episode["scenes"].as_array().unwrap() {
            let clip = m.fetch(scene["video_url"].as_str().unwrap()).await;
            sum += probe(&clip).unwrap().duration;
        }
        assert!(sum >= 10.0, "{episode}");
        assert!(
            (joined.duration - sum).abs() < 0.01,
            "episode {}: {} s joined, {sum} s of clips",
            episode["id"],
            joined.duration
        );
        assert_eq!(joined.tracks[0].handler, "vide");
    }
}
