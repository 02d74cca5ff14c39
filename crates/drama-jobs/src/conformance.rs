//! Scenarios every job store must pass, driven through the public port and the worker
//! runtime. `drama-jobs` runs them on [`MemoryJobStore`](crate::MemoryJobStore) with paused
//! time; `drama-postgres` runs them on PostgreSQL.
//!
//! ```text
//! macro_rules! case {
//!     ($name:ident) => {
//!         #[tokio::test(start_paused = true)]
//!         async fn $name() {
//!             drama_jobs::conformance::$name(Arc::new(MemoryJobStore::with_invariant_checks())).await;
//!         }
//!     };
//! }
//! drama_jobs::for_each_job_scenario!(case);
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use tokio::time::{Instant, sleep};
use uuid::Uuid;

use crate::core::{Finish, FinishKind};
use crate::{
    ClaimRequest, EventKind, Expansion, Graph, GraphError, JobError, JobId, JobState, JobStore,
    JobView, NodeSpec, NodeType, Outcome, Registry, ResourceLimit, RetryPolicy, RunFilter, RunId,
    RunSpec, RunTree, Worker, WorkerConfig, WorkerHandle, WorkerId, WorkerRegistration,
};

/// Calls `$m!(scenario)` for every scenario of this module.
#[macro_export]
macro_rules! for_each_job_scenario {
    ($m:ident) => {
        $m!(dependencies_run_in_order_and_results_flow);
        $m!(a_thousand_node_dag_completes);
        $m!(random_dags_respect_dependencies);
        $m!(failures_skip_dependents_and_independent_branches_continue);
        $m!(retries_back_off_and_retry_after_keeps_attempts);
        $m!(panics_count_as_retryable_failures);
        $m!(a_crashed_worker_is_replaced_after_lease_expiry);
        $m!(cancel_stops_new_work_and_resume_reruns_only_what_did_not_complete);
        $m!(resource_limits_hold_across_workers);
        $m!(rate_limits_cap_starts_per_minute);
        $m!(expansions_extend_a_running_graph);
        $m!(graceful_shutdown_releases_unstarted_tasks);
        $m!(budgets_stop_overspending_and_refunds_are_exact);
        $m!(idempotent_and_invalid_submissions);
        $m!(events_replay_since_an_id_and_notify);
        $m!(queries_show_children_trees_and_active_runs);
        $m!(prune_removes_settled_runs);
        $m!(external_completion_claims_are_verified);
        $m!(priorities_order_claims_and_stale_fences_are_rejected);
        $m!(handler_timeouts_cancel_and_retry);
    };
}

/// A worker configuration with short leases and delays, for tests.
pub fn fast_config() -> WorkerConfig {
    WorkerConfig {
        name: "conformance".into(),
        concurrency: 8,
        prefetch: 0,
        lease_ttl: Duration::from_millis(1500),
        heartbeat_interval: Duration::from_millis(300),
        poll_interval: Duration::from_millis(100),
        reap_interval: Duration::from_millis(200),
        retry: RetryPolicy {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(200),
            multiplier: 2.0,
            jitter: 0.0,
        },
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    }
}

fn owner() -> Uuid {
    Uuid::new_v4()
}

/// Waits until the run settles (or panics after `timeout` of the store's time).
pub async fn wait_settled<S: JobStore>(store: &S, run: RunId, timeout: Duration) -> JobView {
    let start = Instant::now();
    loop {
        let view = store.job(run).await.unwrap().expect("run exists");
        if view.state.is_settled() {
            return view;
        }
        assert!(
            start.elapsed() < timeout,
            "run {run} did not settle in {timeout:?}: {:?}",
            view.counts
        );
        sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// Checks a run through the port: group counts equal the states of their descendant tasks,
/// group states are the derived ones, no task started before all of its dependencies
/// completed (by the event log), no task completed twice, and skipped tasks have an
/// unsuccessful dependency.
pub async fn assert_consistent<S: JobStore>(store: &S, run: RunId) -> RunTree {
    let tree = store.run_tree(run).await.unwrap().expect("run exists");
    check_tree(&tree);
    let events = all_events(store, run).await;
    let mut last = 0;
    for e in &events {
        assert!(e.id.0 > last, "event ids grow");
        last = e.id.0;
    }
    let prerequisites = prerequisites_of(&tree);
    let mut completed_at: HashMap<JobId, i64> = HashMap::new();
    for e in &events {
        match e.kind {
            EventKind::Completed => {
                assert!(
                    completed_at.insert(e.job_id, e.id.0).is_none(),
                    "{} completed twice",
                    e.key
                );
            }
            EventKind::Started => {
                for p in prerequisites.get(&e.job_id).into_iter().flatten() {
                    assert!(
                        completed_at.get(p).is_some_and(|c| *c < e.id.0),
                        "{} started before its dependency completed",
                        e.key
                    );
                }
            }
            _ => {}
        }
    }
    tree
}

fn prerequisites_of(tree: &RunTree) -> HashMap<JobId, Vec<JobId>> {
    let mut map: HashMap<JobId, Vec<JobId>> = HashMap::new();
    for (d, p) in &tree.edges {
        map.entry(*d).or_default().push(*p);
    }
    map
}

/// The tree-only part of [`assert_consistent`].
pub fn check_tree(tree: &RunTree) {
    let by_id: HashMap<JobId, &JobView> = tree.nodes.iter().map(|n| (n.id, n)).collect();
    let prerequisites = prerequisites_of(tree);
    let mut ancestors: HashMap<JobId, Vec<JobId>> = HashMap::new();
    for n in &tree.nodes {
        let mut chain = Vec::new();
        let mut at = n.parent_id;
        while let Some(p) = at {
            chain.push(p);
            at = by_id.get(&p).and_then(|x| x.parent_id);
        }
        ancestors.insert(n.id, chain);
    }
    for g in tree.nodes.iter().filter(|n| n.node_type.is_group()) {
        let mut counts = crate::Counts::default();
        let (mut cost, mut refundable) = (0, 0);
        for t in tree.nodes.iter().filter(|n| n.node_type == NodeType::Task) {
            if ancestors[&t.id].contains(&g.id) {
                counts.add(t.state);
                cost += t.cost;
                if t.state.is_unsuccessful() {
                    refundable += t.cost;
                }
            }
        }
        assert_eq!(g.counts, Some(counts), "counts of {:?}", g.key);
        let costs = g.costs.expect("groups carry costs");
        assert_eq!(
            (costs.total, costs.refundable),
            (cost, refundable),
            "costs of {:?}",
            g.key
        );
        assert_eq!(
            g.state,
            crate::core::derive_group_state(&counts, g.cancel_requested),
            "state of {:?}",
            g.key
        );
    }
    for t in tree.nodes.iter().filter(|n| n.node_type == NodeType::Task) {
        let pre: Vec<JobState> = prerequisites
            .get(&t.id)
            .into_iter()
            .flatten()
            .map(|p| by_id[p].state)
            .collect();
        if matches!(
            t.state,
            JobState::Running | JobState::Completed | JobState::Ready
        ) {
            assert!(
                pre.iter().all(|s| *s == JobState::Completed),
                "{} is {} before its dependencies completed",
                t.key,
                t.state
            );
        }
        if t.state == JobState::Skipped {
            assert!(
                pre.iter().any(|s| s.is_unsuccessful()),
                "{} skipped for nothing",
                t.key
            );
        }
    }
}

async fn all_events<S: JobStore>(store: &S, run: RunId) -> Vec<crate::Event> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.events(run, after, None, 500).await.unwrap();
        if page.is_empty() {
            return out;
        }
        after = page.last().map(|e| e.id);
        out.extend(page);
    }
}

