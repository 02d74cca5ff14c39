//! Resource-class limits, rates, priorities and stale fences.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::time::sleep;

use crate::core::{Finish, FinishKind};
use crate::{
    ClaimRequest, Graph, JobError, JobId, JobState, JobStatus, JobStore, NodeSpec, Outcome,
    Registry, ResourceLimit, RunSpec, WorkerConfig, WorkerId,
};

use super::{claim, fast_config, owner, register, start, wait_settled};

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
    let held = store.submit(&g2).await.unwrap();
    assert!(claim(&*store, worker, &["ask"], 10).await.is_empty());
    let root = |store: Arc<S>| async move { store.job(held.run_id).await.unwrap().unwrap() };
    assert_eq!(
        root(store.clone()).await.coarse_status(),
        JobStatus::Pending,
        "no task started yet"
    );
    sleep(Duration::from_millis(400)).await;
    assert_eq!(claim(&*store, worker, &["ask"], 10).await.len(), 1);
    // A run does not run itself: once a task of it has started, its node reads `running`
    // (no event says so; clients that follow events derive it from the task counts) and the
    // wire says `processing`.
    let view = root(store.clone()).await;
    assert_eq!(view.state, JobState::Running, "{view:?}");
    assert_eq!(view.coarse_status(), JobStatus::Processing);
    assert!(matches!(
        store
            .set_resource_limits(&[ResourceLimit::concurrency("bad class!", 1)])
            .await,
        Err(JobError::Invalid { .. })
    ));
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
    // Only the current claims are held: not an epoch that never was, not an unknown task.
    let other_epoch = crate::Fence {
        epoch: fence.epoch + 1,
        ..fence
    };
    let nowhere = crate::Fence {
        job_id: JobId::new(),
        ..fence
    };
    let held: std::collections::HashSet<JobId> = store
        .still_held(&[fence, other_epoch, nowhere, got[1].fence])
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(held, [fence.job_id, got[1].fence.job_id].into());
    // A null checkpoint clears an earlier one (the task is no longer spent).
    store.checkpoint(&fence, &json!({"step": 0})).await.unwrap();
    store
        .checkpoint(&fence, &serde_json::Value::Null)
        .await
        .unwrap();
    assert_eq!(
        store.job(fence.job_id).await.unwrap().unwrap().checkpoint,
        None
    );
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
        store.still_held(&[fence, got[1].fence]).await.unwrap(),
        [got[1].fence.job_id],
        "a finished attempt is no longer held"
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
