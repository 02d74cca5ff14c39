//! What a run meets when the drama changes under it: an id taken while a premise run was
//! settled costs no call when the run is resumed (or when its write comes up anyway), a
//! deleted drama's runs stop and give back what had not started, and scenes stored while the
//! episode's scenes were being written stay, while a drama deleted then still pays for the
//! call that wrote them. Script calls go to a mock Gemini server; on
//! in-memory ports and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use drama_ai::{
    AiError, AiProviders, AiSettings, ApiKey, Generated, GeneratedImage, ImageModel,
    ImageProviderChoice, ImageRequest, ModelInfo, OfflineProvider,
};
use drama_app::pipeline::spec::kind;
use drama_app::pipeline::{PremiseRequest, Scope};
use drama_app::{App, AppError, Caller, Ports};
use drama_dal::{CreditReason, Entity, Store};
use drama_domain::{EpisodeId, JobStatus};
use drama_jobs::{JobId, JobView, MemoryJobStore, NodeType, Worker, WorkerConfig, WorkerHandle};
use drama_postgres::jobs::PgJobStore;
use drama_testkit::builders;
use drama_testkit::pg::ScratchDb;
use serde_json::json;
use support::{Backend, migrated, on_every_backend, pg_ports, user_with, worker_config};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod support;

