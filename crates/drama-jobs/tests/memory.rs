//! The job engine on the in-memory store, with paused time: the conformance scenarios (with
//! invariant checks after every change) and larger randomized runs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use drama_jobs::MemoryJobStore;

macro_rules! case {
    ($name:ident) => {
        #[tokio::test(start_paused = true)]
        async fn $name() {
            let store = Arc::new(MemoryJobStore::with_invariant_checks());
            drama_jobs::conformance::$name(store.clone()).await;
            assert_eq!(store.violations(), Vec::<String>::new());
        }
    };
}

drama_jobs::for_each_job_scenario!(case);

#[tokio::test(start_paused = true)]
async fn three_thousand_random_dags_never_start_a_node_early() {
    let store = Arc::new(MemoryJobStore::with_invariant_checks());
    drama_jobs::conformance::random_dags(store.clone(), 3000, 2026).await;
    assert_eq!(store.violations(), Vec::<String>::new());
}

/// A worker stopped past its lease (SIGSTOP, a stalled process) finds, when it runs again,
/// that a reaper requeued its task; its heartbeat registers it again and asks which of its
/// tasks it still holds, and before the answer comes its own claim takes the task again under
/// a new fence. The first attempt's handler is stopped all the same (its cancellation token
/// fires): before, the claim replaced its entry, the look found no entry with its fence to
/// stop, and the handler went on to pay its provider for an attempt that was fenced out.
#[tokio::test(start_paused = true)]
async fn an_attempt_whose_task_this_worker_claimed_again_is_stopped() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::Duration;

    use drama_jobs::conformance::{Interposed, fast_config, wait_settled};
    use drama_jobs::{
        Graph, JobState, JobStore, NodeSpec, Outcome, Registry, RunSpec, Worker, WorkerId,
        WorkerRegistration,
    };
    use serde_json::json;
    use tokio::time::sleep;

    let inner = Arc::new(MemoryJobStore::with_invariant_checks());
    let store = Arc::new(Interposed::new(inner.clone()));
    let config = fast_config();
    let lease = config.lease_ttl;

    // Another process's reaper, heartbeating all along.
    let reaper = WorkerId::new();
    inner
        .register_worker(&WorkerRegistration {
            id: reaper,
            name: "reaper".into(),
            kinds: vec!["paid".into()],
            ttl: lease,
        })
        .await
        .unwrap();
    let beating = {
        let inner = inner.clone();
        tokio::spawn(async move {
            loop {
                sleep(lease / 5).await;
                inner.heartbeat(reaper, lease, None).await.unwrap();
            }
        })
    };

    let attempts = Arc::new(AtomicU32::new(0));
    let first_stopped = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<u32>>> = Arc::default();
    let mut registry = Registry::new();
    {
        let (attempts, first_stopped, seen) =
            (attempts.clone(), first_stopped.clone(), seen.clone());
        registry.register("paid", move |ctx: drama_jobs::JobContext| {
            let (attempts, first_stopped, seen) =
                (attempts.clone(), first_stopped.clone(), seen.clone());
            async move {
                attempts.fetch_add(1, Ordering::SeqCst);
                seen.lock().unwrap().push(ctx.attempt());
                if ctx.attempt() > 1 {
                    return Outcome::success(json!("made"));
                }
                tokio::select! {
                    () = ctx.cancellation().cancelled() => {
                        first_stopped.store(true, Ordering::SeqCst);
                        Outcome::cancelled("stopped")
                    }
                    () = sleep(Duration::from_secs(3600)) => Outcome::success(json!("late")),
                }
            }
        });
    }
    let worker = Worker::start(store.clone(), registry, config)
        .await
        .unwrap();
    let run = inner
        .submit(
            &Graph::new(RunSpec::new("t", uuid::Uuid::new_v4()))
                .with(NodeSpec::task("p", "paid", json!({})).max_attempts(3)),
        )
        .await
        .unwrap();
    while attempts.load(Ordering::SeqCst) == 0 {
        sleep(Duration::from_millis(10)).await;
    }

    // The worker stops answering for two leases; the other process's reaper requeues the task.
    store.set_down(true);
    sleep(lease * 2).await;
    assert_eq!(inner.reap_expired(reaper, 100).await.unwrap(), 1);
    assert_eq!(
        inner.job(run.ids["p"]).await.unwrap().unwrap().state,
        JobState::Ready
    );

    // Back: the heartbeat registers again and asks what it still holds (held back here), and
    // the claim (held back until then) takes the task again.
    store.hold_next_claim();
    store.hold_next_still_held();
    store.set_down(false);
    store.still_held_arrived().await;
    store.claim_arrived().await;
    store.let_go();
    while attempts.load(Ordering::SeqCst) < 2 {
        sleep(Duration::from_millis(10)).await;
    }
    store.let_still_held_go();
    for _ in 0..100 {
        if first_stopped.load(Ordering::SeqCst) {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    assert!(
        first_stopped.load(Ordering::SeqCst),
        "the first attempt's handler was not stopped"
    );
    let view = wait_settled(&*inner, run.run_id, Duration::from_secs(30)).await;
    assert_eq!(view.state, JobState::Completed);
    assert_eq!(*seen.lock().unwrap(), vec![1, 2]);
    worker.shutdown().await;
    beating.abort();
    assert_eq!(inner.violations(), Vec::<String>::new());
}
