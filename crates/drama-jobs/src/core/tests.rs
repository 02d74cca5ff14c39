//! Unit tests of the transition rules on in-memory rows.

use std::collections::HashMap;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use super::*;
use crate::graph::{Expansion, Graph, NodeSpec, RunSpec};
use crate::ids::{Fence, WorkerId};
use crate::state::NodeType;

struct Rows {
    tasks: HashMap<JobId, TaskRow>,
    groups: HashMap<JobId, GroupRow>,
    order: Vec<(JobId, NodeType)>,
    run: RunId,
}

impl RowSource for Rows {
    fn task(&self, id: JobId) -> Option<TaskRow> {
        self.tasks.get(&id).cloned()
    }
    fn group(&self, id: JobId) -> Option<GroupRow> {
        self.groups.get(&id).cloned()
    }
    fn run_nodes(&self, run: RunId) -> Option<Vec<(JobId, NodeType)>> {
        (run == self.run).then(|| self.order.clone())
    }
    fn run_identity(&self, _: RunId) -> Option<(Uuid, Option<String>)> {
        Some((Uuid::nil(), None))
    }
}

impl Rows {
    fn apply(&mut self, changes: Changes) {
        for n in &changes.new_nodes {
            self.order.push((n.id, n.node_type));
        }
        for t in changes.tasks {
            self.tasks.insert(t.id, t);
        }
        for g in changes.groups {
            self.groups.insert(g.id, g);
        }
        for (d, p) in changes.new_edges {
            let pt = self.tasks.get_mut(&p).unwrap();
            if !pt.dependents.contains(&d) {
                pt.dependents.push(d);
            }
            let dt = self.tasks.get_mut(&d).unwrap();
            if !dt.prerequisites.contains(&p) {
                dt.prerequisites.push(p);
            }
        }
        let tasks: Vec<TaskRow> = self.tasks.values().cloned().collect();
        let groups: Vec<GroupRow> = self.groups.values().cloned().collect();
        check_invariants(&tasks, &groups).unwrap();
    }

    fn id(&self, key: &str) -> JobId {
        self.tasks
            .values()
            .find(|t| t.key == key)
            .map(|t| t.id)
            .or_else(|| self.groups.values().find(|g| g.key == key).map(|g| g.id))
            .unwrap()
    }

    fn state(&self, key: &str) -> JobState {
        let id = self.id(key);
        self.tasks
            .get(&id)
            .map(|t| t.state)
            .or_else(|| self.groups.get(&id).map(|g| g.state))
            .unwrap()
    }
}

fn new_run(graph: &Graph) -> Rows {
    let run = JobId::new();
    let mut ws = Workset::new(&EmptySource, Utc::now());
    ws.submit(graph, run).unwrap();
    let mut rows = Rows {
        tasks: HashMap::new(),
        groups: HashMap::new(),
        order: Vec::new(),
        run,
    };
    rows.apply(ws.into_changes());
    rows
}

fn start(rows: &mut Rows, key: &str, worker: WorkerId) -> Fence {
    let id = rows.id(key);
    let (changes, started) = apply_claims(rows, Utc::now(), &[id], worker, 1).unwrap();
    assert_eq!(started, vec![id], "{key} should start");
    rows.apply(changes);
    let t = &rows.tasks[&id];
    Fence {
        job_id: id,
        run_id: t.run_id,
        epoch: t.epoch,
    }
}

fn finish(rows: &mut Rows, fence: Fence, kind: FinishKind) -> Result<(), JobError> {
    let (changes, mut results) =
        apply_finishes(rows, Utc::now(), &[Finish { fence, kind }]).unwrap();
    rows.apply(changes);
    results.remove(0)
}

fn ok(result: i64) -> FinishKind {
    FinishKind::Complete {
        result: json!(result),
        expansion: None,
    }
}

fn diamond() -> Graph {
    Graph::new(RunSpec::new("test", Uuid::nil()).budget(100))
        .with(NodeSpec::group("g", "grp"))
        .with(NodeSpec::task("a", "k", json!(1)).cost(5))
        .with(
            NodeSpec::task("b", "k", json!(2))
                .after(["a"])
                .parent("g")
                .cost(7),
        )
        .with(NodeSpec::task("c", "k", json!(3)).after(["a"]).parent("g"))
        .with(
            NodeSpec::task("d", "k", json!(4))
                .after(["b", "c"])
                .cost(11),
        )
}

