//! The job engine across real operating-system processes: a worker process killed with
//! SIGKILL mid-job, a stopped (zombie) worker whose late completion is rejected, and resource
//! limits that hold across two worker processes.
//!
//! Worker processes are this test binary run again with `--exact child_worker_entry` and the
//! `DRAMA_JOBS_CHILD` environment variable describing what to run.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use drama_jobs::conformance::wait_settled;
use drama_jobs::core::{Finish, FinishKind};
use drama_jobs::{
    Backoff, EventKind, Fence, Graph, JobId, JobState, JobStore, NodeSpec, Outcome, Registry,
    ResourceLimit, RunSpec, Worker, WorkerConfig,
};
use drama_postgres::jobs::{self as pgjobs, PgJobStore};
use jobs_support::url_of;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use uuid::Uuid;

const CHILD_ENV: &str = "DRAMA_JOBS_CHILD";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildSpec {
    url: String,
    lease_ms: u64,
    concurrency: usize,
    video_limit: Option<u32>,
}

/// The probe tables on `pool`'s database, and the settings of a worker process on it.
async fn probe_spec(
    pool: &PgPool,
    lease_ms: u64,
    concurrency: usize,
    video_limit: Option<u32>,
) -> ChildSpec {
    create_probe_tables(pool).await;
    ChildSpec {
        url: url_of(pool).await,
        lease_ms,
        concurrency,
        video_limit,
    }
}

fn config(spec: &ChildSpec) -> WorkerConfig {
    let lease = Duration::from_millis(spec.lease_ms);
    WorkerConfig {
        name: format!("test-worker-{}", std::process::id()),
        concurrency: spec.concurrency,
        lease_ttl: lease,
        heartbeat_interval: lease / 4,
        reap_interval: lease / 4,
        poll_interval: Duration::from_millis(100),
        retry: Backoff::doubling(Duration::from_millis(50), Duration::from_millis(500)),
        shutdown_grace: Duration::from_secs(5),
        resource_limits: spec
            .video_limit
            .map(|n| vec![ResourceLimit::concurrency("video", n)])
            .unwrap_or_default(),
        ..WorkerConfig::default()
    }
}

/// The handlers every worker process runs.
fn registry(pool: PgPool) -> Registry {
    let mut registry = Registry::new();
    let db = pool.clone();
    // A video generation: submit once (checkpointing the provider's task id), then poll. The
    // first attempt hangs, so that its process can be killed or stopped mid-job.
    registry.register("probe", move |ctx: drama_jobs::JobContext| {
        let db = db.clone();
        async move {
            sqlx::query("insert into probe_runs (job, attempt, pid) values ($1, $2, $3)")
                .bind(ctx.id().0)
                .bind(i32::try_from(ctx.attempt()).unwrap())
                .bind(i32::try_from(std::process::id()).unwrap())
                .execute(&db)
                .await
                .unwrap();
            let provider_task = match ctx.last_checkpoint() {
                Some(cp) => cp["provider_task"].as_str().unwrap().to_owned(),
                None => {
                    let id = format!("task-{}", ctx.attempt());
                    ctx.checkpoint(json!({"provider_task": id})).await.unwrap();
                    id
                }
            };
            if ctx.attempt() == 1 {
                // Ignores cancellation on purpose: a zombie that wakes up tries to finish.
                let hang = ctx.payload()["hang_ms"].as_u64().unwrap_or(3_600_000);
                tokio::time::sleep(Duration::from_millis(hang)).await;
            }
            Outcome::success(
                json!({"provider_task": provider_task, "attempt": ctx.attempt(),
                                    "pid": std::process::id()}),
            )
        }
    });
    let db = pool;
    registry.register("render", move |_ctx: drama_jobs::JobContext| {
        let db = db.clone();
        async move {
            sqlx::query(
                "update probe_gauge set current = current + 1, peak = greatest(peak, current + 1)",
            )
            .execute(&db)
            .await
            .unwrap();
            sqlx::query("insert into probe_runs (job, attempt, pid) values ($1, 1, $2)")
                .bind(Uuid::new_v4())
                .bind(i32::try_from(std::process::id()).unwrap())
                .execute(&db)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(150)).await;
            sqlx::query("update probe_gauge set current = current - 1")
                .execute(&db)
                .await
                .unwrap();
            Outcome::success(json!(null))
        }
    });
    registry
}

