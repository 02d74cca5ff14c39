//! What a request is charged when its work produces nothing usable, or there is no work: a
//! script call whose answer the provider billed but that cannot be stored (it breaks the drama
//! rules, or the bounds of a drama's size and text) fails its task charged, is not refunded,
//! and a resume neither calls the model again nor charges; a generate request with nothing
//! out of date adds no run and no ledger row per request. In memory and on PostgreSQL, against
//! a mock provider speaking OpenAI's wire format.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use drama_ai::{AiProviders, AiSettings, ApiKey, OfflineProvider};
use drama_app::pipeline::jobs_port::EngineJobs;
use drama_app::pipeline::memory_generation::MemoryGeneration;
use drama_app::pipeline::spec::kind;
use drama_app::pipeline::{PremiseRequest, Scope};
use drama_app::{App, AppError, Caller, Ports, RequestKey, TextLimits};
use drama_dal::{CreditReason, LedgerEntry, MemoryStore, Store};
use drama_domain::{DramaId, EpisodeId, JobStatus};
use drama_jobs::{JobId, JobState, JobView, MemoryJobStore, NodeType, Worker, WorkerHandle};
use drama_postgres::jobs::PgJobStore;
use drama_testkit::pg::ScratchDb;
use serde_json::json;
use support::{Backend, migrated, on_every_backend, pg_ports, user_with, worker_config};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

mod support;

on_every_backend!("charges":
    a_drama_the_model_wrote_against_the_rules_is_charged_once_and_not_refunded,
    scenes_written_past_the_text_bounds_are_charged_and_not_stored,
    a_generate_with_nothing_to_do_adds_no_run_and_no_ledger_row,
    two_overlapping_generates_pay_for_the_work_once,
);

const START: i64 = 10_000;

enum Workers {
    Memory(WorkerHandle<MemoryJobStore>, Arc<MemoryJobStore>),
    Postgres(WorkerHandle<PgJobStore>),
}

struct World {
    app: App,
    store: Arc<dyn Store>,
    offline: Arc<OfflineProvider>,
    idle: Option<Idle>,
    worker: Option<Workers>,
    database: Option<(ScratchDb, sqlx::PgPool)>,
    caller: Caller,
}

/// The engine of a world whose worker has not started yet.
enum Idle {
    Memory(Arc<MemoryJobStore>),
    Postgres(Arc<PgJobStore>),
}

async fn world(backend: Backend, ai: AiProviders, limits: TextLimits) -> World {
    let mut w = idle_world(backend, ai, limits).await;
    w.start().await;
    w
}

/// A world whose worker starts at [`World::start`]: runs submitted before it wait.
async fn idle_world(backend: Backend, ai: AiProviders, limits: TextLimits) -> World {
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let offline = ai.offline_provider();
    let (app, store, idle, database) = match backend {
        Backend::Memory => {
            let store = Arc::new(MemoryStore::new());
            let jobs = Arc::new(MemoryJobStore::with_invariant_checks());
            let ports = Ports {
                store: store.clone(),
                assets,
                generation: Arc::new(MemoryGeneration::new(store.clone(), jobs.clone())),
                jobs: Arc::new(EngineJobs(jobs.clone())),
                ai,
            };
            let app = App::new(ports)
                .with_offline_pricing(true)
                .with_text_limits(limits);
            let store: Arc<dyn Store> = store;
            (app, store, Idle::Memory(jobs), None)
        }
        Backend::Postgres(db) => {
            let pool = migrated(&db, 16, "").await;
            let (ports, pg, jobs) = pg_ports(&pool, assets, ai);
            let app = App::new(ports)
                .with_offline_pricing(true)
                .with_text_limits(limits);
            let store: Arc<dyn Store> = pg;
            (app, store, Idle::Postgres(jobs), Some((db, pool)))
        }
    };
    let user = user_with(&*store, START).await;
    World {
        app,
        store,
        offline,
        idle: Some(idle),
        worker: None,
        database,
        caller: Caller::user(user),
    }
}

impl World {
    /// Starts the worker.
    async fn start(&mut self) {
        let registry = self.app.registry();
        self.worker = match self.idle.take() {
            Some(Idle::Memory(jobs)) => Some(Workers::Memory(
                Worker::start(jobs.clone(), registry, worker_config())
                    .await
                    .unwrap(),
                jobs,
            )),
            Some(Idle::Postgres(jobs)) => Some(Workers::Postgres(
                Worker::start(jobs, registry, worker_config())
                    .await
                    .unwrap(),
            )),
            None => return,
        };
    }

