//! Generation requests of one drama while another run of it is active: what the active run
//! makes is left out of the new plan, but not what it makes on a product the new plan makes
//! again, nor what it was asked to stop; and a request reading a big drama's runs keeps no
//! other user waiting. No worker runs, so the runs stay queued; on in-memory ports and on
//! PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drama_ai::AiProviders;
use drama_app::pipeline::Scope;
use drama_app::pipeline::jobs_port::JobsPort;
use drama_app::pipeline::spec::kind;
use drama_app::{App, Caller, Ports};
use drama_dal::Store;
use drama_domain::{AssetId, DramaId, UserId};
use drama_jobs::{
    CancelReport, ClaimRequest, ClaimedJob, Event, EventId, JobError, JobId, JobStore, JobView,
    MemoryJobStore, NodeType, NotificationStream, RunFilter, RunId, RunTree, WorkerId,
    WorkerRegistration,
};
use drama_postgres::jobs::PgJobStore;
use drama_testkit::builders;
use drama_testkit::pg::ScratchDb;
use support::{Backend, migrated, on_every_backend, pg_ports, user_with};
use tokio::sync::{Notify, Semaphore};

mod support;

on_every_backend!("held_work":
    a_generate_reading_its_drama_keeps_no_other_user_waiting,
    generates_at_once_pay_for_the_work_once,
    work_on_a_product_made_again_is_made_again_after_it,
    a_task_asked_to_stop_is_not_held,
);

const START: i64 = 100_000;

/// Holds the first read of a user's active runs of a drama (the read a generation request
/// starts its plan with) until it is opened.
struct Gate {
    armed_for: std::sync::Mutex<Option<UserId>>,
    entered: Notify,
    open: Semaphore,
}

/// The job engine's port with a [`Gate`] in front of `list_runs`.
struct GatedJobs {
    inner: Arc<dyn JobsPort>,
    gate: Arc<Gate>,
}

