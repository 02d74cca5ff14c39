//! Scenarios every job store must pass, driven through the public port and the worker
//! runtime. `drama-jobs` runs them on [`MemoryJobStore`](crate::MemoryJobStore) with paused
//! time; `drama-postgres` runs them on PostgreSQL.
//!
//! ```text
//! macro_rules! case {
//!     ($name:ident) => {
//!         #[tokio::test(start_paused = true)]
//!         async fn $name() {
//!             drama_jobs::conformance::$name(Arc::new(MemoryJobStore::with_invariant_checks())).await;
//!         }
//!     };
//! }
//! drama_jobs::for_each_job_scenario!(case);
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::{Instant, sleep};
use uuid::Uuid;

use crate::{
    Backoff, ClaimRequest, EventKind, JobId, JobState, JobStore, JobView, NodeType, Outcome,
    Registry, RunId, RunTree, Worker, WorkerConfig, WorkerHandle, WorkerId, WorkerRegistration,
};

mod control;
mod failures;
mod graphs;
mod interpose;
mod leases;
mod limits;
mod outages;
mod queries;
mod resumes;

pub use control::{
    a_resume_withdraws_the_cancellation_of_running_tasks,
    budgets_stop_overspending_and_refunds_are_exact,
    cancel_stops_new_work_and_resume_reruns_only_what_did_not_complete,
    external_completion_claims_are_verified, graceful_shutdown_releases_unstarted_tasks,
    resuming_a_task_of_a_cancelled_run_runs_its_dependents_elsewhere,
};
pub use failures::{
    a_crashed_worker_is_replaced_after_lease_expiry, deferrals_are_bounded_in_number_and_length,
    failures_skip_dependents_and_independent_branches_continue, handler_timeouts_cancel_and_retry,
    panics_count_as_retryable_failures, retries_back_off_and_retry_after_keeps_attempts,
};
pub use graphs::{
    a_thousand_node_dag_completes, dependencies_run_in_order_and_results_flow,
    expansions_extend_a_running_graph, random_dags, random_dags_respect_dependencies,
};
pub use interpose::Interposed;
pub use leases::{
    a_claim_that_commits_during_shutdown_is_released,
    a_claim_whose_answer_was_lost_is_released_at_the_next_heartbeat,
};
pub use limits::{
    priorities_order_claims_and_stale_fences_are_rejected, rate_limits_cap_starts_per_minute,
    resource_limits_hold_across_workers,
};
pub use outages::{
    a_reaper_waits_a_lease_after_its_own_registration_lapsed,
    an_outage_longer_than_the_lease_takes_back_no_running_task,
    finishes_the_store_refused_are_written_again,
};
pub use queries::{
    events_replay_since_an_id_and_notify, idempotent_and_invalid_submissions,
    prune_removes_settled_runs, queries_show_children_trees_and_active_runs,
};
pub use resumes::{
    a_failure_that_kept_its_charge_is_not_refunded,
    a_resume_that_queues_nothing_leaves_the_cancellation,
    a_resume_withdraws_the_cancellation_of_running_prerequisites,
};

