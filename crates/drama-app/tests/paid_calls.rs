//! A paid provider call is paid for once and charged when it was made: a video submission
//! whose answer is lost is not sent again (by the HTTP client nor by a later attempt of its
//! task), and a cancellation that arrives while an image call is out lets the call finish, so
//! its task completes, charged, while what had not started is refunded. On in-memory ports and
//! on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drama_ai::{
    AiError, AiProviders, AiSettings, ApiKey, Generated, GeneratedImage, GeneratedVideo,
    ImageModel, ImageRequest, ModelInfo, OfflineProvider, VideoModel, VideoOutput, VideoPolling,
    VideoRequest, VideoStatus, VideoTask,
};
use drama_app::pipeline::Scope;
use drama_app::{App, Caller, Ports};
use drama_dal::Store;
use drama_domain::JobStatus;
use drama_jobs::{JobView, MemoryJobStore, NodeType, Worker, WorkerConfig, WorkerHandle};
use drama_postgres::jobs::PgJobStore;
use drama_testkit::pg::ScratchDb;
use serde_json::json;
use support::{Backend, migrated, on_every_backend, pg_ports, user_with, worker_config};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod support;

on_every_backend!("paid_calls":
    a_video_submission_whose_answer_was_lost_is_sent_once,
    a_submission_cut_off_before_its_task_id_was_recorded_is_not_sent_again,
    an_idempotent_provider_is_asked_again_after_a_cut_off_submission,
    a_cancel_lets_the_image_calls_in_flight_finish_and_charges_them,
);

enum Workers {
    Memory(WorkerHandle<MemoryJobStore>),
    Postgres(WorkerHandle<PgJobStore>),
}

struct World {
    app: App,
    store: Arc<dyn Store>,
    worker: Option<Workers>,
    database: Option<(ScratchDb, sqlx::PgPool)>,
    caller: Caller,
}

/// The pipeline on `backend` with `ai`, priced, a worker that sees cancellations within
/// 100 ms, and a user holding 10 000 tokens.
async fn world(backend: Backend, ai: AiProviders) -> World {
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let config = WorkerConfig {
        heartbeat_interval: Duration::from_millis(100),
        ..worker_config()
    };
    let (app, store, worker, database) = match backend {
        Backend::Memory => {
            let (ports, store, jobs) = Ports::memory(assets, ai);
            let app = App::new(ports).with_offline_pricing(true);
            let worker = Worker::start(jobs, app.registry(), config).await.unwrap();
            let store: Arc<dyn Store> = store;
            (app, store, Workers::Memory(worker), None)
        }
        Backend::Postgres(db) => {
            let pool = migrated(&db, 16, "").await;
            let (ports, pg, jobs) = pg_ports(&pool, assets, ai);
            let app = App::new(ports).with_offline_pricing(true);
            let worker = Worker::start(jobs, app.registry(), config).await.unwrap();
            let store: Arc<dyn Store> = pg;
            (app, store, Workers::Postgres(worker), Some((db, pool)))
        }
    };
    let user = user_with(&*store, 10_000).await;
    World {
        app,
        store,
        worker: Some(worker),
        database,
        caller: Caller::user(user),
    }
}

impl World {
    async fn balance(&self) -> i64 {
        self.store.get_user(self.caller.user).await.unwrap().tokens
    }

    /// Stores the built drama `id` and starts generating all of it.
    async fn generate(&self, id: &str, characters: usize) -> drama_jobs::JobId {
        let d = drama_testkit::builders::drama(id, characters, 1, 1);
        self.store.create(self.caller.user, &d).await.unwrap();
        self.app
            .generate(&self.caller, &d.id, Scope::Drama, false)
            .await
            .unwrap()
            .job_id
    }

    /// The run's status once it settled, and its tasks.
    async fn settled(&self, run: drama_jobs::JobId) -> (JobStatus, Vec<JobView>) {
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
        match self.worker.take() {
            Some(Workers::Memory(w)) => drop(w.shutdown().await),
            Some(Workers::Postgres(w)) => drop(w.shutdown().await),
            None => {}
        }
        if let Some((db, pool)) = self.database.take() {
            pool.close().await;
            db.drop_it().await;
        }
    }
}

const SUBMIT: &str = "/v2/videos/generations";

/// The Sora client at `server`: a submission waits 2 s for its answer, a call is tried up to
/// three times.
fn sora_at(server: &MockServer) -> Arc<dyn VideoModel> {
    let settings = AiSettings {
        sora_api_key: Some(ApiKey::new("sora-key")),
        sora_api_base: server.uri(),
        max_retries: 2,
        retry_base_delay_ms: 1,
        retry_max_delay_ms: 5,
        video_request_timeout_secs: 2,
        download_allow_local: true,
        ..AiSettings::default()
    };
    drama_ai::http::sora::video_model(&settings).unwrap()
}