on_every_backend!("under_runs":
    resuming_a_premise_run_whose_id_was_taken_is_refused_and_costs_nothing,
    a_write_whose_id_was_taken_fails_before_its_call,
    deleting_a_drama_stops_its_runs,
    scenes_stored_while_scenes_are_written_stay,
    scenes_stored_before_their_task_runs_cost_nothing,
    resuming_a_run_of_a_deleted_drama_is_refused,
    a_drama_deleted_under_a_queued_run_costs_no_portrait,
    deleting_a_drama_while_its_scenes_are_written_charges_the_call,
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

/// Providers whose scripts are written by the Gemini client at `server`; images and videos
/// offline.
fn gemini_at(server: &MockServer) -> AiProviders {
    AiProviders::from_settings(&AiSettings {
        gemini_api_key: Some(ApiKey::new("gem-key")),
        gemini_api_base: server.uri(),
        image_provider: ImageProviderChoice::Offline,
        max_retries: 0,
        retry_base_delay_ms: 1,
        retry_max_delay_ms: 5,
        text_timeout_secs: 10,
        ..AiSettings::default()
    })
    .unwrap()
}

/// The pipeline on `backend` with `ai`, priced, and a user holding 10 000 tokens; no worker
/// runs until [`World::start`].
async fn world(backend: Backend, ai: AiProviders) -> World {
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
    World {
        app,
        store,
        jobs,
        worker: None,
        database,
        caller: Caller::user(user),
    }
}

impl World {
    /// Starts a worker that sees cancellations within 100 ms.
    async fn start(&mut self) {
        let config = WorkerConfig {
            heartbeat_interval: Duration::from_millis(100),
            ..worker_config()
        };
        let registry = self.app.registry();
        self.worker = Some(match &self.jobs {
            Jobs::Memory(jobs) => {
                Workers::Memory(Worker::start(jobs.clone(), registry, config).await.unwrap())
            }
            Jobs::Postgres(jobs) => {
                Workers::Postgres(Worker::start(jobs.clone(), registry, config).await.unwrap())
            }
        });
    }

    async fn balance(&self) -> i64 {
        self.store.get_user(self.caller.user).await.unwrap().tokens
    }

    /// Starts writing a drama `id` from a premise.
    async fn premise(&self, id: &str) -> JobId {
        self.app
            .create_from_premise(
                &self.caller,
                PremiseRequest {
                    premise: "A corgi builds a rocket. 2 episodes.".into(),
                    id: Some(id.into()),
                    ..PremiseRequest::default()
                },
            )
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

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// The run was cancelled while its write was queued (refunded), the user then stored a drama
/// under the id: resuming would pay for a call whose drama cannot be stored. It is refused
/// with `AlreadyExists`, nothing is charged, and no call is made.
async fn resuming_a_premise_run_whose_id_was_taken_is_refused_and_costs_nothing(backend: Backend) {
    let server = MockServer::start().await;
    let mut w = world(backend, gemini_at(&server)).await;
    let before = w.balance().await;
    let run = w.premise("x1").await;
    assert!(w.balance().await < before, "the write is paid for");
    w.app.cancel_job(&w.caller, run).await.unwrap();
    w.app.settle_refunds().await;
    assert_eq!(w.balance().await, before, "the queued write was refunded");

    let stored = w
        .app
        .create_drama(&w.caller, &builders::drama("x1", 2, 1, 1))
        .await;
    assert!(stored.is_ok(), "no run writes x1 any more: {stored:?}");
    let resumed = w.app.resume_job(&w.caller, run).await;
    assert!(
        matches!(resumed, Err(AppError::AlreadyExists { ref id, .. }) if id == "x1"),
        "{resumed:?}"
    );
    w.app.settle_refunds().await;
    assert_eq!(w.balance().await, before, "nothing charged");

    w.start().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = w.settled(run).await;
    assert_eq!(status, JobStatus::Cancelled, "nothing re-queued");
    assert_eq!(requests(&server).await, 0, "no script call");
    w.stop().await;
}

/// A drama stored under the id past the API's checks while the write was queued: the write
/// fails before calling the model, and is refunded.
async fn a_write_whose_id_was_taken_fails_before_its_call(backend: Backend) {
    let server = MockServer::start().await;
    let mut w = world(backend, gemini_at(&server)).await;
    let before = w.balance().await;
    let run = w.premise("x2").await;
    let someone = user_with(&*w.store, 0).await;
    w.store
        .create(someone, &builders::drama("x2", 1, 1, 1))
        .await
        .unwrap();
    w.start().await;
    let (status, tasks) = w.settled(run).await;
    assert_eq!(requests(&server).await, 0, "no script call");
    assert_eq!(status, JobStatus::Failed);
    let write = tasks.iter().find(|t| t.kind == kind::WRITE_DRAMA).unwrap();
    assert!(
        write.error.as_deref().unwrap_or_default().contains("taken"),
        "{:?}",
        write.error
    );
    w.app.settle_refunds().await;
    assert_eq!(w.balance().await, before, "refunded");
    w.stop().await;
}

/// The offline image provider behind a gate: every call records its prompt when it starts,
/// then waits until the gate opens.
struct Gated {
    inner: OfflineProvider,
    started: Mutex<Vec<String>>,
    gate: tokio::sync::Semaphore,
}

impl Gated {
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
        self.started.lock().unwrap().push(request.prompt.clone());
        drop(self.gate.acquire().await.unwrap());
        self.inner.generate_image(request).await
    }
}

/// Deleted while its first image calls wait at the provider: those finish (charged), nothing
/// else starts, what had not started is refunded, and the run settles.
async fn deleting_a_drama_stops_its_runs(backend: Backend) {
    let provider = Arc::new(Gated {
        inner: OfflineProvider::new(7),
        started: Mutex::new(Vec::new()),
        gate: tokio::sync::Semaphore::new(0),
    });
    let ai = AiProviders::offline(7).with_image_model(provider.clone());
    let mut w = world(backend, ai).await;
    w.start().await;
    let before = w.balance().await;
    let drama = builders::drama("doomed", 2, 1, 2);
    w.store.create(w.caller.user, &drama).await.unwrap();
    let run = w
        .app
        .generate(&w.caller, &drama.id, Scope::Drama, false)
        .await
        .unwrap()
        .job_id;
    for _ in 0..500 {
        if provider.started().len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(provider.started().len(), 2, "{:?}", provider.started());
    w.app.delete_drama(&w.caller, &drama.id).await.unwrap();
    // Long enough for the workers to see the cancellation (they heartbeat every 100 ms).
    tokio::time::sleep(Duration::from_millis(600)).await;
    provider.gate.add_permits(1000);
    let (status, tasks) = w.settled(run).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        provider.started().len(),
        2,
        "nothing started after the delete: {:?}",
        provider.started()
    );
    assert_eq!(status, JobStatus::Cancelled);
    w.app.settle_refunds().await;
    let charged: i64 = tasks
        .iter()
        .filter(|t| t.state.as_str() == "completed")
        .map(|t| t.cost)
        .sum();
    assert!(
        tasks
            .iter()
            .filter(|t| t.state.as_str() != "completed")
            .all(|t| t.state.as_str() == "cancelled"),
        "{:?}",
        tasks
            .iter()
            .map(|t| (&t.key, t.state.as_str()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        before - w.balance().await,
        charged,
        "the calls in flight are paid, the rest refunded"
    );
    w.stop().await;
}

/// The offline image provider behind an open gate, recording what it is asked for.
fn open_gate() -> Arc<Gated> {
    Arc::new(Gated {
        inner: OfflineProvider::new(7),
        started: Mutex::new(Vec::new()),
        gate: tokio::sync::Semaphore::new(1000),
    })
}

/// Deleting the drama cancelled its queued run and refunded it; resuming that run would pay
/// for portraits that have nowhere to go (a portrait reads nothing of the drama before its
/// call). The resume is refused as not found, naming the drama, and costs nothing.
async fn resuming_a_run_of_a_deleted_drama_is_refused(backend: Backend) {
    let provider = open_gate();
    let ai = AiProviders::offline(7).with_image_model(provider.clone());
    let mut w = world(backend, ai).await;
    let before = w.balance().await;
    let drama = builders::drama("gone", 2, 1, 1);
    w.store.create(w.caller.user, &drama).await.unwrap();
    let run = w
        .app
        .generate(&w.caller, &drama.id, Scope::Drama, false)
        .await
        .unwrap()
        .job_id;
    assert!(w.balance().await < before, "the run is paid for");
    w.app.delete_drama(&w.caller, &drama.id).await.unwrap();
    w.app.settle_refunds().await;
    assert_eq!(w.balance().await, before, "the cancelled run was refunded");

    let resumed = w.app.resume_job(&w.caller, run).await;
    assert!(
        matches!(
            resumed,
            Err(AppError::NotFound { entity: Entity::Drama, ref id }) if id == "gone"
        ),
        "{resumed:?}"
    );
    w.app.settle_refunds().await;
    assert_eq!(w.balance().await, before, "nothing charged");
    w.start().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, _) = w.settled(run).await;
    assert_eq!(status, JobStatus::Cancelled, "nothing re-queued");
    assert!(provider.started().is_empty(), "{:?}", provider.started());
    w.stop().await;
}

/// The drama goes past the API (no run is cancelled) while its run is queued: its portraits
/// find their assets gone before calling the provider, fail, and are refunded, where they
/// used to pay for images that nothing could take.
async fn a_drama_deleted_under_a_queued_run_costs_no_portrait(backend: Backend) {
    let provider = open_gate();
    let ai = AiProviders::offline(7).with_image_model(provider.clone());
    let mut w = world(backend, ai).await;
    let before = w.balance().await;
    let drama = builders::drama("gone", 2, 1, 1);
    w.store.create(w.caller.user, &drama).await.unwrap();
    let run = w
        .app
        .generate(&w.caller, &drama.id, Scope::Drama, false)
        .await
        .unwrap()
        .job_id;
    w.store.delete(w.caller.user, &drama.id).await.unwrap();
    w.start().await;
    let (_, tasks) = w.settled(run).await;
    assert!(provider.started().is_empty(), "{:?}", provider.started());
    let portraits: Vec<&JobView> = tasks.iter().filter(|t| t.kind == kind::PORTRAIT).collect();
    assert_eq!(portraits.len(), 2);
    for p in portraits {
        assert_eq!(p.state.as_str(), "failed", "{:?}", p.error);
        assert!(
            p.error
                .as_deref()
                .unwrap_or_default()
                .contains("no longer exists"),
            "{:?}",
            p.error
        );
    }
    w.app.settle_refunds().await;
    assert_eq!(w.balance().await, before, "nothing was paid for");
    w.stop().await;
}

/// A Gemini answer carrying scenes for episode `e0` of a builder drama.
fn scenes_answer() -> serde_json::Value {
    let scenes: Vec<serde_json::Value> = (1..=3)
        .map(|n| {
            json!({
                "id": format!("written-{n}"),
                "description": format!("Scene {n}: they argue."),
                "storyboard": {"id": format!("written-{n}-storyboard"), "prompt": "Wide shot.", "character_ids": ["c0"]},
                "clip": {"id": format!("written-{n}-clip"), "prompt": "Slow push-in.", "duration": 10}
            })
        })
        .collect();
    let text = json!({ "scenes": scenes }).to_string();
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
            "index": 0
        }],
        "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 80, "totalTokenCount": 200}
    })
}

