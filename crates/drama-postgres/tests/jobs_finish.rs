//! A completion batch that the store refuses as a whole (one item holds text or a result the
//! database cannot store) does not leave its tasks running: the worker writes its items one at
//! a time, the bad one ends failed and the others settle as their handlers said.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use std::sync::Arc;
use std::time::Duration;

use drama_jobs::{
    Graph, JobContext, JobState, JobStore, NodeSpec, Outcome, Registry, RunSpec, Submitted, Worker,
    WorkerConfig,
};
use drama_postgres::jobs::PgJobStore;
use jobs_support::wide_pool;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

/// Generous: the runs settle in milliseconds once the batch is written.
const SETTLE: Duration = Duration::from_secs(30);
/// Long enough for a handler's outcome to reach the worker's completion queue after the
/// handler said it is returning (the wrapper sends it right away).
const QUEUED: Duration = Duration::from_millis(300);

/// Handlers of kind `step` tell when they started, wait until their key is released, say that
/// they are returning, and return what their payload names. The NUL characters come from the
/// handlers (as a provider's message would): the payload itself could not hold one.
fn registry(
    started: mpsc::UnboundedSender<String>,
    returning: mpsc::UnboundedSender<String>,
    released: watch::Receiver<Vec<String>>,
) -> Registry {
    let mut registry = Registry::new();
    registry.register("step", move |ctx: JobContext| {
        let (started, returning, mut released) =
            (started.clone(), returning.clone(), released.clone());
        async move {
            let key = ctx.key().to_owned();
            let _ = started.send(key.clone());
            released.wait_for(|keys| keys.contains(&key)).await.unwrap();
            let payload = ctx.payload().clone();
            let _ = returning.send(key);
            match payload["outcome"].as_str() {
                Some("fail_with_nul") => Outcome::fail("x\u{0}y"),
                Some("result_with_nul") => Outcome::success(json!({"text": "x\u{0}y"})),
                _ => Outcome::success(payload["result"].clone()),
            }
        }
    });
    registry
}

async fn recv_n(rx: &mut mpsc::UnboundedReceiver<String>, n: usize) {
    for _ in 0..n {
        tokio::time::timeout(SETTLE, rx.recv())
            .await
            .expect("the handlers get there")
            .unwrap();
    }
}

async fn job(store: &PgJobStore, run: &Submitted, key: &str) -> drama_jobs::JobView {
    store.job(run.ids[key]).await.unwrap().unwrap()
}

/// One worker; a run `first` of one task `c`, and a run `second` of tasks `a` (finishing as
/// `a_outcome` says) and `b` (completing). `c` finishes first and its batch waits for the
/// lock on its run, which the test holds, while `a` and `b` finish: they are written together
/// in the next batch. Returns the store and the second run once that run settled.
async fn a_and_b_in_one_batch(pool: &PgPool, a_outcome: Value) -> (Arc<PgJobStore>, Submitted) {
    let store = Arc::new(PgJobStore::new(wide_pool(pool, 8).await));
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (returning_tx, mut returning) = mpsc::unbounded_channel();
    let (release, released) = watch::channel(Vec::<String>::new());
    let worker = Worker::start(
        store.clone(),
        registry(started_tx, returning_tx, released),
        WorkerConfig {
            name: "batch".into(),
            concurrency: 3,
            poll_interval: Duration::from_millis(50),
            ..WorkerConfig::default()
        },
    )
    .await
    .unwrap();

    let owner = Uuid::new_v4();
    let first = store
        .submit(
            &Graph::new(RunSpec::new("first", owner)).with(NodeSpec::task(
                "c",
                "step",
                json!({"result": "c"}),
            )),
        )
        .await
        .unwrap();
    let second = store
        .submit(
            &Graph::new(RunSpec::new("second", owner))
                .with(NodeSpec::task("a", "step", a_outcome))
                .with(NodeSpec::task("b", "step", json!({"result": "b"}))),
        )
        .await
        .unwrap();
    recv_n(&mut started, 3).await;

    let mut hold = pool.begin().await.unwrap();
    sqlx::query("select 1 from public.job_groups where id = $1 for no key update")
        .bind(first.run_id.0)
        .execute(&mut *hold)
        .await
        .unwrap();
    release.send_modify(|keys| keys.push("c".into()));
    recv_n(&mut returning, 1).await;
    tokio::time::sleep(QUEUED).await;
    release.send_modify(|keys| keys.extend(["a".to_owned(), "b".to_owned()]));
    recv_n(&mut returning, 2).await;
    tokio::time::sleep(QUEUED).await;
    hold.commit().await.unwrap();

    let root = drama_jobs::conformance::wait_settled(&*store, first.run_id, SETTLE).await;
    assert_eq!(root.state, JobState::Completed);
    let root = drama_jobs::conformance::wait_settled(&*store, second.run_id, SETTLE).await;
    assert_eq!(root.state, JobState::Failed);
    assert_eq!(job(&store, &second, "b").await.state, JobState::Completed);
    worker.shutdown().await;
    (store, second)
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn an_error_with_a_nul_character_is_stored_without_it(pool: PgPool) {
    let (store, run) = a_and_b_in_one_batch(&pool, json!({"outcome": "fail_with_nul"})).await;
    let a = job(&store, &run, "a").await;
    assert_eq!(a.state, JobState::Failed);
    assert_eq!(a.error.as_deref(), Some("xy"));
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_result_the_database_refuses_fails_its_task_alone(pool: PgPool) {
    // jsonb cannot hold U+0000, so the store refuses this completion whatever its batch.
    let (store, run) = a_and_b_in_one_batch(&pool, json!({"outcome": "result_with_nul"})).await;
    let a = job(&store, &run, "a").await;
    assert_eq!(a.state, JobState::Failed);
    let error = a.error.unwrap_or_default();
    assert!(error.contains("refused"), "{error}");
}