async fn start<S: JobStore>(
    store: &Arc<S>,
    registry: Registry,
    config: WorkerConfig,
) -> WorkerHandle<S> {
    Worker::start(store.clone(), registry, config)
        .await
        .unwrap()
}

fn noop_registry(kinds: &[&str]) -> Registry {
    let mut r = Registry::new();
    for k in kinds {
        r.register(*k, |ctx: crate::JobContext| async move {
            Outcome::success(json!({"key": ctx.key()}))
        });
    }
    r
}

fn key_of(tree: &RunTree, key: &str) -> JobView {
    tree.nodes
        .iter()
        .find(|n| n.key == key)
        .cloned()
        .unwrap_or_else(|| panic!("no node {key}"))
}

pub async fn dependencies_run_in_order_and_results_flow<S: JobStore>(store: Arc<S>) {
    let mut registry = Registry::new();
    registry.register("add", |ctx: crate::JobContext| async move {
        let own = ctx.payload()["n"].as_i64().unwrap_or(0);
        let inputs: i64 = ctx
            .dependencies()
            .values()
            .map(|v| v["sum"].as_i64().unwrap_or(0))
            .sum();
        sleep(Duration::from_millis(5)).await;
        Outcome::success(
            json!({"sum": own + inputs, "saw": ctx.dependencies().keys().collect::<Vec<_>>()}),
        )
    });
    let worker = start(&store, registry, fast_config()).await;
    let graph = Graph::new(RunSpec::new("sum", owner()).subject("d1"))
        .with(NodeSpec::group("g", "stage"))
        .with(NodeSpec::task("a", "add", json!({"n": 1})))
        .with(
            NodeSpec::task("b", "add", json!({"n": 10}))
                .after(["a"])
                .parent("g"),
        )
        .with(
            NodeSpec::task("c", "add", json!({"n": 100}))
                .after(["a"])
                .parent("g"),
        )
        .with(NodeSpec::task("d", "add", json!({"n": 1000})).after(["b", "c"]));
    let run = store.submit(&graph).await.unwrap();
    assert!(run.created);
    assert_eq!(run.ids.len(), 6);
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    assert_eq!(root.state, JobState::Completed);
    assert_eq!(root.counts.unwrap().completed, 4);
    let tree = assert_consistent(&*store, run.run_id).await;
    let d = key_of(&tree, "d");
    assert_eq!(
        d.result,
        Some(json!({"sum": 1000 + 11 + 101, "saw": ["b", "c"]}))
    );
    assert_eq!(d.dependencies, vec!["b".to_owned(), "c".to_owned()]);
    assert_eq!(key_of(&tree, "g").state, JobState::Completed);
    worker.shutdown().await;
}

/// A layered random DAG of `n` tasks in groups of 50.
fn layered_dag(n: usize, seed: u64) -> Graph {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut g = Graph::new(RunSpec::new("big", owner()));
    for grp in 0..n.div_ceil(50) {
        g.add(NodeSpec::group(format!("g{grp}"), "group"));
    }
    for i in 0..n {
        let mut deps = Vec::new();
        if i > 0 {
            for _ in 0..rng.random_range(0..4) {
                let j = rng.random_range(i.saturating_sub(80)..i);
                deps.push(format!("t{j}"));
            }
        }
        g.add(
            NodeSpec::task(
                format!("t{i}"),
                "work",
                json!({"ms": rng.random_range(0..4)}),
            )
            .parent(format!("g{}", i / 50))
            .after(deps),
        );
    }
    g
}

fn sleepy_registry() -> Registry {
    let mut r = Registry::new();
    r.register("work", |ctx: crate::JobContext| async move {
        let ms = ctx.payload()["ms"].as_u64().unwrap_or(0);
        sleep(Duration::from_millis(ms)).await;
        Outcome::success(json!(ctx.key()))
    });
    r
}

pub async fn a_thousand_node_dag_completes<S: JobStore>(store: Arc<S>) {
    let config = WorkerConfig {
        concurrency: 16,
        ..fast_config()
    };
    let w1 = start(&store, sleepy_registry(), config.clone()).await;
    let w2 = start(&store, sleepy_registry(), config).await;
    let run = store.submit(&layered_dag(1000, 7)).await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(120)).await;
    assert_eq!(root.state, JobState::Completed);
    assert_eq!(root.counts.unwrap().completed, 1000);
    assert_consistent(&*store, run.run_id).await;
    let (s1, s2) = (w1.shutdown().await.stats, w2.shutdown().await.stats);
    assert_eq!(s1.succeeded + s2.succeeded, 1000);
}