/// While the model writes an episode's scenes, the user stores a scene of their own in it:
/// that scene stays, no storyboards or clips follow (nothing paid for them), and the call is
/// settled as any.
async fn scenes_stored_while_scenes_are_written_stay(backend: Backend) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(":generateContent$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(scenes_answer())
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&server)
        .await;
    let mut w = world(backend, gemini_at(&server)).await;
    w.start().await;
    let drama = builders::drama("sc", 2, 1, 0);
    w.store.create(w.caller.user, &drama).await.unwrap();
    let episode = EpisodeId::parse("e0").unwrap();
    let run = w
        .app
        .generate(&w.caller, &drama.id, Scope::Episode(episode), false)
        .await
        .unwrap()
        .job_id;
    for _ in 0..500 {
        if requests(&server).await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(requests(&server).await, 1, "the scenes are being written");
    let stored = w
        .store
        .get_complete(w.caller.user, &drama.id)
        .await
        .unwrap();
    let mut mine = stored.drama.clone();
    mine.episodes[0].scenes = builders::drama("sc", 2, 1, 1).episodes[0].scenes.clone();
    w.store
        .save_complete(w.caller.user, &mine, Some(stored.version))
        .await
        .unwrap();

    let (_, tasks) = w.settled(run).await;
    let write = tasks.iter().find(|t| t.kind == kind::WRITE_SCENES).unwrap();
    assert_eq!(write.state.as_str(), "completed", "{:?}", write.error);
    assert_eq!(write.result.as_ref().unwrap()["applied"], false);
    let after = w
        .store
        .get_complete(w.caller.user, &drama.id)
        .await
        .unwrap();
    let scenes: Vec<&str> = after.drama.episodes[0]
        .scenes
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(scenes, vec!["e0-s0"], "the user's scene stays");
    assert!(
        tasks
            .iter()
            .all(|t| t.kind != kind::STORYBOARD && t.kind != kind::CLIP),
        "nothing follows the scenes that were not stored"
    );
    let ledger = w.store.ledger(w.caller.user, 100, 0).await.unwrap();
    assert!(
        !ledger
            .iter()
            .any(|e| e.reason == CreditReason::Expansion && e.run_id == Some(run.0)),
        "{ledger:?}"
    );
    assert_eq!(requests(&server).await, 1, "one call");
    w.stop().await;
}

