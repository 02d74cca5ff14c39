//! Script models priced by their tokens: a call holds its per-call price when its run starts,
//! and its completion credits back what its usage did not cost (`usage_settle`), in the same
//! transaction, exactly once — in memory and on PostgreSQL, where a completing transaction
//! made to fail after the checkpoint (a trigger raising 40001) still settles once.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use drama_ai::{AiProviders, AiSettings, OfflineProvider, Usage};
use drama_app::pipeline::jobs_port::EngineJobs;
use drama_app::pipeline::memory_generation::MemoryGeneration;
use drama_app::pipeline::spec::kind;
use drama_app::pipeline::{PremiseRequest, Scope};
use drama_app::{App, Caller, Ports};
use drama_dal::{CreditReason, LedgerEntry, MemoryStore, NewUser, Store};
use drama_domain::{DramaId, JobStatus, UserId};
use drama_jobs::{JobId, JobView, MemoryJobStore, NodeType, Worker, WorkerConfig, WorkerHandle};
use drama_postgres::jobs::PgJobStore;
use drama_testkit::pg::ScratchDb;
use support::{
    Backend, failing_trigger, firings, migrated, on_every_backend, pg_ports, user_with,
    worker_config,
};

mod support;

/// `gpt-5.1` holds 10 credits per drama and 8 per episode's scenes, 3 per critique, and
/// costs 125 credits per million input tokens and 1,000 per million output tokens.
const TOKEN_PRICED: &str = "gpt-5.1=openai@10/10/3/8+in125/out1000";
/// The same holds at rates no call stays under.
const DEAR: &str = "gpt-5.1=openai@10/10/3/8+in900000/out900000";

const START: i64 = 10_000;

enum Workers {
    Memory(WorkerHandle<MemoryJobStore>, Arc<MemoryJobStore>),
    Postgres(WorkerHandle<PgJobStore>),
}

struct World {
    app: App,
    store: Arc<dyn Store>,
    offline: Arc<OfflineProvider>,
    worker: Option<Workers>,
    database: Option<(ScratchDb, sqlx::PgPool)>,
    caller: Caller,
}

fn providers(models: &str) -> AiProviders {
    AiProviders::from_settings(&AiSettings {
        ai_offline: true,
        offline_seed: 7,
        script_models: models.to_owned(),
        ..AiSettings::default()
    })
    .unwrap()
}

/// A world whose offline calls are priced as the model they stand in for; on PostgreSQL,
/// `install` runs on the migrated database first.
async fn world(backend: Backend, models: &str, install: &str) -> World {
    world_with(backend, models, install, None).await
}

/// [`world`] whose steps after a paid call keep trying for `patience` (the app's default when
/// `None`).
async fn world_with(
    backend: Backend,
    models: &str,
    install: &str,
    patience: Option<Duration>,
) -> World {
    let patient = |app: App| match patience {
        Some(patience) => app.with_paid_step_patience(patience),
        None => app,
    };
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let ai = providers(models);
    let offline = ai.offline_provider();
    let config = worker_config();
    let (app, store, worker, database) = match backend {
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
            let app = patient(App::new(ports).with_offline_pricing(true));
            let worker = Worker::start(jobs.clone(), app.registry(), config)
                .await
                .unwrap();
            let store: Arc<dyn Store> = store;
            (app, store, Workers::Memory(worker, jobs), None)
        }
        Backend::Postgres(db) => {
            let pool = migrated(&db, 16, install).await;
            let (ports, pg, jobs) = pg_ports(&pool, assets, ai);
            let app = patient(App::new(ports).with_offline_pricing(true));
            let worker = Worker::start(jobs, app.registry(), config).await.unwrap();
            let store: Arc<dyn Store> = pg;
            (app, store, Workers::Postgres(worker), Some((db, pool)))
        }
    };
    let user = user_with(&*store, START).await;
    World {
        app,
        store,
        offline,
        worker: Some(worker),
        database,
        caller: Caller::user(user),
    }
}