/// `count` random DAGs with random retries and failures, on two workers: every run settles,
/// and no task ever starts before its dependencies completed.
pub async fn random_dags<S: JobStore>(store: Arc<S>, count: usize, seed: u64) {
    let mut registry = Registry::new();
    registry.register("rand", |ctx: crate::JobContext| async move {
        let p = ctx.payload().clone();
        sleep(Duration::from_millis(p["ms"].as_u64().unwrap_or(0))).await;
        if u64::from(ctx.attempt()) <= p["retries"].as_u64().unwrap_or(0) {
            return Outcome::retry("transient");
        }
        if p["fail"].as_bool().unwrap_or(false) {
            return Outcome::fail("broken");
        }
        Outcome::success(json!(ctx.key()))
    });
    let config = WorkerConfig {
        concurrency: 32,
        claim_batch: 50,
        ..fast_config()
    };
    let w1 = start(&store, registry.clone(), config.clone()).await;
    let w2 = start(&store, registry, config).await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut runs = Vec::new();
    let mut expected_failures = HashMap::new();
    for r in 0..count {
        let n = rng.random_range(1..=24);
        let mut g = Graph::new(RunSpec::new("rand", owner()));
        let groups = rng.random_range(0..3);
        for k in 0..groups {
            g.add(NodeSpec::group(format!("g{k}"), "grp"));
        }
        let mut fails = 0;
        // A task fails only if told to and nothing upstream failed first.
        let mut doomed = vec![false; n];
        for i in 0..n {
            let fail = rng.random_bool(0.03);
            let retries = u32::from(rng.random_bool(0.1));
            let ms = rng.random_range(0..20);
            let mut node = NodeSpec::task(
                format!("n{i}"),
                "rand",
                json!({"ms": ms, "retries": retries, "fail": fail}),
            )
            .max_attempts(2)
            .priority(rng.random_range(0..3));
            let mut blocked = false;
            for (j, upstream_doomed) in doomed.iter().enumerate().take(i) {
                if rng.random_bool(0.2) {
                    node = node.after([format!("n{j}")]);
                    blocked |= *upstream_doomed;
                }
            }
            doomed[i] = blocked || fail;
            fails += usize::from(fail && !blocked);
            if groups > 0 && rng.random_bool(0.7) {
                node = node.parent(format!("g{}", rng.random_range(0..groups)));
            }
            g.add(node);
        }
        let submitted = store.submit(&g).await.unwrap();
        expected_failures.insert(submitted.run_id, fails);
        runs.push(submitted.run_id);
        if r % 50 == 49 {
            sleep(Duration::from_millis(5)).await;
        }
    }
    for run in &runs {
        let root = wait_settled(&*store, *run, Duration::from_secs(300)).await;
        let counts = root.counts.unwrap();
        assert_eq!(
            usize::try_from(counts.failed).unwrap(),
            expected_failures[run],
            "run {run}: exactly the tasks told to fail failed"
        );
        let expected = if counts.failed > 0 {
            JobState::Failed
        } else {
            JobState::Completed
        };
        assert_eq!(root.state, expected);
        assert_consistent(&*store, *run).await;
    }
    w1.shutdown().await;
    w2.shutdown().await;
}

pub async fn random_dags_respect_dependencies<S: JobStore>(store: Arc<S>) {
    random_dags(store, 60, 42).await;
}

pub async fn failures_skip_dependents_and_independent_branches_continue<S: JobStore>(
    store: Arc<S>,
) {
    let mut registry = noop_registry(&["ok"]);
    registry.register("bad", |_ctx: crate::JobContext| async move {
        Outcome::fail("refused by the provider")
    });
    let worker = start(&store, registry, fast_config()).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::task("root", "ok", json!({})).cost(1))
        .with(
            NodeSpec::task("broken", "bad", json!({}))
                .after(["root"])
                .cost(2),
        )
        .with(
            NodeSpec::task("after-broken", "ok", json!({}))
                .after(["broken"])
                .cost(3),
        )
        .with(
            NodeSpec::task("far", "ok", json!({}))
                .after(["after-broken"])
                .cost(4),
        )
        .with(
            NodeSpec::task("side", "ok", json!({}))
                .after(["root"])
                .cost(5),
        );
    let run = store.submit(&graph).await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    assert_eq!(root.state, JobState::Failed);
    let tree = assert_consistent(&*store, run.run_id).await;
    assert_eq!(key_of(&tree, "broken").state, JobState::Failed);
    assert_eq!(
        key_of(&tree, "broken").error.as_deref(),
        Some("refused by the provider")
    );
    assert_eq!(
        key_of(&tree, "broken").attempts,
        1,
        "permanent errors are not retried"
    );
    for k in ["after-broken", "far"] {
        let n = key_of(&tree, k);
        assert_eq!(n.state, JobState::Skipped);
        assert!(
            n.error.unwrap().contains("`broken`"),
            "the reason names the failure"
        );
        assert_eq!(n.attempts, 0);
    }
    assert_eq!(key_of(&tree, "side").state, JobState::Completed);
    let costs = root.costs.unwrap();
    assert_eq!((costs.total, costs.refundable), (15, 9));
    worker.shutdown().await;
}

pub async fn retries_back_off_and_retry_after_keeps_attempts<S: JobStore>(store: Arc<S>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let c = calls.clone();
    registry.register("flaky", move |ctx: crate::JobContext| {
        let c = c.clone();
        async move {
            match c.fetch_add(1, Ordering::SeqCst) {
                0 => Outcome::retry_after(Duration::from_millis(50), "429 slow down"),
                1 => Outcome::throttle(Duration::from_millis(50), "429 for everyone"),
                2 => Outcome::retry("502 bad gateway"),
                _ => Outcome::success(json!({"attempt": ctx.attempt()})),
            }
        }
    });
    let worker = start(&store, registry, fast_config()).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::task("x", "flaky", json!({})).max_attempts(2));
    let run = store.submit(&graph).await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    assert_eq!(
        root.state,
        JobState::Completed,
        "two 429s did not use attempts"
    );
    let tree = assert_consistent(&*store, run.run_id).await;
    let x = key_of(&tree, "x");
    assert_eq!(x.attempts, 2);
    assert_eq!(x.result, Some(json!({"attempt": 2})));
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let kinds: Vec<EventKind> = all_events(&*store, run.run_id)
        .await
        .into_iter()
        .filter(|e| e.job_id == x.id)
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EventKind::Started,
            EventKind::Deferred,
            EventKind::Started,
            EventKind::Deferred,
            EventKind::Started,
            EventKind::Retrying,
            EventKind::Started,
            EventKind::Completed
        ]
    );
    worker.shutdown().await;
}

