//! What a resume leaves cancelled: nothing it queues, and everything when it queues nothing.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::core::{Finish, FinishKind};
use crate::{Expansion, Graph, JobId, JobState, JobStore, NodeSpec, RunSpec};

use super::{assert_consistent, claim, key_of, owner, register};

async fn finish<S: JobStore>(store: &S, fence: crate::Fence, kind: FinishKind) {
    let done = store.finish(vec![Finish { fence, kind }]).await.unwrap();
    assert!(done[0].is_ok(), "{done:?}");
}

fn success() -> FinishKind {
    FinishKind::Complete {
        result: json!(1),
        expansion: None,
    }
}

/// A run is cancelled while a task that expands it (a script writing scenes) runs; then a
/// resume targets a task that completed, which queues nothing. The run stays cancelled: the
/// tasks the running script adds are born cancelled, not ready (and charged). Before, the
/// resume cleared the cancellation of the target's groups and the run whatever it queued.
pub async fn a_resume_that_queues_nothing_leaves_the_cancellation<S: JobStore>(store: Arc<S>) {
    let worker = register(&*store).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::group("episode", "episode"))
        .with(
            NodeSpec::task("outline", "outline", json!({}))
                .parent("episode")
                .cost(1),
        )
        .with(
            NodeSpec::task("script", "script", json!({}))
                .parent("episode")
                .cost(2),
        );
    let run = store.submit(&graph).await.unwrap();
    let outline = claim(&*store, worker, &["outline"], 1).await.remove(0);
    finish(&*store, outline.fence, success()).await;
    let script = claim(&*store, worker, &["script"], 1).await.remove(0);
    let report = store.cancel(run.run_id, "user").await.unwrap();
    assert_eq!((report.cancelled, report.signalled), (0, 1));
    let resumed = store.resume(run.ids["outline"]).await.unwrap();
    assert_eq!(resumed.queued, 0);
    let told = store
        .heartbeat(worker, Duration::from_secs(60), None)
        .await
        .unwrap()
        .cancel_requested;
    assert_eq!(told, vec![script.fence.job_id], "still cancelled");
    // The script finishes its paid call and adds the scenes.
    let expansion = Expansion::new()
        .with(
            NodeSpec::task("scene-1", "image", json!({}))
                .parent("episode")
                .cost(5),
        )
        .with(NodeSpec::task("scene-2", "image", json!({})).cost(5));
    finish(
        &*store,
        script.fence,
        FinishKind::Complete {
            result: json!("script"),
            expansion: Some(expansion),
        },
    )
    .await;
    let tree = assert_consistent(&*store, run.run_id).await;
    for key in ["scene-1", "scene-2"] {
        assert_eq!(
            key_of(&tree, key).state,
            JobState::Cancelled,
            "{key} is born cancelled"
        );
    }
    assert!(claim(&*store, worker, &["image"], 10).await.is_empty());
    let root = store.job(run.run_id).await.unwrap().unwrap();
    assert_eq!(root.state, JobState::Cancelled);
    assert_eq!(
        root.costs.unwrap().charged,
        3,
        "the outline and the script, not the scenes"
    );
}