    /// The run's status once it settled (refunds paid), and its tasks.
    async fn settled(&self, run: JobId) -> (JobStatus, Vec<JobView>) {
        for _ in 0..3000 {
            let view = self.app.job(&self.caller, run).await.unwrap();
            if view.state.is_settled() {
                self.app.settle_refunds().await;
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

    /// How many runs the drama has.
    async fn runs(&self, id: &DramaId) -> usize {
        self.app
            .jobs_of_drama(&self.caller, id, false)
            .await
            .unwrap()
            .len()
    }

    async fn balance(&self) -> i64 {
        self.store.get_user(self.caller.user).await.unwrap().tokens
    }

    async fn ledger(&self) -> Vec<LedgerEntry> {
        self.store.ledger(self.caller.user, 100, 0).await.unwrap()
    }

    /// Every balance equals the sum of its ledger, (in memory) every run kept its invariants,
    /// and a run's ledger rows add up to what its job record says it cost.
    async fn check_books(&self, runs: &[JobId]) {
        assert_eq!(self.store.check_ledger().await.unwrap(), vec![]);
        let ledger = self.ledger().await;
        assert_eq!(
            self.balance().await,
            ledger.iter().map(|e| e.amount).sum::<i64>()
        );
        for run in runs {
            let costs = self
                .app
                .job(&self.caller, *run)
                .await
                .unwrap()
                .costs
                .unwrap();
            let rows: i64 = ledger
                .iter()
                .filter(|e| e.run_id == Some(run.0))
                .map(|e| e.amount)
                .sum();
            assert_eq!(rows, -(costs.total - costs.refunded), "{costs:?}");
        }
        if let Some(Workers::Memory(_, jobs)) = &self.worker {
            assert_eq!(jobs.violations(), Vec::<String>::new());
        }
    }

    async fn stop(mut self) {
        match self.worker.take() {
            Some(Workers::Memory(w, _)) => drop(w.shutdown().await),
            Some(Workers::Postgres(w)) => drop(w.shutdown().await),
            None => {}
        }
        if let Some((db, pool)) = self.database.take() {
            pool.close().await;
            db.drop_it().await;
        }
    }
}

/// Scripts of `gpt-5.1` from OpenAI at `server`; images and clips offline.
fn openai_at(server: &MockServer) -> AiProviders {
    AiProviders::from_settings(&AiSettings {
        openai_api_key: Some(ApiKey::new("openai-key")),
        openai_api_base: format!("{}/v1", server.uri()),
        max_retries: 0,
        ..AiSettings::default()
    })
    .unwrap()
}

/// A chat completion whose answer is a JSON object that is no drama.
fn no_drama() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-5.1",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "{\"title\": \"\"}"}}],
        "usage": {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940}
    }))
}

async fn a_drama_the_model_wrote_against_the_rules_is_charged_once_and_not_refunded(
    backend: Backend,
) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(no_drama())
        .mount(&server)
        .await;
    let w = world(backend, openai_at(&server), TextLimits::default()).await;
    let run = w
        .app
        .create_from_premise(
            &w.caller,
            PremiseRequest {
                premise: "A corgi runs a rocket company, in 2 episodes".into(),
                id: Some("corgi".into()),
                model: Some("gpt-5.1".into()),
                ..PremiseRequest::default()
            },
        )
        .await
        .unwrap()
        .job_id;
    let (status, tasks) = w.settled(run).await;
    assert_eq!(status, JobStatus::Failed);
    let write = tasks.iter().find(|t| t.kind == kind::WRITE_DRAMA).unwrap();
    assert!(
        write
            .error
            .as_deref()
            .unwrap()
            .contains("breaks the drama rules"),
        "{:?}",
        write.error
    );
    let asked = server.received_requests().await.unwrap().len();
    assert_eq!(asked, 2, "the answer and its repair");
    // The provider billed both requests: the user pays the call, as a completed one.
    let price = write.cost;
    assert!(price > 0);
    assert_eq!(w.balance().await, START - price);
    let ledger = w.ledger().await;
    assert!(
        ledger.iter().all(|e| e.reason != CreditReason::Refund),
        "{ledger:#?}"
    );
    let costs = w.app.job(&w.caller, run).await.unwrap().costs.unwrap();
    assert_eq!((costs.refundable, costs.refunded), (0, 0));

    // A resume costs nothing and calls no model: the paid call's answer stands as it was.
    w.app.resume_job(&w.caller, run).await.unwrap();
    let (status, tasks) = w.settled(run).await;
    assert_eq!(status, JobStatus::Failed);
    let write = tasks.iter().find(|t| t.kind == kind::WRITE_DRAMA).unwrap();
    assert!(
        write
            .error
            .as_deref()
            .unwrap()
            .contains("does not call the model again"),
        "{:?}",
        write.error
    );
    assert_eq!(server.received_requests().await.unwrap().len(), asked);
    assert_eq!(w.balance().await, START - price);
    w.check_books(&[run]).await;
    w.stop().await;
}

