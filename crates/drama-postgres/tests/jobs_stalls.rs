//! The job store when the database, or another session, stalls: a session stopped in the
//! middle of a transaction holds no other run's recovery or claims hostage and is ended by the
//! server; a session on a read-only server (a failover) fails with a passing error and its
//! connection is not handed out again; a rate-limited class's refill time never moves back.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drama_dal::{NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_jobs::core::{Finish, FinishKind};
use drama_jobs::{
    ClaimRequest, ClaimedJob, Graph, JobStore, NodeSpec, ResourceLimit, RunSpec, WorkerId,
    WorkerRegistration,
};
use drama_postgres::jobs::PgJobStore;
use drama_postgres::{PgSettings, PgStore};
use jobs_support::{install_invariant_checks, seasoned_reaper, url_of, violations};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

/// A pool on the test database as the server builds it, with `idle` as the
/// idle-in-transaction timeout.
async fn server_pool(pool: &PgPool, idle: Duration) -> PgPool {
    let mut settings = PgSettings::from_url(url_of(pool).await);
    settings.max_connections = 8;
    settings.idle_in_transaction_timeout = idle;
    settings.connect().await.unwrap()
}

async fn register(store: &PgJobStore, ttl: Duration) -> WorkerId {
    let id = WorkerId::new();
    store
        .register_worker(&WorkerRegistration {
            id,
            name: "stall".into(),
            kinds: vec!["k".into()],
            ttl,
        })
        .await
        .unwrap();
    id
}

async fn claim(store: &PgJobStore, worker: WorkerId, limit: usize) -> Vec<ClaimedJob> {
    store
        .claim(&ClaimRequest {
            worker,
            kinds: vec!["k".into()],
            limit,
        })
        .await
        .unwrap()
}

fn one_task(class: &str) -> Graph {
    Graph::new(RunSpec::new("stall", Uuid::new_v4())).with(
        NodeSpec::task("t", "k", json!({}))
            .class(class)
            .max_attempts(3),
    )
}

/// A process stops (SIGSTOP, a frozen VM) in the middle of a transaction on one run, while a
/// dead worker's tasks of two runs wait to be taken back. The reaper takes back the other
/// run's task at once, and the held one after the server ended the stopped session (3 s
/// here, long enough that the first pass starts well before it even on a loaded machine). Before, the reaper locked its runs in id order and waited at the stopped session's
/// run, holding the others: nothing of those runs was recovered, claimed or completed, and
/// with no idle-in-transaction timeout the wait never ended.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_session_stopped_in_a_transaction_holds_back_only_its_own_run(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let db = server_pool(&pool, Duration::from_secs(3)).await;
    let setting: String = sqlx::query_scalar("show idle_in_transaction_session_timeout")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(setting, "3s", "set on every pooled session");
    let store = Arc::new(PgJobStore::new(db.clone()));
    let dead = register(&store, Duration::from_millis(300)).await;
    let a = store.submit(&one_task("default")).await.unwrap();
    let b = store.submit(&one_task("default")).await.unwrap();
    assert_eq!(claim(&store, dead, 2).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let reaper = seasoned_reaper(&store, &pool).await;

    // The stopped session: it locked one run and sends nothing more.
    let mut stopped = db.begin().await.unwrap();
    sqlx::query("select 1 from job_groups where id = $1 for no key update")
        .bind(a.run_id.0)
        .execute(&mut *stopped)
        .await
        .unwrap();
    // A reaper that waited for the stopped session would take both tasks back once the server
    // ended it (3 s): one task back, with the held one still running, shows it did not wait.
    // The timeout only keeps a reaper that waits for good from hanging the test.
    let reaped = tokio::time::timeout(Duration::from_secs(10), store.reap_expired(reaper, 100))
        .await
        .expect("the reaper does not wait for good")
        .unwrap();
    assert_eq!(
        reaped, 1,
        "the other run's task is taken back, without waiting"
    );
    let state = |run: Uuid| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "select state from jobs where run_id = $1 and key = 't'",
            )
            .bind(run)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    assert_eq!(state(b.run_id.0).await, "ready");
    assert_eq!(state(a.run_id.0).await, "running");

    // The server ends the stopped session; the next pass takes the held run's task back.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert!(
        sqlx::query("select 1")
            .execute(&mut *stopped)
            .await
            .is_err(),
        "the server ended the idle transaction"
    );
    drop(stopped);
    assert_eq!(store.reap_expired(reaper, 100).await.unwrap(), 1);
    assert_eq!(state(a.run_id.0).await, "ready");
    let (found, _) = violations(&pool).await;
    assert_eq!(found, Vec::<String>::new());
}

