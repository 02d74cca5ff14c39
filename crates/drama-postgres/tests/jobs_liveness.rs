//! A worker whose connection pool is exhausted for longer than its lease keeps its
//! registration: its heartbeat runs on a connection of its own, so its handlers are neither
//! cancelled nor taken over by another worker, and each task calls its provider once. A
//! registration that lapses anyway is renewed without cancelling the handlers.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use drama_jobs::{
    Graph, JobContext, JobState, JobStore, NodeSpec, Outcome, Registry, RunSpec, Worker,
    WorkerConfig,
};
use drama_postgres::jobs::PgJobStore;
use jobs_support::{seasoned_reaper, url_of, wide_pool};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

const LEASE: Duration = Duration::from_secs(1);
const POOL: u32 = 3;
/// More handler slots than pooled connections: every connection ends up held by a handler
/// (or the notification listener) and the remaining handlers queue for one.
const TASKS: usize = 4;

fn config(name: &str) -> WorkerConfig {
    WorkerConfig {
        name: name.into(),
        concurrency: TASKS,
        lease_ttl: LEASE,
        heartbeat_interval: LEASE / 4,
        reap_interval: LEASE / 4,
        poll_interval: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(5),
        ..WorkerConfig::default()
    }
}

/// What the handlers saw.
#[derive(Default)]
struct Seen {
    /// Handler invocations: each stands for a paid provider call.
    calls: AtomicUsize,
    /// Whether any handler of the starved worker was told to stop.
    cancelled: AtomicBool,
}

/// The starved worker's handler: it calls the provider, then needs a database connection
/// and keeps it (as a handler writing its product would) until the test lets it finish.
fn holding_registry(
    db: PgPool,
    seen: Arc<Seen>,
    started: mpsc::UnboundedSender<()>,
    release: watch::Receiver<bool>,
) -> Registry {
    let mut registry = Registry::new();
    registry.register("call", move |ctx: JobContext| {
        let (db, seen, started, mut release) =
            (db.clone(), seen.clone(), started.clone(), release.clone());
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            let _ = started.send(());
            let stop = || {
                seen.cancelled.store(true, Ordering::SeqCst);
                Outcome::cancelled("the worker lost its lease")
            };
            let conn = tokio::select! {
                conn = db.acquire() => match conn {
                    Ok(conn) => conn,
                    Err(e) => return Outcome::retry(e),
                },
                () = ctx.cancellation().cancelled() => return stop(),
            };
            tokio::select! {
                released = release.wait_for(|go| *go) => { released.unwrap(); }
                () = ctx.cancellation().cancelled() => return stop(),
            }
            drop(conn);
            Outcome::success(json!({"attempt": ctx.attempt()}))
        }
    });
    registry
}

/// Submits one run of [`TASKS`] `call` tasks and waits until every handler started.
async fn submit_and_start(
    store: &PgJobStore,
    started: &mut mpsc::UnboundedReceiver<()>,
) -> drama_jobs::Submitted {
    let mut graph = Graph::new(RunSpec::new("calls", Uuid::new_v4()));
    for i in 0..TASKS {
        graph.add(NodeSpec::task(format!("t{i}"), "call", json!({})));
    }
    let run = store.submit(&graph).await.unwrap();
    for _ in 0..TASKS {
        tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await
            .expect("every task starts")
            .unwrap();
    }
    run
}

/// Lets the held handlers go on and waits for the run to complete.
async fn release_and_complete(
    release: &watch::Sender<bool>,
    store: &PgJobStore,
    run: &drama_jobs::Submitted,
) {
    release.send(true).unwrap();
    let root =
        drama_jobs::conformance::wait_settled(store, run.run_id, Duration::from_secs(30)).await;
    assert_eq!(root.state, JobState::Completed);
}