/// The user stores scenes in the episode while its `write_scenes` task is still queued: the
/// task finds them and makes no call, so its price (per call here: the default catalog has no
/// token prices) is given back whole, not kept for a call that was never made.
async fn scenes_stored_before_their_task_runs_cost_nothing(backend: Backend) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(":generateContent$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(scenes_answer()))
        .mount(&server)
        .await;
    let mut w = world(backend, gemini_at(&server)).await;
    let drama = builders::drama("sc", 2, 1, 0);
    w.store.create(w.caller.user, &drama).await.unwrap();
    let before = w.balance().await;
    let run = w
        .app
        .generate(
            &w.caller,
            &drama.id,
            Scope::Episode(EpisodeId::parse("e0").unwrap()),
            false,
        )
        .await
        .unwrap()
        .job_id;
    let paid = before - w.balance().await;
    assert!(paid > 0, "the scenes are paid for when the run starts");
    let stored = w
        .store
        .get_complete(w.caller.user, &drama.id)
        .await
        .unwrap();
    let mut mine = stored.drama.clone();
    mine.episodes[0].scenes = builders::drama("sc", 2, 1, 1).episodes[0].scenes.clone();
    w.store
        .save_complete(w.caller.user, &mine, Some(stored.version))
        .await
        .unwrap();

    w.start().await;
    let (_, tasks) = w.settled(run).await;
    w.app.settle_refunds().await;
    assert_eq!(requests(&server).await, 0, "no script call");
    let write = tasks.iter().find(|t| t.kind == kind::WRITE_SCENES).unwrap();
    assert_eq!(write.state.as_str(), "completed", "{:?}", write.error);
    assert_eq!(write.cost, 0, "a task that made no call costs nothing");
    let others: i64 = tasks
        .iter()
        .filter(|t| t.kind != kind::WRITE_SCENES && t.state.as_str() == "completed")
        .map(|t| t.cost)
        .sum();
    let ledger = w.store.ledger(w.caller.user, 100, 0).await.unwrap();
    let of_run: i64 = ledger
        .iter()
        .filter(|e| e.run_id == Some(run.0))
        .map(|e| e.amount)
        .sum();
    assert_eq!(
        of_run, -others,
        "the scenes' price is given back: {ledger:?}"
    );
    assert_eq!(before - w.balance().await, others);
    w.stop().await;
}