pub async fn panics_count_as_retryable_failures<S: JobStore>(store: Arc<S>) {
    let mut registry = Registry::new();
    registry.register("boom", |ctx: crate::JobContext| async move {
        if ctx.attempt() < 3 {
            panic!("handler bug on attempt {}", ctx.attempt());
        }
        Outcome::success(json!("survived"))
    });
    registry.register("always", |_ctx: crate::JobContext| async move {
        panic!("always broken");
    });
    let worker = start(&store, registry, fast_config()).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::task("x", "boom", json!({})).max_attempts(3))
        .with(NodeSpec::task("y", "always", json!({})).max_attempts(2));
    let run = store.submit(&graph).await.unwrap();
    wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    let tree = assert_consistent(&*store, run.run_id).await;
    assert_eq!(key_of(&tree, "x").state, JobState::Completed);
    let y = key_of(&tree, "y");
    assert_eq!(y.state, JobState::Failed);
    assert!(y.error.unwrap().contains("handler panicked: always broken"));
    let stats = worker.shutdown().await.stats;
    assert_eq!(stats.panics, 4);
}

pub async fn a_crashed_worker_is_replaced_after_lease_expiry<S: JobStore>(store: Arc<S>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let r = runs.clone();
    registry.register("video", move |ctx: crate::JobContext| {
        let r = r.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            let task_id = match ctx.last_checkpoint() {
                // Resume polling the provider instead of paying for a second submission.
                Some(cp) => cp["provider_task"].as_str().unwrap_or_default().to_owned(),
                None => {
                    ctx.checkpoint(json!({"provider_task": "sora-123"}))
                        .await
                        .unwrap();
                    // The first attempt hangs until its process dies.
                    sleep(Duration::from_secs(3600)).await;
                    unreachable!()
                }
            };
            Outcome::success(json!({"provider_task": task_id, "attempt": ctx.attempt()}))
        }
    });
    let first = start(&store, registry.clone(), fast_config()).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::task("clip", "video", json!({})).max_attempts(3));
    let run = store.submit(&graph).await.unwrap();
    let clip = run.ids["clip"];
    wait_for(
        "the first attempt to checkpoint",
        Duration::from_secs(20),
        || {
            let store = store.clone();
            async move {
                store
                    .job(clip)
                    .await
                    .unwrap()
                    .is_some_and(|j| j.checkpoint.is_some())
            }
        },
    )
    .await;
    let crashed_at = Instant::now();
    let stale = first_fence(&*store, clip).await;
    first.abort();
    let second = start(&store, registry, fast_config()).await;
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(30)).await;
    assert!(
        crashed_at.elapsed() < fast_config().lease_ttl * 4,
        "retaken after about one lease"
    );
    assert_eq!(root.state, JobState::Completed);
    let tree = assert_consistent(&*store, run.run_id).await;
    let node = key_of(&tree, "clip");
    assert_eq!(
        node.result,
        Some(json!({"provider_task": "sora-123", "attempt": 2}))
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    let events = all_events(&*store, run.run_id).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::LeaseExpired)
            .count(),
        1
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::Completed)
            .count(),
        1
    );
    // The crashed attempt comes back as a zombie: its completion and checkpoint are rejected.
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
    assert!(matches!(zombie[0], Err(JobError::FenceLost(_))));
    assert!(
        store
            .checkpoint(&stale, &json!("zombie"))
            .await
            .unwrap_err()
            .is_fence_lost()
    );
    let after = store.job(clip).await.unwrap().unwrap();
    assert_eq!(after.result, node.result);
    assert_eq!(after.checkpoint, Some(json!({"provider_task": "sora-123"})));
    second.shutdown().await;
}

async fn first_fence<S: JobStore>(store: &S, job: JobId) -> crate::Fence {
    let events = all_events(store, store.job(job).await.unwrap().unwrap().run_id).await;
    let started = events
        .iter()
        .filter(|e| e.job_id == job && e.kind == EventKind::Started)
        .count();
    crate::Fence {
        job_id: job,
        run_id: store.job(job).await.unwrap().unwrap().run_id,
        epoch: i64::try_from(started).unwrap(),
    }
}

