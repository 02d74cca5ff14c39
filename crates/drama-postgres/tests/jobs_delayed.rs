//! Tasks waiting for their `run_after` (a retry's backoff, a deferral) are stored `delayed`, so
//! that claims do not read them: skipped until they come due, claimed after, `ready` to every
//! reader all along; and the claim's promotion of the due ones waits for no lock and holds
//! none while the claim waits for a run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use drama_domain::JobStatus;
use drama_jobs::core::{Finish, FinishKind};
use drama_jobs::{
    ClaimRequest, ClaimedJob, Graph, JobId, JobState, JobStore, NodeSpec, RunSpec, WorkerId,
    WorkerRegistration,
};
use drama_postgres::jobs::PgJobStore;
use jobs_support::{install_invariant_checks, violations, wide_pool};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

async fn registered(store: &PgJobStore) -> WorkerId {
    let id = WorkerId::new();
    store
        .register_worker(&WorkerRegistration {
            id,
            name: "test".into(),
            kinds: vec!["k".into()],
            ttl: Duration::from_secs(60),
        })
        .await
        .unwrap();
    id
}

async fn claim(store: &PgJobStore, worker: WorkerId) -> Vec<ClaimedJob> {
    store
        .claim(&ClaimRequest {
            worker,
            kinds: vec!["k".into()],
            limit: 1,
        })
        .await
        .unwrap()
}

/// Submits a run of one task with three attempts, claims it and fails it with a retry after
/// `backoff`; returns the task and the moment the retry was written.
async fn retrying(store: &PgJobStore, worker: WorkerId, backoff: Duration) -> (JobId, Instant) {
    let graph = Graph::new(RunSpec::new("retry", Uuid::new_v4()))
        .with(NodeSpec::task("t", "k", json!({})).max_attempts(3));
    store.submit(&graph).await.unwrap();
    let first = claim(store, worker).await;
    assert_eq!(first.len(), 1);
    let retried = Instant::now();
    let results = store
        .finish(vec![Finish {
            fence: first[0].fence,
            kind: FinishKind::Retry {
                error: "provider unavailable".into(),
                delay: backoff,
            },
        }])
        .await
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    (first[0].fence.job_id, retried)
}

/// The stored state and flag of a task.
async fn stored(pool: &PgPool, task: JobId) -> (String, bool) {
    sqlx::query_as("select state, delayed from public.jobs where id = $1")
        .bind(task.0)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// What readers see of the task and its run: the task's state and wire status, and the run's
/// pending and running counts.
async fn seen(store: &PgJobStore, task: JobId) -> (JobState, JobStatus, i64, i64) {
    let view = store.job(task).await.unwrap().unwrap();
    let run = store.job(view.run_id).await.unwrap().unwrap();
    let counts = run.counts.unwrap();
    (
        view.state,
        view.state.coarse(),
        counts.pending,
        counts.running,
    )
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_task_in_retry_backoff_is_skipped_until_due_then_claimed_and_reads_ready(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let store = PgJobStore::new(pool.clone());
    let worker = registered(&store).await;
    let backoff = Duration::from_millis(1500);
    let (task, retried) = retrying(&store, worker, backoff).await;

    assert_eq!(stored(&pool, task).await, ("ready".into(), true));
    let waiting = (JobState::Ready, JobStatus::Pending, 1, 0);
    assert_eq!(seen(&store, task).await, waiting);
    assert!(
        claim(&store, worker).await.is_empty(),
        "not before its time"
    );
    assert!(
        retried.elapsed() < backoff,
        "the claims ran before the backoff passed; the test machine is too slow to tell"
    );
    assert_eq!(stored(&pool, task).await, ("ready".into(), true));
    assert_eq!(seen(&store, task).await, waiting);

    tokio::time::sleep(backoff.saturating_sub(retried.elapsed()) + Duration::from_millis(100))
        .await;
    // Due, and still flagged until a claim promotes it: readers see no difference.
    assert_eq!(seen(&store, task).await, waiting);
    let second = claim(&store, worker).await;
    assert_eq!(second.len(), 1, "claimed once its backoff passed");
    assert_eq!(second[0].fence.job_id, task);
    assert_eq!(second[0].attempt, 2);
    assert_eq!(stored(&pool, task).await, ("running".into(), false));
    assert_eq!(
        seen(&store, task).await,
        (JobState::Running, JobStatus::Processing, 0, 1)
    );

    let (found, checked) = violations(&pool).await;
    assert_eq!(found, Vec::<String>::new());
    assert!(checked > 0, "the commit-time check ran");
}

/// The promotion commits before the claim's transaction begins. Inside it, its row locks would
/// be held while the claim waits for a run, and the transaction holding that run (a completion
/// releasing the task's dependents, a cancel) would wait to write the promoted task: a
/// deadlock, which PostgreSQL resolves only after `deadlock_timeout` by aborting one of them.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_claim_waiting_for_a_run_holds_no_lock_on_the_tasks_it_promoted(pool: PgPool) {
    let store = Arc::new(PgJobStore::new(wide_pool(&pool, 4).await));
    let worker = registered(&store).await;
    let backoff = Duration::from_millis(200);
    let (task, _) = retrying(&store, worker, backoff).await;
    tokio::time::sleep(backoff + Duration::from_millis(100)).await;
    assert_eq!(stored(&pool, task).await, ("ready".into(), true), "due");
    let run: Uuid = sqlx::query_scalar("select run_id from public.jobs where id = $1")
        .bind(task.0)
        .fetch_one(&pool)
        .await
        .unwrap();

    // Another transaction holds the run, as every engine transaction of the run does.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("select 1 from public.job_groups where id = $1 for no key update")
        .bind(run)
        .execute(&mut *holder)
        .await
        .unwrap();
    let claiming = {
        let store = store.clone();
        tokio::spawn(async move { claim(&store, worker).await })
    };
    // The claim promotes the task, picks it and waits for its run.
    let waiting = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock' \
               and query like '%job_groups%for no key update%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if n > 0 {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(10),
            "the claim waits for the run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stored(&pool, task).await,
        ("ready".into(), false),
        "promoted"
    );

    // The holder writes the task; a lock held by the waiting claim would stop it here.
    sqlx::query("set local lock_timeout = '500ms'")
        .execute(&mut *holder)
        .await
        .unwrap();
    sqlx::query("update public.jobs set updated_at = now() where id = $1")
        .bind(task.0)
        .execute(&mut *holder)
        .await
        .expect("the promoted task is not locked by the waiting claim");
    holder.commit().await.unwrap();

    let claimed = tokio::time::timeout(Duration::from_secs(10), claiming)
        .await
        .expect("the claim goes on once the run is free")
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].fence.job_id, task);
}
