//! Store outages: when the database comes back after an outage longer than the lease, every
//! registration has expired, live workers' too. No reaper may take their tasks back then:
//! their handlers are running and may have paid their providers already.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::time::sleep;

use super::interpose::Interposed;
use super::{all_events, assert_consistent, claim, fast_config, owner, wait_for, wait_settled};
use crate::{
    EventKind, Graph, JobState, JobStore, NodeSpec, Outcome, Registry, RunSpec, WorkerId,
    WorkerRegistration,
};

/// Handlers that count their calls (each stands for a paid provider call) and run until the
/// test lets them finish.
fn paid_registry(calls: &Arc<AtomicUsize>, release: &watch::Receiver<bool>) -> Registry {
    let mut registry = Registry::new();
    let calls = calls.clone();
    let release = release.clone();
    registry.register("paid", move |_ctx: crate::JobContext| {
        let calls = calls.clone();
        let mut release = release.clone();
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            let _ = release.wait_for(|go| *go).await;
            Outcome::success(json!("made"))
        }
    });
    registry
}

/// Two workers run four paid tasks; the store is unreachable for two leases, then comes back
/// while the handlers still run. Nobody takes the tasks back: the workers register again, and
/// every task completes on its first attempt with one paid call. Before, the first reaper back
/// found every registration expired (its own too) and requeued all the running tasks: their
/// handlers were stopped or fenced out and the next attempts paid the providers again.
pub async fn an_outage_longer_than_the_lease_takes_back_no_running_task<S: JobStore>(
    store: Arc<S>,
) {
    let inner = store;
    let store = Arc::new(Interposed::new(inner.clone()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (release, waiting) = watch::channel(false);
    let config = fast_config();
    let lease = config.lease_ttl;
    let workers = [
        super::start(&store, paid_registry(&calls, &waiting), config.clone()).await,
        super::start(&store, paid_registry(&calls, &waiting), config).await,
    ];
    let mut graph = Graph::new(RunSpec::new("t", owner()));
    for i in 0..4 {
        graph.add(NodeSpec::task(format!("p{i}"), "paid", json!({})).max_attempts(3));
    }
    let run = inner.submit(&graph).await.unwrap();
    wait_for("every handler to start", Duration::from_secs(20), || {
        let calls = calls.clone();
        async move { calls.load(Ordering::SeqCst) == 4 }
    })
    .await;
    // Let the workers' reapers become able to reap (a lease after they registered).
    sleep(lease * 2).await;

    store.set_down(true);
    sleep(lease * 2).await;
    // The database is back, and the first reaper to look comes before any process noticed
    // (each worker's own reaper, here, as it would be another process's): it takes nothing.
    for worker in &workers {
        let id = worker.worker_id().unwrap();
        assert_eq!(
            inner.reap_expired(id, 1000).await.unwrap(),
            0,
            "the first reaper back takes no live task"
        );
    }
    store.set_down(false);
    // Two more leases with the handlers still running: every reaper has passed many times.
    sleep(lease * 2).await;
    release.send_replace(true);

    let view = wait_settled(&*inner, run.run_id, Duration::from_secs(30)).await;
    assert_eq!(view.state, JobState::Completed);
    let mut reaped = 0;
    for worker in workers {
        reaped += worker.shutdown().await.stats.reaped;
    }
    let events = all_events(&*inner, run.run_id).await;
    let expired: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::LeaseExpired)
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(expired, Vec::<&str>::new(), "no live task was taken back");
    assert_eq!(reaped, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 4, "one paid call per task");
    let tree = assert_consistent(&*inner, run.run_id).await;
    for t in tree.nodes.iter().filter(|n| n.key.starts_with('p')) {
        assert_eq!(t.attempts, 1, "{}: its first attempt completed", t.key);
    }
}

async fn renew<S: JobStore>(store: &S, worker: WorkerId, lease: Duration) -> bool {
    store.heartbeat(worker, lease, None).await.unwrap().alive
}

fn registration(id: WorkerId, lease: Duration) -> WorkerRegistration {
    WorkerRegistration {
        id,
        name: "outage".into(),
        kinds: vec!["paid".into()],
        ttl: lease,
    }
}

/// Heartbeats `workers` every quarter lease for `span`.
async fn keep_alive<S: JobStore>(store: &S, workers: &[WorkerId], lease: Duration, span: Duration) {
    let beats = (span.as_millis() / (lease / 4).as_millis()).max(1);
    for _ in 0..beats {
        for w in workers {
            assert!(renew(store, *w, lease).await, "{w} stays alive");
        }
        sleep(lease / 4).await;
    }
}

/// The store's part, step by step, with a lease of 6 s (every step keeps at least a quarter
/// lease of slack, so a loaded machine's delays do not decide the outcome): a reaper reaps only once its own
/// registration has been alive without a gap for a lease.
///
/// - A reaper that has just registered takes nothing back, though a peer's registration
///   expired (after an outage, every reaper's registration is new).
/// - An outage shorter than the lease can expire a peer whose last heartbeat came earlier
///   than the reaper's, while the reaper's registration stays alive: the reaper's next
///   heartbeat comes more than half a lease after its previous one, and it waits a lease
///   again. Meanwhile the peer registers again and still holds its task.
/// - A peer that really stopped is reaped once the reaper has been alive a lease.
pub async fn a_reaper_waits_a_lease_after_its_own_registration_lapsed<S: JobStore>(store: Arc<S>) {
    let lease = Duration::from_secs(6);
    let peer = WorkerId::new();
    let reaper = WorkerId::new();
    for w in [reaper, peer] {
        store
            .register_worker(&registration(w, lease))
            .await
            .unwrap();
    }
    let run = store
        .submit(
            &Graph::new(RunSpec::new("t", owner()))
                .with(NodeSpec::task("p", "paid", json!({})).max_attempts(3)),
        )
        .await
        .unwrap();
    let task = claim(&*store, peer, &["paid"], 1).await;
    assert_eq!(task.len(), 1);
    let fence = task[0].fence;

    // The peer's registration expires while the reaper's is kept alive.
    keep_alive(&*store, &[reaper], lease, lease + lease / 4).await;
    let newcomer = WorkerId::new();
    store
        .register_worker(&registration(newcomer, lease))
        .await
        .unwrap();
    assert_eq!(
        store.reap_expired(newcomer, 100).await.unwrap(),
        0,
        "a reaper that has just registered takes nothing back"
    );
    assert!(
        !renew(&*store, peer, lease).await,
        "the peer's lease lapsed"
    );
    store
        .register_worker(&registration(peer, lease))
        .await
        .unwrap();
    assert_eq!(
        store.still_held(&[fence]).await.unwrap(),
        vec![fence.job_id]
    );

    // An outage shorter than the lease: the peer heartbeats, the reaper half a lease later,
    // then neither can for a while. The peer's registration expires, the reaper's not: its
    // heartbeats are 0.5 and 0.6 leases apart (delays only lengthen them, with 0.4 leases of
    // slack before it would expire), more than half a lease, so it waits a lease again.
    assert!(renew(&*store, reaper, lease).await);
    assert!(renew(&*store, peer, lease).await);
    sleep(lease / 2).await;
    assert!(renew(&*store, reaper, lease).await);
    sleep(lease / 2 + lease / 10).await;
    assert!(
        renew(&*store, reaper, lease).await,
        "the reaper's lease held"
    );
    assert_eq!(
        store.reap_expired(reaper, 100).await.unwrap(),
        0,
        "the reaper's heartbeats had a gap: it waits a lease before it reaps"
    );
    // The peer comes back: its registration had expired, and its task is still its own.
    assert!(
        !renew(&*store, peer, lease).await,
        "the peer's lease lapsed"
    );
    store
        .register_worker(&registration(peer, lease))
        .await
        .unwrap();
    assert_eq!(
        store.still_held(&[fence]).await.unwrap(),
        vec![fence.job_id],
        "the peer still holds its task"
    );
    keep_alive(&*store, &[reaper, peer], lease, lease + lease / 4).await;
    assert_eq!(store.reap_expired(reaper, 100).await.unwrap(), 0);

    // The peer stops for good: it is reaped once its registration expired.
    keep_alive(&*store, &[reaper], lease, lease + lease / 4).await;
    assert_eq!(store.reap_expired(reaper, 100).await.unwrap(), 1);
    let view = store.job(fence.job_id).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Ready);
    assert_consistent(&*store, run.run_id).await;
}