/// The provider takes every submission (and would bill it) but answers after the client
/// stopped waiting: each video task sends one request, and ends failed without a second.
async fn a_video_submission_whose_answer_was_lost_is_sent_once(backend: Backend) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SUBMIT))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"task_id": "rendering"}))
                .set_delay(Duration::from_millis(3000)),
        )
        .mount(&server)
        .await;
    let ai = AiProviders::offline(7).with_video_model(sora_at(&server));
    let w = world(backend, ai).await;
    let run = w.generate("lost", 1).await;
    let (status, tasks) = w.settled(run).await;
    assert_eq!(status, JobStatus::Failed);
    let videos: Vec<&JobView> = tasks
        .iter()
        .filter(|t| t.attempts > 0 && ["clip", "audition"].contains(&t.kind.as_str()))
        .collect();
    assert!(!videos.is_empty(), "a video task ran");
    for task in &videos {
        assert_eq!(task.attempts, 1, "{}: not attempted again", task.key);
        assert_eq!(task.state.as_str(), "failed", "{}", task.key);
        let error = task.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("may have been accepted"),
            "{}: {error}",
            task.key
        );
    }
    // What each task sent, by its prompt (a request the client gave up on while it was still
    // being sent, on a loaded machine, never arrives, and cannot have been billed either).
    let prompts: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method == wiremock::http::Method::POST)
        .map(|r| r.body_json::<serde_json::Value>().unwrap()["prompt"].to_string())
        .collect();
    assert!(!prompts.is_empty(), "the provider took a submission");
    for prompt in &prompts {
        let copies = prompts.iter().filter(|p| *p == prompt).count();
        assert_eq!(copies, 1, "one paid render per video task: {prompts:?}");
    }
    assert!(prompts.len() <= videos.len(), "{prompts:?}");
    w.stop().await;
}

/// A video model whose first submission of each prompt goes out and is then cut off, as by a
/// worker killed after sending it and before recording the task id (the handler panics, and
/// the engine retries the task like an attempt that was lost).
struct CutOff {
    inner: Arc<dyn VideoModel>,
    sent: Mutex<Vec<String>>,
}

impl CutOff {
    fn new(inner: Arc<dyn VideoModel>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            sent: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait::async_trait]
impl VideoModel for CutOff {
    fn model(&self) -> ModelInfo {
        self.inner.model()
    }
    fn polling(&self) -> VideoPolling {
        self.inner.polling()
    }
    fn submission_is_idempotent(&self) -> bool {
        self.inner.submission_is_idempotent()
    }
    async fn submit(&self, request: &VideoRequest) -> Result<Generated<VideoTask>, AiError> {
        let first = {
            let mut sent = self.sent.lock().unwrap();
            let first = !sent.contains(&request.prompt);
            sent.push(request.prompt.clone());
            first
        };
        let submitted = self.inner.submit(request).await;
        assert!(!first, "cut off after sending the submission");
        submitted
    }
    async fn poll(&self, task_id: &str) -> Result<VideoStatus, AiError> {
        self.inner.poll(task_id).await
    }
    async fn download(&self, output: &VideoOutput) -> Result<GeneratedVideo, AiError> {
        self.inner.download(output).await
    }
}

/// The video tasks of a settled run that ran.
fn video_tasks(tasks: &[JobView]) -> Vec<&JobView> {
    let videos: Vec<&JobView> = tasks
        .iter()
        .filter(|t| t.attempts > 0 && ["clip", "audition"].contains(&t.kind.as_str()))
        .collect();
    assert!(!videos.is_empty(), "a video task ran");
    videos
}

/// A paying provider took each submission, and the attempt that sent it stopped before the
/// task id was recorded: the next attempt finds the mark of the submission and ends the task
/// failed (refunded) instead of paying for a second render.
async fn a_submission_cut_off_before_its_task_id_was_recorded_is_not_sent_again(
    backend: Backend,
) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(SUBMIT))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"task_id": "rendering"})))
        .mount(&server)
        .await;
    let cut = CutOff::new(sora_at(&server));
    let ai = AiProviders::offline(7).with_video_model(cut.clone());
    let w = world(backend, ai).await;
    let before = w.balance().await;
    let run = w.generate("cut", 1).await;
    let (status, tasks) = w.settled(run).await;
    assert_eq!(status, JobStatus::Failed);
    for task in video_tasks(&tasks) {
        assert_eq!(task.attempts, 2, "{}: the cut-off attempt and one more", task.key);
        assert_eq!(task.state.as_str(), "failed", "{}", task.key);
        let error = task.error.as_deref().unwrap_or_default();
        assert!(
            error.contains("before the provider's task id was recorded"),
            "{}: {error}",
            task.key
        );
    }
    let sent = cut.sent.lock().unwrap().clone();
    for prompt in &sent {
        let copies = sent.iter().filter(|p| *p == prompt).count();
        assert_eq!(copies, 1, "one paid render per video task: {sent:?}");
    }
    let posts = server.received_requests().await.unwrap().len();
    assert_eq!(posts, sent.len(), "every submission reached the provider once");
    // What failed is refunded: the user pays for what completed only.
    w.app.settle_refunds().await;
    let paid: i64 = tasks
        .iter()
        .filter(|t| t.state.as_str() == "completed")
        .map(|t| t.cost)
        .sum();
    assert_eq!(before - w.balance().await, paid, "failed renders are refunded");
    w.stop().await;
}