/// The attempts of the run's tasks, in key order.
async fn attempts(pool: &PgPool, run: &drama_jobs::Submitted) -> Vec<i32> {
    sqlx::query_scalar(
        "select attempts from public.jobs where run_id = $1 and node_type = 'task' order by key",
    )
    .bind(run.run_id.0)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_worker_with_an_exhausted_pool_keeps_its_lease_and_its_handlers(pool: PgPool) {
    let small = PgPoolOptions::new()
        .max_connections(POOL)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&url_of(&pool).await)
        .await
        .unwrap();
    let store = Arc::new(PgJobStore::new(small.clone()));
    let seen = Arc::new(Seen::default());
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let worker = Worker::start(
        store.clone(),
        holding_registry(small.clone(), seen.clone(), started_tx, release_rx),
        config("starved"),
    )
    .await
    .unwrap();
    let registration = worker.worker_id().unwrap();

    let run = submit_and_start(&store, &mut started).await;

    // A healthy worker on a pool of its own takes over any task whose lease lapses, as
    // another process of the deployment would — calling the provider again.
    let other_store = Arc::new(PgJobStore::new(wide_pool(&pool, 4).await));
    let mut other = Registry::new();
    let other_seen = seen.clone();
    other.register("call", move |_ctx: JobContext| {
        let seen = other_seen.clone();
        async move {
            seen.calls.fetch_add(1, Ordering::SeqCst);
            Outcome::success(json!({"taken over": true}))
        }
    });
    let rescuer = Worker::start(other_store, other, config("rescuer"))
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    while !(small.size() == POOL && small.num_idle() == 0) {
        assert!(
            Instant::now() < deadline,
            "the handlers never held the pool"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Three leases long, nothing of the starved worker's pool is free: its registration must
    // stay alive all along, seen from another connection.
    let starved_until = Instant::now() + 3 * LEASE;
    while Instant::now() < starved_until {
        assert_eq!(small.num_idle(), 0, "the pool was meant to stay exhausted");
        let alive: Option<bool> =
            sqlx::query_scalar("select expires_at > now() from public.job_workers where id = $1")
                .bind(registration.0)
                .fetch_optional(&pool)
                .await
                .unwrap();
        assert_eq!(
            alive,
            Some(true),
            "the registration lapsed while the pool was exhausted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    release_and_complete(&release, &store, &run).await;
    assert_eq!(
        attempts(&pool, &run).await,
        vec![1; TASKS],
        "a task was taken again"
    );
    assert!(
        !seen.cancelled.load(Ordering::SeqCst),
        "a handler was cancelled"
    );
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        TASKS,
        "provider calls for {TASKS} tasks"
    );
    assert_eq!(
        worker.worker_id(),
        Some(registration),
        "it registered again"
    );
    let stats = worker.shutdown().await.stats;
    assert_eq!((stats.succeeded, stats.fenced_out), (TASKS as u64, 0));
    assert_eq!(rescuer.shutdown().await.stats.claimed, 0);
    small.close().await;
}

/// A registration that lapses while its process is alive (heartbeats held up by an overloaded
/// host) is renewed under the same id, and the handlers keep running: the tasks nobody took
/// over in the meantime complete on their first attempt, with one provider call each.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_lapsed_registration_is_renewed_without_cancelling_its_handlers(pool: PgPool) {
    let db = wide_pool(&pool, 2 * TASKS as u32 + 4).await;
    let store = Arc::new(PgJobStore::new(db.clone()));
    let seen = Arc::new(Seen::default());
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let worker = Worker::start(
        store.clone(),
        holding_registry(db.clone(), seen.clone(), started_tx, release_rx),
        WorkerConfig {
            // Only the heartbeat may notice the lapse here: this worker's reaper would
            // requeue the tasks first, which is the zombie case the process tests cover.
            reap_interval: Duration::from_secs(3600),
            ..config("lapsing")
        },
    )
    .await
    .unwrap();
    let registration = worker.worker_id().unwrap();
    let run = submit_and_start(&store, &mut started).await;

    // The registration expires under the running handlers.
    let lapsed = sqlx::query(
        "update public.job_workers set expires_at = now() - interval '1 second' where id = $1",
    )
    .bind(registration.0)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(lapsed.rows_affected(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Option<bool> =
            sqlx::query_scalar("select expires_at > now() from public.job_workers where id = $1")
                .bind(registration.0)
                .fetch_optional(&pool)
                .await
                .unwrap();
        if alive == Some(true) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the worker never registered again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    release_and_complete(&release, &store, &run).await;
    assert!(
        !seen.cancelled.load(Ordering::SeqCst),
        "a handler was cancelled"
    );
    assert_eq!(
        seen.calls.load(Ordering::SeqCst),
        TASKS,
        "provider calls for {TASKS} tasks"
    );
    assert_eq!(
        attempts(&pool, &run).await,
        vec![1; TASKS],
        "a task was taken again"
    );
    assert_eq!(worker.worker_id(), Some(registration), "the same id");
    let stats = worker.shutdown().await.stats;
    assert_eq!((stats.succeeded, stats.fenced_out), (TASKS as u64, 0));
    db.close().await;
}

/// A registration that lapses long enough for a reaper to take the tasks back: when the worker
/// registers again it stops the handlers of those tasks. Here they had not called their
/// provider yet (each waits for the test before it "pays"), so none of them ever does: every
/// task's call is paid once, by its second attempt.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn handlers_of_tasks_taken_back_during_a_lapse_stop_before_their_paid_call(pool: PgPool) {
    let db = wide_pool(&pool, 2 * TASKS as u32 + 4).await;
    let store = Arc::new(PgJobStore::new(db.clone()));
    let paid = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (release, release_rx) = watch::channel(false);
    let mut registry = Registry::new();
    {
        let (paid, stopped) = (paid.clone(), stopped.clone());
        registry.register("call", move |ctx: JobContext| {
            let (paid, stopped, started, mut release) = (
                paid.clone(),
                stopped.clone(),
                started_tx.clone(),
                release_rx.clone(),
            );
            async move {
                let _ = started.send(ctx.attempt());
                tokio::select! {
                    released = release.wait_for(|go| *go) => { released.unwrap(); }
                    () = ctx.cancellation().cancelled() => {
                        stopped.fetch_add(1, Ordering::SeqCst);
                        return Outcome::cancelled("taken back");
                    }
                }
                paid.fetch_add(1, Ordering::SeqCst);
                Outcome::success(json!({"attempt": ctx.attempt()}))
            }
        });
    }
    let worker = Worker::start(
        store.clone(),
        registry,
        WorkerConfig {
            // The test plays the reaper, at the moment it chooses.
            reap_interval: Duration::from_secs(3600),
            ..config("retaken")
        },
    )
    .await
    .unwrap();
    let registration = worker.worker_id().unwrap();
    let mut graph = Graph::new(RunSpec::new("calls", Uuid::new_v4()));
    for i in 0..TASKS {
        graph.add(NodeSpec::task(format!("t{i}"), "call", json!({})));
    }
    let run = store.submit(&graph).await.unwrap();
    let mut next_start = async || {
        tokio::time::timeout(Duration::from_secs(10), started.recv())
            .await
            .expect("a handler starts")
            .unwrap()
    };
    for _ in 0..TASKS {
        assert_eq!(next_start().await, 1);
    }

    // The registration lapses and a reaper takes every task back before the worker notices
    // (should its heartbeat renew the registration first, the lapse is made again).
    let reaper = seasoned_reaper(&store, &pool).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        sqlx::query(
            "update public.job_workers set expires_at = now() - interval '1 second' where id = $1",
        )
        .bind(registration.0)
        .execute(&pool)
        .await
        .unwrap();
        if store.reap_expired(reaper, 100).await.unwrap() == TASKS {
            break;
        }
        assert!(Instant::now() < deadline, "the tasks were never reaped");
    }
    // The worker registers again, stops the four handlers and claims the tasks anew.
    for _ in 0..TASKS {
        assert_eq!(next_start().await, 2);
    }
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        TASKS,
        "stale handlers stopped"
    );

    release_and_complete(&release, &store, &run).await;
    assert_eq!(
        paid.load(Ordering::SeqCst),
        TASKS,
        "one paid call for each of {TASKS} tasks"
    );
    assert_eq!(attempts(&pool, &run).await, vec![2; TASKS]);
    assert_eq!(worker.worker_id(), Some(registration), "the same id");
    worker.shutdown().await;
    db.close().await;
}