/// The drama is deleted while the model writes an episode's scenes: the provider bills the
/// call, so the task completes charged (nothing written, nothing follows) instead of failing
/// and being refunded.
async fn deleting_a_drama_while_its_scenes_are_written_charges_the_call(backend: Backend) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(":generateContent$"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(scenes_answer())
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&server)
        .await;
    let mut w = world(backend, gemini_at(&server)).await;
    w.start().await;
    let drama = builders::drama("gone", 2, 1, 0);
    w.store.create(w.caller.user, &drama).await.unwrap();
    let before = w.balance().await;
    let run = w
        .app
        .generate(
            &w.caller,
            &drama.id,
            Scope::Episode(EpisodeId::parse("e0").unwrap()),
            false,
        )
        .await
        .unwrap()
        .job_id;
    for _ in 0..500 {
        if requests(&server).await >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(requests(&server).await, 1, "the scenes are being written");
    w.app.delete_drama(&w.caller, &drama.id).await.unwrap();

    let (_, tasks) = w.settled(run).await;
    let write = tasks.iter().find(|t| t.kind == kind::WRITE_SCENES).unwrap();
    assert_eq!(write.state.as_str(), "completed", "{:?}", write.error);
    assert_eq!(write.result.as_ref().unwrap()["applied"], false);
    assert!(write.cost > 0, "the call is priced");
    assert!(
        tasks
            .iter()
            .all(|t| t.kind != kind::STORYBOARD && t.kind != kind::CLIP),
        "nothing follows"
    );
    w.app.settle_refunds().await;
    assert_eq!(
        before - w.balance().await,
        write.cost,
        "the call is charged, not refunded"
    );
    assert_eq!(requests(&server).await, 1, "one call");
    w.stop().await;
}
