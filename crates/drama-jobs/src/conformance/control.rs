//! Cancellation and resumption, graceful shutdown, budgets and external completions.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::time::sleep;

use crate::core::{Finish, FinishKind};
use crate::{
    Graph, JobError, JobId, JobState, JobStore, NodeSpec, Outcome, Registry, RunSpec, WorkerConfig,
};

use super::{
    assert_consistent, fast_config, key_of, noop_registry, owner, start, wait_for, wait_settled,
};

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

/// After the run was cancelled, resuming one task queues its dependents in other groups too
/// (and prices them); those groups are no longer cancelled, so the dependents run instead of
/// being cancelled again when claimed.
pub async fn resuming_a_task_of_a_cancelled_run_runs_its_dependents_elsewhere<S: JobStore>(
    store: Arc<S>,
) {
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::group("portraits", "characters"))
        .with(NodeSpec::group("episode", "episode"))
        .with(
            NodeSpec::task("portrait", "step", json!({}))
                .parent("portraits")
                .cost(10),
        )
        .with(
            NodeSpec::task("storyboard", "step", json!({}))
                .parent("episode")
                .after(["portrait"])
                .cost(5),
        );
    let run = store.submit(&graph).await.unwrap();
    store.cancel(run.run_id, "user cancelled").await.unwrap();
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    assert_eq!(root.state, JobState::Cancelled);
    assert_eq!(store.take_refund(run.run_id).await.unwrap(), 15);

    let worker = start(&store, noop_registry(&["step"]), fast_config()).await;
    let resumed = store.resume(run.ids["portrait"]).await.unwrap();
    assert_eq!(resumed.queued, 2, "the portrait and its storyboard");
    let root = wait_settled(&*store, run.run_id, Duration::from_secs(20)).await;
    let tree = assert_consistent(&*store, run.run_id).await;
    assert_eq!(key_of(&tree, "storyboard").state, JobState::Completed);
    assert_eq!(key_of(&tree, "episode").state, JobState::Completed);
    assert_eq!(root.state, JobState::Completed);
    // Both ran, so the refund given for both is taken back.
    assert_eq!(store.take_refund(run.run_id).await.unwrap(), -15);
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

/// A resume that comes while a cancellation is in flight withdraws it from the running tasks
/// below its target: the worker's heartbeat no longer reports it, and however the running task
/// ends — completed, retried, or stopped by a token its handler had already seen fire — its
/// dependent, which the resume queued again, runs and the run completes instead of ending
/// cancelled again.
pub async fn a_resume_withdraws_the_cancellation_of_running_tasks<S: JobStore>(store: Arc<S>) {
    let worker = super::register(&*store).await;
    let ttl = Duration::from_secs(60);
    let finishes = [
        FinishKind::Complete {
            result: json!(1),
            expansion: None,
        },
        FinishKind::Retry {
            error: "timeout".into(),
            delay: Duration::ZERO,
        },
        FinishKind::Cancelled {
            reason: "stopped by token".into(),
        },
    ];
    for kind in finishes {
        let graph = Graph::new(RunSpec::new("t", owner()))
            .with(NodeSpec::task("a", "a", json!({})).cost(3))
            .with(NodeSpec::task("b", "b", json!({})).after(["a"]).cost(4));
        let run = store.submit(&graph).await.unwrap();
        let a = super::claim(&*store, worker, &["a"], 1).await.remove(0);
        let report = store.cancel(run.run_id, "user").await.unwrap();
        assert_eq!((report.cancelled, report.signalled), (1, 1));
        let told = store
            .heartbeat(worker, ttl, None)
            .await
            .unwrap()
            .cancel_requested;
        assert_eq!(told, vec![a.fence.job_id]);
        assert_eq!(store.resume(run.run_id).await.unwrap().queued, 1);
        let told = store
            .heartbeat(worker, ttl, None)
            .await
            .unwrap()
            .cancel_requested;
        assert_eq!(
            told,
            Vec::<JobId>::new(),
            "{kind:?}: the cancellation is withdrawn"
        );
        let done = store
            .finish(vec![Finish {
                fence: a.fence,
                kind: kind.clone(),
            }])
            .await
            .unwrap();
        assert!(done[0].is_ok(), "{done:?}");
        let again = super::claim(&*store, worker, &["a"], 1).await;
        if let FinishKind::Complete { .. } = kind {
            assert!(again.is_empty());
        } else {
            assert_eq!(again.len(), 1, "{kind:?}: `a` runs again");
            complete(&*store, again[0].fence).await;
        }
        let b = super::claim(&*store, worker, &["b"], 1).await;
        assert_eq!(b.len(), 1, "{kind:?}: `b`, queued by the resume, runs");
        complete(&*store, b[0].fence).await;
        let root = store.job(run.run_id).await.unwrap().unwrap();
        assert_eq!(root.state, JobState::Completed, "{kind:?}");
        assert_consistent(&*store, run.run_id).await;
    }
}

async fn complete<S: JobStore>(store: &S, fence: crate::Fence) {
    let done = store
        .finish(vec![Finish {
            fence,
            kind: FinishKind::Complete {
                result: json!(1),
                expansion: None,
            },
        }])
        .await
        .unwrap();
    assert!(done[0].is_ok(), "{done:?}");
}
