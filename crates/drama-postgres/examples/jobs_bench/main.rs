//! Benchmarks of the job engine on PostgreSQL (results in `docs/benchmarks/jobs.md`).
//!
//! ```text
//! cargo run --release -p drama-postgres --example jobs_bench -- throughput --jobs 20000 --concurrency 8 --processes 1 --shape runs
//! cargo run --release -p drama-postgres --example jobs_bench -- throughput --jobs 20000 --concurrency 8 --processes 1 --shape one-run
//! cargo run --release -p drama-postgres --example jobs_bench -- throughput --jobs 20000 --concurrency 8 --processes 2 --shape runs-of:1000
//! cargo run --release -p drama-postgres --example jobs_bench -- throughput --jobs 20000 --concurrency 8 --defaults
//! cargo run --release -p drama-postgres --example jobs_bench -- dag --nodes 10000 --concurrency 32
//! cargo run --release -p drama-postgres --example jobs_bench -- makespan
//! cargo run --release -p drama-postgres --example jobs_bench -- latency --samples 500
//! cargo run --release -p drama-postgres --example jobs_bench -- claim-cost --waiting 100000
//! cargo run --release -p drama-postgres --example jobs_bench -- claim-cost --deferred 50000 --samples 200
//! cargo run --release -p drama-postgres --example jobs_bench -- retention --runs 1000000
//! ```
//!
//! `--json` prints one JSON line per repetition (for `bench/jobs-compare/run.sh`).
//!
//! It drops and recreates the database `bench_jobs` on the server of `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) before every repetition. Worker processes
//! are this binary run again with `worker`; they start their worker when told `GO` on stdin, so
//! their start-up is inside the timing and process boot is not.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    missing_docs
)]

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drama_jobs::{
    Graph, JobId, JobState, JobStore, NodeSpec, Outcome, Registry, ResourceLimit, RunSpec, Worker,
    WorkerConfig,
};
use drama_postgres::jobs::PgJobStore;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::process::Command;
use uuid::Uuid;

mod limits;

const BENCH_DB: &str = "bench_jobs";

struct Opts(HashMap<String, String>);

impl Opts {
    fn parse(args: &[String]) -> Self {
        let mut map = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(k) = a.strip_prefix("--") {
                if k == "defaults" || k == "json" {
                    map.insert(k.to_owned(), String::new());
                } else {
                    map.insert(k.to_owned(), it.next().cloned().unwrap_or_default());
                }
            }
        }
        Self(map)
    }
    fn num(&self, k: &str, default: usize) -> usize {
        self.0
            .get(k)
            .map_or(default, |v| v.parse().expect("a number"))
    }
    fn text(&self, k: &str, default: &str) -> String {
        self.0.get(k).cloned().unwrap_or_else(|| default.to_owned())
    }
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn bench_url() -> String {
    let admin = admin_url();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{BENCH_DB}")
}

/// Drops and recreates the bench database, migrated.
async fn fresh_database(connections: u32) -> PgPool {
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .connect(&admin_url())
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "drop database if exists {BENCH_DB} with (force)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("create database {BENCH_DB}")))
        .execute(&admin)
        .await
        .unwrap();
    // `JOBS_BENCH_LOG_STATEMENTS=1`: every statement of the bench database goes to the server
    // log with its duration (for finding where the time goes; it slows the run down).
    if std::env::var("JOBS_BENCH_LOG_STATEMENTS").is_ok_and(|v| v == "1") {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "alter database {BENCH_DB} set log_min_duration_statement = 0"
        )))
        .execute(&admin)
        .await
        .unwrap();
    }
    admin.close().await;
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .connect(&bench_url())
        .await
        .unwrap();
    drama_postgres::MIGRATOR.run(&pool).await.unwrap();
    pool
}

async fn quiesce(pool: &PgPool) {
    sqlx::raw_sql("vacuum analyze").execute(pool).await.unwrap();
    sqlx::raw_sql("checkpoint").execute(pool).await.unwrap();
}

