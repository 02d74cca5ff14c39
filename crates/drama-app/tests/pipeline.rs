//! The pipeline end to end with the offline provider and a real worker, on in-memory ports and
//! on PostgreSQL (every scenario runs on both).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use drama_ai::{
    AiError, AiProviders, Generated, GeneratedImage, GeneratedVideo, ImageModel, ImageRequest,
    ModelInfo, OfflineProvider, VideoModel, VideoOutput, VideoPolling, VideoRequest, VideoStatus,
    VideoTask,
};
use drama_app::pipeline::{GenerateOptions, PremiseRequest, Scope, Started, Waited};
use drama_app::{App, AppError, Caller, Ports, Precondition};
use drama_assets::{AssetStore, MediaType, ObjectKey};
use drama_dal::{CreditMove, CreditReason, Store};
use drama_domain::{AssetKind, Drama, DramaId, JobStatus};
use drama_jobs::{MemoryJobStore, Worker, WorkerHandle};
use drama_postgres::jobs::PgJobStore;
use drama_testkit::pg::ScratchDb;
use support::{Backend, migrated, on_every_backend, pg_ports, user_with, worker_config};

mod support;

/// Wraps the offline provider: records every call's prompt and refuses prompts that contain
/// `refuse` (a permanent failure, as a moderation refusal would be).
struct Instrumented {
    inner: Arc<OfflineProvider>,
    calls: Mutex<Vec<String>>,
    refuse: Option<String>,
    /// Image calls wait for a permit while the gate is closed.
    gate: Option<tokio::sync::Semaphore>,
    /// Video polls (then downloads) that fail, as a provider's status endpoint or CDN
    /// having a bad minute would, before the calls go through.
    poll_failures: std::sync::atomic::AtomicU32,
    download_failures: std::sync::atomic::AtomicU32,
    /// Polls that answer "running" before the calls go through (a slow render).
    running_polls: std::sync::atomic::AtomicU32,
    /// The polling of the video model, when not the offline provider's.
    polling: Mutex<Option<VideoPolling>>,
    /// The prompt of every video submitted (each one a paid render).
    renders: Mutex<Vec<String>>,
}

impl Instrumented {
    fn new(refuse: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(OfflineProvider::new(7)),
            calls: Mutex::new(Vec::new()),
            refuse: refuse.map(str::to_owned),
            gate: None,
            poll_failures: 0.into(),
            download_failures: 0.into(),
            running_polls: 0.into(),
            polling: Mutex::new(None),
            renders: Mutex::new(Vec::new()),
        })
    }

    /// Image calls wait until [`Instrumented::open`].
    fn gated() -> Arc<Self> {
        Arc::new(Self {
            inner: Arc::new(OfflineProvider::new(7)),
            calls: Mutex::new(Vec::new()),
            refuse: None,
            gate: Some(tokio::sync::Semaphore::new(0)),
            poll_failures: 0.into(),
            download_failures: 0.into(),
            running_polls: 0.into(),
            polling: Mutex::new(None),
            renders: Mutex::new(Vec::new()),
        })
    }

    fn open(&self) {
        if let Some(g) = &self.gate {
            g.add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
        }
    }

    fn check(&self, prompt: &str) -> Result<(), AiError> {
        self.calls.lock().unwrap().push(prompt.to_owned());
        match &self.refuse {
            Some(word) if prompt.contains(word.as_str()) => Err(AiError::Refused {
                provider: drama_ai::Provider::Offline,
                reason: format!("the prompt mentions {word}"),
            }),
            _ => Ok(()),
        }
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    fn reset(&self) {
        self.calls.lock().unwrap().clear();
    }
}

#[async_trait::async_trait]
impl ImageModel for Instrumented {
    fn model(&self) -> ModelInfo {
        ImageModel::model(self.inner.as_ref())
    }
    fn max_references(&self) -> usize {
        self.inner.max_references()
    }
    async fn generate_image(
        &self,
        request: &ImageRequest,
    ) -> Result<Generated<GeneratedImage>, AiError> {
        if let Some(g) = &self.gate {
            drop(g.acquire().await.unwrap());
        }
        self.check(&request.prompt)?;
        self.inner.generate_image(request).await
    }
}