#[test]
fn completions_release_dependents_and_roll_counts_up() {
    let mut rows = new_run(&diamond());
    let w = WorkerId::new();
    assert_eq!(rows.state("a"), JobState::Ready);
    assert_eq!(rows.state("d"), JobState::Waiting);
    let fa = start(&mut rows, "a", w);
    assert_eq!(rows.groups[&rows.run].state, JobState::Running);
    finish(&mut rows, fa, ok(1)).unwrap();
    assert_eq!(rows.state("b"), JobState::Ready);
    let fb = start(&mut rows, "b", w);
    let fc = start(&mut rows, "c", w);
    finish(&mut rows, fb, ok(2)).unwrap();
    assert_eq!(rows.state("d"), JobState::Waiting);
    finish(&mut rows, fc, ok(3)).unwrap();
    assert_eq!(rows.state("g"), JobState::Completed);
    let fd = start(&mut rows, "d", w);
    finish(&mut rows, fd, ok(4)).unwrap();
    let root = &rows.groups[&rows.run];
    assert_eq!(root.state, JobState::Completed);
    assert_eq!(root.counts.completed, 4);
    assert_eq!(root.costs.charged, 23);
    assert_eq!(root.costs.refundable, 0);
}

#[test]
fn stale_fences_change_nothing() {
    let mut rows = new_run(&diamond());
    let w = WorkerId::new();
    let first = start(&mut rows, "a", w);
    let before = rows.tasks.clone();
    let stale = Fence {
        epoch: first.epoch - 1,
        ..first
    };
    assert!(matches!(
        finish(&mut rows, stale, ok(9)),
        Err(JobError::FenceLost(_))
    ));
    assert_eq!(rows.tasks, before);
    finish(&mut rows, first, ok(1)).unwrap();
    assert!(matches!(
        finish(&mut rows, first, ok(1)),
        Err(JobError::FenceLost(_))
    ));
}

#[test]
fn failures_skip_dependents_and_become_refundable() {
    let mut rows = new_run(&diamond());
    let w = WorkerId::new();
    let fa = start(&mut rows, "a", w);
    finish(&mut rows, fa, ok(1)).unwrap();
    let fb = start(&mut rows, "b", w);
    finish(
        &mut rows,
        fb,
        FinishKind::Fail {
            error: "boom".into(),
        },
    )
    .unwrap();
    assert_eq!(rows.state("b"), JobState::Failed);
    assert_eq!(rows.state("d"), JobState::Skipped);
    assert_eq!(
        rows.state("c"),
        JobState::Ready,
        "independent work continues"
    );
    let fc = start(&mut rows, "c", w);
    finish(&mut rows, fc, ok(3)).unwrap();
    let root = &rows.groups[&rows.run];
    assert_eq!(root.state, JobState::Failed);
    assert_eq!(root.costs.refundable, 18);
    assert!(
        rows.tasks[&rows.id("d")]
            .error
            .as_deref()
            .unwrap()
            .contains("`b`")
    );
}

#[test]
fn retries_use_attempts_and_deferrals_do_not() {
    let g = Graph::new(RunSpec::new("t", Uuid::nil()))
        .with(NodeSpec::task("a", "k", json!(1)).max_attempts(2));
    let mut rows = new_run(&g);
    let w = WorkerId::new();
    let f = start(&mut rows, "a", w);
    finish(
        &mut rows,
        f,
        FinishKind::Defer {
            reason: "429".into(),
            delay: Duration::ZERO,
        },
    )
    .unwrap();
    assert_eq!(rows.tasks[&rows.id("a")].attempts, 0);
    let f = start(&mut rows, "a", w);
    finish(
        &mut rows,
        f,
        FinishKind::Retry {
            error: "e1".into(),
            delay: Duration::ZERO,
        },
    )
    .unwrap();
    assert_eq!(rows.state("a"), JobState::Ready);
    let f = start(&mut rows, "a", w);
    finish(
        &mut rows,
        f,
        FinishKind::Retry {
            error: "e2".into(),
            delay: Duration::ZERO,
        },
    )
    .unwrap();
    assert_eq!(rows.state("a"), JobState::Failed);
    assert_eq!(
        rows.tasks[&rows.id("a")].error.as_deref(),
        Some("e2 (attempt 2 of 2)")
    );
}