/// `--defaults`: `WorkerConfig::default()` with the given concurrency. Otherwise batched
/// settings comparable to Graphile Worker's `localQueue.size: 500`: claims of up to 500 and up
/// to 500 claimed tasks waiting for a handler slot.
fn worker_config(opts: &Opts) -> WorkerConfig {
    let concurrency = opts.num("concurrency", 8);
    if opts.0.contains_key("defaults") {
        return WorkerConfig {
            concurrency,
            ..WorkerConfig::default()
        };
    }
    WorkerConfig {
        name: format!("bench-{}", std::process::id()),
        concurrency,
        prefetch: opts.num("prefetch", 500),
        claim_batch: opts.num("claim-batch", 500),
        finish_batch: opts.num("finish-batch", 1000),
        poll_interval: Duration::from_millis(500),
        ..WorkerConfig::default()
    }
}

fn noop_registry() -> Registry {
    let mut r = Registry::new();
    r.register("noop", |_ctx: drama_jobs::JobContext| async move {
        Outcome::success(serde_json::Value::Null)
    });
    r
}

/// Child mode: run a worker (no-op handlers) from `GO` until stdin closes.
async fn worker_process(opts: Opts) {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&bench_url())
        .await
        .unwrap();
    let store = Arc::new(PgJobStore::new(pool));
    // Lines from stdin, read on a blocking thread: `GO`, then end of input to stop.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    println!("READY");
    assert_eq!(rx.recv().await.as_deref(), Some("GO"));
    let worker = Worker::start(store, noop_registry(), worker_config(&opts))
        .await
        .unwrap();
    while rx.recv().await.is_some() {}
    let report = worker.shutdown().await;
    println!("STATS {}", report.stats.succeeded);
}

struct Children(Vec<tokio::process::Child>);

impl Children {
    async fn spawn(n: usize, args: &[String]) -> Self {
        let exe = std::env::current_exe().unwrap();
        let mut children = Vec::new();
        for _ in 0..n {
            let mut child = Command::new(&exe)
                .arg("worker")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let mut lines = BufReader::new(stdout).lines();
            assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("READY"));
            child.stdout = None;
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            children.push(child);
        }
        Self(children)
    }

    fn pids(&self) -> Vec<u32> {
        self.0
            .iter()
            .filter_map(tokio::process::Child::id)
            .collect()
    }

    async fn go(&mut self) {
        for c in &mut self.0 {
            c.stdin.as_mut().unwrap().write_all(b"GO\n").await.unwrap();
        }
    }

    async fn stop(mut self) {
        for c in &mut self.0 {
            drop(c.stdin.take());
        }
        for c in &mut self.0 {
            c.wait().await.unwrap();
        }
    }
}