async fn create_probe_tables(pool: &PgPool) {
    sqlx::raw_sql(
        "create table if not exists probe_runs (job uuid, attempt int, pid int, at timestamptz default now()); \
         create table if not exists probe_gauge (current int not null, peak int not null); \
         insert into probe_gauge select 0, 0 where not exists (select 1 from probe_gauge);",
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The entry point of worker processes. Run directly (without `DRAMA_JOBS_CHILD`), it runs the
/// same worker in this process against a fresh database and checks that it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_worker_entry() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        let spec: ChildSpec = serde_json::from_str(&spec).unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&spec.url)
            .await
            .unwrap();
        let store = Arc::new(PgJobStore::new(pool.clone()));
        let worker = Worker::start(store, registry(pool), config(&spec))
            .await
            .unwrap();
        println!("CHILD READY {}", worker.worker_id().unwrap());
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        term.recv().await;
        let report = worker.shutdown().await;
        println!(
            "CHILD STATS {}",
            json!({"fenced_out": report.stats.fenced_out, "succeeded": report.stats.succeeded})
        );
        return;
    }
    let db = jobs_support::TempDatabase::create().await;
    let pool = db.pool.clone();
    let spec = probe_spec(&pool, 2000, 2, Some(1)).await;
    let store = Arc::new(PgJobStore::new(pool.clone()));
    let worker = Worker::start(store.clone(), registry(pool.clone()), config(&spec))
        .await
        .unwrap();
    let mut graph = Graph::new(RunSpec::new("t", Uuid::new_v4()));
    for i in 0..3 {
        graph.add(NodeSpec::task(format!("r{i}"), "render", json!({})).class("video"));
    }
    let run = store.submit(&graph).await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(30)).await;
    assert_eq!(root.state, JobState::Completed);
    let peak: i32 = sqlx::query_scalar("select peak from probe_gauge")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(peak, 1);
    worker.shutdown().await;
    db.drop().await;
}

struct Proc {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Proc {
    async fn spawn(spec: &ChildSpec) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child_worker_entry",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, serde_json::to_string(spec).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                // libtest may print "test child_worker_entry ... " on the same line.
                if let Some(at) = line.find("CHILD ") {
                    let _ = tx.send(line[at + "CHILD ".len()..].to_owned());
                }
            }
        });
        let mut p = Self { child, lines };
        let ready = p.line().await;
        assert!(ready.starts_with("READY "), "{ready}");
        p
    }

    async fn line(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(60), self.lines.recv())
            .await
            .expect("the worker process answers")
            .expect("the worker process is running")
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id().unwrap()).unwrap()
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGTERM: graceful shutdown; returns the worker's final counters.
    async fn terminate(mut self) -> serde_json::Value {
        self.signal("-TERM");
        let stats = self.line().await;
        let status = self.child.wait().await.unwrap();
        assert!(status.success(), "{status}");
        serde_json::from_str(stats.strip_prefix("STATS ").unwrap()).unwrap()
    }
}

