//! Leases that no handler holds: a claim that commits while its worker stops, and a claim whose
//! answer never reaches its worker. Both must end with the tasks queued again, no attempt used.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::time::{Instant, sleep};

use super::interpose::Interposed;
use super::{assert_consistent, claim, fast_config, owner, register, start, wait_settled};
use crate::{
    EventKind, Fence, Graph, JobId, JobState, JobStore, NodeSpec, NodeType, Outcome, Registry,
    RunSpec, WorkerConfig,
};

fn counting_registry(runs: &Arc<AtomicUsize>) -> Registry {
    let mut registry = Registry::new();
    let runs = runs.clone();
    registry.register("work", move |_ctx: crate::JobContext| {
        let runs = runs.clone();
        async move {
            runs.fetch_add(1, Ordering::SeqCst);
            Outcome::success(json!("done"))
        }
    });
    registry
}

fn three_tasks() -> Graph {
    let mut graph = Graph::new(RunSpec::new("t", owner()));
    for i in 0..3 {
        graph.add(NodeSpec::task(format!("w{i}"), "work", json!({})).max_attempts(1));
    }
    graph
}

/// A worker is stopped while its claim is on the way to the store; the claim then commits.
/// Its tasks are released at once (they never started, so no attempt is used), and shutdown
/// does not wait out its grace period for them: before, they stayed running under a worker
/// that deregistered, until the reaper took them back using an attempt (a task on its last
/// attempt ended failed without having run).
pub async fn a_claim_that_commits_during_shutdown_is_released<S: JobStore>(store: Arc<S>) {
    let store = Arc::new(Interposed::new(store));
    let runs = Arc::new(AtomicUsize::new(0));
    let run = store.submit(&three_tasks()).await.unwrap();
    store.hold_next_claim();
    let grace = Duration::from_secs(20);
    let config = WorkerConfig {
        shutdown_grace: grace,
        ..fast_config()
    };
    let worker = start(&store, counting_registry(&runs), config).await;
    store.claim_arrived().await;
    let began = Instant::now();
    let stopping = tokio::spawn(worker.shutdown());
    // The worker has stopped claiming (and, before, closed its queue) when the claim commits.
    sleep(Duration::from_millis(200)).await;
    store.let_go();
    let report = stopping.await.unwrap();
    assert!(
        began.elapsed() < grace / 2,
        "shutdown waited {:?} for tasks no handler held",
        began.elapsed()
    );
    assert_eq!(report.stats.claimed, 3, "the claim committed");
    assert_eq!(report.released, 3, "claimed during shutdown, released");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let tree = assert_consistent(&*store, run.run_id).await;
    for t in tree.nodes.iter().filter(|n| n.node_type == NodeType::Task) {
        assert_eq!(
            (t.state, t.attempts),
            (JobState::Ready, 0),
            "{}: queued again, its attempt given back",
            t.key
        );
    }
    // Another worker runs them, on their only attempt.
    let worker = start(&store, counting_registry(&runs), fast_config()).await;
    let view = wait_settled(&*store, run.run_id, Duration::from_secs(30)).await;
    assert_eq!(view.state, JobState::Completed);
    worker.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3);
}

/// A claim commits but its answer is lost (the connection failed before the commit was
/// acknowledged, and the worker saw an error). The heartbeat names the tasks running under the
/// worker's lease that it does not hold, and the worker releases them; the run completes,
/// each task on its first attempt. Before, they stayed running for as long as the worker
/// heartbeated: the run never settled and held its owner's active-run slot.
pub async fn a_claim_whose_answer_was_lost_is_released_at_the_next_heartbeat<S: JobStore>(
    store: Arc<S>,
) {
    // The store's part: a heartbeat that lists what the worker holds is told the rest, and one
    // that lists nothing is told nothing.
    let manual = register(&*store).await;
    let probe = store.submit(&three_tasks()).await.unwrap();
    let claimed = claim(&*store, manual, &["work"], 3).await;
    assert_eq!(claimed.len(), 3);
    let ttl = Duration::from_secs(60);
    let held: Vec<JobId> = vec![claimed[0].fence.job_id];
    let hb = store.heartbeat(manual, ttl, Some(&held)).await.unwrap();
    assert!(hb.alive);
    let mut unheld = hb.unheld.clone();
    unheld.sort_by_key(|f| f.job_id);
    let mut expected: Vec<Fence> = claimed[1..].iter().map(|j| j.fence).collect();
    expected.sort_by_key(|f| f.job_id);
    assert_eq!(
        unheld, expected,
        "the tasks leased but not held, with their fences"
    );
    let hb = store.heartbeat(manual, ttl, None).await.unwrap();
    assert_eq!(
        hb.unheld,
        Vec::<Fence>::new(),
        "nothing named, nothing told"
    );
    store.cancel(probe.run_id, "done").await.unwrap();
    let all: Vec<JobId> = claimed.iter().map(|j| j.fence.job_id).collect();
    let hb = store.heartbeat(manual, ttl, Some(&all)).await.unwrap();
    assert_eq!(hb.unheld, Vec::<Fence>::new());
    assert_eq!(hb.cancel_requested.len(), 3);
    let released = claimed
        .iter()
        .map(|j| crate::core::Finish {
            fence: j.fence,
            kind: crate::core::FinishKind::Release,
        })
        .collect();
    store.finish(released).await.unwrap();
    store.deregister_worker(manual).await.unwrap();

    // The worker's part.
    let store = Arc::new(Interposed::new(store));
    let runs = Arc::new(AtomicUsize::new(0));
    store.lose_next_answer();
    let worker = start(&store, counting_registry(&runs), fast_config()).await;
    let run = store.submit(&three_tasks()).await.unwrap();
    let view = wait_settled(&*store, run.run_id, Duration::from_secs(30)).await;
    assert_eq!(view.state, JobState::Completed);
    let report = worker.shutdown().await;
    assert_eq!(runs.load(Ordering::SeqCst), 3, "each task ran once");
    assert_eq!(report.released, 3, "released by the heartbeat");
    let tree = assert_consistent(&*store, run.run_id).await;
    for t in tree.nodes.iter().filter(|n| n.node_type == NodeType::Task) {
        assert_eq!(
            t.attempts, 1,
            "{}: the lost claim's attempt was given back",
            t.key
        );
    }
    let events = store.events(run.run_id, None, None, 500).await.unwrap();
    let released = events
        .iter()
        .filter(|e| e.kind == EventKind::Released)
        .count();
    assert_eq!(released, 3);
}