pub async fn cancel_stops_new_work_and_resume_reruns_only_what_did_not_complete<S: JobStore>(
    store: Arc<S>,
) {
    let executions: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let mut registry = Registry::new();
    let ex = executions.clone();
    registry.register("step", move |ctx: crate::JobContext| {
        let ex = ex.clone();
        async move {
            ex.lock().unwrap().push(ctx.key().to_owned());
            if ctx.payload()["slow"].as_bool().unwrap_or(false) {
                tokio::select! {
                    () = ctx.cancellation().cancelled() => return Outcome::cancelled("stopped by token"),
                    () = sleep(Duration::from_secs(3600)) => {}
                }
            }
            Outcome::success(json!(ctx.key()))
        }
    });
    let worker = start(&store, registry.clone(), fast_config()).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::group("ep1", "episode"))
        .with(NodeSpec::task("first", "step", json!({})))
        .with(
            NodeSpec::task("slow", "step", json!({"slow": true}))
                .after(["first"])
                .parent("ep1"),
        )
        .with(
            NodeSpec::task("next", "step", json!({}))
                .after(["slow"])
                .parent("ep1"),
        )
        .with(NodeSpec::task("final", "step", json!({})).after(["next"]));
    let run = store.submit(&graph).await.unwrap();
    let slow = run.ids["slow"];
    wait_for("the slow task to run", Duration::from_secs(20), || {
        let store = store.clone();
        async move { store.job(slow).await.unwrap().unwrap().state == JobState::Running }
    })
    .await;
    let report = store
        .cancel(run.ids["ep1"], "user cancelled")
        .await
        .unwrap();
    assert_eq!((report.cancelled, report.signalled), (1, 1));
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    assert_eq!(root.state, JobState::Cancelled);
    let tree = assert_consistent(&*store, run.run_id).await;
    assert_eq!(key_of(&tree, "first").state, JobState::Completed);
    assert_eq!(key_of(&tree, "slow").state, JobState::Cancelled);
    assert_eq!(key_of(&tree, "next").state, JobState::Cancelled);
    assert_eq!(key_of(&tree, "final").state, JobState::Cancelled);
    assert!(key_of(&tree, "final").error.unwrap().contains("`next`"));
    assert_eq!(key_of(&tree, "ep1").state, JobState::Cancelled);
    assert_eq!(executions.lock().unwrap().clone(), vec!["first", "slow"]);
    // Resume reruns the cancelled part only; the slow step is quick this time.
    worker.shutdown().await;
    let mut quick = Registry::new();
    let ex = executions.clone();
    quick.register("step", move |ctx: crate::JobContext| {
        let ex = ex.clone();
        async move {
            ex.lock().unwrap().push(ctx.key().to_owned());
            Outcome::success(json!(ctx.key()))
        }
    });
    let worker = start(&store, quick, fast_config()).await;
    let resumed = store.resume(run.run_id).await.unwrap();
    assert_eq!(resumed.queued, 3);
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    assert_eq!(root.state, JobState::Completed);
    assert_consistent(&*store, run.run_id).await;
    assert_eq!(
        executions.lock().unwrap().clone(),
        vec!["first", "slow", "slow", "next", "final"],
        "completed tasks never rerun"
    );
    assert!(matches!(
        store.cancel(JobId::new(), "x").await,
        Err(JobError::NotFound(_))
    ));
    worker.shutdown().await;
}

pub async fn resource_limits_hold_across_workers<S: JobStore>(store: Arc<S>) {
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let (c, p) = (current.clone(), peak.clone());
    registry.register("render", move |_ctx: crate::JobContext| {
        let (c, p) = (c.clone(), p.clone());
        async move {
            let now = c.fetch_add(1, Ordering::SeqCst) + 1;
            p.fetch_max(now, Ordering::SeqCst);
            sleep(Duration::from_millis(60)).await;
            c.fetch_sub(1, Ordering::SeqCst);
            Outcome::success(json!(null))
        }
    });
    let config = WorkerConfig {
        concurrency: 4,
        resource_limits: vec![ResourceLimit::concurrency("video", 2)],
        ..fast_config()
    };
    let w1 = start(&store, registry.clone(), config.clone()).await;
    let w2 = start(&store, registry, config).await;
    let mut graph = Graph::new(RunSpec::new("t", owner()));
    for i in 0..12 {
        graph.add(NodeSpec::task(format!("v{i}"), "render", json!({})).class("video"));
    }
    let run = store.submit(&graph).await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(60)).await;
    assert_eq!(root.state, JobState::Completed);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        2,
        "never more than the class allows"
    );
    let (s1, s2) = (w1.shutdown().await.stats, w2.shutdown().await.stats);
    assert_eq!(s1.succeeded + s2.succeeded, 12);
}

pub async fn rate_limits_cap_starts_per_minute<S: JobStore>(store: Arc<S>) {
    store
        .set_resource_limits(&[ResourceLimit {
            class: "llm".into(),
            max_running: None,
            per_minute: Some(3),
        }])
        .await
        .unwrap();
    let worker = register(&*store).await;
    let mut graph = Graph::new(RunSpec::new("t", owner()));
    for i in 0..5 {
        graph.add(NodeSpec::task(format!("q{i}"), "ask", json!({})).class("llm"));
    }
    graph.add(NodeSpec::task("free", "ask", json!({})));
    store.submit(&graph).await.unwrap();
    let claimed = claim(&*store, worker, &["ask"], 10).await;
    let llm = claimed.iter().filter(|j| j.resource_class == "llm").count();
    assert_eq!(llm, 3, "a minute's worth of tokens");
    assert_eq!(claimed.len(), 4, "other classes are not held back");
    assert!(claim(&*store, worker, &["ask"], 10).await.is_empty());
    // A throttled class starts nothing until the delay passed.
    store
        .set_resource_limits(&[ResourceLimit::concurrency("img", 5)])
        .await
        .unwrap();
    store
        .throttle_class("img", Duration::from_millis(300))
        .await
        .unwrap();
    let g2 = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::task("i", "ask", json!({})).class("img"));
    store.submit(&g2).await.unwrap();
    assert!(claim(&*store, worker, &["ask"], 10).await.is_empty());
    sleep(Duration::from_millis(400)).await;
    assert_eq!(claim(&*store, worker, &["ask"], 10).await.len(), 1);
    assert!(matches!(
        store
            .set_resource_limits(&[ResourceLimit::concurrency("bad class!", 1)])
            .await,
        Err(JobError::Invalid { .. })
    ));
}

async fn register<S: JobStore>(store: &S) -> WorkerId {
    let id = WorkerId::new();
    store
        .register_worker(&WorkerRegistration {
            id,
            name: "manual".into(),
            kinds: vec![],
            ttl: Duration::from_secs(60),
        })
        .await
        .unwrap();
    id
}

async fn claim<S: JobStore>(
    store: &S,
    worker: WorkerId,
    kinds: &[&str],
    limit: usize,
) -> Vec<crate::ClaimedJob> {
    store
        .claim(&ClaimRequest {
            worker,
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            limit,
        })
        .await
        .unwrap()
}