/// Calls `$m!(scenario)` for every scenario of this module.
#[macro_export]
macro_rules! for_each_job_scenario {
    ($m:ident) => {
        $m!(dependencies_run_in_order_and_results_flow);
        $m!(a_thousand_node_dag_completes);
        $m!(random_dags_respect_dependencies);
        $m!(failures_skip_dependents_and_independent_branches_continue);
        $m!(retries_back_off_and_retry_after_keeps_attempts);
        $m!(panics_count_as_retryable_failures);
        $m!(a_crashed_worker_is_replaced_after_lease_expiry);
        $m!(cancel_stops_new_work_and_resume_reruns_only_what_did_not_complete);
        $m!(resuming_a_task_of_a_cancelled_run_runs_its_dependents_elsewhere);
        $m!(resource_limits_hold_across_workers);
        $m!(rate_limits_cap_starts_per_minute);
        $m!(expansions_extend_a_running_graph);
        $m!(graceful_shutdown_releases_unstarted_tasks);
        $m!(budgets_stop_overspending_and_refunds_are_exact);
        $m!(idempotent_and_invalid_submissions);
        $m!(events_replay_since_an_id_and_notify);
        $m!(queries_show_children_trees_and_active_runs);
        $m!(prune_removes_settled_runs);
        $m!(external_completion_claims_are_verified);
        $m!(priorities_order_claims_and_stale_fences_are_rejected);
        $m!(handler_timeouts_cancel_and_retry);
        $m!(deferrals_are_bounded_in_number_and_length);
        $m!(a_resume_withdraws_the_cancellation_of_running_tasks);
        $m!(a_claim_that_commits_during_shutdown_is_released);
        $m!(a_claim_whose_answer_was_lost_is_released_at_the_next_heartbeat);
        $m!(a_resume_that_queues_nothing_leaves_the_cancellation);
        $m!(a_resume_withdraws_the_cancellation_of_running_prerequisites);
        $m!(an_outage_longer_than_the_lease_takes_back_no_running_task);
        $m!(a_reaper_waits_a_lease_after_its_own_registration_lapsed);
        $m!(finishes_the_store_refused_are_written_again);
        $m!(a_failure_that_kept_its_charge_is_not_refunded);
    };
}

/// A worker configuration with short leases and delays, for tests.
pub fn fast_config() -> WorkerConfig {
    WorkerConfig {
        name: "conformance".into(),
        concurrency: 8,
        prefetch: 0,
        lease_ttl: Duration::from_millis(1500),
        heartbeat_interval: Duration::from_millis(300),
        poll_interval: Duration::from_millis(100),
        reap_interval: Duration::from_millis(200),
        retry: Backoff::doubling(Duration::from_millis(20), Duration::from_millis(200)),
        shutdown_grace: Duration::from_secs(2),
        ..WorkerConfig::default()
    }
}

fn owner() -> Uuid {
    Uuid::new_v4()
}

/// Waits until the run settles (or panics after `timeout` of the store's time).
pub async fn wait_settled<S: JobStore>(store: &S, run: RunId, timeout: Duration) -> JobView {
    let start = Instant::now();
    loop {
        let view = store.job(run).await.unwrap().expect("run exists");
        if view.state.is_settled() {
            return view;
        }
        assert!(
            start.elapsed() < timeout,
            "run {run} did not settle in {timeout:?}: {:?}",
            view.counts
        );
        sleep(Duration::from_millis(25)).await;
    }
}

async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// Checks a run through the port: group counts equal the states of their descendant tasks,
/// group states are the derived ones, no task started before all of its dependencies
/// completed (by the event log), no task completed twice, and skipped tasks have an
/// unsuccessful dependency.
pub async fn assert_consistent<S: JobStore>(store: &S, run: RunId) -> RunTree {
    let tree = store.run_tree(run).await.unwrap().expect("run exists");
    check_tree(&tree);
    let events = all_events(store, run).await;
    let mut last = 0;
    for e in &events {
        assert!(e.id.0 > last, "event ids grow");
        last = e.id.0;
    }
    let prerequisites = prerequisites_of(&tree);
    let mut completed_at: HashMap<JobId, i64> = HashMap::new();
    for e in &events {
        match e.kind {
            EventKind::Completed => {
                assert!(
                    completed_at.insert(e.job_id, e.id.0).is_none(),
                    "{} completed twice",
                    e.key
                );
            }
            EventKind::Started => {
                for p in prerequisites.get(&e.job_id).into_iter().flatten() {
                    assert!(
                        completed_at.get(p).is_some_and(|c| *c < e.id.0),
                        "{} started before its dependency completed",
                        e.key
                    );
                }
            }
            _ => {}
        }
    }
    tree
}

fn prerequisites_of(tree: &RunTree) -> HashMap<JobId, Vec<JobId>> {
    let mut map: HashMap<JobId, Vec<JobId>> = HashMap::new();
    for (d, p) in &tree.edges {
        map.entry(*d).or_default().push(*p);
    }
    map
}