/// A resume queues a task (`board`, in its own group) whose prerequisite (`portrait`, in
/// another group, outside what was resumed) is still running under a cancellation. The
/// prerequisite's cancellation is withdrawn with its groups', so when it ends retried it is
/// queued again and runs, and the task the resume queued runs after it. Before, the
/// prerequisite ended cancelled and cancelled the queued task again.
pub async fn a_resume_withdraws_the_cancellation_of_running_prerequisites<S: JobStore>(
    store: Arc<S>,
) {
    let worker = register(&*store).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::group("characters", "characters"))
        .with(NodeSpec::group("episode", "episode"))
        .with(
            NodeSpec::task("portrait", "portrait", json!({}))
                .parent("characters")
                .max_attempts(3),
        )
        .with(
            NodeSpec::task("board", "board", json!({}))
                .parent("episode")
                .after(["portrait"])
                .max_attempts(3),
        );
    let run = store.submit(&graph).await.unwrap();
    let portrait = claim(&*store, worker, &["portrait"], 1).await.remove(0);
    let report = store.cancel(run.run_id, "user").await.unwrap();
    assert_eq!((report.cancelled, report.signalled), (1, 1));
    let resumed = store.resume(run.ids["episode"]).await.unwrap();
    assert_eq!(resumed.queued, 1, "the board waits for its portrait");
    let told = store
        .heartbeat(worker, Duration::from_secs(60), None)
        .await
        .unwrap()
        .cancel_requested;
    assert_eq!(
        told,
        Vec::<JobId>::new(),
        "the portrait's cancellation is withdrawn"
    );
    // The portrait's attempt fails for a passing reason: it is queued again, not cancelled.
    finish(
        &*store,
        portrait.fence,
        FinishKind::Retry {
            error: "timeout".into(),
            delay: Duration::ZERO,
        },
    )
    .await;
    let again = claim(&*store, worker, &["portrait"], 1).await;
    assert_eq!(again.len(), 1, "the portrait runs again");
    finish(&*store, again[0].fence, success()).await;
    let board = claim(&*store, worker, &["board"], 1).await;
    assert_eq!(board.len(), 1, "the board the resume queued runs");
    finish(&*store, board[0].fence, success()).await;
    let root = store.job(run.run_id).await.unwrap().unwrap();
    assert_eq!(root.state, JobState::Completed);
    assert_consistent(&*store, run.run_id).await;
}

/// A task whose attempt kept its charge (its provider billed an answer that could not be used)
/// fails without becoming refundable, while a plain failure and the tasks skipped after it are;
/// the charge stays kept through a resume and the next failure, so no refund ever returns it.
pub async fn a_failure_that_kept_its_charge_is_not_refunded<S: JobStore>(store: Arc<S>) {
    let worker = register(&*store).await;
    let graph = Graph::new(RunSpec::new("t", owner()))
        .with(NodeSpec::task("kept", "script", json!({})).cost(5))
        .with(
            NodeSpec::task("after", "image", json!({}))
                .after(["kept"])
                .cost(7),
        )
        .with(NodeSpec::task("plain", "other", json!({})).cost(3));
    let run = store.submit(&graph).await.unwrap();
    let fail = || FinishKind::Fail {
        error: "the answer breaks the rules".into(),
    };
    let kept = claim(&*store, worker, &["script"], 1).await.remove(0);
    store
        .checkpoint(
            &kept.fence,
            &json!({"product": 1, crate::CHARGE_KEPT: true}),
        )
        .await
        .unwrap();
    finish(&*store, kept.fence, fail()).await;
    let plain = claim(&*store, worker, &["other"], 1).await.remove(0);
    finish(&*store, plain.fence, fail()).await;
    let tree = assert_consistent(&*store, run.run_id).await;
    assert_eq!(key_of(&tree, "kept").state, JobState::Failed);
    assert_eq!(key_of(&tree, "after").state, JobState::Skipped);
    let costs = store.job(run.run_id).await.unwrap().unwrap().costs.unwrap();
    assert_eq!((costs.total, costs.refundable), (15, 7 + 3));
    assert_eq!(store.take_refund(run.run_id).await.unwrap(), 10);

    // Resumed, the task still holds its kept charge: failing again refunds nothing of it.
    assert_eq!(store.resume(run.ids["kept"]).await.unwrap().queued, 2);
    let again = claim(&*store, worker, &["script"], 1).await.remove(0);
    assert!(
        again.checkpoint.as_ref().is_some_and(crate::charge_kept),
        "{:?}",
        again.checkpoint
    );
    finish(&*store, again.fence, fail()).await;
    assert_consistent(&*store, run.run_id).await;
    let costs = store.job(run.run_id).await.unwrap().unwrap().costs.unwrap();
    assert_eq!(costs.refundable, 7 + 3);
}