#[async_trait]
impl JobsPort for GatedJobs {
    async fn job(&self, id: JobId) -> Result<Option<JobView>, JobError> {
        self.inner.job(id).await
    }
    async fn children(
        &self,
        parent: JobId,
        after: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobView>, JobError> {
        self.inner.children(parent, after, limit).await
    }
    async fn run_tree(&self, run: RunId) -> Result<Option<RunTree>, JobError> {
        self.inner.run_tree(run).await
    }
    async fn events(
        &self,
        run: RunId,
        after: Option<EventId>,
        scope: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<Event>, JobError> {
        self.inner.events(run, after, scope, limit).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<JobView>, JobError> {
        let held = {
            let mut armed = self.gate.armed_for.lock().unwrap();
            let hit = filter.active_only
                && filter.subject.is_some()
                && armed.is_some_and(|u| filter.owner == Some(u.0));
            if hit {
                *armed = None;
            }
            hit
        };
        if held {
            self.gate.entered.notify_one();
            drop(self.gate.open.acquire().await.unwrap());
        }
        self.inner.list_runs(filter).await
    }
    async fn nodes_of_subjects(
        &self,
        subjects: &[String],
        owner: Option<uuid::Uuid>,
        runs_per_subject: usize,
        max_nodes: usize,
    ) -> Result<Vec<JobView>, JobError> {
        self.inner
            .nodes_of_subjects(subjects, owner, runs_per_subject, max_nodes)
            .await
    }
    async fn first_children(
        &self,
        parents: &[JobId],
        per_parent: usize,
    ) -> Result<Vec<JobView>, JobError> {
        self.inner.first_children(parents, per_parent).await
    }
    async fn nodes_of_runs(
        &self,
        runs: &[RunId],
        max_nodes: usize,
    ) -> Result<Vec<JobView>, JobError> {
        self.inner.nodes_of_runs(runs, max_nodes).await
    }
    async fn cancel(&self, id: JobId, reason: &str) -> Result<CancelReport, JobError> {
        self.inner.cancel(id, reason).await
    }
    async fn keyed_run(
        &self,
        owner: uuid::Uuid,
        key: &str,
        max_age: Duration,
    ) -> Result<Option<JobView>, JobError> {
        self.inner.keyed_run(owner, key, max_age).await
    }
    async fn subscribe(&self) -> Result<NotificationStream, JobError> {
        self.inner.subscribe().await
    }
}

enum Engine {
    Memory(Arc<MemoryJobStore>),
    Postgres(Arc<PgJobStore>),
}

struct World {
    app: App,
    store: Arc<dyn Store>,
    engine: Engine,
    gate: Arc<Gate>,
    database: Option<(ScratchDb, sqlx::PgPool)>,
    caller: Caller,
}

/// The pipeline on `backend`, priced, every user on one admission stripe, no worker; a
/// user holding [`START`] tokens.
async fn world(backend: Backend) -> World {
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let ai = AiProviders::offline(7);
    let (mut ports, store, engine, database): (Ports, Arc<dyn Store>, _, _) = match backend {
        Backend::Memory => {
            let (ports, store, jobs) = Ports::memory(assets, ai);
            (ports, store, Engine::Memory(jobs), None)
        }
        Backend::Postgres(db) => {
            let pool = migrated(&db, 16, "").await;
            let (ports, store, jobs) = pg_ports(&pool, assets, ai);
            (ports, store, Engine::Postgres(jobs), Some((db, pool)))
        }
    };
    let gate = Arc::new(Gate {
        armed_for: std::sync::Mutex::new(None),
        entered: Notify::new(),
        open: Semaphore::new(0),
    });
    ports.jobs = Arc::new(GatedJobs {
        inner: ports.jobs,
        gate: gate.clone(),
    });
    let app = App::new(ports)
        .with_offline_pricing(true)
        .with_admission_stripes(1);
    let user = user_with(&*store, START).await;
    World {
        app,
        store,
        engine,
        gate,
        database,
        caller: Caller::user(user),
    }
}

impl World {
    async fn balance(&self, user: UserId) -> i64 {
        self.store.get_user(user).await.unwrap().tokens
    }

    /// Stores `drama` as the caller's.
    async fn create(&self, drama: &drama_domain::Drama) -> DramaId {
        self.store.create(self.caller.user, drama).await.unwrap();
        drama.id.clone()
    }

    async fn generate(&self, id: &DramaId, scope: Scope) -> JobId {
        self.app
            .generate(&self.caller, id, scope, false)
            .await
            .unwrap()
            .job_id
    }

    /// The kinds and keys of a run's tasks.
    async fn tasks(&self, run: JobId) -> Vec<(String, String)> {
        let tree = self.app.run_tree(&self.caller, run).await.unwrap();
        tree.nodes
            .into_iter()
            .filter(|n| n.node_type == NodeType::Task)
            .map(|n| (n.kind, n.key))
            .collect()
    }

    /// Claims one queued task of `kind`, as a worker would: it is running from then on.
    async fn claim(&self, kind: &str) -> ClaimedJob {
        match &self.engine {
            Engine::Memory(jobs) => claim(&**jobs, kind).await,
            Engine::Postgres(jobs) => claim(&**jobs, kind).await,
        }
    }

    async fn stop(mut self) {
        if let Some((db, pool)) = self.database.take() {
            pool.close().await;
            db.drop_it().await;
        }
    }
}

async fn claim<S: JobStore>(jobs: &S, kind: &str) -> ClaimedJob {
    let worker = WorkerId::new();
    jobs.register_worker(&WorkerRegistration {
        id: worker,
        name: "manual".into(),
        kinds: vec![kind.into()],
        ttl: Duration::from_secs(600),
    })
    .await
    .unwrap();
    let mut claimed = jobs
        .claim(&ClaimRequest {
            worker,
            kinds: vec![kind.into()],
            limit: 1,
        })
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "a {kind} task is claimed");
    claimed.remove(0)
}

/// User A's generation request is held in its read of the drama's active runs (for a big
/// drama, thousands of task rows). User B, on the same admission stripe, stores a drama and
/// starts its generation meanwhile: the request holds its own drama's turn, not the stripe.
async fn a_generate_reading_its_drama_keeps_no_other_user_waiting(backend: Backend) {
    let w = world(backend).await;
    let id = w.create(&builders::drama("big", 2, 2, 2)).await;
    *w.gate.armed_for.lock().unwrap() = Some(w.caller.user);
    let a = {
        let (app, caller, id) = (w.app.clone(), w.caller, id.clone());
        tokio::spawn(async move { app.generate(&caller, &id, Scope::Drama, false).await })
    };
    tokio::time::timeout(Duration::from_secs(10), w.gate.entered.notified())
        .await
        .expect("A reads its active runs");

    let bob = Caller::user(user_with(&*w.store, START).await);
    let theirs = builders::drama("theirs", 1, 1, 1);
    let created = tokio::time::timeout(Duration::from_secs(5), w.app.create_drama(&bob, &theirs))
        .await
        .expect("B stores a drama while A plans");
    created.unwrap();
    let started = tokio::time::timeout(
        Duration::from_secs(5),
        w.app.generate(&bob, &theirs.id, Scope::Drama, false),
    )
    .await
    .expect("B starts a generation while A plans");
    assert!(!started.unwrap().replayed);
    assert!(w.balance(bob.user).await < START, "B's run is paid for");

    w.gate.open.add_permits(1);
    let a = a.await.unwrap().unwrap();
    assert!(!w.tasks(a.job_id).await.is_empty());
    w.stop().await;
}

/// Requests for one drama at once, without a key: one plans and pays, the others find its
/// run making everything and answer with it.
async fn generates_at_once_pay_for_the_work_once(backend: Backend) {
    let w = world(backend).await;
    let id = w.create(&builders::drama("once", 2, 2, 2)).await;
    let requests = (0..6).map(|_| {
        let (app, caller, id) = (w.app.clone(), w.caller, id.clone());
        tokio::spawn(async move { app.generate(&caller, &id, Scope::Drama, false).await })
    });
    let mut runs = Vec::new();
    for request in futures::future::join_all(requests).await {
        runs.push(request.unwrap().unwrap().job_id);
    }
    runs.dedup();
    assert_eq!(runs.len(), 1, "one run answers every request: {runs:?}");
    let view = w.app.job(&w.caller, runs[0]).await.unwrap();
    let cost = view.costs.unwrap().total;
    assert!(cost > 0);
    assert_eq!(START - w.balance(w.caller.user).await, cost, "paid once");
    w.stop().await;
}

/// Run A is queued with a portrait, the storyboard made from it and the clip made from that;
/// the portrait's prompt changes and B is asked for. B makes the portrait again, and with it
/// the storyboard and the clip (same payloads as A's, which would otherwise be left out):
/// they read the portrait when they run, and A's would run on the old one or in a race with B.
async fn work_on_a_product_made_again_is_made_again_after_it(backend: Backend) {
    let w = world(backend).await;
    let id = w.create(&builders::drama("redo", 1, 1, 1)).await;
    let a = w.generate(&id, Scope::Drama).await;
    let a_tasks = w.tasks(a).await;
    for k in [kind::PORTRAIT, kind::STORYBOARD, kind::CLIP] {
        assert!(a_tasks.iter().any(|(kind, _)| kind == k), "{a_tasks:?}");
    }

    let mut stored = w.store.get_complete(w.caller.user, &id).await.unwrap();
    let portrait = stored.drama.characters[0]
        .assets
        .iter_mut()
        .find(|a| a.kind == drama_domain::AssetKind::Image)
        .expect("generation gave the character a portrait");
    portrait.prompt.push_str(", in a red coat");
    w.store
        .save_complete(w.caller.user, &stored.drama, Some(stored.version))
        .await
        .unwrap();

    let b = w.generate(&id, Scope::Drama).await;
    assert_ne!(b, a);
    let b_tasks = w.tasks(b).await;
    for k in [kind::PORTRAIT, kind::STORYBOARD, kind::CLIP] {
        assert!(
            b_tasks.iter().any(|(kind, _)| kind == k),
            "{k} is made again after the new portrait: {b_tasks:?}"
        );
    }
    w.stop().await;
}

/// A portrait is running when its run is cancelled: its handler ends it cancelled without a
/// product. A request for it then plans it in a run of its own, instead of answering with
/// the cancelled run.
async fn a_task_asked_to_stop_is_not_held(backend: Backend) {
    let w = world(backend).await;
    let id = w.create(&builders::drama("stop", 1, 1, 1)).await;
    let portrait = AssetId::parse("c0_portrait_front_halfbody").unwrap();
    let a = w.generate(&id, Scope::Asset(portrait.clone())).await;
    let claimed = w.claim(kind::PORTRAIT).await;
    w.app.cancel_job(&w.caller, a).await.unwrap();
    let view = w.app.job(&w.caller, a).await.unwrap();
    assert!(!view.state.is_settled(), "the portrait is still running");

    let b = w.generate(&id, Scope::Asset(portrait)).await;
    assert_ne!(b, a, "a new run answers, not the cancelled one");
    let b_tasks = w.tasks(b).await;
    assert!(
        b_tasks.iter().any(|(_, key)| *key == claimed.key),
        "{} is planned again: {b_tasks:?}",
        claimed.key
    );
    w.stop().await;
}
