//! A paid provider request is not sent again behind the user's back: a cancellation that comes
//! while a call waits to try again (a 429's `Retry-After`) stops it there, so the task ends
//! cancelled and refunded with no further request; a worker that stops after sending a video
//! submission and before recording the provider's task id leaves a mark, so the next attempt
//! does not submit again (the task ends failed, refunded) while a deliberate resume does. On
//! in-memory ports and on PostgreSQL, against mock providers speaking their wire formats.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use drama_ai::{AiProviders, AiSettings, ApiKey, ImageModel, OfflineProvider, VideoModel};
use drama_app::pipeline::Scope;
use drama_app::{App, Caller, Ports};
use drama_dal::Store;
use drama_domain::{AssetId, JobStatus};
use drama_jobs::{JobId, JobView, MemoryJobStore, NodeType, Worker, WorkerConfig, WorkerHandle};
use drama_postgres::jobs::PgJobStore;
use drama_testkit::pg::ScratchDb;
use serde_json::json;
use support::{Backend, migrated, on_every_backend, pg_ports, user_with, worker_config};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod support;

on_every_backend!("paid_retries":
    a_cancel_while_a_submission_waits_to_retry_sends_nothing_more_and_refunds,
    a_cancel_while_an_image_call_waits_to_retry_sends_nothing_more_and_refunds,
    a_submission_cut_off_by_a_stopped_worker_is_not_sent_again_until_resumed,
);

enum Jobs {
    Memory(Arc<MemoryJobStore>),
    Postgres(Arc<PgJobStore>),
}

enum Workers {
    Memory(WorkerHandle<MemoryJobStore>),
    Postgres(WorkerHandle<PgJobStore>),
}

struct World {
    app: App,
    store: Arc<dyn Store>,
    jobs: Jobs,
    worker: Option<Workers>,
    database: Option<(ScratchDb, sqlx::PgPool)>,
    caller: Caller,
}

/// Workers that see cancellations within 100 ms and give running handlers `grace` at shutdown.
fn config(grace: Duration) -> WorkerConfig {
    WorkerConfig {
        heartbeat_interval: Duration::from_millis(100),
        shutdown_grace: grace,
        ..worker_config()
    }
}

/// The pipeline on `backend` with `ai`, priced, a worker, and a user holding 10 000 tokens who
/// owns drama `d` (one character, one scene).
async fn world(backend: Backend, ai: AiProviders, grace: Duration) -> World {
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let (app, store, jobs, database) = match backend {
        Backend::Memory => {
            let (ports, store, jobs) = Ports::memory(assets, ai);
            let store: Arc<dyn Store> = store;
            (App::new(ports), store, Jobs::Memory(jobs), None)
        }
        Backend::Postgres(db) => {
            let pool = migrated(&db, 16, "").await;
            let (ports, pg, jobs) = pg_ports(&pool, assets, ai);
            let store: Arc<dyn Store> = pg;
            (
                App::new(ports),
                store,
                Jobs::Postgres(jobs),
                Some((db, pool)),
            )
        }
    };
    let app = app.with_offline_pricing(true);
    let user = user_with(&*store, 10_000).await;
    let drama = drama_testkit::builders::drama("d", 1, 1, 1);
    store.create(user, &drama).await.unwrap();
    let mut world = World {
        app,
        store,
        jobs,
        worker: None,
        database,
        caller: Caller::user(user),
    };
    world.start_worker(grace).await;
    world
}

impl World {
    async fn start_worker(&mut self, grace: Duration) {
        let registry = self.app.registry();
        self.worker = Some(match &self.jobs {
            Jobs::Memory(jobs) => Workers::Memory(
                Worker::start(jobs.clone(), registry, config(grace))
                    .await
                    .unwrap(),
            ),
            Jobs::Postgres(jobs) => Workers::Postgres(
                Worker::start(jobs.clone(), registry, config(grace))
                    .await
                    .unwrap(),
            ),
        });
    }

    /// Shuts the worker down (its grace decides what happens to the handlers still running).
    async fn stop_worker(&mut self) {
        match self.worker.take() {
            Some(Workers::Memory(w)) => drop(w.shutdown().await),
            Some(Workers::Postgres(w)) => drop(w.shutdown().await),
            None => {}
        }
    }

    async fn balance(&self) -> i64 {
        self.store.get_user(self.caller.user).await.unwrap().tokens
    }