pub async fn expansions_extend_a_running_graph<S: JobStore>(store: Arc<S>) {
    let mut registry = Registry::new();
    registry.register("write_scenes", |ctx: crate::JobContext| async move {
        let episode = ctx.payload()["episode"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut expansion = Expansion::new();
        for s in 1..=3 {
            let board = format!("{episode}-sc{s}-board");
            let clip = format!("{episode}-sc{s}-clip");
            expansion = expansion
                .with(
                    NodeSpec::task(&board, "image", json!({"scene": s}))
                        .parent(&episode)
                        .after(["portrait"]),
                )
                .with(
                    NodeSpec::task(&clip, "video", json!({"scene": s}))
                        .parent(&episode)
                        .after([board]),
                )
                .add_dependency(format!("{episode}-stitch"), clip);
        }
        Outcome::success_with(json!({"scenes": 3}), expansion)
    });
    for kind in ["image", "video", "portrait"] {
        registry.register(kind, |ctx: crate::JobContext| async move {
            sleep(Duration::from_millis(3)).await;
            Outcome::success(json!({"url": format!("https://cdn/{}", ctx.key())}))
        });
    }
    registry.register("stitch", |ctx: crate::JobContext| async move {
        let clips: Vec<String> = ctx.dependencies().keys().cloned().collect();
        Outcome::success(json!({"clips": clips}))
    });
    let worker = start(&store, registry, fast_config()).await;
    let graph = Graph::new(RunSpec::new("generate_drama", owner()))
        .with(NodeSpec::task("portrait", "portrait", json!({})))
        .with(NodeSpec::group("e1", "episode"))
        .with(NodeSpec::task("e1-write", "write_scenes", json!({"episode": "e1"})).parent("e1"))
        .with(
            NodeSpec::task("e1-stitch", "stitch", json!({}))
                .parent("e1")
                .after(["e1-write"]),
        );
    let run = store.submit(&graph).await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(30)).await;
    assert_eq!(root.state, JobState::Completed);
    assert_eq!(root.counts.unwrap().total, 9);
    let tree = assert_consistent(&*store, run.run_id).await;
    let stitch = key_of(&tree, "e1-stitch");
    assert_eq!(
        stitch.result,
        Some(json!({"clips": ["e1-sc1-clip", "e1-sc2-clip", "e1-sc3-clip", "e1-write"]}))
    );
    assert_eq!(key_of(&tree, "e1").counts.unwrap().total, 8);
    let expanded: Vec<_> = all_events(&*store, run.run_id)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::Expanded && e.key == "e1-write")
        .collect();
    assert_eq!(expanded.len(), 1);
    worker.shutdown().await;
}

pub async fn graceful_shutdown_releases_unstarted_tasks<S: JobStore>(store: Arc<S>) {
    let started = Arc::new(AtomicUsize::new(0));
    let mut registry = Registry::new();
    let s = started.clone();
    registry.register("work", move |_ctx: crate::JobContext| {
        let s = s.clone();
        async move {
            s.fetch_add(1, Ordering::SeqCst);
            sleep(Duration::from_millis(300)).await;
            Outcome::success(json!("done"))
        }
    });
    let config = WorkerConfig {
        concurrency: 2,
        prefetch: 4,
        ..fast_config()
    };
    let worker = start(&store, registry.clone(), config).await;
    let mut graph = Graph::new(RunSpec::new("t", owner()));
    for i in 0..10 {
        graph.add(NodeSpec::task(format!("w{i}"), "work", json!({})));
    }
    let run = store.submit(&graph).await.unwrap();
    wait_for("two handlers to start", Duration::from_secs(20), || {
        let s = started.clone();
        async move { s.load(Ordering::SeqCst) == 2 }
    })
    .await;
    wait_for("the prefetch to fill", Duration::from_secs(20), || {
        let store = store.clone();
        async move {
            store
                .job(run.run_id)
                .await
                .unwrap()
                .unwrap()
                .counts
                .unwrap()
                .running
                == 6
        }
    })
    .await;
    let report = worker.shutdown().await;
    assert_eq!(report.released, 4, "claimed but never started");
    assert_eq!(
        report.stats.succeeded, 2,
        "running handlers finished within the grace"
    );
    let root = store.job(run.run_id).await.unwrap().unwrap();
    let counts = root.counts.unwrap();
    assert_eq!(
        (counts.completed, counts.running, counts.pending),
        (2, 0, 8)
    );
    let tree = assert_consistent(&*store, run.run_id).await;
    assert!(
        tree.nodes
            .iter()
            .filter(|n| n.state == JobState::Ready)
            .all(|n| n.attempts == 0),
        "released tasks keep their attempts"
    );
    // Another worker finishes the rest.
    let worker = start(&store, registry, fast_config()).await;
    assert_eq!(
        wait_settled(&*store, run.run_id, Duration::from_secs(20))
            .await
            .state,
        JobState::Completed
    );
    worker.shutdown().await;
}

pub async fn budgets_stop_overspending_and_refunds_are_exact<S: JobStore>(store: Arc<S>) {
    let worker = start(
        &store,
        noop_registry(&["gen"]),
        WorkerConfig {
            concurrency: 1,
            ..fast_config()
        },
    )
    .await;
    let graph = Graph::new(RunSpec::new("t", owner()).budget(10))
        .with(NodeSpec::task("a", "gen", json!({})).cost(4).priority(3))
        .with(NodeSpec::task("b", "gen", json!({})).cost(4).priority(2))
        .with(NodeSpec::task("c", "gen", json!({})).cost(4).priority(1))
        .with(NodeSpec::task("d", "gen", json!({})).cost(1).after(["c"]));
    let run = store.submit(&graph).await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    let tree = assert_consistent(&*store, run.run_id).await;
    assert_eq!(key_of(&tree, "a").state, JobState::Completed);
    assert_eq!(key_of(&tree, "b").state, JobState::Completed);
    let c = key_of(&tree, "c");
    assert_eq!(c.state, JobState::Cancelled);
    assert!(c.error.unwrap().contains("budget"));
    assert_eq!(key_of(&tree, "d").state, JobState::Cancelled);
    assert_eq!(root.state, JobState::Cancelled);
    let costs = root.costs.unwrap();
    assert_eq!((costs.total, costs.charged, costs.refundable), (13, 8, 5));
    assert_eq!(store.take_refund(run.run_id).await.unwrap(), 5);
    assert_eq!(
        store.take_refund(run.run_id).await.unwrap(),
        0,
        "idempotent"
    );
    assert!(matches!(
        store.take_refund(run.ids["a"]).await,
        Err(JobError::NotFound(_))
    ));
    worker.shutdown().await;
}

