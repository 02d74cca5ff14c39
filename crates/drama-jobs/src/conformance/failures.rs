//! Failures, retries, panics, crashed workers and handler timeouts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::time::{Instant, sleep};

use crate::core::{FREE_DEFERRALS, Finish, FinishKind, MAX_DEFER};
use crate::{EventKind, Graph, JobError, JobState, JobStore, NodeSpec, Outcome, Registry, RunSpec};

use super::{
    all_events, assert_consistent, claim, fast_config, first_fence, key_of, noop_registry, owner,
    register, start, wait_for, wait_settled,
};

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

/// A provider that answers "retry after" forever, even without a wait, does not keep a task
/// (and its run) unsettled forever: past [`FREE_DEFERRALS`] deferrals in a row each one uses an
/// attempt. A deferral puts a task off [`MAX_DEFER`] at most, also when the advice is too long
/// to represent (it used to mean "now"), and so does a throttle.
pub async fn deferrals_are_bounded_in_number_and_length<S: JobStore>(store: Arc<S>) {
    let worker = register(&*store).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(
            NodeSpec::task("endless", "defer", json!({}))
                .max_attempts(1)
                .cost(5),
        )
        .with(NodeSpec::task("far", "far", json!({})));
    let run = store.submit(&graph).await.unwrap();
    let defer = |fence, delay| Finish {
        fence,
        kind: FinishKind::Defer {
            reason: "429".into(),
            delay,
        },
    };
    let mut cycles = 0;
    while let Some(job) = claim(&*store, worker, &["defer"], 1).await.pop() {
        cycles += 1;
        assert!(cycles <= 100, "still deferred after {cycles} claims");
        let done = store
            .finish(vec![defer(job.fence, Duration::ZERO)])
            .await
            .unwrap();
        assert!(done[0].is_ok(), "{done:?}");
    }
    assert_eq!(cycles, FREE_DEFERRALS + 1);
    let endless = store.job(run.ids["endless"]).await.unwrap().unwrap();
    assert_eq!(endless.state, JobState::Failed);
    let error = endless.error.unwrap();
    assert!(
        error.contains(&format!("deferred {} times in a row", FREE_DEFERRALS + 1)),
        "{error}"
    );
    assert_eq!(endless.attempts, 1);

    // 10^13 seconds: past the representable time.
    let huge = Duration::from_secs(10_000_000_000_000);
    let far = claim(&*store, worker, &["far"], 1).await.remove(0);
    let done = store.finish(vec![defer(far.fence, huge)]).await.unwrap();
    assert!(done[0].is_ok(), "{done:?}");
    let view = store.job(run.ids["far"]).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Ready);
    let put_off = (view.run_after.unwrap() - view.updated_at)
        .to_std()
        .unwrap();
    assert!(
        put_off.abs_diff(MAX_DEFER) <= Duration::from_secs(1),
        "put off for {put_off:?}"
    );
    assert!(claim(&*store, worker, &["far"], 1).await.is_empty());
    store.throttle_class("far-class", huge).await.unwrap();
    store.cancel(run.run_id, "done").await.unwrap();
    assert_consistent(&*store, run.run_id).await;
}