#[test]
fn budgets_cancel_what_would_overspend() {
    let g = Graph::new(RunSpec::new("t", Uuid::nil()).budget(10))
        .with(NodeSpec::task("a", "k", json!(1)).cost(6))
        .with(NodeSpec::task("b", "k", json!(1)).cost(6))
        .with(NodeSpec::task("c", "k", json!(1)).after(["b"]));
    let mut rows = new_run(&g);
    let w = WorkerId::new();
    start(&mut rows, "a", w);
    let (changes, started) = apply_claims(&rows, Utc::now(), &[rows.id("b")], w, 1).unwrap();
    rows.apply(changes);
    assert!(started.is_empty());
    assert_eq!(rows.state("b"), JobState::Cancelled);
    assert_eq!(rows.state("c"), JobState::Cancelled);
    assert!(
        rows.tasks[&rows.id("b")]
            .error
            .as_deref()
            .unwrap()
            .contains("budget")
    );
}

#[test]
fn a_paid_task_that_ends_unsuccessful_still_counts_against_the_budget() {
    // `a` (6) is paid for (its render was accepted) and then fails for good; `b` (6) comes after a
    // free task. A budget of 10 holds `a`'s 6, so `b` would overspend it.
    let g = Graph::new(RunSpec::new("t", Uuid::nil()).budget(10))
        .with(NodeSpec::task("a", "k", json!(1)).cost(6))
        .with(NodeSpec::task("x", "k", json!(1)))
        .with(NodeSpec::task("b", "k", json!(1)).cost(6).after(["x"]));
    let mut rows = new_run(&g);
    let w = WorkerId::new();
    let fa = start(&mut rows, "a", w);
    let a = rows.id("a");
    rows.tasks.get_mut(&a).unwrap().spent = true;
    finish(
        &mut rows,
        fa,
        FinishKind::Fail {
            error: "the render was lost".into(),
        },
    )
    .unwrap();
    assert_eq!(rows.state("a"), JobState::Failed);
    let run = rows.run;
    assert_eq!(rows.groups[&run].costs.charged, 6, "a stays paid for");
    assert_eq!(rows.groups[&run].costs.refundable, 0);
    let fx = start(&mut rows, "x", w);
    finish(&mut rows, fx, ok(1)).unwrap();
    let (changes, started) = apply_claims(&rows, Utc::now(), &[rows.id("b")], w, 1).unwrap();
    rows.apply(changes);
    assert!(started.is_empty(), "b would take the run to 12 of 10");
    assert_eq!(rows.state("b"), JobState::Cancelled);
    assert!(
        rows.tasks[&rows.id("b")]
            .error
            .as_deref()
            .unwrap()
            .contains("budget")
    );
    assert_eq!(rows.groups[&run].costs.charged, 6);
}

#[test]
fn cancel_and_resume_a_group() {
    let mut rows = new_run(&diamond());
    let w = WorkerId::new();
    let fa = start(&mut rows, "a", w);
    finish(&mut rows, fa, ok(1)).unwrap();
    let fb = start(&mut rows, "b", w);
    let (run, g) = (rows.run, rows.id("g"));
    let mut ws = Workset::new(&rows, Utc::now());
    assert_eq!(ws.cancel(run, g, "user").unwrap(), (1, 1));
    let changes = ws.into_changes();
    rows.apply(changes);
    assert_eq!(rows.state("c"), JobState::Cancelled);
    assert_eq!(
        rows.state("d"),
        JobState::Cancelled,
        "dependents outside follow"
    );
    assert!(rows.tasks[&rows.id("b")].cancel_requested);
    // The running task sees the cancellation and stops.
    finish(
        &mut rows,
        fb,
        FinishKind::Retry {
            error: "stopped".into(),
            delay: Duration::ZERO,
        },
    )
    .unwrap();
    assert_eq!(rows.state("b"), JobState::Cancelled);
    assert_eq!(rows.groups[&run].state, JobState::Cancelled);
    let mut ws = Workset::new(&rows, Utc::now());
    assert_eq!(ws.resume(run, run).unwrap(), 3);
    let changes = ws.into_changes();
    rows.apply(changes);
    assert_eq!(
        rows.state("a"),
        JobState::Completed,
        "completed never reruns"
    );
    assert_eq!(rows.state("b"), JobState::Ready);
    assert_eq!(rows.state("d"), JobState::Waiting);
    assert_eq!(rows.groups[&run].state, JobState::Running);
}