/// A session stopped while it holds a limited class's row (a claim stopped between locking
/// the class and committing). A claim of that class gives up after its lock timeout, with a
/// passing error, and lets go of the run it locked, so the run's cancellation goes through.
/// Before, the claim waited for the class, holding the run, and so did the cancellation.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_claim_does_not_wait_long_for_a_class_held_by_a_stopped_session(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let db = server_pool(&pool, Duration::from_secs(60)).await;
    let store = Arc::new(PgJobStore::new(db.clone()));
    store
        .set_resource_limits(&[ResourceLimit::concurrency("video", 2)])
        .await
        .unwrap();
    let worker = register(&store, Duration::from_secs(60)).await;
    let run = store.submit(&one_task("video")).await.unwrap();
    let mut stopped = db.begin().await.unwrap();
    sqlx::query("select 1 from job_resource_classes where name = 'video' for no key update")
        .execute(&mut *stopped)
        .await
        .unwrap();
    let claiming = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim(&ClaimRequest {
                    worker,
                    kinds: vec!["k".into()],
                    limit: 1,
                })
                .await
        })
    };
    // The claim holds the run and waits for the class.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancelled = tokio::time::timeout(Duration::from_secs(10), store.cancel(run.run_id, "user"))
        .await
        .expect("the cancellation does not wait for the stopped session")
        .unwrap();
    assert_eq!(cancelled.cancelled, 1);
    match claiming.await.unwrap() {
        Err(e) => assert!(e.is_retryable(), "a lock timeout is passing: {e}"),
        Ok(jobs) => assert!(jobs.is_empty(), "started {jobs:?}"),
    }
    stopped.rollback().await.unwrap();
    let (found, _) = violations(&pool).await;
    assert_eq!(found, Vec::<String>::new());
}

/// A pool whose sessions are read-only, as on a primary demoted in a failover.
async fn read_only_pool(pool: &PgPool) -> PgPool {
    let options: PgConnectOptions = url_of(pool)
        .await
        .parse::<PgConnectOptions>()
        .unwrap()
        .options([("default_transaction_read_only", "on")]);
    PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap()
}

async fn backend(pool: &PgPool) -> i32 {
    sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Writes refused by a read-only server (25006: a pooled connection reached the old primary,
/// demoted in a failover) are passing failures: the worker writes a refused finish again
/// instead of keeping its task running for good, and a handler's step after a paid call is
/// tried again instead of failing its task and refunding what the provider was paid for. The
/// job store closes the connection that met it, so a retry gets a fresh one.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn writes_refused_by_a_read_only_server_are_passing_failures(pool: PgPool) {
    let store = PgJobStore::new(pool.clone());
    let worker = register(&store, Duration::from_secs(60)).await;
    store.submit(&one_task("default")).await.unwrap();
    let claimed = claim(&store, worker, 1).await;

    let read_only = read_only_pool(&pool).await;
    let before = backend(&read_only).await;
    let refused = PgJobStore::new(read_only.clone())
        .finish(vec![Finish {
            fence: claimed[0].fence,
            kind: FinishKind::Complete {
                result: json!("made"),
                expansion: None,
            },
        }])
        .await
        .unwrap_err();
    assert!(refused.is_retryable(), "{refused}");
    assert_ne!(
        backend(&read_only).await,
        before,
        "the read-only connection was closed, not handed out again"
    );

    let repo = PgStore::new(read_only);
    let e = repo
        .create_user(&NewUser::new(UserId(Uuid::new_v4())))
        .await
        .unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

/// A claim that waited for a rate-limited class's lock behind a claim that began later must
/// not set the class's `refilled_at` back to its own (earlier) transaction time: the next
/// claim would credit the interval between the two again, and more tasks would start in a
/// minute than the limit allows.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_claim_that_waited_never_moves_the_refill_time_back(pool: PgPool) {
    let store = Arc::new(PgJobStore::new(pool.clone()));
    store
        .set_resource_limits(&[ResourceLimit {
            class: "image".into(),
            max_running: None,
            per_minute: Some(60),
        }])
        .await
        .unwrap();
    let worker = register(&store, Duration::from_secs(60)).await;
    store.submit(&one_task("image")).await.unwrap();
    // Stands for a claim that holds the class and began after the one below.
    let mut later = pool.begin().await.unwrap();
    sqlx::query("select 1 from job_resource_classes where name = 'image' for no key update")
        .execute(&mut *later)
        .await
        .unwrap();
    let claiming = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim(&ClaimRequest {
                    worker,
                    kinds: vec!["k".into()],
                    limit: 1,
                })
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refilled: DateTime<Utc> = sqlx::query_scalar(
        "update job_resource_classes set tokens = 0, refilled_at = clock_timestamp() \
         where name = 'image' returning refilled_at",
    )
    .fetch_one(&mut *later)
    .await
    .unwrap();
    later.commit().await.unwrap();
    let started = claiming.await.unwrap();
    assert!(started.is_empty(), "no token was left");
    let after: DateTime<Utc> =
        sqlx::query_scalar("select refilled_at from job_resource_classes where name = 'image'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        after >= refilled,
        "refilled_at moved back from {refilled} to {after}"
    );
}