async fn wait_all_done(pool: &PgPool) {
    loop {
        // Through the engine's partial indexes: a sequential scan here would cost milliseconds
        // per poll on the same two cores and count as engine time. The `waiting` scan runs only
        // once nothing is ready or running.
        let busy: bool = sqlx::query_scalar(
            "select (select id from jobs where state = 'ready' \
                     order by resource_class, kind, priority desc, rank desc, id limit 1) \
                     is not null \
                 or (select id from jobs where state = 'running' \
                     order by resource_class, lease_owner limit 1) is not null \
                 or exists (select 1 from jobs where state = 'waiting')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// User + system CPU seconds a process has used so far (Linux `/proc`, 100 ticks a second).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used by the bench database's server processes (other than `except`).
async fn database_cpu(pool: &PgPool) -> f64 {
    let pids: Vec<i32> = sqlx::query_scalar(
        "select pid from pg_stat_activity where datname = current_database() \
         and pid <> pg_backend_pid()",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    pids.into_iter()
        .map(|p| cpu_seconds(u32::try_from(p).unwrap()))
        .sum()
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

async fn throughput(opts: Opts, raw: &[String]) {
    let jobs = opts.num("jobs", 20_000);
    let processes = opts.num("processes", 1);
    let shape = opts.text("shape", "runs");
    let reps = opts.num("reps", 3);
    let (mut rates, mut enqueue) = (Vec::new(), Vec::new());
    let (mut cpu, mut db_cpus) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let pool = fresh_database(4).await;
        let store = PgJobStore::new(pool.clone());
        let owner = Uuid::new_v4();
        let started = Instant::now();
        // `one-run`: one run of `jobs` tasks; `runs-of:N`: runs of N tasks each; `runs`: one
        // run per task.
        let per_run = match shape.as_str() {
            "one-run" => jobs,
            "runs" => 1,
            other => other
                .strip_prefix("runs-of:")
                .and_then(|n| n.parse().ok())
                .expect("--shape one-run, runs or runs-of:N"),
        };
        if per_run > 1 {
            let graphs: Vec<Graph> = (0..jobs.div_ceil(per_run))
                .map(|r| {
                    let mut g = Graph::new(RunSpec::new("bench", owner));
                    for i in (r * per_run)..((r + 1) * per_run).min(jobs) {
                        g.add(NodeSpec::task(format!("t{i}"), "noop", json!({})));
                    }
                    g
                })
                .collect();
            for chunk in graphs.chunks((1000 / per_run).max(1)) {
                store.submit_many(chunk).await.unwrap();
            }
        } else {
            let graphs: Vec<Graph> = (0..jobs)
                .map(|i| {
                    Graph::new(RunSpec::new("bench", owner)).with(NodeSpec::task(
                        format!("t{i}"),
                        "noop",
                        json!({}),
                    ))
                })
                .collect();
            for chunk in graphs.chunks(1000) {
                store.submit_many(chunk).await.unwrap();
            }
        }
        let enqueue_rate = jobs as f64 / started.elapsed().as_secs_f64();
        quiesce(&pool).await;
        let mut children = Children::spawn(processes, raw).await;
        let db_before = database_cpu(&pool).await;
        let workers_before: f64 = children.pids().into_iter().map(cpu_seconds).sum();
        let t0 = Instant::now();
        children.go().await;
        wait_all_done(&pool).await;
        let secs = t0.elapsed().as_secs_f64();
        // Worker connections open after `GO`; count what their server processes used.
        let db_cpu = database_cpu(&pool).await - db_before;
        let workers_cpu: f64 =
            children.pids().into_iter().map(cpu_seconds).sum::<f64>() - workers_before;
        children.stop().await;
        let per_job = |s: f64| s * 1e6 / jobs as f64;
        eprintln!(
            "rep {rep}: CPU per job {:.1} µs in PostgreSQL, {:.1} µs in workers",
            per_job(db_cpu),
            per_job(workers_cpu)
        );
        cpu.push(per_job(db_cpu + workers_cpu));
        db_cpus.push(per_job(db_cpu));
        let completed: i64 =
            sqlx::query_scalar("select count(*) from jobs where state = 'completed'")
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(completed, jobs as i64);
        let rate = jobs as f64 / secs;
        eprintln!(
            "rep {rep}: {jobs} jobs in {secs:.3} s = {rate:.0} jobs/s (enqueue {enqueue_rate:.0}/s)"
        );
        if opts.0.contains_key("json") {
            let label = match shape.as_str() {
                "runs" => format!("drama-jobs, {jobs} one-task runs"),
                "one-run" => format!("drama-jobs, one run of {jobs} tasks"),
                other => format!("drama-jobs, {other}"),
            };
            println!(
                "{}",
                json!({
                    "system": "drama-jobs", "label": label, "shape": shape, "jobs": jobs,
                    "secs": secs, "rate": rate, "enqueue": enqueue_rate,
                    "cpu_us_per_job": per_job(db_cpu + workers_cpu),
                    "db_cpu_us_per_job": per_job(db_cpu),
                })
            );
        }
        rates.push(rate);
        enqueue.push(enqueue_rate);
        pool.close().await;
    }
    if opts.0.contains_key("json") {
        return;
    }
    let (m, lo, hi) = median(rates);
    let (e, elo, ehi) = median(enqueue);
    let (c, _, _) = median(cpu);
    let (d, _, _) = median(db_cpus);
    println!(
        "throughput shape={shape} jobs={jobs} concurrency={} processes={processes}{}: \
         median {m:.0} jobs/s ({lo:.0}–{hi:.0}); enqueue {e:.0}/s ({elo:.0}–{ehi:.0}); \
         CPU {c:.0} µs/job ({d:.0} in PostgreSQL) = at most {:.0} jobs/s on 2 idle cores",
        opts.num("concurrency", 8),
        if opts.0.contains_key("defaults") {
            " (worker defaults)"
        } else {
            ""
        },
        2e6 / c
    );
}

/// Durations of the simulated providers.
#[derive(Clone, Copy)]
struct Latency {
    image: Duration,
    video: Duration,
    stitch: Duration,
}

/// A drama-shaped graph: characters (portrait → audition video), a cover after the main
/// characters' portraits, and episodes whose scenes each have a storyboard (after the
/// portraits of the characters in it) and a clip (after its storyboard), stitched per
/// episode after all of its clips.
fn drama_graph(characters: usize, episodes: usize, scenes: usize, lat: Latency) -> Graph {
    let mut g = Graph::new(RunSpec::new("generate_drama", Uuid::new_v4()).subject("bench"));
    g.add(NodeSpec::group("characters", "characters"));
    for c in 0..characters {
        g.add(
            NodeSpec::task(format!("portrait-{c}"), "image", json!({}))
                .parent("characters")
                .class("image")
                .duration_hint(lat.image),
        );
        g.add(
            NodeSpec::task(format!("audition-{c}"), "video", json!({}))
                .parent("characters")
                .after([format!("portrait-{c}")])
                .class("video")
                .duration_hint(lat.video),
        );
    }
    g.add(
        NodeSpec::task("cover", "image", json!({}))
            .after((0..characters.min(2)).map(|c| format!("portrait-{c}")))
            .class("image")
            .duration_hint(lat.image),
    );
    for e in 0..episodes {
        let ep = format!("e{e}");
        g.add(NodeSpec::group(&ep, "episode"));
        let mut clips = Vec::new();
        for s in 0..scenes {
            let cast = [(e + s) % characters, (e + s + 1) % characters];
            g.add(
                NodeSpec::task(format!("{ep}-s{s}-board"), "image", json!({}))
                    .parent(&ep)
                    .after(cast.iter().map(|c| format!("portrait-{c}")))
                    .class("image")
                    .duration_hint(lat.image),
            );
            g.add(
                NodeSpec::task(format!("{ep}-s{s}-clip"), "video", json!({}))
                    .parent(&ep)
                    .after([format!("{ep}-s{s}-board")])
                    .class("video")
                    .duration_hint(lat.video),
            );
            clips.push(format!("{ep}-s{s}-clip"));
        }
        g.add(
            NodeSpec::task(format!("{ep}-stitch"), "stitch", json!({}))
                .parent(&ep)
                .after(clips)
                .class("stitch")
                .duration_hint(lat.stitch),
        );
    }
    g
}

fn registry_with_latency(lat: Option<Latency>) -> Registry {
    let mut r = Registry::new();
    for (kind, d) in [
        ("image", lat.map(|l| l.image)),
        ("video", lat.map(|l| l.video)),
        ("stitch", lat.map(|l| l.stitch)),
    ] {
        r.register(kind, move |_ctx: drama_jobs::JobContext| async move {
            if let Some(d) = d {
                tokio::time::sleep(d).await;
            }
            Outcome::success(serde_json::Value::Null)
        });
    }
    r
}

async fn wait_run(store: &PgJobStore, run: JobId) {
    loop {
        let root = store.job(run).await.unwrap().unwrap();
        if root.state.is_settled() {
            assert_eq!(root.state, JobState::Completed);
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn dag(opts: Opts) {
    let nodes = opts.num("nodes", 10_000);
    let reps = opts.num("reps", 3);
    // 50 characters (101 nodes), then 49-scene episodes (99 nodes each) up to `nodes`.
    let episodes = (nodes.saturating_sub(101)).div_ceil(99).max(1);
    let (mut rates, mut cpus) = (Vec::new(), Vec::new());
    let mut total = 0;
    for rep in 0..reps {
        let pool = fresh_database(12).await;
        let store = Arc::new(PgJobStore::new(pool.clone()));
        let graph = drama_graph(
            50,
            episodes,
            49,
            Latency {
                image: Duration::ZERO,
                video: Duration::ZERO,
                stitch: Duration::ZERO,
            },
        );
        total = graph.nodes.len();
        let t_submit = Instant::now();
        let run = store.submit(&graph).await.unwrap();
        let submit_secs = t_submit.elapsed().as_secs_f64();
        quiesce(&pool).await;
        let own_before = cpu_seconds(std::process::id());
        let t0 = Instant::now();
        let worker = Worker::start(
            store.clone(),
            registry_with_latency(None),
            worker_config(&opts),
        )
        .await
        .unwrap();
        // The worker's connections exist now; measure from here.
        let db_before = database_cpu(&pool).await;
        wait_run(&store, run.run_id).await;
        let secs = t0.elapsed().as_secs_f64();
        let db_cpu = database_cpu(&pool).await - db_before;
        let own_cpu = cpu_seconds(std::process::id()) - own_before;
        worker.shutdown().await;
        let tasks = total - episodes - 1;
        let rate = tasks as f64 / secs;
        eprintln!(
            "rep {rep}: {total} nodes ({tasks} tasks) in {secs:.3} s = {rate:.0} tasks/s, \
             {:.0} µs per task; submit {submit_secs:.3} s; CPU per task {:.0} µs in \
             PostgreSQL, {:.0} µs in the worker",
            secs * 1e6 / tasks as f64,
            db_cpu * 1e6 / tasks as f64,
            own_cpu * 1e6 / tasks as f64
        );
        cpus.push((db_cpu + own_cpu) * 1e6 / tasks as f64);
        rates.push(rate);
        if opts.0.contains_key("json") {
            println!(
                "{}",
                json!({
                    "system": "drama-jobs", "shape": "dag", "unit": "tasks/s",
                    "label": format!("drama-jobs, a {total}-node drama DAG (concurrency {})",
                                     opts.num("concurrency", 8)),
                    "jobs": tasks, "secs": secs, "rate": rate,
                    "cpu_us_per_job": (db_cpu + own_cpu) * 1e6 / tasks as f64,
                    "db_cpu_us_per_job": db_cpu * 1e6 / tasks as f64,
                })
            );
        }
        pool.close().await;
    }
    if opts.0.contains_key("json") {
        return;
    }
    let (m, lo, hi) = median(rates);
    let (c, _, _) = median(cpus);
    println!(
        "dag nodes={total} concurrency={}: median {m:.0} tasks/s ({lo:.0}–{hi:.0}), {:.0} µs \
         per task wall clock, {c:.0} µs CPU per task (PostgreSQL and worker)",
        opts.num("concurrency", 8),
        1e6 / m
    );
}

/// Longest path through the graph by duration (the critical path).
fn critical_path(graph: &Graph, lat: Latency) -> Duration {
    let duration = |kind: &str| match kind {
        "image" => lat.image,
        "video" => lat.video,
        _ => lat.stitch,
    };
    let mut finish: BTreeMap<&str, Duration> = BTreeMap::new();
    // Nodes are listed after their dependencies in `drama_graph`.
    for n in graph
        .nodes
        .iter()
        .filter(|n| n.node_type == drama_jobs::NodeType::Task)
    {
        let start = n
            .dependencies
            .iter()
            .map(|d| finish[d.as_str()])
            .max()
            .unwrap_or_default();
        finish.insert(&n.key, start + duration(&n.kind));
    }
    finish.values().copied().max().unwrap_or_default()
}

async fn makespan(opts: Opts) {
    let lat = Latency {
        image: Duration::from_secs(2),
        video: Duration::from_secs(8),
        stitch: Duration::from_secs(1),
    };
    let characters = opts.num("characters", 4);
    let episodes = opts.num("episodes", 3);
    let scenes = opts.num("scenes", 4);
    let video_limit = opts.num("video-limit", 2);
    let pool = fresh_database(12).await;
    let store = Arc::new(PgJobStore::new(pool.clone()));
    let graph = drama_graph(characters, episodes, scenes, lat);
    let cp = critical_path(&graph, lat);
    // With `video_limit` slots, the videos alone need their total time / slots, after the
    // first image a video waits for; the last video may be an audition with nothing after.
    let videos = characters + episodes * scenes;
    let rounds = videos.div_ceil(video_limit);
    let resource = lat.image + lat.video * u32::try_from(rounds).unwrap();
    let bound = cp.max(resource);
    let config = WorkerConfig {
        concurrency: 64,
        resource_limits: vec![ResourceLimit::concurrency("video", video_limit as u32)],
        poll_interval: Duration::from_millis(500),
        ..WorkerConfig::default()
    };
    let worker = Worker::start(store.clone(), registry_with_latency(Some(lat)), config)
        .await
        .unwrap();
    let t0 = Instant::now();
    let run = store.submit(&graph).await.unwrap();
    wait_run(&store, run.run_id).await;
    let took = t0.elapsed();
    worker.shutdown().await;
    println!(
        "makespan: {} tasks ({videos} videos, limit {video_limit}): {:.2} s; critical path \
         {:.0} s, video-slot bound {:.0} s, lower bound {:.0} s; ratio {:.3}",
        graph.nodes.len() - episodes - 1,
        took.as_secs_f64(),
        cp.as_secs_f64(),
        resource.as_secs_f64(),
        bound.as_secs_f64(),
        took.as_secs_f64() / bound.as_secs_f64()
    );
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e3;
    format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n = {})",
        p(0.5),
        p(0.9),
        p(0.99),
        p(1.0),
        v.len()
    )
}

async fn latency(opts: Opts) {
    let samples = opts.num("samples", 500);
    let pool = fresh_database(12).await;
    let store = Arc::new(PgJobStore::new(pool.clone()));
    type Marks = Arc<Mutex<HashMap<String, Instant>>>;
    let (starts, ends): (Marks, Marks) = (Arc::default(), Arc::default());
    let mut registry = Registry::new();
    let (s, e) = (starts.clone(), ends.clone());
    registry.register("mark", move |ctx: drama_jobs::JobContext| {
        let (s, e) = (s.clone(), e.clone());
        async move {
            s.lock()
                .unwrap()
                .insert(ctx.key().to_owned(), Instant::now());
            e.lock()
                .unwrap()
                .insert(ctx.key().to_owned(), Instant::now());
            Outcome::success(serde_json::Value::Null)
        }
    });
    let config = WorkerConfig {
        concurrency: 8,
        poll_interval: Duration::from_secs(5),
        ..WorkerConfig::default()
    };
    let worker = Worker::start(store.clone(), registry, config)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let wait_for = |key: String| {
        let starts = starts.clone();
        async move {
            loop {
                if let Some(t) = starts.lock().unwrap().get(&key) {
                    return *t;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
    };
    let mut submit_to_start = Vec::new();
    for i in 0..samples {
        let key = format!("s{i}");
        let g = Graph::new(RunSpec::new("lat", Uuid::new_v4())).with(NodeSpec::task(
            &key,
            "mark",
            json!({}),
        ));
        let t0 = Instant::now();
        store.submit(&g).await.unwrap();
        let started = wait_for(key).await;
        submit_to_start.push(started - t0);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut dependency_to_start = Vec::new();
    for i in 0..samples {
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        let g = Graph::new(RunSpec::new("lat", Uuid::new_v4()))
            .with(NodeSpec::task(&a, "mark", json!({})))
            .with(NodeSpec::task(&b, "mark", json!({})).after([a.clone()]));
        store.submit(&g).await.unwrap();
        let started = wait_for(b).await;
        let finished = *ends.lock().unwrap().get(&a).unwrap();
        dependency_to_start.push(started - finished);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    worker.shutdown().await;
    println!(
        "latency submit → handler start: {}",
        percentiles(submit_to_start)
    );
    println!(
        "latency dependency finished → dependent's handler start: {}",
        percentiles(dependency_to_start)
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rest = args.get(2..).unwrap_or_default().to_vec();
    let opts = Opts::parse(&rest);
    match args.get(1).map(String::as_str) {
        Some("worker") => worker_process(opts).await,
        Some("throughput") => throughput(opts, &rest).await,
        Some("dag") => dag(opts).await,
        Some("makespan") => makespan(opts).await,
        Some("latency") => latency(opts).await,
        Some("claim-cost") => limits::claim_cost(opts).await,
        Some("retention") => limits::retention(opts).await,
        _ => eprintln!(
            "usage: jobs_bench throughput|dag|makespan|latency|claim-cost|retention [--jobs N] [--concurrency C] \
             [--processes P] [--shape runs|one-run|runs-of:N] [--reps R] [--prefetch N] [--claim-batch N] \
             [--finish-batch N] [--nodes N] [--samples N] [--waiting N] [--deferred N] [--runs N] [--batch N] \
             [--json]"
        ),
    }
}