/// The store refuses a worker's finishes for a while with an error it does not count as
/// passing (as a database that turned read-only in a failover did). The worker keeps the
/// task's lease and writes the finish again on a backoff timer: once the store takes writes
/// again, the task completes with its handler's outcome. Before, the refused finish was kept
/// until the process stopped, and the task stayed running all that time: its run never
/// settled and its class's running slot stayed taken.
pub async fn finishes_the_store_refused_are_written_again<S: JobStore>(store: Arc<S>) {
    let inner = store;
    let store = Arc::new(Interposed::new(inner.clone()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (release, waiting) = watch::channel(false);
    let worker = super::start(&store, paid_registry(&calls, &waiting), fast_config()).await;
    let run = inner
        .submit(
            &Graph::new(RunSpec::new("t", owner()))
                .with(NodeSpec::task("p", "paid", json!({})).max_attempts(1)),
        )
        .await
        .unwrap();
    wait_for("the handler to start", Duration::from_secs(20), || {
        let calls = calls.clone();
        async move { calls.load(Ordering::SeqCst) == 1 }
    })
    .await;
    store.set_refusing(true);
    release.send_replace(true);
    // The finish, then the plain failure written instead, are refused; the task stays running.
    sleep(Duration::from_millis(2500)).await;
    let view = inner.job(run.ids["p"]).await.unwrap().unwrap();
    assert_eq!(view.state, JobState::Running, "nothing could be written");
    store.set_refusing(false);
    let view = wait_settled(&*inner, run.run_id, Duration::from_secs(30)).await;
    assert_eq!(view.state, JobState::Completed);
    let task = inner.job(run.ids["p"]).await.unwrap().unwrap();
    assert_eq!(
        task.result,
        Some(json!("made")),
        "the handler's own outcome"
    );
    assert_eq!(task.attempts, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one paid call");
    worker.shutdown().await;
}
