//! The pipeline end to end on in-memory ports, with the offline provider and a real worker.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use drama_ai::AiProviders;
use drama_app::pipeline::{PremiseRequest, Scope, wire_status};
use drama_app::{App, AppError, Caller, Ports};
use drama_assets::{AssetStore, MediaType, ObjectKey};
use drama_dal::{DramaRepository, MemoryStore, NewUser, UserRepository};
use drama_domain::{AssetKind, DramaId, JobStatus, UserId};
use drama_jobs::{MemoryJobStore, Worker, WorkerConfig, WorkerHandle};

struct World {
    app: App,
    store: Arc<MemoryStore>,
    assets: Arc<drama_assets::MemoryStore>,
    worker: Option<WorkerHandle<MemoryJobStore>>,
    caller: Caller,
}

async fn world(tokens: i64) -> World {
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let (ports, store, jobs) = Ports::memory(assets.clone(), AiProviders::offline(7));
    let app = App::new(ports);
    let user = UserId::random();
    let mut new = NewUser::new(user);
    new.tokens = tokens;
    store.create_user(&new).await.unwrap();
    let config = WorkerConfig {
        concurrency: 8,
        poll_interval: Duration::from_millis(20),
        ..WorkerConfig::default()
    };
    let worker = Worker::start(jobs, app.registry(), config).await.unwrap();
    World {
        app,
        store,
        assets,
        worker: Some(worker),
        caller: Caller::user(user),
    }
}

impl World {
    async fn settle(&self, job: drama_jobs::JobId) -> JobStatus {
        for _ in 0..1500 {
            let view = self.app.job(&self.caller, job).await.unwrap();
            if view.state.is_settled() {
                return wire_status(&view);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("job {job} did not settle");
    }

    async fn stop(mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premise_to_a_fully_generated_drama() {
    let w = world(1000).await;
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

    let run = w
        .app
        .generate(&w.caller, &id, Scope::Drama, false)
        .await
        .unwrap();
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
    let again = w
        .app
        .generate(&w.caller, &id, Scope::Drama, false)
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cover_before_portraits_answers_the_old_servers_message() {
    let w = world(100).await;
    let d = drama_testkit::builders::drama("cov", 2, 1, 1);
    w.store.create(w.caller.user, &d).await.unwrap();
    match w.app.cover_now(&w.caller, &d.id).await {
        Err(AppError::Precondition(m)) => assert_eq!(
            m,
            "All main characters must have images generated first. Missing images for: Character 0, Character 1"
        ),
        other => panic!("{other:?}"),
    }
    let mut none_main = drama_testkit::builders::drama("nomain", 1, 1, 1);
    none_main.characters[0].main = false;
    w.store.create(w.caller.user, &none_main).await.unwrap();
    match w.app.cover_now(&w.caller, &none_main.id).await {
        Err(AppError::Precondition(m)) => {
            assert_eq!(m, "Drama must have at least one main character")
        }
        other => panic!("{other:?}"),
    }
    // Portraits first, then the cover works synchronously.
    for c in &d.characters {
        let after = w.app.portrait_now(&w.caller, &d.id, &c.id).await.unwrap();
        assert!(after.drama.character(c.id.as_str()).unwrap().url.is_some());
    }
    let after = w.app.cover_now(&w.caller, &d.id).await.unwrap();
    assert!(after.drama.url.is_some());
    w.stop().await;
}