impl World {
    /// Waits for `job` to settle and checks that it completed (naming what did not).
    async fn completes(&self, job: JobId) {
        for _ in 0..3000 {
            let view = self.app.job(&self.caller, job).await.unwrap();
            if view.state.is_settled() {
                let tree = self.app.run_tree(&self.caller, job).await.unwrap();
                let nodes: Vec<String> = tree
                    .nodes
                    .iter()
                    .map(|n| format!("{} {} {:?}", n.key, n.state.as_str(), n.error))
                    .collect();
                assert_eq!(view.coarse_status(), JobStatus::Completed, "{nodes:#?}");
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("job {job} did not settle");
    }

    async fn balance(&self) -> i64 {
        self.store.get_user(self.caller.user).await.unwrap().tokens
    }

    async fn ledger(&self) -> Vec<LedgerEntry> {
        self.store.ledger(self.caller.user, 100, 0).await.unwrap()
    }

    /// The run's script tasks (writing the drama or scenes, critiques).
    async fn script_tasks(&self, run: JobId) -> Vec<JobView> {
        let tree = self.app.run_tree(&self.caller, run).await.unwrap();
        tree.nodes
            .into_iter()
            .filter(|n| {
                n.node_type == NodeType::Task
                    && [kind::WRITE_DRAMA, kind::WRITE_SCENES, kind::CRITIQUE_DRAMA]
                        .contains(&n.kind.as_str())
            })
            .collect()
    }

    /// Every balance equals the sum of its ledger, and (in memory) every run kept its
    /// invariants; a run's ledger rows add up to what its job record says it cost.
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
            assert_eq!(
                rows,
                -(costs.total - costs.refunded),
                "run {run}: {costs:?}"
            );
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

/// What a task's recorded usage costs at `TOKEN_PRICED`'s rates.
fn token_price(task: &JobView) -> i64 {
    let usage: Usage = serde_json::from_value(task.result.as_ref().unwrap()["usage"].clone())
        .unwrap_or_else(|e| panic!("{}: {e}", task.key));
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{usage:?}"
    );
    i64::try_from(
        (u128::from(usage.input_tokens) * 125 + u128::from(usage.output_tokens) * 1000)
            .div_ceil(1_000_000),
    )
    .unwrap()
}

fn settles(ledger: &[LedgerEntry], task: &JobView) -> Vec<i64> {
    ledger
        .iter()
        .filter(|e| e.reason == CreditReason::UsageSettle && e.task_id == Some(task.id.0))
        .inspect(|e| assert_eq!(e.run_id, Some(task.run_id.0)))
        .map(|e| e.amount)
        .collect()
}

async fn write(w: &World, id: &str) -> JobId {
    w.app
        .create_from_premise(
            &w.caller,
            PremiseRequest {
                premise: "A corgi builds a rocket to find stray dogs a home. 2 episodes.".into(),
                id: Some(id.into()),
                ..PremiseRequest::default()
            },
        )
        .await
        .unwrap()
        .job_id
}

on_every_backend!("token_prices":
    a_token_priced_call_holds_its_call_price_and_settles_its_usage,
    usage_above_the_hold_costs_the_hold,
);

async fn a_token_priced_call_holds_its_call_price_and_settles_its_usage(backend: Backend) {
    let w = world(backend, TOKEN_PRICED, "").await;
    let run = write(&w, "corgi").await;
    // The hold: the model's per-call price, what the estimate showed.
    let first = w.ledger().await;
    assert_eq!(first[0].reason, CreditReason::RunCharge);
    assert_eq!(first[0].amount, -10);
    w.completes(run).await;
    let ledger = w.ledger().await;
    let write_task = &w.script_tasks(run).await[0];
    let price = token_price(write_task);
    assert!(
        price < 10,
        "the offline drama costs less than its hold: {price}"
    );
    assert_eq!(settles(&ledger, write_task), vec![10 - price]);
    assert_eq!(write_task.cost, price, "the task's cost is what it cost");

    // A critique settles the same way; scenes written by a generation too.
    let id = DramaId::parse("corgi").unwrap();
    let critique = w
        .app
        .critique_drama(&w.caller, &id, None)
        .await
        .unwrap()
        .job_id;
    w.completes(critique).await;
    let generate = w
        .app
        .generate(&w.caller, &id, Scope::Drama, false)
        .await
        .unwrap()
        .job_id;
    w.completes(generate).await;
    let ledger = w.ledger().await;
    let critique_task = &w.script_tasks(critique).await[0];
    assert!(
        critique_task.result.as_ref().unwrap()["feedback"].is_string(),
        "{:?}",
        critique_task.result
    );
    let critique_price = token_price(critique_task);
    assert!(critique_price < 3);
    assert_eq!(settles(&ledger, critique_task), vec![3 - critique_price]);
    let writers = w.script_tasks(generate).await;
    assert_eq!(writers.len(), 2, "one scene writer per episode");
    for t in &writers {
        let p = token_price(t);
        assert!(p < 8);
        assert_eq!(settles(&ledger, t), vec![8 - p], "{}", t.key);
    }
    assert_eq!(w.offline.calls().scripts, 4, "one call per script task");
    w.app.settle_refunds().await;
    w.check_books(&[run, critique, generate]).await;
    // Exact: the balance is the start less what the runs' records say they cost.
    let mut cost = 0;
    for r in [run, critique, generate] {
        let c = w.app.job(&w.caller, r).await.unwrap().costs.unwrap();
        cost += c.total - c.refunded;
    }
    assert_eq!(w.balance().await, START - cost);
    w.stop().await;
}

async fn usage_above_the_hold_costs_the_hold(backend: Backend) {
    let w = world(backend, DEAR, "").await;
    let run = write(&w, "dear").await;
    w.completes(run).await;
    let ledger = w.ledger().await;
    assert!(
        ledger.iter().all(|e| e.reason != CreditReason::UsageSettle),
        "{ledger:?}"
    );
    let task = &w.script_tasks(run).await[0];
    assert_eq!(task.cost, 10, "capped at the hold");
    let charged: i64 = ledger
        .iter()
        .filter(|e| e.run_id == Some(run.0))
        .map(|e| e.amount)
        .sum();
    let costs = w.app.job(&w.caller, run).await.unwrap().costs.unwrap();
    assert_eq!(charged, -costs.total);
    w.check_books(&[run]).await;
    w.stop().await;
}

/// A trigger that fails the first `failures` `usage_settle` ledger inserts with 40001, so the
/// completing transaction of a token-priced task fails after its product was checkpointed;
/// its sequence counts every insert it saw and survives the rollbacks.
fn failing_settle(failures: u32) -> String {
    failing_trigger(
        "settle",
        failures,
        "before insert on public.credit_ledger",
        "new.reason = 'usage_settle'",
    )
}

async fn settle_attempts(w: &World) -> i64 {
    let (_, pool) = w.database.as_ref().unwrap();
    firings(pool, "settle").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completion_committed_again_settles_once() {
    // One failure: the commit is retried with the same product.
    let db = ScratchDb::create("token_prices").await;
    let w = world(Backend::Postgres(db), TOKEN_PRICED, &failing_settle(1)).await;
    let run = write(&w, "retried").await;
    w.completes(run).await;
    assert_eq!(
        settle_attempts(&w).await,
        2,
        "one failed commit, then one that held"
    );
    let task = &w.script_tasks(run).await[0];
    assert_eq!(task.attempts, 1, "retried as a commit, not an attempt");
    let price = token_price(task);
    assert_eq!(settles(&w.ledger().await, task), vec![10 - price]);
    assert_eq!(w.offline.calls().scripts, 1);
    w.check_books(&[run]).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completion_whose_commits_all_failed_settles_once_next_attempt() {
    // The first attempt tries its commit once (no patience) and it fails; the second attempt
    // commits the checkpointed script and its usage.
    let db = ScratchDb::create("token_prices").await;
    let w = world_with(
        Backend::Postgres(db),
        TOKEN_PRICED,
        &failing_settle(1),
        Some(Duration::ZERO),
    )
    .await;
    let run = write(&w, "reattempted").await;
    w.completes(run).await;
    assert_eq!(settle_attempts(&w).await, 2);
    let task = &w.script_tasks(run).await[0];
    assert_eq!(task.attempts, 2, "its first attempt gave up");
    let price = token_price(task);
    assert_eq!(settles(&w.ledger().await, task), vec![10 - price]);
    assert_eq!(w.offline.calls().scripts, 1, "the script was written once");
    w.check_books(&[run]).await;
    w.stop().await;
}

/// Submits a drama's writing where the script model is priced as `submit_models`, then runs it
/// in a process where it is priced as `run_models` (an edited `SCRIPT_MODELS`, a rolling
/// deploy); answers the writing task and the user's ledger.
async fn written_across_a_price_change(
    submit_models: &str,
    run_models: &str,
) -> (JobView, Vec<LedgerEntry>) {
    let store = Arc::new(MemoryStore::new());
    let jobs = Arc::new(MemoryJobStore::with_invariant_checks());
    let app = |models: &str| {
        App::new(Ports {
            store: store.clone(),
            assets: Arc::new(drama_assets::MemoryStore::default()),
            generation: Arc::new(MemoryGeneration::new(store.clone(), jobs.clone())),
            jobs: Arc::new(EngineJobs(jobs.clone())),
            ai: providers(models),
        })
        .with_offline_pricing(true)
    };
    let books: Arc<dyn Store> = store.clone();
    let user = UserId::random();
    let mut new = NewUser::new(user);
    new.tokens = START;
    books.create_user(&new).await.unwrap();
    let caller = Caller::user(user);
    let run = app(submit_models)
        .create_from_premise(
            &caller,
            PremiseRequest {
                premise: "A corgi builds a rocket to find stray dogs a home. 2 episodes.".into(),
                id: Some("corgi".into()),
                ..PremiseRequest::default()
            },
        )
        .await
        .unwrap()
        .job_id;
    let running = app(run_models);
    let worker = Worker::start(
        jobs.clone(),
        running.registry(),
        WorkerConfig {
            poll_interval: Duration::from_millis(20),
            ..WorkerConfig::default()
        },
    )
    .await
    .unwrap();
    let mut settled = false;
    for _ in 0..3000 {
        if running.job(&caller, run).await.unwrap().state.is_settled() {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(settled, "the run did not settle");
    worker.shutdown().await;
    assert_eq!(jobs.violations(), Vec::<String>::new());
    let tree = running.run_tree(&caller, run).await.unwrap();
    let task = tree
        .nodes
        .into_iter()
        .find(|n| n.kind == kind::WRITE_DRAMA)
        .unwrap();
    assert_eq!(books.check_ledger().await.unwrap(), vec![]);
    (task, books.ledger(user, 100, 0).await.unwrap())
}

/// A task settles at the rates its hold was taken under: the rates travel in its payload, so
/// changing them before it runs neither reprices it nor makes a per-call task token-priced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_settles_at_the_rates_it_was_submitted_under() {
    // Submitted at TOKEN_PRICED's rates, run where the rates are DEAR's (which would keep the
    // whole hold): it settles at the rates of its submission.
    let (task, ledger) = written_across_a_price_change(TOKEN_PRICED, DEAR).await;
    assert_eq!(
        task.payload["token_prices"],
        serde_json::json!({"input_per_million": 125, "output_per_million": 1000})
    );
    let price = token_price(&task);
    assert!(price < 10, "{price}");
    assert_eq!(task.cost, price);
    assert_eq!(settles(&ledger, &task), vec![10 - price]);

    // Submitted at a per-call price, run where the model is token-priced: the per-call price
    // stands, nothing is settled.
    let (task, ledger) =
        written_across_a_price_change("gpt-5.1=openai@10/10/3/8", TOKEN_PRICED).await;
    assert!(task.payload["token_prices"].is_null(), "{}", task.payload);
    assert_eq!(task.cost, 10);
    assert_eq!(settles(&ledger, &task), Vec::<i64>::new());
}