async fn scenes_written_past_the_text_bounds_are_charged_and_not_stored(backend: Backend) {
    // Prompts of at most 8 characters: every storyboard prompt the offline writer writes is
    // longer, as a model's may be longer than the bound.
    let limits = TextLimits {
        prompt: 8,
        ..TextLimits::default()
    };
    let w = world(backend, AiProviders::offline(7), limits).await;
    let drama = drama_testkit::builders::drama("d", 2, 1, 0);
    w.store.create(w.caller.user, &drama).await.unwrap();
    let id = DramaId::parse("d").unwrap();
    let episode = EpisodeId::parse("e0").unwrap();
    let run = w
        .app
        .generate(&w.caller, &id, Scope::Episode(episode.clone()), false)
        .await
        .unwrap()
        .job_id;
    let (status, tasks) = w.settled(run).await;
    assert_eq!(status, JobStatus::Failed);
    let scenes = tasks.iter().find(|t| t.kind == kind::WRITE_SCENES).unwrap();
    let error = scenes.error.as_deref().unwrap();
    assert!(error.contains("must be at most 8 characters"), "{error}");
    assert_eq!(w.offline.calls().scripts, 1);
    let stored = w.store.get_complete(w.caller.user, &id).await.unwrap();
    assert!(stored.drama.episode("e0").unwrap().scenes.is_empty());
    // What did not run because of it is refunded (if anything); the scenes' call is not.
    assert_eq!(scenes.state, JobState::Failed);
    let skipped: i64 = tasks
        .iter()
        .filter(|t| t.id != scenes.id && t.state.is_unsuccessful())
        .map(|t| t.cost)
        .sum();
    let costs = w.app.job(&w.caller, run).await.unwrap().costs.unwrap();
    assert_eq!(costs.refunded, skipped, "{costs:?}");
    let balance = w.balance().await;
    assert_eq!(balance, START - (costs.total - skipped));

    w.app.resume_job(&w.caller, run).await.unwrap();
    let (status, _) = w.settled(run).await;
    assert_eq!(status, JobStatus::Failed);
    assert_eq!(w.offline.calls().scripts, 1, "the resume called no model");
    assert_eq!(w.balance().await, balance);
    w.check_books(&[run]).await;
    w.stop().await;
}