pub async fn idempotent_and_invalid_submissions<S: JobStore>(store: Arc<S>) {
    let who = owner();
    let spec = RunSpec::new("t", who)
        .subject("drama-1")
        .idempotency_key("req-1");
    let graph = Graph::new(spec.clone()).with(NodeSpec::task("a", "k", json!({})));
    let first = store.submit(&graph).await.unwrap();
    let again = store.submit(&graph).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.run_id, again.run_id);
    assert_eq!(first.ids, again.ids);
    // Another owner's key does not collide.
    let other = Graph::new(RunSpec::new("t", owner()).idempotency_key("req-1"))
        .with(NodeSpec::task("a", "k", json!({})));
    assert_ne!(store.submit(&other).await.unwrap().run_id, first.run_id);
    for (bad, check) in [
        (
            Graph::new(RunSpec::new("t", who).subject("drama-2"))
                .with(NodeSpec::task("a", "k", json!({})).after(["b"]))
                .with(NodeSpec::task("b", "k", json!({})).after(["a"])),
            "cycle",
        ),
        (
            Graph::new(RunSpec::new("t", who).subject("drama-2"))
                .with(NodeSpec::task("a", "k", json!({})).after(["missing"])),
            "unknown",
        ),
        (
            Graph::new(RunSpec::new("t", who).subject("drama-2"))
                .with(NodeSpec::task("a", "k", json!({})))
                .with(NodeSpec::task("a", "k", json!({}))),
            "duplicate",
        ),
    ] {
        match store.submit(&bad).await {
            Err(JobError::InvalidGraph(e)) => {
                let matched = match check {
                    "cycle" => matches!(e, GraphError::Cycle { .. }),
                    "unknown" => matches!(e, GraphError::UnknownDependency { .. }),
                    _ => matches!(e, GraphError::DuplicateKey(_)),
                };
                assert!(matched, "{check}: {e}");
            }
            other => panic!("{check} accepted: {other:?}"),
        }
    }
    // Bulk submission: one transaction; a known key returns its run; one bad graph rejects all.
    let batch = vec![
        Graph::new(RunSpec::new("t", who).subject("drama-3")).with(NodeSpec::task(
            "a",
            "k",
            json!({}),
        )),
        graph.clone(),
        Graph::new(RunSpec::new("t", who).subject("drama-3"))
            .with(NodeSpec::group("g", "grp"))
            .with(NodeSpec::task("b", "k", json!({})).parent("g")),
    ];
    let many = store.submit_many(&batch).await.unwrap();
    assert_eq!(
        many.iter().map(|s| s.created).collect::<Vec<_>>(),
        [true, false, true]
    );
    assert_eq!(many[1].run_id, first.run_id);
    assert_eq!(many[2].ids.len(), 3);
    assert_eq!(
        store
            .job(many[2].run_id)
            .await
            .unwrap()
            .unwrap()
            .counts
            .unwrap()
            .pending,
        1
    );
    let mut with_bad = batch.clone();
    with_bad.push(
        Graph::new(RunSpec::new("t", who).subject("drama-2"))
            .with(NodeSpec::task("a", "k", json!({})).after(["nope"])),
    );
    assert!(matches!(
        store.submit_many(&with_bad).await,
        Err(JobError::InvalidGraph(_))
    ));
    let written = store
        .list_runs(&RunFilter {
            subject: Some("drama-2".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert!(written.is_empty(), "rejected graphs write nothing");
}

pub async fn events_replay_since_an_id_and_notify<S: JobStore>(store: Arc<S>) {
    let mut notifications = store.subscribe().await.unwrap();
    let worker = start(&store, noop_registry(&["k"]), fast_config()).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::group("g", "grp"))
        .with(NodeSpec::task("a", "k", json!({})).parent("g"))
        .with(NodeSpec::task("b", "k", json!({})).after(["a"]));
    let run = store.submit(&graph).await.unwrap();
    wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    let events = all_events(&*store, run.run_id).await;
    assert_eq!(events[0].kind, EventKind::Submitted);
    let last = events.last().unwrap();
    assert_eq!((last.job_id, last.state), (run.run_id, JobState::Completed));
    let middle = events[events.len() / 2].id;
    let replay = store
        .events(run.run_id, Some(middle), None, 1000)
        .await
        .unwrap();
    assert_eq!(
        replay,
        events
            .iter()
            .filter(|e| e.id > middle)
            .cloned()
            .collect::<Vec<_>>()
    );
    assert!(
        store
            .events(run.run_id, Some(last.id), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let scoped = store
        .events(run.run_id, None, Some(run.ids["g"]), 100)
        .await
        .unwrap();
    assert!(!scoped.is_empty());
    assert!(scoped.iter().all(|e| e.key == "a" || e.key == "g"));
    // Every transaction that appended events notified, with the newest event id.
    let mut newest = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while newest != Some(last.id) {
        let n = tokio::time::timeout_at(deadline, notifications.next())
            .await
            .expect("notification")
            .expect("stream open");
        if n.run_id == run.run_id {
            newest = Some(n.event_id);
        }
    }
    worker.shutdown().await;
}

pub async fn queries_show_children_trees_and_active_runs<S: JobStore>(store: Arc<S>) {
    let who = owner();
    let mut graph = Graph::new(RunSpec::new("generate_drama", who).subject("d-42"))
        .with(NodeSpec::group("e1", "episode"));
    for i in 0..5 {
        graph.add(NodeSpec::task(format!("c{i}"), "k", json!({"i": i})).parent("e1"));
    }
    let run = store.submit(&graph).await.unwrap();
    let done = store
        .submit(&Graph::new(RunSpec::new("other", who).subject("d-42")))
        .await
        .unwrap();
    let view = store.job(run.run_id).await.unwrap().unwrap();
    assert_eq!(view.node_type, NodeType::Run);
    assert_eq!((view.owner, view.subject.as_deref()), (who, Some("d-42")));
    assert_eq!(view.counts.unwrap().pending, 5);
    assert_eq!(view.coarse_status().as_str(), "pending");
    let first = store.children(run.ids["e1"], None, 3).await.unwrap();
    assert_eq!(
        first.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        ["c0", "c1", "c2"]
    );
    let rest = store
        .children(run.ids["e1"], Some(first[2].id), 10)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(),
        ["c3", "c4"]
    );
    assert_eq!(rest[0].payload, json!({"i": 3}));
    let tree = store.run_tree(run.run_id).await.unwrap().unwrap();
    assert_eq!(tree.nodes.len(), 7);
    assert_eq!(tree.nodes[0].id, run.run_id);
    check_tree(&tree);
    let empty = store.job(done.run_id).await.unwrap().unwrap();
    assert_eq!(
        empty.state,
        JobState::Completed,
        "a run without tasks is complete"
    );
    let active = store
        .list_runs(&RunFilter {
            subject: Some("d-42".into()),
            owner: Some(who),
            active_only: true,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        active.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![run.run_id]
    );
    let all = store
        .list_runs(&RunFilter {
            subject: Some("d-42".into()),
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![done.run_id, run.run_id]
    );
    assert!(store.job(JobId::new()).await.unwrap().is_none());
    assert!(store.run_tree(JobId::new()).await.unwrap().is_none());
}

pub async fn prune_removes_settled_runs<S: JobStore>(store: Arc<S>) {
    let worker = start(&store, noop_registry(&["k"]), fast_config()).await;
    let old = store
        .submit(&Graph::new(RunSpec::new("t", owner())).with(NodeSpec::task("a", "k", json!({}))))
        .await
        .unwrap();
    wait_settled(&*store, old.run_id, Duration::from_secs(20)).await;
    let settled_at = store
        .job(old.run_id)
        .await
        .unwrap()
        .unwrap()
        .finished_at
        .unwrap();
    worker.shutdown().await;
    let pending = store
        .submit(&Graph::new(RunSpec::new("t", owner())).with(NodeSpec::task("a", "k", json!({}))))
        .await
        .unwrap();
    let none = store.prune(settled_at, 100).await.unwrap();
    assert_eq!(none.runs, 0, "only runs settled before the cutoff");
    let report = store
        .prune(settled_at + chrono::Duration::milliseconds(1), 100)
        .await
        .unwrap();
    assert_eq!((report.runs, report.nodes), (1, 2));
    assert!(report.events >= 3);
    assert!(store.job(old.run_id).await.unwrap().is_none());
    assert!(
        store
            .events(old.run_id, None, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store.job(pending.run_id).await.unwrap().is_some(),
        "active runs stay"
    );
}

pub async fn external_completion_claims_are_verified<S: JobStore>(store: Arc<S>) {
    let mut registry = Registry::new();
    registry.register("liar", |_ctx: crate::JobContext| async move {
        Outcome::committed_externally()
    });
    let worker = start(&store, registry, fast_config()).await;
    let graph = Graph::new(RunSpec::new("t", owner())).with(NodeSpec::task("a", "liar", json!({})));
    let run = store.submit(&graph).await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    assert_eq!(root.state, JobState::Failed);
    let a = store.job(run.ids["a"]).await.unwrap().unwrap();
    assert!(a.error.unwrap().contains("own transaction"));
    worker.shutdown().await;
}

pub async fn priorities_order_claims_and_stale_fences_are_rejected<S: JobStore>(store: Arc<S>) {
    let worker = register(&*store).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::task("low", "k", json!({})).priority(-1))
        .with(NodeSpec::task("mid", "k", json!({})))
        .with(NodeSpec::task("high", "k", json!({})).priority(5))
        .with(NodeSpec::task("other-kind", "z", json!({})).priority(9));
    store.submit(&graph).await.unwrap();
    let got = claim(&*store, worker, &["k"], 2).await;
    assert_eq!(
        got.iter().map(|j| j.key.as_str()).collect::<Vec<_>>(),
        ["high", "mid"]
    );
    assert_eq!(got[0].attempt, 1);
    let fence = got[0].fence;
    store.checkpoint(&fence, &json!({"step": 1})).await.unwrap();
    let ok = store
        .finish(vec![
            Finish {
                fence,
                kind: FinishKind::Complete {
                    result: json!(1),
                    expansion: None,
                },
            },
            Finish {
                fence,
                kind: FinishKind::Complete {
                    result: json!(2),
                    expansion: None,
                },
            },
        ])
        .await
        .unwrap();
    assert!(ok[0].is_ok());
    assert!(
        matches!(ok[1], Err(JobError::FenceLost(_))),
        "a second completion is rejected"
    );
    assert_eq!(
        store.job(fence.job_id).await.unwrap().unwrap().result,
        Some(json!(1))
    );
    assert!(
        store
            .checkpoint(&fence, &json!(2))
            .await
            .unwrap_err()
            .is_fence_lost()
    );
    let unknown = crate::Fence {
        job_id: JobId::new(),
        ..fence
    };
    let r = store
        .finish(vec![Finish {
            fence: unknown,
            kind: FinishKind::Release,
        }])
        .await
        .unwrap();
    assert!(matches!(r[0], Err(JobError::FenceLost(_))));
    // An unregistered worker cannot claim.
    let err = store
        .claim(&ClaimRequest {
            worker: WorkerId::new(),
            kinds: vec!["k".into()],
            limit: 1,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::WorkerExpired(_)));
}

pub async fn handler_timeouts_cancel_and_retry<S: JobStore>(store: Arc<S>) {
    let mut registry = Registry::new();
    registry.register_with(
        "slow",
        |ctx: crate::JobContext| async move {
            if ctx.attempt() == 1 {
                sleep(Duration::from_secs(3600)).await;
            }
            Outcome::success(json!({"attempt": ctx.attempt()}))
        },
        crate::HandlerOptions {
            timeout: Some(Duration::from_millis(200)),
            retry: None,
        },
    );
    let worker = start(&store, registry, fast_config()).await;
    let graph = Graph::new(RunSpec::new("t", owner())).with(NodeSpec::task("a", "slow", json!({})));
    let run = store.submit(&graph).await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    assert_eq!(root.state, JobState::Completed);
    let a = store.job(run.ids["a"]).await.unwrap().unwrap();
    assert_eq!(a.result, Some(json!({"attempt": 2})));
    assert!(a.error.is_none());
    let retried: Vec<Value> = all_events(&*store, run.run_id)
        .await
        .into_iter()
        .filter(|e| e.kind == EventKind::Retrying)
        .map(|e| e.detail)
        .collect();
    assert!(retried[0]["error"].as_str().unwrap().contains("timed out"));
    worker.shutdown().await;
}