#[test]
fn expansions_add_nodes_and_edges_atomically() {
    let g = Graph::new(RunSpec::new("t", Uuid::nil()))
        .with(NodeSpec::group("ep", "episode"))
        .with(NodeSpec::task("write", "k", json!(1)).parent("ep"))
        .with(
            NodeSpec::task("stitch", "k", json!(1))
                .parent("ep")
                .after(["write"]),
        );
    let mut rows = new_run(&g);
    let w = WorkerId::new();
    let f = start(&mut rows, "write", w);
    let expansion = Expansion::new()
        .with(NodeSpec::task("clip1", "k", json!(1)).parent("ep"))
        .with(
            NodeSpec::task("clip2", "k", json!(1))
                .parent("ep")
                .after(["write"]),
        )
        .add_dependency("stitch", "clip1")
        .add_dependency("stitch", "clip2");
    finish(
        &mut rows,
        f,
        FinishKind::Complete {
            result: json!("scenes"),
            expansion: Some(expansion),
        },
    )
    .unwrap();
    assert_eq!(rows.state("stitch"), JobState::Waiting);
    assert_eq!(rows.tasks[&rows.id("stitch")].deps_remaining, 2);
    assert_eq!(rows.groups[&rows.id("ep")].counts.total, 4);
    for k in ["clip1", "clip2"] {
        let f = start(&mut rows, k, w);
        finish(&mut rows, f, ok(1)).unwrap();
    }
    assert_eq!(rows.state("stitch"), JobState::Ready);
    // An expansion that closes a cycle fails its task and writes nothing else.
    let f = start(&mut rows, "stitch", w);
    let bad = Expansion::new()
        .with(NodeSpec::task("x", "k", json!(1)))
        .add_dependency("clip1", "x");
    finish(
        &mut rows,
        f,
        FinishKind::Complete {
            result: json!(1),
            expansion: Some(bad),
        },
    )
    .unwrap();
    assert_eq!(rows.state("stitch"), JobState::Failed);
    assert!(rows.tasks.values().all(|t| t.key != "x"));
}

#[test]
fn a_cancel_after_the_provider_accepted_is_not_refunded_and_resumes_are_priced() {
    let mut rows = new_run(&diamond());
    let w = WorkerId::new();
    let fa = start(&mut rows, "a", w);
    finish(&mut rows, fa, ok(1)).unwrap();
    let fb = start(&mut rows, "b", w);
    // `b` saved a checkpoint: its provider accepted the call.
    let b = rows.id("b");
    rows.tasks.get_mut(&b).unwrap().spent = true;
    let run = rows.run;
    let mut ws = Workset::new(&rows, Utc::now());
    ws.cancel(run, run, "user").unwrap();
    let changes = ws.into_changes();
    rows.apply(changes);
    finish(
        &mut rows,
        fb,
        FinishKind::Cancelled {
            reason: "cancelled".into(),
        },
    )
    .unwrap();
    assert_eq!(rows.state("b"), JobState::Cancelled);
    // `d` (11) never started and is refunded; `b` (7) was paid for; `c` costs nothing.
    assert_eq!(rows.groups[&run].costs.refundable, 11);
    let mut ws = Workset::new(&rows, Utc::now());
    assert_eq!(ws.take_refund(run).unwrap(), 11);
    let changes = ws.into_changes();
    rows.apply(changes);

    // The resume re-queues b, c and d and costs what is refundable of them: d's 11 (b goes on
    // with the provider job it already paid for). Nothing is left to claw back.
    let mut ws = Workset::new(&rows, Utc::now());
    assert_eq!(ws.resume_priced(run, run).unwrap(), (3, 11));
    let changes = ws.into_changes();
    rows.apply(changes);
    assert_eq!(rows.state("b"), JobState::Ready);
    let mut ws = Workset::new(&rows, Utc::now());
    assert_eq!(
        ws.take_refund(run).unwrap(),
        0,
        "no claw-back after a paid resume"
    );
}