/// The same cut-off with a provider that takes a repeated request as the same task and bills
/// it once (the offline provider): the next attempt asks again and the run completes.
async fn an_idempotent_provider_is_asked_again_after_a_cut_off_submission(backend: Backend) {
    let offline: Arc<dyn VideoModel> = Arc::new(OfflineProvider::new(7));
    assert!(offline.submission_is_idempotent());
    let cut = CutOff::new(offline);
    let ai = AiProviders::offline(7).with_video_model(cut.clone());
    let w = world(backend, ai).await;
    let run = w.generate("again", 1).await;
    let (status, tasks) = w.settled(run).await;
    assert_eq!(status, JobStatus::Completed);
    for task in video_tasks(&tasks) {
        assert_eq!(task.attempts, 2, "{}", task.key);
        assert_eq!(task.state.as_str(), "completed", "{}", task.key);
    }
    w.stop().await;
}

/// The offline provider behind a gate: every call records its prompt when it starts, then
/// waits until the gate opens.
struct Gated {
    inner: OfflineProvider,
    started: Mutex<Vec<String>>,
    gate: tokio::sync::Semaphore,
}

impl Gated {
    async fn enter(&self, prompt: &str) {
        self.started.lock().unwrap().push(prompt.to_owned());
        drop(self.gate.acquire().await.unwrap());
    }

    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl ImageModel for Gated {
    fn model(&self) -> ModelInfo {
        ImageModel::model(&self.inner)
    }
    fn max_references(&self) -> usize {
        self.inner.max_references()
    }
    async fn generate_image(
        &self,
        request: &ImageRequest,
    ) -> Result<Generated<GeneratedImage>, AiError> {
        self.enter(&request.prompt).await;
        self.inner.generate_image(request).await
    }
}

#[async_trait::async_trait]
impl VideoModel for Gated {
    fn model(&self) -> ModelInfo {
        VideoModel::model(&self.inner)
    }
    fn polling(&self) -> VideoPolling {
        self.inner.polling()
    }
    async fn submit(&self, request: &VideoRequest) -> Result<Generated<VideoTask>, AiError> {
        self.enter(&request.prompt).await;
        self.inner.submit(request).await
    }
    async fn poll(&self, task_id: &str) -> Result<VideoStatus, AiError> {
        self.inner.poll(task_id).await
    }
    async fn download(&self, output: &VideoOutput) -> Result<GeneratedVideo, AiError> {
        self.inner.download(output).await
    }
}

/// Cancelled while the first image calls wait at the provider: those calls finish, their
/// tasks complete and are charged; every task whose call had not started is refunded.
async fn a_cancel_lets_the_image_calls_in_flight_finish_and_charges_them(backend: Backend) {
    let provider = Arc::new(Gated {
        inner: OfflineProvider::new(7),
        started: Mutex::new(Vec::new()),
        gate: tokio::sync::Semaphore::new(0),
    });
    let ai = AiProviders::offline(7)
        .with_image_model(provider.clone())
        .with_video_model(provider.clone());
    let w = world(backend, ai).await;
    let before = w.balance().await;
    let run = w.generate("cancelled", 2).await;
    // The first tasks (the portraits, which wait for nothing) are at the provider.
    for _ in 0..500 {
        if provider.started().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(provider.started().len(), 2, "{:?}", provider.started());
    w.app.cancel_job(&w.caller, run).await.unwrap();
    // Long enough for the workers to see the cancellation (they heartbeat every 100 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    provider.gate.add_permits(1000);
    let (status, tasks) = w.settled(run).await;
    assert_eq!(status, JobStatus::Cancelled);
    w.app.settle_refunds().await;

    let called = provider.started();
    assert_eq!(
        called.len(),
        2,
        "nothing started after the cancel: {called:?}"
    );
    let in_flight: Vec<&JobView> = tasks
        .iter()
        .filter(|t| called.iter().any(|p| t.payload["prompt"] == p.as_str()))
        .collect();
    assert_eq!(in_flight.len(), 2, "{called:?}");
    for task in &in_flight {
        assert_eq!(
            task.state.as_str(),
            "completed",
            "{}: {:?}",
            task.key,
            task.error
        );
    }
    for task in tasks
        .iter()
        .filter(|t| !in_flight.iter().any(|f| f.id == t.id))
    {
        assert_eq!(task.state.as_str(), "cancelled", "{}", task.key);
    }
    let charged: i64 = in_flight.iter().map(|t| t.cost).sum();
    assert!(charged > 0);
    assert_eq!(
        before - w.balance().await,
        charged,
        "the calls in flight are paid, the rest refunded"
    );
    w.stop().await;
}
