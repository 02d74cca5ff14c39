//! Idempotent submissions, events, queries and pruning.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use serde_json::json;
use tokio::time::Instant;

use crate::{
    EventKind, Graph, GraphError, JobError, JobId, JobState, JobStore, NodeSpec, NodeType,
    RunFilter, RunSpec,
};

use super::{all_events, check_tree, fast_config, noop_registry, owner, start, wait_settled};

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
    // A key names its run for a limited time: found inside the window, given up after it.
    let day = Duration::from_secs(24 * 3600);
    let found = store.keyed_run(who, "req-1", day).await.unwrap().unwrap();
    assert_eq!(found.run_id, first.run_id);
    assert!(
        store
            .keyed_run(who, "req-unknown", day)
            .await
            .unwrap()
            .is_none()
    );
    let expiring =
        Graph::new(spec.clone().idempotency_key("req-2")).with(NodeSpec::task("a", "k", json!({})));
    let old = store.submit(&expiring).await.unwrap();
    assert!(
        store
            .keyed_run(who, "req-2", Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
    let view = store.job(old.run_id).await.unwrap().unwrap();
    assert_eq!(
        view.idempotency_key, None,
        "the expired run gave its key up"
    );
    let fresh = store.submit(&expiring).await.unwrap();
    assert!(fresh.created, "an expired key starts a new run");
    assert_ne!(fresh.run_id, old.run_id);
    let found = store
        .keyed_run(who, "req-2", Duration::MAX)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.run_id, fresh.run_id);
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
    assert_eq!(
        scoped,
        events
            .iter()
            .filter(|e| e.key == "a" || e.key == "g")
            .cloned()
            .collect::<Vec<_>>(),
        "a scoped read holds every event of the group and the nodes under it, in order"
    );
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

    // The nodes of a subject's runs: the newest run first, its root before its nodes; at
    // most `max_nodes + 1` are read, so a caller can tell a cut answer.
    let subjects = ["d-42".to_owned()];
    let nodes = store
        .nodes_of_subjects(&subjects, Some(who), 10, 100)
        .await
        .unwrap();
    assert_eq!(
        nodes.len(),
        8,
        "the empty run's root and the 7 nodes of the other"
    );
    assert_eq!(nodes[0].id, done.run_id);
    assert_eq!(nodes[1].id, run.run_id);
    let cut = store
        .nodes_of_subjects(&subjects, Some(who), 10, 3)
        .await
        .unwrap();
    assert_eq!(cut.len(), 4);
    let theirs = store
        .nodes_of_subjects(&subjects, Some(owner()), 10, 100)
        .await
        .unwrap();
    assert!(theirs.is_empty(), "another owner's runs are not read");

    // Lists of runs read a few children of each run, or small runs whole, together.
    let firsts = store
        .first_children(&[run.ids["e1"], run.run_id, done.run_id], 2)
        .await
        .unwrap();
    let mut keys: Vec<&str> = firsts.iter().map(|c| c.key.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["c0", "c1", "e1"],
        "two of e1's five, the run's one, none"
    );
    let whole = store
        .nodes_of_runs(&[run.run_id, done.run_id], 100)
        .await
        .unwrap();
    assert_eq!(whole.len(), 8, "7 nodes and the empty run's root");
    assert!(
        whole
            .iter()
            .all(|n| n.run_id == run.run_id || n.run_id == done.run_id)
    );
    let cut = store.nodes_of_runs(&[run.run_id], 3).await.unwrap();
    assert_eq!(cut.len(), 4, "at most max_nodes + 1");
    assert!(store.first_children(&[], 2).await.unwrap().is_empty());
    assert!(store.nodes_of_runs(&[], 2).await.unwrap().is_empty());
}

pub async fn prune_removes_settled_runs<S: JobStore>(store: Arc<S>) {
    // Older than the settled run and never settled (no worker takes its kind): a prune that
    // walks runs oldest first steps over it, even when it may remove one run only.
    let earlier = store
        .submit(&Graph::new(RunSpec::new("t", owner())).with(NodeSpec::task(
            "a",
            "nobody-runs-this",
            json!({}),
        )))
        .await
        .unwrap();
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
        .prune(settled_at + chrono::Duration::milliseconds(1), 1)
        .await
        .unwrap();
    assert_eq!((report.runs, report.nodes), (1, 2));
    assert!(
        store.job(earlier.run_id).await.unwrap().is_some(),
        "an older active run stays"
    );
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

    // A run that failed with a refund still owed stays until the refund is taken.
    let mut registry = noop_registry(&["k"]);
    registry.register("bad", |_ctx: crate::JobContext| async move {
        crate::Outcome::fail("refused")
    });
    let worker = start(&store, registry, fast_config()).await;
    let owed = store
        .submit(
            &Graph::new(RunSpec::new("t", owner()))
                .with(NodeSpec::task("a", "bad", json!({})).cost(7)),
        )
        .await
        .unwrap();
    wait_settled(&*store, owed.run_id, Duration::from_secs(20)).await;
    worker.shutdown().await;
    let root = store.job(owed.run_id).await.unwrap().unwrap();
    let later = root.finished_at.unwrap() + chrono::Duration::seconds(1);
    let report = store.prune(later, 100).await.unwrap();
    assert!(
        store.job(owed.run_id).await.unwrap().is_some(),
        "a run owing a refund stays ({report:?})"
    );
}
