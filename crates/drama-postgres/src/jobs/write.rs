//! Writing an operation's [`Changes`] in one statement: inserted nodes and edges, updated
//! tasks, upserted group counters, appended events and one NOTIFY per run.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use drama_jobs::JobId;
use drama_jobs::core::{Changes, TaskRow};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::NOTIFY_CHANNEL;
use super::error::Error;

const WRITE: &str = "\
with new_nodes as (
  insert into public.jobs (id, run_id, parent_id, ancestors, node_type, key, kind, owner_id,
    subject, idempotency_key, payload, state, priority, rank, resource_class, max_attempts,
    cost, deps_remaining, error, finished_at)
  select n.id, n.run_id, n.parent_id, n.ancestors::uuid[], n.node_type, n.key, n.kind,
    n.owner_id, n.subject, n.idempotency_key, n.payload, n.state, n.priority, n.rank,
    n.resource_class, n.max_attempts, n.cost, n.deps_remaining, n.error, n.finished_at
  from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
              $7::text[], $8::uuid[], $9::text[], $10::text[], $11::jsonb[], $12::text[],
              $13::int[], $14::bigint[], $15::text[], $16::int[], $17::bigint[], $18::int[],
              $19::text[], $20::timestamptz[])
    as n(id, run_id, parent_id, ancestors, node_type, key, kind, owner_id, subject,
         idempotency_key, payload, state, priority, rank, resource_class, max_attempts, cost,
         deps_remaining, error, finished_at)
), new_edges as (
  insert into public.job_edges (job_id, depends_on_id)
  select * from unnest($21::uuid[], $22::uuid[])
), task_updates as (
  update public.jobs j set
    state = u.state, deps_remaining = u.deps_remaining, attempts = u.attempts,
    epoch = u.epoch, charged = u.charged, lease_owner = u.lease_owner,
    run_after = u.run_after, cancel_requested = u.cancel_requested, error = u.error,
    started_at = u.started_at, finished_at = u.finished_at,
    result = case when u.set_result then u.result else j.result end,
    updated_at = now()
  from unnest($23::uuid[], $24::text[], $25::int[], $26::int[], $27::bigint[], $28::bool[],
              $29::uuid[], $30::timestamptz[], $31::bool[], $32::text[], $33::timestamptz[],
              $34::timestamptz[], $35::bool[], $36::jsonb[])
    as u(id, state, deps_remaining, attempts, epoch, charged, lease_owner, run_after,
         cancel_requested, error, started_at, finished_at, set_result, result)
  where j.id = u.id
), new_groups as (
  insert into public.job_groups (id, run_id, state, total, pending, running, completed,
    failed, skipped, cancelled, cost_total, cost_charged, cost_refundable, cost_refunded,
    budget, cancel_requested, started_at, finished_at)
  select * from unnest($37::uuid[], $38::uuid[], $39::text[], $40::int[], $41::int[],
                       $42::int[], $43::int[], $44::int[], $45::int[], $46::int[],
                       $47::bigint[], $48::bigint[], $49::bigint[], $50::bigint[],
                       $51::bigint[], $52::bool[], $53::timestamptz[], $54::timestamptz[])
    as n(id, run_id, state, total, pending, running, completed, failed, skipped, cancelled,
         cost_total, cost_charged, cost_refundable, cost_refunded, budget, cancel_requested,
         started_at, finished_at)
  where n.id = any($64)
), group_updates as (
  update public.job_groups g set
    state = u.state, total = u.total, pending = u.pending, running = u.running,
    completed = u.completed, failed = u.failed, skipped = u.skipped,
    cancelled = u.cancelled, cost_total = u.cost_total, cost_charged = u.cost_charged,
    cost_refundable = u.cost_refundable, cost_refunded = u.cost_refunded,
    cancel_requested = u.cancel_requested, started_at = u.started_at,
    finished_at = u.finished_at, updated_at = now()
  from unnest($37::uuid[], $39::text[], $40::int[], $41::int[], $42::int[], $43::int[],
              $44::int[], $45::int[], $46::int[], $47::bigint[], $48::bigint[],
              $49::bigint[], $50::bigint[], $52::bool[], $53::timestamptz[],
              $54::timestamptz[])
    as u(id, state, total, pending, running, completed, failed, skipped, cancelled,
         cost_total, cost_charged, cost_refundable, cost_refunded, cancel_requested,
         started_at, finished_at)
  where g.id = any($37) and g.id = u.id and not (u.id = any($64))
), events as (
  insert into public.job_events (run_id, job_id, key, kind, state, attempt, detail)
  select * from unnest($55::uuid[], $56::uuid[], $57::text[], $58::text[], $59::text[],
                       $60::int[], $61::jsonb[])
  returning id, run_id
)
select pg_notify($62, json_build_object('run', run_id, 'event', max(id),
                                        'wake', run_id = any($63))::text)