#[async_trait::async_trait]
impl VideoModel for Instrumented {
    fn model(&self) -> ModelInfo {
        VideoModel::model(self.inner.as_ref())
    }
    fn polling(&self) -> VideoPolling {
        self.polling
            .lock()
            .unwrap()
            .unwrap_or_else(|| self.inner.polling())
    }
    async fn submit(&self, request: &VideoRequest) -> Result<Generated<VideoTask>, AiError> {
        self.check(&request.prompt)?;
        self.renders.lock().unwrap().push(request.prompt.clone());
        self.inner.submit(request).await
    }
    async fn poll(&self, task_id: &str) -> Result<VideoStatus, AiError> {
        failing(&self.poll_failures, "status")?;
        let slow = self.running_polls.fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        );
        if slow.is_ok() {
            return Ok(VideoStatus::Running { progress: None });
        }
        self.inner.poll(task_id).await
    }
    async fn download(&self, output: &VideoOutput) -> Result<GeneratedVideo, AiError> {
        failing(&self.download_failures, "download")?;
        self.inner.download(output).await
    }
}

/// A passing server error while `left` failures remain (one used up per call).
fn failing(left: &std::sync::atomic::AtomicU32, what: &str) -> Result<(), AiError> {
    use std::sync::atomic::Ordering;
    match left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => Err(AiError::Server {
            provider: drama_ai::Provider::Offline,
            status: 503,
            message: format!("the {what} endpoint is down"),
        }),
        Err(_) => Ok(()),
    }
}

enum Workers {
    Memory(WorkerHandle<MemoryJobStore>),
    Postgres(WorkerHandle<PgJobStore>),
}

struct World {
    app: App,
    store: Arc<dyn Store>,
    assets: Arc<drama_assets::MemoryStore>,
    worker: Option<Workers>,
    database: Option<(ScratchDb, sqlx::PgPool)>,
    caller: Caller,
}

async fn world(backend: Backend, tokens: i64) -> World {
    world_with(backend, tokens, Instrumented::new(None), false).await
}

async fn world_with(
    backend: Backend,
    tokens: i64,
    provider: Arc<Instrumented>,
    priced: bool,
) -> World {
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let ai = AiProviders::offline(7)
        .with_image_model(provider.clone())
        .with_video_model(provider);
    let config = worker_config();
    let (app, store, worker, database) = match backend {
        Backend::Memory => {
            let (ports, store, jobs) = Ports::memory(assets.clone(), ai);
            let app = App::new(ports).with_offline_pricing(priced);
            let worker = Worker::start(jobs, app.registry(), config).await.unwrap();
            let store: Arc<dyn Store> = store;
            (app, store, Workers::Memory(worker), None)
        }
        Backend::Postgres(db) => {
            let pool = migrated(&db, 16, "").await;
            let (ports, pg, jobs) = pg_ports(&pool, assets.clone(), ai);
            let app = App::new(ports).with_offline_pricing(priced);
            let worker = Worker::start(jobs, app.registry(), config).await.unwrap();
            let store: Arc<dyn Store> = pg;
            (app, store, Workers::Postgres(worker), Some((db, pool)))
        }
    };
    let user = user_with(&*store, tokens).await;
    World {
        app,
        store,
        assets,
        worker: Some(worker),
        database,
        caller: Caller::user(user),
    }
}

impl World {
    /// Starts a generation of the whole drama `id`, not forced.
    async fn generate(&self, id: &DramaId) -> Started {
        self.app
            .generate(&self.caller, id, Scope::Drama, false)
            .await
            .unwrap()
    }

    /// Starts a generation of the whole drama `id` that may spend at most `budget`.
    async fn generate_within(&self, id: &DramaId, budget: i64) -> Result<Started, AppError> {
        let options = GenerateOptions {
            force: false,
            budget: Some(budget),
        };
        self.app
            .generate_with(&self.caller, id, Scope::Drama, options)
            .await
    }