    /// Starts generating the clip of the drama's one scene (and what it needs).
    async fn generate_clip(&self) -> JobId {
        let drama = drama_domain::DramaId::parse("d").unwrap();
        let clip = Scope::Asset(AssetId::parse("e0-s0-vid").unwrap());
        self.app
            .generate(&self.caller, &drama, clip, false)
            .await
            .unwrap()
            .job_id
    }

    /// The run's status once it settled, and its tasks.
    async fn settled(&self, run: JobId) -> (JobStatus, Vec<JobView>) {
        for _ in 0..3000 {
            let view = self.app.job(&self.caller, run).await.unwrap();
            if view.state.is_settled() {
                let tree = self.app.run_tree(&self.caller, run).await.unwrap();
                let tasks = tree
                    .nodes
                    .into_iter()
                    .filter(|n| n.node_type == NodeType::Task)
                    .collect();
                return (view.coarse_status(), tasks);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("run {run} did not settle");
    }

    async fn stop(mut self) {
        self.stop_worker().await;
        if let Some((db, pool)) = self.database.take() {
            pool.close().await;
            db.drop_it().await;
        }
    }
}

const SUBMIT: &str = "/v2/videos/generations";
const IMAGE: &str = "/v1/chat/completions";

/// Every provider at `server`: a call is tried up to three times, a submission waits 10 s for
/// its answer.
fn settings(server: &MockServer) -> AiSettings {
    AiSettings {
        sora_api_key: Some(ApiKey::new("sora-key")),
        sora_api_base: server.uri(),
        nano_banana_api_key: Some(ApiKey::new("nb-key")),
        nano_banana_api_base: server.uri(),
        max_retries: 2,
        retry_base_delay_ms: 1,
        retry_max_delay_ms: 5,
        video_request_timeout_secs: 10,
        video_poll_interval_ms: 20,
        download_allow_local: true,
        ..AiSettings::default()
    }
}

fn sora_at(server: &MockServer) -> Arc<dyn VideoModel> {
    drama_ai::http::sora::video_model(&settings(server)).unwrap()
}

fn nano_banana_at(server: &MockServer) -> Arc<dyn ImageModel> {
    drama_ai::http::nano_banana::image_model(&settings(server)).unwrap()
}

/// The provider's answer to a request it turns down for now, asking for a 3 s wait.
fn busy() -> ResponseTemplate {
    ResponseTemplate::new(429)
        .insert_header("retry-after", "3")
        .set_body_json(
            json!({"error": {"message": "too many requests in flight", "type": "rate_limit"}}),
        )
}

/// The POSTs `server` received at `at`.
async fn posts(server: &MockServer, at: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method == wiremock::http::Method::POST && r.url.path() == at)
        .count()
}

/// Waits until `server` received a POST at `at`.
async fn first_post(server: &MockServer, at: &str) {
    for _ in 0..1000 {
        if posts(server, at).await > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("nothing was sent to {at}");
}

/// Cancels the run once its first request at `at` was turned down, and checks that the run
/// ends cancelled with nothing more sent and every credit back but those of the tasks that
/// had completed before.
async fn cancel_after_the_first_refusal(w: &World, server: &MockServer, at: &str) {
    let before = w.balance().await;
    let run = w.generate_clip().await;
    first_post(server, at).await;
    w.app.cancel_job(&w.caller, run).await.unwrap();
    let (status, tasks) = w.settled(run).await;
    assert_eq!(status, JobStatus::Cancelled);
    // The retry would have gone out 3 s after the refusal.
    assert_eq!(posts(server, at).await, 1, "the retry was not sent");
    let started: Vec<&JobView> = tasks
        .iter()
        .filter(|t| t.attempts > 0 && t.state.as_str() != "completed")
        .collect();
    assert_eq!(started.len(), 1, "{tasks:?}");
    assert_eq!(
        started[0].state.as_str(),
        "cancelled",
        "{}: {:?}",
        started[0].key,
        started[0].error
    );
    w.app.settle_refunds().await;
    let charged: i64 = tasks
        .iter()
        .filter(|t| t.state.as_str() == "completed")
        .map(|t| t.cost)
        .sum();
    assert_eq!(before - w.balance().await, charged, "the rest is refunded");
}

/// The video submission is turned down with a 429 asking for 3 s; the run is cancelled in
/// that pause.
async fn a_cancel_while_a_submission_waits_to_retry_sends_nothing_more_and_refunds(
    backend: Backend,
) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SUBMIT))
        .respond_with(busy())
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SUBMIT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"task_id": "billed"})))
        .mount(&server)
        .await;
    let ai = AiProviders::offline(7).with_video_model(sora_at(&server));
    let w = world(backend, ai, Duration::from_secs(5)).await;
    cancel_after_the_first_refusal(&w, &server, SUBMIT).await;
    w.stop().await;
}