#[test]
fn a_failure_after_the_provider_accepted_is_charged_and_its_resume_is_free() {
    let mut rows = new_run(&diamond());
    let w = WorkerId::new();
    let fa = start(&mut rows, "a", w);
    finish(&mut rows, fa, ok(1)).unwrap();
    let fb = start(&mut rows, "b", w);
    // `b` saved a checkpoint (a render the provider accepted), then failed for good.
    let b = rows.id("b");
    rows.tasks.get_mut(&b).unwrap().spent = true;
    finish(
        &mut rows,
        fb,
        FinishKind::Fail {
            error: "the provider could not be reached".into(),
        },
    )
    .unwrap();
    assert_eq!(rows.state("b"), JobState::Failed);
    assert_eq!(rows.state("d"), JobState::Skipped);
    let run = rows.run;
    // `d` (11) never ran and is refunded; `b` (7) was paid for.
    assert_eq!(rows.groups[&run].costs.refundable, 11);
    let mut ws = Workset::new(&rows, Utc::now());
    assert_eq!(ws.take_refund(run).unwrap(), 11);
    let changes = ws.into_changes();
    rows.apply(changes);
    // The resume costs d's 11 only: b goes on with the render it paid for.
    let mut ws = Workset::new(&rows, Utc::now());
    assert_eq!(ws.resume_priced(run, run).unwrap(), (2, 11));
    let changes = ws.into_changes();
    rows.apply(changes);
    assert_eq!(rows.state("b"), JobState::Ready);
    let mut ws = Workset::new(&rows, Utc::now());
    assert_eq!(ws.take_refund(run).unwrap(), 0);
}

fn settle(rows: &mut Rows, fence: Fence, actual: i64) -> Result<i64, CoreError> {
    let mut ws = Workset::new(&*rows, Utc::now());
    let back = ws.settle_cost(&fence, actual)?;
    let changes = ws.into_changes();
    rows.apply(changes);
    Ok(back)
}

#[test]
fn settling_lowers_a_running_task_cost_once_and_never_raises_it() {
    let mut rows = new_run(&diamond());
    let w = WorkerId::new();
    let fa = start(&mut rows, "a", w);
    // Usage above the cost is capped: nothing changes.
    assert_eq!(settle(&mut rows, fa, 9).unwrap(), 0);
    assert_eq!(rows.tasks[&fa.job_id].cost, 5);
    assert_eq!(settle(&mut rows, fa, 2).unwrap(), 3);
    // Settling again (a commit retried) gives nothing more back.
    assert_eq!(settle(&mut rows, fa, 2).unwrap(), 0);
    let root = &rows.groups[&rows.run];
    assert_eq!((root.costs.total, root.costs.charged), (23 - 3, 2));
    finish(&mut rows, fa, ok(1)).unwrap();
    // A settled fence that is gone settles nothing.
    assert!(matches!(
        settle(&mut rows, fa, 0),
        Err(CoreError::Job(JobError::FenceLost(_)))
    ));
    // A settled task that fails later is refunded what is left of its cost.
    let fb = start(&mut rows, "b", w);
    assert_eq!(settle(&mut rows, fb, 4).unwrap(), 3);
    finish(
        &mut rows,
        fb,
        FinishKind::Fail {
            error: "boom".into(),
        },
    )
    .unwrap();
    let root = &rows.groups[&rows.run];
    assert_eq!(root.costs.refundable, 4 + 11);
    assert_eq!(root.costs.total, 23 - 3 - 3);
}