from events group by run_id";

fn uuid_array(ids: &[JobId]) -> String {
    let mut s = String::with_capacity(2 + ids.len() * 37);
    s.push('{');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&id.0.to_string());
    }
    s.push('}');
    s
}

fn count(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Writes `changes`; `skip` names a node already inserted (a run's root).
pub(super) async fn write_changes(
    conn: &mut PgConnection,
    changes: &Changes,
    skip: Option<JobId>,
) -> Result<(), Error> {
    if changes.is_empty() && changes.events.is_empty() {
        return Ok(());
    }
    let tasks: HashMap<JobId, &TaskRow> = changes.tasks.iter().map(|t| (t.id, t)).collect();

    // New nodes.
    let mut n_id = Vec::new();
    let mut n_run = Vec::new();
    let mut n_parent: Vec<Option<Uuid>> = Vec::new();
    let mut n_ancestors = Vec::new();
    let mut n_type = Vec::new();
    let mut n_key = Vec::new();
    let mut n_kind = Vec::new();
    let mut n_owner = Vec::new();
    let mut n_subject: Vec<Option<String>> = Vec::new();
    let mut n_idem: Vec<Option<String>> = Vec::new();
    let mut n_payload: Vec<Value> = Vec::new();
    let mut n_state: Vec<Option<&str>> = Vec::new();
    let mut n_priority = Vec::new();
    let mut n_rank = Vec::new();
    let mut n_class = Vec::new();
    let mut n_attempts = Vec::new();
    let mut n_cost = Vec::new();
    let mut n_deps = Vec::new();
    let mut n_error: Vec<Option<String>> = Vec::new();
    let mut n_finished: Vec<Option<DateTime<Utc>>> = Vec::new();
    for n in &changes.new_nodes {
        if Some(n.id) == skip {
            continue;
        }
        let task = tasks.get(&n.id);
        n_id.push(n.id.0);
        n_run.push(n.run_id.0);
        n_parent.push(n.parent_id.map(|p| p.0));
        n_ancestors.push(uuid_array(&n.ancestors));
        n_type.push(n.node_type.as_str());
        n_key.push(n.key.as_str());
        n_kind.push(n.kind.as_str());
        n_owner.push(n.owner);
        n_subject.push(n.subject.clone());
        n_idem.push(n.idempotency_key.clone());
        n_payload.push(n.payload.clone());
        n_state.push(task.map(|t| t.state.as_str()));
        n_priority.push(n.priority);
        n_rank.push(n.rank);
        n_class.push(n.resource_class.as_str());
        n_attempts.push(n.max_attempts);
        n_cost.push(n.cost);
        n_deps.push(task.map_or(0, |t| t.deps_remaining));
        n_error.push(task.and_then(|t| t.error.clone()));
        n_finished.push(task.and_then(|t| t.finished_at));
    }

    // Edges.
    let (e_dep, e_pre): (Vec<Uuid>, Vec<Uuid>) =
        changes.new_edges.iter().map(|(d, p)| (d.0, p.0)).unzip();

    // Updated tasks (created ones were inserted complete).
    let mut u_id = Vec::new();
    let mut u_state = Vec::new();
    let mut u_deps = Vec::new();
    let mut u_attempts = Vec::new();
    let mut u_epoch = Vec::new();
    let mut u_charged = Vec::new();
    let mut u_lease: Vec<Option<Uuid>> = Vec::new();
    let mut u_run_after = Vec::new();
    let mut u_cancel = Vec::new();
    let mut u_error: Vec<Option<String>> = Vec::new();
    let mut u_started: Vec<Option<DateTime<Utc>>> = Vec::new();
    let mut u_finished: Vec<Option<DateTime<Utc>>> = Vec::new();
    let mut u_set_result = Vec::new();
    let mut u_result: Vec<Option<Value>> = Vec::new();
    for t in &changes.tasks {
        if changes.created.contains(&t.id) {
            continue;
        }
        u_id.push(t.id.0);
        u_state.push(t.state.as_str());
        u_deps.push(t.deps_remaining);
        u_attempts.push(t.attempts);
        u_epoch.push(t.epoch);
        u_charged.push(t.charged);
        u_lease.push(t.lease_owner.map(|w| w.0));
        u_run_after.push(t.run_after);
        u_cancel.push(t.cancel_requested);
        u_error.push(t.error.clone());
        u_started.push(t.started_at);
        u_finished.push(t.finished_at);
        let result = changes.results.get(&t.id);
        u_set_result.push(result.is_some());
        u_result.push(result.cloned());
    }

    // Groups, inserted or updated.
    let mut g_id = Vec::new();
    let mut g_run = Vec::new();
    let mut g_state = Vec::new();
    let mut g_counts: [Vec<i32>; 7] = Default::default();
    let mut g_costs: [Vec<i64>; 4] = Default::default();
    let mut g_budget: Vec<Option<i64>> = Vec::new();
    let mut g_cancel = Vec::new();
    let mut g_started: Vec<Option<DateTime<Utc>>> = Vec::new();
    let mut g_finished: Vec<Option<DateTime<Utc>>> = Vec::new();
    for g in &changes.groups {
        g_id.push(g.id.0);
        g_run.push(g.run_id.0);
        g_state.push(g.state.as_str());
        let c = &g.counts;
        for (i, v) in [
            c.total,
            c.pending,
            c.running,
            c.completed,
            c.failed,
            c.skipped,
            c.cancelled,
        ]
        .into_iter()
        .enumerate()
        {
            g_counts[i].push(count(v));
        }
        let k = &g.costs;
        for (i, v) in [k.total, k.charged, k.refundable, k.refunded]
            .into_iter()
            .enumerate()
        {
            g_costs[i].push(v);
        }
        g_budget.push(g.budget);
        g_cancel.push(g.cancel_requested);
        g_started.push(g.started_at);
        g_finished.push(g.finished_at);
    }

    // Events.
    let mut ev_run = Vec::new();
    let mut ev_job = Vec::new();
    let mut ev_key = Vec::new();
    let mut ev_kind = Vec::new();
    let mut ev_state = Vec::new();
    let mut ev_attempt = Vec::new();
    let mut ev_detail: Vec<Option<Value>> = Vec::new();
    for e in &changes.events {
        ev_run.push(e.run_id.0);
        ev_job.push(e.job_id.0);
        ev_key.push(e.key.as_str());
        ev_kind.push(e.kind.as_str());
        ev_state.push(e.state.as_str());
        ev_attempt.push(e.attempt);
        ev_detail.push((!e.detail.is_null()).then(|| e.detail.clone()));
    }
    let wake: Vec<Uuid> = changes.wake.iter().map(|r| r.0).collect();
    let created_groups: Vec<Uuid> = changes
        .groups
        .iter()
        .filter(|g| changes.created.contains(&g.id))
        .map(|g| g.id.0)
        .collect();

    let [
        c_total,
        c_pending,
        c_running,
        c_completed,
        c_failed,
        c_skipped,
        c_cancelled,
    ] = g_counts;
    let [k_total, k_charged, k_refundable, k_refunded] = g_costs;
    sqlx::query(WRITE)
        .bind(n_id)
        .bind(n_run)
        .bind(n_parent)
        .bind(n_ancestors)
        .bind(n_type)
        .bind(n_key)
        .bind(n_kind)
        .bind(n_owner)
        .bind(n_subject)
        .bind(n_idem)
        .bind(n_payload)
        .bind(n_state)
        .bind(n_priority)
        .bind(n_rank)
        .bind(n_class)
        .bind(n_attempts)
        .bind(n_cost)
        .bind(n_deps)
        .bind(n_error)
        .bind(n_finished)
        .bind(e_dep)
        .bind(e_pre)
        .bind(u_id)
        .bind(u_state)
        .bind(u_deps)
        .bind(u_attempts)
        .bind(u_epoch)
        .bind(u_charged)
        .bind(u_lease)
        .bind(u_run_after)
        .bind(u_cancel)
        .bind(u_error)
        .bind(u_started)
        .bind(u_finished)
        .bind(u_set_result)
        .bind(u_result)
        .bind(g_id)
        .bind(g_run)
        .bind(g_state)
        .bind(c_total)
        .bind(c_pending)
        .bind(c_running)
        .bind(c_completed)
        .bind(c_failed)
        .bind(c_skipped)
        .bind(c_cancelled)
        .bind(k_total)
        .bind(k_charged)
        .bind(k_refundable)
        .bind(k_refunded)
        .bind(g_budget)
        .bind(g_cancel)
        .bind(g_started)
        .bind(g_finished)
        .bind(ev_run)
        .bind(ev_job)
        .bind(ev_key)
        .bind(ev_kind)
        .bind(ev_state)
        .bind(ev_attempt)
        .bind(ev_detail)
        .bind(NOTIFY_CHANNEL)
        .bind(wake)
        .bind(created_groups)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