async fn a_generate_with_nothing_to_do_adds_no_run_and_no_ledger_row(backend: Backend) {
    let w = world(backend, AiProviders::offline(7), TextLimits::default()).await;
    let drama = drama_testkit::builders::drama("d", 1, 1, 1);
    w.store.create(w.caller.user, &drama).await.unwrap();
    let id = drama.id.clone();
    let first = w
        .app
        .generate(&w.caller, &id, Scope::Drama, false)
        .await
        .unwrap()
        .job_id;
    assert_eq!(w.settled(first).await.0, JobStatus::Completed);
    let (ledger, listed) = (w.ledger().await.len(), w.runs(&id).await);

    // Nothing is out of date: no ledger row, and one run answers every such request.
    let empty = w
        .app
        .generate(&w.caller, &id, Scope::Drama, false)
        .await
        .unwrap();
    assert_ne!(empty.job_id, first);
    assert_eq!(w.settled(empty.job_id).await.0, JobStatus::Completed);
    for _ in 0..5 {
        let again = w
            .app
            .generate(&w.caller, &id, Scope::Drama, false)
            .await
            .unwrap();
        assert_eq!((again.job_id, again.replayed), (empty.job_id, false));
    }
    assert_eq!(w.ledger().await.len(), ledger);
    assert_eq!(w.runs(&id).await, listed + 1);

    // A keyed request gets its run, which its repeat replays.
    let mut keyed = w.caller;
    keyed.request = Some(RequestKey::parse("nothing-1").unwrap());
    let once = w
        .app
        .generate(&keyed, &id, Scope::Drama, false)
        .await
        .unwrap();
    assert_ne!(once.job_id, empty.job_id);
    let repeat = w
        .app
        .generate(&keyed, &id, Scope::Drama, false)
        .await
        .unwrap();
    assert_eq!((repeat.job_id, repeat.replayed), (once.job_id, true));
    assert_eq!(w.ledger().await.len(), ledger);

    // The parts generation adds count against the bounds: a drama that would hold more than
    // the bounds once its storyboards and clips are in place is refused before anything runs.
    let mut big = drama_testkit::builders::drama_json("big", 1, 12, 200);
    for e in big["episodes"].as_array_mut().unwrap() {
        for s in e["scenes"].as_array_mut().unwrap() {
            s["assets"] = json!([]);
        }
    }
    let big = drama_domain::Drama::from_value(big).unwrap();
    w.store.create(w.caller.user, &big).await.unwrap();
    let refused = w
        .app
        .generate(&w.caller, &big.id, Scope::Drama, false)
        .await;
    match refused {
        Err(AppError::Invalid(e)) => assert!(e.to_string().contains("parts"), "{e}"),
        other => panic!("{other:?}"),
    }
    w.check_books(&[first, empty.job_id, once.job_id]).await;
    w.stop().await;
}

/// Two `generate` requests for one drama, without a shared key (a double tap), before any of
/// the first run's work has started: the second finds everything being made by the first
/// run, answers with it, and adds no run and no charge; so does a request for an episode
/// whose scenes the first run writes. Each asset is made once and paid for once.
async fn two_overlapping_generates_pay_for_the_work_once(backend: Backend) {
    let mut w = idle_world(backend, AiProviders::offline(7), TextLimits::default()).await;
    let mut doc = drama_testkit::builders::drama_json("twice", 2, 2, 2);
    doc["episodes"][1]["scenes"] = json!([]);
    let drama = drama_domain::Drama::from_value(doc).unwrap();
    w.store.create(w.caller.user, &drama).await.unwrap();
    let id = drama.id.clone();
    let first = w
        .app
        .generate(&w.caller, &id, Scope::Drama, false)
        .await
        .unwrap();
    let one_plan = START - w.balance().await;
    assert!(one_plan > 0, "the work is priced");
    let second = w
        .app
        .generate(&w.caller, &id, Scope::Drama, false)
        .await
        .unwrap();
    assert_eq!(
        (second.job_id, second.replayed),
        (first.job_id, false),
        "the run making the work answers"
    );
    // A part of it, asked for on its own while the drama's run is queued, is that run's too.
    let episode = w
        .app
        .generate(
            &w.caller,
            &id,
            Scope::Episode(EpisodeId::parse("e1").unwrap()),
            false,
        )
        .await
        .unwrap();
    assert_eq!(episode.job_id, first.job_id);
    assert_eq!(START - w.balance().await, one_plan, "paid once");

    w.start().await;
    let (status, tasks) = w.settled(first.job_id).await;
    assert_eq!(status, JobStatus::Completed);
    let paid_calls = tasks.iter().filter(|t| t.kind != kind::STITCH).count();
    let calls = w.offline.calls();
    assert_eq!(calls.scripts, 1, "the scenes are written once");
    assert_eq!(
        usize::try_from(calls.scripts + calls.images + calls.videos).unwrap(),
        paid_calls,
        "one provider call per asset: {calls:?}"
    );
    // The plan's cost, and the storyboards and clips of the scenes it wrote.
    let expansion: i64 = w
        .ledger()
        .await
        .iter()
        .filter(|e| e.reason == CreditReason::Expansion)
        .map(|e| -e.amount)
        .sum();
    assert!(expansion > 0);
    assert_eq!(
        START - w.balance().await,
        one_plan + expansion,
        "one plan's cost"
    );
    assert_eq!(w.runs(&id).await, 1);
    w.check_books(&[first.job_id]).await;
    w.stop().await;
}
