//! Dependencies, results, large and random DAGs, and expansions.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use tokio::time::sleep;

use crate::{
    EventKind, Expansion, Graph, JobState, JobStore, NodeSpec, Outcome, Registry, RunSpec,
    WorkerConfig,
};

use super::{all_events, assert_consistent, fast_config, key_of, owner, start, wait_settled};

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