async fn wait_until(what: &str, pool: &PgPool, sql: &str, bind: Uuid) {
    for _ in 0..600 {
        let done: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(bind)
            .fetch_one(pool)
            .await
            .unwrap();
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn fence_of(pool: &PgPool, job: JobId) -> Fence {
    let (run, epoch): (Uuid, i64) = sqlx::query_as("select run_id, epoch from jobs where id = $1")
        .bind(job.0)
        .fetch_one(pool)
        .await
        .unwrap();
    Fence {
        job_id: job,
        run_id: JobId(run),
        epoch,
    }
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_killed_worker_process_is_retaken_after_its_lease_and_completes_once(pool: PgPool) {
    let spec = probe_spec(&pool, 1500, 2, None).await;
    let store = PgJobStore::new(pool.clone());
    let graph = Graph::new(RunSpec::new("generate_drama", Uuid::new_v4()))
        .with(NodeSpec::task("clip", "probe", json!({})).max_attempts(3))
        .with(NodeSpec::task("stitch", "probe", json!({"hang_ms": 0})).after(["clip"]));
    let run = store.submit(&graph).await.unwrap();
    let clip = run.ids["clip"];

    let first = Proc::spawn(&spec).await;
    let first_pid = first.pid();
    wait_until(
        "the first process to checkpoint mid-job",
        &pool,
        "select exists (select 1 from jobs where id = $1 and state = 'running' and checkpoint is not null)",
        clip.0,
    )
    .await;
    let stale = fence_of(&pool, clip).await;
    let mut first = first;
    first.child.kill().await.unwrap(); // SIGKILL: no shutdown, no release.
    let running: String = sqlx::query_scalar("select state from jobs where id = $1")
        .bind(clip.0)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(running, "running", "the dead process still holds the lease");

    let second = Proc::spawn(&spec).await;
    let root = wait_settled(&store, run.run_id, Duration::from_secs(60)).await;
    assert_eq!(root.state, JobState::Completed);
    let second_pid = second.pid();
    let stats = second.terminate().await;
    assert_eq!(stats["fenced_out"], 0);

    let runs: Vec<(i32, i32)> =
        sqlx::query_as("select attempt, pid from probe_runs where job = $1 order by at")
            .bind(clip.0)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(runs, vec![(1, first_pid), (2, second_pid)]);
    let done = store.job(clip).await.unwrap().unwrap();
    assert_eq!(
        done.result,
        Some(json!({"provider_task": "task-1", "attempt": 2, "pid": second_pid})),
        "the second attempt resumed from the first one's checkpoint"
    );
    let events = store
        .events(run.run_id, None, Some(clip), 100)
        .await
        .unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Started,
            EventKind::LeaseExpired,
            EventKind::Started,
            EventKind::Completed
        ]
    );
    drama_jobs::conformance::assert_consistent(&store, run.run_id).await;

    // The dead attempt's late completion is rejected, alone or inside a caller's transaction.
    let zombie = store
        .finish(vec![Finish {
            fence: stale,
            kind: FinishKind::Complete {
                result: json!("zombie"),
                expansion: None,
            },
        }])
        .await
        .unwrap();
    assert!(zombie[0].as_ref().unwrap_err().is_fence_lost());
    let mut tx = pool.begin().await.unwrap();
    let err = pgjobs::complete_in_tx(&mut tx, &stale, json!("zombie"), None)
        .await
        .unwrap_err();
    assert!(err.is_fence_lost());
    tx.rollback().await.unwrap();
    assert_eq!(store.job(clip).await.unwrap().unwrap().result, done.result);
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_stopped_worker_process_wakes_up_as_a_zombie_and_is_fenced_out(pool: PgPool) {
    let spec = probe_spec(&pool, 1500, 2, None).await;
    let store = PgJobStore::new(pool.clone());
    // The first attempt finishes 3 s after it starts (if its process is not stopped).
    let graph = Graph::new(RunSpec::new("t", Uuid::new_v4()))
        .with(NodeSpec::task("clip", "probe", json!({"hang_ms": 3000})).max_attempts(3));
    let run = store.submit(&graph).await.unwrap();
    let clip = run.ids["clip"];
    let zombie = Proc::spawn(&spec).await;
    wait_until(
        "the first attempt to start",
        &pool,
        "select exists (select 1 from jobs where id = $1 and state = 'running' and checkpoint is not null)",
        clip.0,
    )
    .await;
    zombie.signal("-STOP");
    let rescuer = Proc::spawn(&spec).await;
    let root = wait_settled(&store, run.run_id, Duration::from_secs(60)).await;
    assert_eq!(root.state, JobState::Completed);
    let rescued = store.job(clip).await.unwrap().unwrap().result;
    assert_eq!(rescued.as_ref().unwrap()["attempt"], 2);
    // Wake the zombie: its handler returns success for attempt 1, which must be rejected.
    zombie.signal("-CONT");
    wait_until(
        "the zombie's handler to finish",
        &pool,
        "select count(*) = 2 from probe_runs where job = $1",
        clip.0,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let zombie_stats = zombie.terminate().await;
    assert_eq!(zombie_stats["fenced_out"], 1, "{zombie_stats}");
    rescuer.terminate().await;
    assert_eq!(
        store.job(clip).await.unwrap().unwrap().result,
        rescued,
        "never overwritten"
    );
    let completed = store
        .events(run.run_id, None, Some(clip), 100)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == EventKind::Completed)
        .count();
    assert_eq!(completed, 1, "completed exactly once");
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn resource_limits_hold_across_two_worker_processes(pool: PgPool) {
    let spec = probe_spec(&pool, 3000, 4, Some(2)).await;
    let store = PgJobStore::new(pool.clone());
    store
        .set_resource_limits(&[ResourceLimit::concurrency("video", 2)])
        .await
        .unwrap();
    let a = Proc::spawn(&spec).await;
    let b = Proc::spawn(&spec).await;
    let mut graph = Graph::new(RunSpec::new("t", Uuid::new_v4()));
    for i in 0..16 {
        graph.add(NodeSpec::task(format!("v{i}"), "render", json!({})).class("video"));
    }
    for i in 0..8 {
        graph.add(NodeSpec::task(format!("free{i}"), "render", json!({})));
    }
    let run = store.submit(&graph).await.unwrap();
    let root = wait_settled(&store, run.run_id, Duration::from_secs(60)).await;
    assert_eq!(root.state, JobState::Completed);
    let (sa, sb) = (a.terminate().await, b.terminate().await);
    assert_eq!(
        sa["succeeded"].as_u64().unwrap() + sb["succeeded"].as_u64().unwrap(),
        24
    );
    // The gauge counts every render; unlimited ones may overlap, so run the video-only check
    // on a second run.
    sqlx::query("update probe_gauge set current = 0, peak = 0")
        .execute(&pool)
        .await
        .unwrap();
    let a = Proc::spawn(&spec).await;
    let b = Proc::spawn(&spec).await;
    let mut graph = Graph::new(RunSpec::new("t", Uuid::new_v4()));
    for i in 0..16 {
        graph.add(NodeSpec::task(format!("v{i}"), "render", json!({})).class("video"));
    }
    let run = store.submit(&graph).await.unwrap();
    wait_settled(&store, run.run_id, Duration::from_secs(60)).await;
    let (sa, sb) = (a.terminate().await, b.terminate().await);
    let peak: i32 = sqlx::query_scalar("select peak from probe_gauge")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(peak, 2, "at most two videos at once across both processes");
    eprintln!(
        "video tasks per process: {} and {}",
        sa["succeeded"], sb["succeeded"]
    );
    let per_pid: Vec<i64> = sqlx::query_scalar("select count(*) from probe_runs group by pid")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(per_pid.len() >= 2, "both processes worked: {per_pid:?}");
}
