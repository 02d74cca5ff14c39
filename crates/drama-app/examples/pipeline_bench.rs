//! Wall time of "generate everything" for the legacy fixture (5 characters, 3 episodes,
//! 16 scenes) with the offline provider, against two references computed from the same run's
//! measured task durations:
//!
//! - the lower bound: the longest dependency path, or the work of a rate-limited class divided
//!   by its limit (after the earliest moment that class can start), whichever is larger;
//! - the old server's order: level by level (a level starts when the previous one is done),
//!   each level scheduled within the same limits.
//!
//! ```sh
//! cargo run --release -p drama-app --example pipeline_bench -- [image_ms] [video_ms] [video_limit]
//! ```
//!
//! Defaults: 2000 ms per image, 8000 ms per clip, 2 clips at a time (image limit 8, stitch 2).
//! `0 0 2` measures the engine and the handlers alone.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use drama_ai::{AiProviders, OfflineLatency, OfflineProvider};
use drama_app::pipeline::Scope;
use drama_app::pipeline::spec::class;
use drama_app::{App, Caller, Ports};
use drama_dal::{DramaRepository as _, NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_jobs::{JobView, NodeType, ResourceLimit, Worker, WorkerConfig};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .map_or(default, |a| a.parse().expect("a whole number"))
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Makespan of `durations` on `slots` parallel slots, longest first (LPT list scheduling).
fn scheduled(mut durations: Vec<f64>, slots: usize) -> f64 {
    durations.sort_by(|a, b| b.total_cmp(a));
    let mut free = vec![0.0_f64; slots.max(1)];
    for d in durations {
        let earliest = free
            .iter_mut()
            .min_by(|a, b| a.total_cmp(b))
            .expect("at least one slot");
        *earliest += d;
    }
    free.into_iter().fold(0.0, f64::max)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let image_ms = arg(1, 2000);
    let video_ms = arg(2, 8000);
    let video_limit = usize::try_from(arg(3, 2)).unwrap();
    let limits: HashMap<&str, usize> = [
        (class::IMAGE, 8),
        (class::VIDEO, video_limit),
        (class::STITCH, 2),
        (class::SCRIPT, 4),
    ]
    .into_iter()
    .collect();

    let provider = Arc::new(OfflineProvider::new(7).with_latency(OfflineLatency {
        image: Duration::from_millis(image_ms),
        video: Duration::from_millis(video_ms),
    }));
    let ai = AiProviders::offline(7)
        .with_image_model(provider.clone())
        .with_video_model(provider);
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let (ports, store, jobs) = Ports::memory(assets, ai);
    let app = App::new(ports);
    let config = WorkerConfig {
        concurrency: 64,
        poll_interval: Duration::from_millis(20),
        resource_limits: limits
            .iter()
            .map(|(c, n)| ResourceLimit::concurrency(*c, u32::try_from(*n).unwrap()))
            .collect(),
        ..WorkerConfig::default()
    };
    let worker = Worker::start(jobs, app.registry(), config).await.unwrap();

    let user = UserId::random();
    store.create_user(&NewUser::new(user)).await.unwrap();
    let caller = Caller::user(user);
    let drama = drama_testkit::builders::fixture_drama();
    store.create(user, &drama).await.unwrap();

    let started = Instant::now();
    let run = app
        .generate(&caller, &drama.id, Scope::Drama, false)
        .await
        .unwrap();
    loop {
        let view = app.job(&caller, run.job_id).await.unwrap();
        if view.state.is_settled() {
            assert_eq!(view.state.as_str(), "completed", "{view:?}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let wall = seconds(started.elapsed());
    let tree = app.run_tree(&caller, run.job_id).await.unwrap();
    let _ = worker.shutdown().await;

    let tasks: BTreeMap<&str, &JobView> = tree
        .nodes
        .iter()
        .filter(|n| n.node_type == NodeType::Task)
        .map(|n| (n.key.as_str(), n))
        .collect();
    let duration = |t: &JobView| {
        let (Some(s), Some(f)) = (t.started_at, t.finished_at) else {
            return 0.0;
        };
        (f - s).to_std().map_or(0.0, seconds)
    };

    // Longest path ending at each task (its own duration included), and its level.
    let mut finish: HashMap<&str, f64> = HashMap::new();
    let mut level: HashMap<&str, usize> = HashMap::new();
    while finish.len() < tasks.len() {
        for (key, t) in &tasks {
            if finish.contains_key(key)
                || !t
                    .dependencies
                    .iter()
                    .all(|d| finish.contains_key(d.as_str()))
            {
                continue;
            }
            let before = t
                .dependencies
                .iter()
                .map(|d| finish[d.as_str()])
                .fold(0.0, f64::max);
            finish.insert(key, before + duration(t));
            let l = t
                .dependencies
                .iter()
                .map(|d| level[d.as_str()] + 1)
                .max()
                .unwrap_or(0);
            level.insert(key, l);
        }
    }
    let critical_path = finish.values().copied().fold(0.0, f64::max);

    let mut by_class: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
    for (key, t) in &tasks {
        by_class
            .entry(t.resource_class.as_str())
            .or_default()
            .push((key, duration(t)));
    }
    let mut resource_bound = 0.0_f64;
    for (class, members) in &by_class {
        let slots = limits.get(class).copied().unwrap_or(64);
        let head = members
            .iter()
            .map(|(k, d)| finish[k] - d)
            .fold(f64::INFINITY, f64::min);
        let work: f64 = members.iter().map(|(_, d)| d).sum();
        resource_bound = resource_bound.max(head + work / slots as f64);
    }
    let lower_bound = critical_path.max(resource_bound);

    let levels = level.values().copied().max().unwrap_or(0) + 1;
    let mut level_by_level = 0.0;
    for l in 0..levels {
        let mut per_class: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for (key, t) in &tasks {
            if level[key] == l {
                per_class
                    .entry(t.resource_class.as_str())
                    .or_default()
                    .push(duration(t));
            }
        }
        level_by_level += per_class
            .iter()
            .map(|(c, ds)| scheduled(ds.clone(), limits.get(c).copied().unwrap_or(64)))
            .fold(0.0, f64::max);
    }

    let counts: Vec<String> = by_class
        .iter()
        .map(|(c, m)| format!("{c} {}", m.len()))
        .collect();
    println!(
        "latency: image {image_ms} ms, video {video_ms} ms; limits: video {video_limit}, image 8, stitch 2"
    );
    println!("tasks: {} ({})", tasks.len(), counts.join(", "));
    println!("| measure | seconds | × lower bound |");
    println!("|---|---|---|");
    for (name, value) in [
        ("wall time, submit to settled", wall),
        ("critical path (measured task durations)", critical_path),
        ("rate-limited class bound", resource_bound),
        ("lower bound (larger of the two)", lower_bound),
        ("old server's order: level by level", level_by_level),
    ] {
        println!("| {name} | {value:.2} | {:.3} |", value / lower_bound);
    }
}