    /// Stores the built drama `id` (see `drama_testkit::builders::drama`) for the caller.
    async fn create_built(
        &self,
        id: &str,
        characters: usize,
        episodes: usize,
        scenes: usize,
    ) -> Drama {
        let d = drama_testkit::builders::drama(id, characters, episodes, scenes);
        self.store.create(self.caller.user, &d).await.unwrap();
        d
    }

    async fn settle(&self, job: drama_jobs::JobId) -> JobStatus {
        for _ in 0..1500 {
            let view = self.app.job(&self.caller, job).await.unwrap();
            if view.state.is_settled() {
                return view.coarse_status();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("job {job} did not settle");
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

on_every_backend!("pipeline":
    premise_to_a_fully_generated_drama,
    cover_before_portraits_answers_the_old_servers_message,
    the_marked_portrait_and_cover_are_regenerated_not_the_first_images,
    credits_are_held_by_the_estimate_and_refunded_for_what_fails,
    an_edited_prompt_reruns_exactly_its_storyboard_and_clip,
    a_budget_caps_what_a_run_spends,
    a_resume_is_paid_before_anything_runs_again,
    a_poll_or_download_that_fails_does_not_pay_for_a_second_render,
    a_render_past_several_deadlines_completes,
);

async fn premise_to_a_fully_generated_drama(backend: Backend) {
    let w = world(backend, 1000).await;
    let started = w
        .app
        .create_from_premise(
            &w.caller,
            PremiseRequest {
                premise: "A corgi builds a rocket to find stray dogs a home. 2 episodes.".into(),
                id: Some("corgi".into()),
                ..PremiseRequest::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(w.settle(started.job_id).await, JobStatus::Completed);
    let id = DramaId::parse("corgi").unwrap();
    let after_create = w.app.get_drama(&w.caller, None, &id).await.unwrap().drama;
    assert_eq!(after_create.episodes.len(), 2);
    assert!(
        after_create.characters.iter().all(|c| c.url.is_some()),
        "portraits follow the script"
    );
    assert!(after_create.url.is_some(), "and the cover");

    let run = w.generate(&id).await;
    assert_eq!(w.settle(run.job_id).await, JobStatus::Completed);
    let done = w.app.get_drama(&w.caller, None, &id).await.unwrap();
    let drama = &done.drama;
    assert!(
        drama.episodes.iter().all(|e| !e.scenes.is_empty()),
        "scenes were written"
    );
    for (owner, asset) in drama.assets_with_owner() {
        assert!(asset.url.is_some(), "{owner:?} {} has no url", asset.id);
    }
    for e in &drama.episodes {
        assert!(e.url.is_some(), "episode {} was stitched", e.id);
        for s in &e.scenes {
            assert!(
                s.image_url.is_some() && s.video_url.is_some(),
                "scene {}",
                s.id
            );
        }
    }
    let objects = w.store.asset_objects(w.caller.user, &id).await.unwrap();
    for (asset_id, object) in &objects {
        let key = ObjectKey::parse(object.storage_key.clone()).unwrap();
        let (info, bytes) = w.assets.get_bytes(&key).await.unwrap();
        let sniffed = MediaType::detect(&bytes).unwrap();
        assert_eq!(sniffed.mime(), info.content_type, "{asset_id}");
        let kind = drama
            .assets_with_owner()
            .find(|(_, a)| &a.id == asset_id)
            .unwrap()
            .1
            .kind;
        match kind {
            AssetKind::Image => assert_eq!(info.content_type, "image/png"),
            _ => assert_eq!(info.content_type, "video/mp4"),
        }
    }
    let root = w.app.job(&w.caller, run.job_id).await.unwrap();
    let counts = root.counts.unwrap();
    assert_eq!(counts.completed, counts.total, "{counts:?}");
    assert_eq!(counts.failed + counts.skipped + counts.cancelled, 0);

    // Nothing changed: a second generation runs no task.
    let again = w.generate(&id).await;
    assert_eq!(w.settle(again.job_id).await, JobStatus::Completed);
    let tree = w.app.run_tree(&w.caller, again.job_id).await.unwrap();
    assert_eq!(
        tree.nodes.len(),
        1,
        "only the run itself: {:?}",
        tree.nodes.iter().map(|n| &n.key).collect::<Vec<_>>()
    );
    w.stop().await;
}

async fn cover_before_portraits_answers_the_old_servers_message(backend: Backend) {
    let w = world(backend, 100).await;
    let d = w.create_built("cov", 2, 1, 1).await;
    match w.app.cover_now(&w.caller, &d.id).await {
        Err(AppError::Precondition(p)) => assert_eq!(
            p,
            Precondition::MissingPortraits(vec!["Character 0".into(), "Character 1".into()])
        ),
        other => panic!("{other:?}"),
    }
    let mut none_main = drama_testkit::builders::drama("nomain", 1, 1, 1);
    none_main.characters[0].main = false;
    w.store.create(w.caller.user, &none_main).await.unwrap();
    match w.app.cover_now(&w.caller, &none_main.id).await {
        Err(AppError::Precondition(p)) => assert_eq!(p, Precondition::NoMainCharacter),
        other => panic!("{other:?}"),
    }
    // Portraits first, then the cover works synchronously.
    for c in &d.characters {
        let Waited::Done(after) = w.app.portrait_now(&w.caller, &d.id, &c.id).await.unwrap() else {
            panic!("the portrait did not finish inside the wait")
        };
        assert!(after.drama.character(c.id.as_str()).unwrap().url.is_some());
    }
    let Waited::Done(after) = w.app.cover_now(&w.caller, &d.id).await.unwrap() else {
        panic!("the cover did not finish inside the wait")
    };
    assert!(after.drama.url.is_some());
    w.stop().await;
}

/// A drama as the old server left it after an import or a client's write: each character's
/// own image first and the portrait the server appended after it (marked
/// `character_portrait`), a client's drama image before the cover (marked `drama_cover`).
fn with_marked_images_last(id: &str) -> drama_domain::Drama {
    let mut d = drama_testkit::builders::drama(id, 2, 1, 1);
    let image = |id: String, prompt: String, tag: Option<&str>| -> drama_domain::Asset {
        serde_json::from_value(serde_json::json!({
            "id": id, "kind": "image", "prompt": prompt, "url": format!("https://old.example/{id}.png"),
            "metadata": tag.map(|t| serde_json::json!({"type": t})),
        }))
        .unwrap()
    };
    for c in &mut d.characters {
        let portrait = format!("{}_portrait_front_halfbody", c.id);
        c.url = Some(format!("https://old.example/{portrait}.png"));
        c.assets = vec![
            image(
                format!("{}_sheet", c.id),
                format!("expression sheet of {}", c.id),
                None,
            ),
            image(
                portrait,
                format!("half-body portrait of {}", c.id),
                Some("character_portrait"),
            ),
        ];
    }
    d.url = Some(format!("https://old.example/{id}_cover.png"));
    d.assets = vec![
        image(format!("{id}_poster"), "poster sketch".into(), None),
        image(
            format!("{id}_cover"),
            "the drama's cover".into(),
            Some("drama_cover"),
        ),
    ];
    d
}

fn image_url<'a>(assets: &'a [drama_domain::Asset], id: &str) -> Option<&'a str> {
    let asset = assets.iter().find(|a| a.id.as_str() == id).unwrap();
    asset.url.as_deref()
}

async fn the_marked_portrait_and_cover_are_regenerated_not_the_first_images(backend: Backend) {
    let provider = Instrumented::new(None);
    let w = world_with(backend, 1000, provider.clone(), false).await;
    let d = with_marked_images_last("marked");
    w.store.create(w.caller.user, &d).await.unwrap();
    let c1 = d.characters[1].id.clone();

    let Waited::Done(after) = w.app.portrait_now(&w.caller, &d.id, &c1).await.unwrap() else {
        panic!("the portrait did not finish inside the wait")
    };
    let c = after.drama.character("c1").unwrap();
    let portrait = image_url(&c.assets, "c1_portrait_front_halfbody");
    assert_ne!(
        portrait,
        Some("https://old.example/c1_portrait_front_halfbody.png")
    );
    assert_eq!(
        c.url.as_deref(),
        portrait,
        "the character's face is its portrait"
    );
    assert_eq!(
        image_url(&c.assets, "c1_sheet"),
        Some("https://old.example/c1_sheet.png"),
        "the sheet is left alone"
    );
    let calls = provider.calls();
    assert!(
        calls.iter().any(|p| p.contains("half-body portrait of c1")),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|p| p.contains("expression sheet")),
        "{calls:?}"
    );

    provider.reset();
    let Waited::Done(after) = w.app.cover_now(&w.caller, &d.id).await.unwrap() else {
        panic!("the cover did not finish inside the wait")
    };
    let cover = image_url(&after.drama.assets, "marked_cover");
    assert_ne!(cover, Some("https://old.example/marked_cover.png"));
    assert_eq!(
        after.drama.url.as_deref(),
        cover,
        "the drama's cover is its cover"
    );
    assert_eq!(
        image_url(&after.drama.assets, "marked_poster"),
        Some("https://old.example/marked_poster.png"),
        "the poster is left alone"
    );
    let calls = provider.calls();
    assert!(
        calls.iter().any(|p| p.contains("the drama's cover")),
        "{calls:?}"
    );
    assert!(
        !calls
            .iter()
            .any(|p| p.contains("poster sketch") || p.contains("expression sheet")),
        "{calls:?}"
    );
    w.stop().await;
}

async fn balance(w: &World) -> i64 {
    w.store.get_user(w.caller.user).await.unwrap().tokens
}

async fn settle_refunds(w: &World) {
    // Refunds are credited by a background task in the server; here, by hand.
    w.app.settle_refunds().await;
}

async fn credits_are_held_by_the_estimate_and_refunded_for_what_fails(backend: Backend) {
    // One scene's storyboard is refused: its clip and the episode video are skipped.
    let provider = Instrumented::new(Some("doomed"));
    let w = world_with(backend, 10_000, provider.clone(), true).await;
    let mut d = drama_testkit::builders::drama("paid", 1, 1, 2);
    d.episodes[0].scenes[1].assets[0].prompt = "a doomed storyboard".into();
    w.store.create(w.caller.user, &d).await.unwrap();
    let before = balance(&w).await;
    let run = w.generate(&d.id).await;
    let held = before - balance(&w).await;
    // portrait 4 + audition 100 + cover 4 + 2 storyboards × 4 + 2 clips × 100.
    assert_eq!(held, 4 + 100 + 4 + 8 + 200);
    assert_eq!(w.settle(run.job_id).await, JobStatus::Failed);
    let tree = w.app.run_tree(&w.caller, run.job_id).await.unwrap();
    let state = |key: &str| {
        let n = tree
            .nodes
            .iter()
            .find(|n| n.key == key)
            .unwrap_or_else(|| panic!("{key}"));
        (n.state.as_str().to_owned(), n.error.clone())
    };
    let (s, e) = state("storyboard:e0-s1-img");
    assert_eq!(s, "failed");
    assert!(e.unwrap().contains("doomed"));
    assert_eq!(state("clip:e0-s1-vid").0, "skipped");
    assert_eq!(state("stitch:e0_episode_video").0, "skipped");
    // The rest of the drama was generated.
    let done = w.app.get_drama(&w.caller, None, &d.id).await.unwrap().drama;
    let scene0 = &done.episodes[0].scenes[0];
    assert!(scene0.image_url.is_some() && scene0.video_url.is_some());
    assert!(done.characters[0].url.is_some() && done.url.is_some());
    assert!(done.episodes[0].scenes[1].image_url.is_none());
    settle_refunds(&w).await;
    // Refunded: the failed storyboard (4), the skipped clip (100); stitching is free.
    assert_eq!(before - balance(&w).await, held - 104);
    settle_refunds(&w).await;
    assert_eq!(
        before - balance(&w).await,
        held - 104,
        "refunds are not paid twice"
    );

    // Not enough tokens: nothing is submitted, nothing is debited.
    let poor = user_with(&*w.store, 5).await;
    let poor_caller = Caller::user(poor);
    let mine = drama_testkit::builders::drama("poor", 1, 1, 1);
    w.store.create(poor, &mine).await.unwrap();
    match w
        .app
        .generate(&poor_caller, &mine.id, Scope::Drama, false)
        .await
    {
        Err(AppError::InsufficientTokens { balance: 5, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(w.store.get_user(poor).await.unwrap().tokens, 5);
    assert!(
        w.app
            .jobs_of_drama(&poor_caller, &mine.id, false)
            .await
            .unwrap()
            .is_empty()
    );
    w.stop().await;
}

async fn an_edited_prompt_reruns_exactly_its_storyboard_and_clip(backend: Backend) {
    let provider = Instrumented::new(None);
    let w = world_with(backend, 1000, provider.clone(), false).await;
    let d = w.create_built("edit", 2, 2, 2).await;
    let run = w.generate(&d.id).await;
    assert_eq!(w.settle(run.job_id).await, JobStatus::Completed);
    provider.reset();

    let again = w.generate(&d.id).await;
    assert_eq!(w.settle(again.job_id).await, JobStatus::Completed);
    assert_eq!(
        provider.calls(),
        Vec::<String>::new(),
        "nothing changed: no provider call"
    );

    let patch = drama_domain::EntityPatch::Asset {
        owner: drama_domain::AssetOwner::Scene {
            episode: d.episodes[1].id.clone(),
            scene: d.episodes[1].scenes[0].id.clone(),
        },
        id: d.episodes[1].scenes[0].assets[0].id.clone(),
        changes: drama_domain::AssetPatch::from_json(br#"{"prompt": "a new angle on the rocket"}"#)
            .unwrap(),
    };
    w.app.patch(&w.caller, &d.id, &patch, None).await.unwrap();
    let edited = w.generate(&d.id).await;
    assert_eq!(w.settle(edited.job_id).await, JobStatus::Completed);
    let calls = provider.calls();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].contains("a new angle on the rocket"),
        "the storyboard first: {calls:?}"
    );
    assert_eq!(calls[1], "clip e1-s0", "then its clip");
    let tree = w.app.run_tree(&w.caller, edited.job_id).await.unwrap();
    let keys: Vec<&str> = tree
        .nodes
        .iter()
        .map(|n| n.key.as_str())
        .filter(|k| !k.is_empty())
        .collect();
    assert_eq!(
        keys,
        [
            "episode:e1",
            "storyboard:e1-s0-img",
            "clip:e1-s0-vid",
            "stitch:e1_episode_video"
        ]
    );
    w.stop().await;
}

async fn a_budget_caps_what_a_run_spends(backend: Backend) {
    let w = world_with(backend, 10_000, Instrumented::new(None), true).await;
    let d = w.create_built("thrifty", 1, 1, 2).await;
    match w.generate_within(&d.id, 0).await {
        Err(AppError::Invalid(e)) => assert!(e.to_string().contains("budget"), "{e}"),
        other => panic!("{other:?}"),
    }
    let before = balance(&w).await;
    let run = w.generate_within(&d.id, 120).await.unwrap();
    w.settle(run.job_id).await;
    settle_refunds(&w).await;
    let spent = before - balance(&w).await;
    assert!(
        (1..=120).contains(&spent),
        "spent {spent} of a budget of 120"
    );
    let tree = w.app.run_tree(&w.caller, run.job_id).await.unwrap();
    let stopped: Vec<_> = tree
        .nodes
        .iter()
        .filter(|n| n.state.as_str() == "cancelled")
        .collect();
    assert!(!stopped.is_empty(), "the plan costs more than the budget");
    assert!(
        stopped
            .iter()
            .any(|n| n.error.as_deref().is_some_and(|e| e.contains("budget"))),
        "{:?}",
        stopped
            .iter()
            .map(|n| (&n.key, &n.error))
            .collect::<Vec<_>>()
    );
    let completed = tree
        .nodes
        .iter()
        .filter(|n| n.state.as_str() == "completed" && !n.key.is_empty())
        .count();
    assert!(completed > 0, "what fits in the budget was made");
    w.stop().await;
}

async fn states(w: &World, run: drama_jobs::JobId) -> Vec<(String, String)> {
    let tree = w.app.run_tree(&w.caller, run).await.unwrap();
    tree.nodes
        .iter()
        .map(|n| (n.key.clone(), n.state.as_str().to_owned()))
        .collect()
}

/// Generate, cancel, refund, spend to 0, resume: refused with nothing re-queued; with credits
/// the resume pays exactly for what it re-queues and nothing is clawed back later.
async fn a_resume_is_paid_before_anything_runs_again(backend: Backend) {
    let provider = Instrumented::gated();
    let w = world_with(backend, 10_000, provider.clone(), true).await;
    let owner = w.caller.user;
    let d = drama_testkit::builders::drama("resumed", 1, 1, 2);
    w.store.create(owner, &d).await.unwrap();
    let run = w.generate(&d.id).await;
    w.app.cancel_job(&w.caller, run.job_id).await.unwrap();
    provider.open();
    assert_eq!(w.settle(run.job_id).await, JobStatus::Cancelled);
    settle_refunds(&w).await;
    let tree = w.app.run_tree(&w.caller, run.job_id).await.unwrap();
    let unfinished: i64 = tree
        .nodes
        .iter()
        .filter(|n| n.node_type == drama_jobs::NodeType::Task && n.state.is_unsuccessful())
        .map(|n| n.cost)
        .sum();
    assert!(unfinished > 0, "the cancel stopped paid work");

    let left = balance(&w).await;
    w.store
        .move_credits(&CreditMove::new(owner, -left, CreditReason::Adjustment))
        .await
        .unwrap();
    let before = states(&w, run.job_id).await;
    let calls = provider.calls().len();
    match w.app.resume_job(&w.caller, run.job_id).await {
        Err(AppError::InsufficientTokens { balance: 0, needed }) => {
            assert_eq!(needed, unfinished)
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        states(&w, run.job_id).await,
        before,
        "nothing was re-queued"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provider.calls().len(), calls, "nothing ran");
    settle_refunds(&w).await;
    assert_eq!(balance(&w).await, 0, "nothing was taken back either");

    w.store
        .move_credits(&CreditMove::new(owner, 1000, CreditReason::Grant))
        .await
        .unwrap();
    w.app.resume_job(&w.caller, run.job_id).await.unwrap();
    assert_eq!(
        1000 - balance(&w).await,
        unfinished,
        "the resume paid up front"
    );
    assert_eq!(w.settle(run.job_id).await, JobStatus::Completed);
    settle_refunds(&w).await;
    assert_eq!(
        1000 - balance(&w).await,
        unfinished,
        "nothing is clawed back for paid work"
    );
    let ledger = w.store.ledger(owner, 100, 0).await.unwrap();
    assert!(
        ledger.iter().any(|e| e.reason == CreditReason::ResumeCharge
            && e.amount == -unfinished
            && e.run_id == Some(run.job_id.0)),
        "{ledger:?}"
    );
    assert!(ledger.iter().all(|e| e.reason != CreditReason::Clawback));
    assert_eq!(w.store.check_ledger().await.unwrap(), vec![]);
    w.stop().await;
}

/// In memory (the embedded mode) the refund loop pays every run that owes, not only those
/// among the newest hundred runs of all users.
#[tokio::test]
async fn in_memory_an_old_cancelled_run_is_refunded_behind_a_hundred_newer_runs() {
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let (ports, store, jobs) = Ports::memory(assets, AiProviders::offline(7));
    let app = App::new(ports).with_offline_pricing(true);
    let store: Arc<dyn Store> = store;
    let owner = user_with(&*store, 10_000).await;
    let caller = Caller::user(owner);
    let d = drama_testkit::builders::drama("old", 1, 1, 1);
    store.create(owner, &d).await.unwrap();
    // No worker: the run is cancelled before anything ran, so its whole charge is due back.
    let run = app
        .generate(&caller, &d.id, Scope::Drama, false)
        .await
        .unwrap();
    app.cancel_job(&caller, run.job_id).await.unwrap();
    assert!(store.get_user(owner).await.unwrap().tokens < 10_000);
    let someone = uuid::Uuid::new_v4();
    for _ in 0..101 {
        let graph = drama_jobs::Graph::new(drama_jobs::RunSpec::new("noop", someone)).with(
            drama_jobs::NodeSpec::task("t", "noop", serde_json::json!({})),
        );
        drama_jobs::JobStore::submit(&*jobs, &graph).await.unwrap();
    }
    app.settle_refunds().await;
    assert_eq!(store.get_user(owner).await.unwrap().tokens, 10_000);
}

/// A clip whose status or download call fails after the provider accepted (and billed) the
/// render is retried by polling the same provider task: each clip is rendered once. A status
/// endpoint that fails many times in a row (here more polls than the attempts of every video
/// task together) does not end a clip failed and refunded: the render is waited for, the run
/// completes and nothing is refunded, since nothing failed.
async fn a_poll_or_download_that_fails_does_not_pay_for_a_second_render(backend: Backend) {
    use std::sync::atomic::Ordering;
    let provider = Instrumented::new(None);
    // Three video tasks (an audition, two clips) of three attempts each: more failures than
    // all their attempts, so one task at least meets three of them.
    provider.poll_failures.store(9, Ordering::SeqCst);
    provider.download_failures.store(1, Ordering::SeqCst);
    let w = world_with(backend, 10_000, provider.clone(), true).await;
    let d = drama_testkit::builders::drama("flaky", 1, 1, 2);
    w.store.create(w.caller.user, &d).await.unwrap();
    let before = balance(&w).await;
    let run = w
        .app
        .generate(&w.caller, &d.id, Scope::Drama, false)
        .await
        .unwrap();
    let held = before - balance(&w).await;
    assert_eq!(w.settle(run.job_id).await, JobStatus::Completed);
    assert_eq!(
        provider.poll_failures.load(Ordering::SeqCst),
        0,
        "every poll failure happened"
    );
    assert_eq!(
        provider.download_failures.load(Ordering::SeqCst),
        0,
        "a download failed"
    );
    assert_renders_once(&provider);
    let done = w.app.get_drama(&w.caller, None, &d.id).await.unwrap().drama;
    assert!(
        done.episodes[0]
            .scenes
            .iter()
            .all(|s| s.video_url.is_some())
    );
    assert!(done.episodes[0].url.is_some(), "the episode was stitched");
    settle_refunds(&w).await;
    assert_eq!(before - balance(&w).await, held, "nothing was refunded");
    w.stop().await;
}

/// Each video was submitted (and paid for) once.
fn assert_renders_once(provider: &Instrumented) {
    let renders = provider.renders.lock().unwrap().clone();
    let mut once = renders.clone();
    once.sort();
    once.dedup();
    assert_eq!(
        renders.len(),
        once.len(),
        "a clip was rendered twice: {renders:?}"
    );
}

/// A render that takes longer than the handler waits for it (here past several deadlines of
/// each video task, more than its attempts) is polled again by the next attempt, without
/// using one: the clips complete, once rendered each, and nothing is refunded.
async fn a_render_past_several_deadlines_completes(backend: Backend) {
    use std::sync::atomic::Ordering;
    let provider = Instrumented::new(None);
    // Each wait polls at most five times; 60 "running" answers are a dozen deadlines spread
    // over three video tasks: one task at least meets four.
    *provider.polling.lock().unwrap() = Some(VideoPolling {
        interval: Duration::from_millis(10),
        deadline: Duration::from_millis(50),
    });
    provider.running_polls.store(60, Ordering::SeqCst);
    let w = world_with(backend, 10_000, provider.clone(), true).await;
    let d = drama_testkit::builders::drama("slow", 1, 1, 2);
    w.store.create(w.caller.user, &d).await.unwrap();
    let before = balance(&w).await;
    let run = w.generate(&d.id).await;
    let held = before - balance(&w).await;
    assert_eq!(w.settle(run.job_id).await, JobStatus::Completed);
    assert_eq!(provider.running_polls.load(Ordering::SeqCst), 0);
    assert_renders_once(&provider);
    let tree = w.app.run_tree(&w.caller, run.job_id).await.unwrap();
    let deferred = tree
        .nodes
        .iter()
        .filter(|n| n.key.starts_with("clip:") || n.key.starts_with("audition:"))
        .map(|n| n.attempts)
        .max()
        .unwrap();
    assert!(deferred <= 1, "a deadline used an attempt ({deferred})");
    settle_refunds(&w).await;
    assert_eq!(before - balance(&w).await, held, "nothing was refunded");
    w.stop().await;
}