/// The same for an image call (the first image of the run: the character's portrait).
async fn a_cancel_while_an_image_call_waits_to_retry_sends_nothing_more_and_refunds(
    backend: Backend,
) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(IMAGE))
        .respond_with(busy())
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let portrait = drama_ai::ImageRequest {
        kind: drama_ai::ImageKind::Portrait,
        prompt: "p".into(),
        label: "p".into(),
        references: Vec::new(),
    };
    let png = OfflineProvider::new(7)
        .generate_image(&portrait)
        .await
        .unwrap()
        .output
        .bytes;
    Mock::given(method("GET"))
        .and(path("/files/out.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(png.to_vec()))
        .mount(&server)
        .await;
    let content = format!("![image]({}/files/out.png)", server.uri());
    Mock::given(method("POST"))
        .and(path(IMAGE))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "nano-banana",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}]})))
        .mount(&server)
        .await;
    let ai = AiProviders::offline(7).with_image_model(nano_banana_at(&server));
    let w = world(backend, ai, Duration::from_secs(5)).await;
    cancel_after_the_first_refusal(&w, &server, IMAGE).await;
    w.stop().await;
}

/// The provider takes the submission and answers it late; the worker shuts down meanwhile,
/// past a grace too short for the answer, so its handler stops between the request and the
/// checkpoint of the task id, and the task is handed back. The next worker's attempt must not
/// submit again: the task ends failed with the submission uncertain, and refunded. Resuming it
/// is the user's deliberate choice, and submits again (that render is taken and delivered).
async fn a_submission_cut_off_by_a_stopped_worker_is_not_sent_again_until_resumed(
    backend: Backend,
) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SUBMIT))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"task_id": "lost"}))
                .set_delay(Duration::from_secs(2)),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    // The resumed submission is first turned down with the provider's error in a success.
    Mock::given(method("POST"))
        .and(path(SUBMIT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"error": {
            "message": "upstream overloaded, please try again", "type": "server_error"}})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(SUBMIT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"task_id": "resumed"})))
        .mount(&server)
        .await;
    let video = OfflineProvider::new(7)
        .render_video(&drama_ai::VideoRequest {
            prompt: "v".into(),
            label: "v".into(),
            reference: None,
            duration: drama_ai::VideoDuration::Ten,
        })
        .bytes;
    Mock::given(method("GET"))
        .and(path(format!("{SUBMIT}/resumed")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "task_id": "resumed", "status": "SUCCESS", "progress": "100%",
            "data": {"output": format!("{}/files/clip.mp4", server.uri())}})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/clip.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(video.to_vec()))
        .mount(&server)
        .await;
    let ai = AiProviders::offline(7).with_video_model(sora_at(&server));
    let mut w = world(backend, ai, Duration::from_millis(100)).await;
    let before = w.balance().await;
    let run = w.generate_clip().await;
    first_post(&server, SUBMIT).await;
    w.stop_worker().await;
    w.start_worker(Duration::from_secs(5)).await;
    let (status, tasks) = w.settled(run).await;
    assert_eq!(posts(&server, SUBMIT).await, 1, "one paid render");
    assert_eq!(status, JobStatus::Failed);
    let clip = tasks.iter().find(|t| t.kind == "clip").unwrap();
    assert_eq!(clip.state.as_str(), "failed");
    let error = clip.error.as_deref().unwrap_or_default();
    assert!(error.contains("may have been accepted"), "{error}");
    w.app.settle_refunds().await;
    let charged: i64 = tasks
        .iter()
        .filter(|t| t.state.as_str() == "completed")
        .map(|t| t.cost)
        .sum();
    assert_eq!(before - w.balance().await, charged, "the clip is refunded");

    // The user resumes the failed clip: it is submitted again (turned down once with the
    // provider's error, which took nothing, so sent once more) and delivered.
    w.app.resume_job(&w.caller, clip.id).await.unwrap();
    let (status, tasks) = w.settled(run).await;
    assert_eq!(status, JobStatus::Completed);
    assert_eq!(
        posts(&server, SUBMIT).await,
        3,
        "the resume submitted again"
    );
    let clip = tasks.iter().find(|t| t.kind == "clip").unwrap();
    assert_eq!(clip.state.as_str(), "completed", "{:?}", clip.error);
    w.stop().await;
}