/// The tree-only part of [`assert_consistent`].
pub fn check_tree(tree: &RunTree) {
    let by_id: HashMap<JobId, &JobView> = tree.nodes.iter().map(|n| (n.id, n)).collect();
    let prerequisites = prerequisites_of(tree);
    let mut ancestors: HashMap<JobId, Vec<JobId>> = HashMap::new();
    for n in &tree.nodes {
        let mut chain = Vec::new();
        let mut at = n.parent_id;
        while let Some(p) = at {
            chain.push(p);
            at = by_id.get(&p).and_then(|x| x.parent_id);
        }
        ancestors.insert(n.id, chain);
    }
    for g in tree.nodes.iter().filter(|n| n.node_type.is_group()) {
        let mut counts = crate::Counts::default();
        let (mut cost, mut refundable) = (0, 0);
        for t in tree.nodes.iter().filter(|n| n.node_type == NodeType::Task) {
            if ancestors[&t.id].contains(&g.id) {
                counts.add(t.state);
                cost += t.cost;
                if crate::core::refundable(t.state, t.checkpoint.is_some()) {
                    refundable += t.cost;
                }
            }
        }
        assert_eq!(g.counts, Some(counts), "counts of {:?}", g.key);
        let costs = g.costs.expect("groups carry costs");
        assert_eq!(
            (costs.total, costs.refundable),
            (cost, refundable),
            "costs of {:?}",
            g.key
        );
        assert_eq!(
            g.state,
            crate::core::derive_group_state(&counts, g.cancel_requested),
            "state of {:?}",
            g.key
        );
    }
    for t in tree.nodes.iter().filter(|n| n.node_type == NodeType::Task) {
        let pre: Vec<JobState> = prerequisites
            .get(&t.id)
            .into_iter()
            .flatten()
            .map(|p| by_id[p].state)
            .collect();
        if matches!(
            t.state,
            JobState::Running | JobState::Completed | JobState::Ready
        ) {
            assert!(
                pre.iter().all(|s| *s == JobState::Completed),
                "{} is {} before its dependencies completed",
                t.key,
                t.state
            );
        }
        if t.state == JobState::Skipped {
            assert!(
                pre.iter().any(|s| s.is_unsuccessful()),
                "{} skipped for nothing",
                t.key
            );
        }
    }
}

async fn all_events<S: JobStore>(store: &S, run: RunId) -> Vec<crate::Event> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.events(run, after, None, 500).await.unwrap();
        if page.is_empty() {
            return out;
        }
        after = page.last().map(|e| e.id);
        out.extend(page);
    }
}

async fn start<S: JobStore>(
    store: &Arc<S>,
    registry: Registry,
    config: WorkerConfig,
) -> WorkerHandle<S> {
    Worker::start(store.clone(), registry, config)
        .await
        .unwrap()
}

fn noop_registry(kinds: &[&str]) -> Registry {
    let mut r = Registry::new();
    for k in kinds {
        r.register(*k, |ctx: crate::JobContext| async move {
            Outcome::success(json!({"key": ctx.key()}))
        });
    }
    r
}

fn key_of(tree: &RunTree, key: &str) -> JobView {
    tree.nodes
        .iter()
        .find(|n| n.key == key)
        .cloned()
        .unwrap_or_else(|| panic!("no node {key}"))
}

async fn first_fence<S: JobStore>(store: &S, job: JobId) -> crate::Fence {
    let events = all_events(store, store.job(job).await.unwrap().unwrap().run_id).await;
    let started = events
        .iter()
        .filter(|e| e.job_id == job && e.kind == EventKind::Started)
        .count();
    crate::Fence {
        job_id: job,
        run_id: store.job(job).await.unwrap().unwrap().run_id,
        epoch: i64::try_from(started).unwrap(),
    }
}

async fn register<S: JobStore>(store: &S) -> WorkerId {
    let id = WorkerId::new();
    store
        .register_worker(&WorkerRegistration {
            id,
            name: "manual".into(),
            kinds: vec![],
            ttl: Duration::from_secs(60),
        })
        .await
        .unwrap();
    id
}

async fn claim<S: JobStore>(
    store: &S,
    worker: WorkerId,
    kinds: &[&str],
    limit: usize,
) -> Vec<crate::ClaimedJob> {
    store
        .claim(&ClaimRequest {
            worker,
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            limit,
        })
        .await
        .unwrap()
}
