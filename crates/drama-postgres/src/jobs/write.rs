//! Writing an operation's [`Changes`] in one statement: inserted nodes and edges, updated
//! tasks, inserted and updated group counters, appended events and one NOTIFY per run. Only
//! the parts an operation needs are in the statement (a claim writes tasks, groups and
//! events), which keeps planning cheap for small batches.

use drama_jobs::core::{Changes, NewNode, TaskRow};
use drama_jobs::{EventKind, JobId};
use serde_json::Value;
use sqlx::postgres::PgArguments;
use sqlx::{Arguments as _, PgConnection};
use std::collections::HashMap;
use uuid::Uuid;

use super::NOTIFY_CHANNEL;
use super::error::{Error, unexpected};

/// A statement under construction: SQL text and its arguments, numbered in order.
struct Statement {
    ctes: Vec<String>,
    args: PgArguments,
    next: usize,
}

impl Statement {
    /// Binds `value` and returns its placeholder with the given array type.
    fn bind<'q, T>(&mut self, value: T, cast: &str) -> Result<String, Error>
    where
        T: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + 'q,
    {
        self.args
            .add(value)
            .map_err(|e| unexpected(format!("cannot encode an argument: {e}")))?;
        self.next += 1;
        Ok(format!("${}::{cast}", self.next))
    }

    /// Binds one column of `rows` (what `f` picks from each row) as an array.
    fn col<R, T>(&mut self, rows: &[R], f: impl Fn(&R) -> T, cast: &str) -> Result<String, Error>
    where
        Vec<T>: for<'q> sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres> + 'static,
    {
        self.bind(rows.iter().map(f).collect::<Vec<T>>(), cast)
    }
}

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
    let mut st = Statement {
        ctes: Vec::new(),
        args: PgArguments::default(),
        next: 0,
    };
    let tasks: HashMap<JobId, &TaskRow> = changes.tasks.iter().map(|t| (t.id, t)).collect();
    new_nodes(&mut st, changes, &tasks, skip)?;
    new_edges(&mut st, changes)?;
    task_updates(&mut st, changes)?;
    groups(&mut st, changes)?;
    active_runs(&mut st, changes)?;
    let tail = events(&mut st, changes)?;
    let sql = if st.ctes.is_empty() {
        tail
    } else {
        format!("with {} {tail}", st.ctes.join(", "))
    };
    sqlx::query_with(sqlx::AssertSqlSafe(sql), st.args)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn new_nodes(
    st: &mut Statement,
    changes: &Changes,
    tasks: &HashMap<JobId, &TaskRow>,
    skip: Option<JobId>,
) -> Result<(), Error> {
    let nodes: Vec<&NewNode> = changes
        .new_nodes
        .iter()
        .filter(|n| Some(n.id) != skip)
        .collect();
    if nodes.is_empty() {
        return Ok(());
    }
    let task = |n: &&NewNode| tasks.get(&n.id).copied();
    let c = [
        st.col(&nodes, |n| n.id.0, "uuid[]")?,
        st.col(&nodes, |n| n.run_id.0, "uuid[]")?,
        st.col(&nodes, |n| n.parent_id.map(|p| p.0), "uuid[]")?,
        st.col(&nodes, |n| uuid_array(&n.ancestors), "text[]")?,
        st.col(&nodes, |n| n.node_type.as_str().to_owned(), "text[]")?,
        st.col(&nodes, |n| n.key.clone(), "text[]")?,
        st.col(&nodes, |n| n.kind.clone(), "text[]")?,
        st.col(&nodes, |n| n.owner, "uuid[]")?,
        st.col(&nodes, |n| n.subject.clone(), "text[]")?,
        st.col(&nodes, |n| n.idempotency_key.clone(), "text[]")?,
        st.col(&nodes, |n| n.payload.clone(), "jsonb[]")?,
        st.col(
            &nodes,
            |n| task(n).map(|t| t.state.as_str().to_owned()),
            "text[]",
        )?,
        st.col(&nodes, |n| n.priority, "int[]")?,
        st.col(&nodes, |n| n.rank, "bigint[]")?,
        st.col(&nodes, |n| n.resource_class.clone(), "text[]")?,
        st.col(&nodes, |n| n.max_attempts, "int[]")?,
        st.col(&nodes, |n| n.cost, "bigint[]")?,
        st.col(&nodes, |n| task(n).map_or(0, |t| t.deps_remaining), "int[]")?,
        st.col(&nodes, |n| task(n).and_then(|t| t.error.clone()), "text[]")?,
        st.col(
            &nodes,
            |n| task(n).and_then(|t| t.finished_at),
            "timestamptz[]",
        )?,
    ]
    .join(", ");
    st.ctes.push(format!(
        "new_nodes as ( \
           insert into public.jobs (id, run_id, parent_id, ancestors, node_type, key, kind, \
             owner_id, subject, idempotency_key, payload, state, priority, rank, \
             resource_class, max_attempts, cost, deps_remaining, error, finished_at) \
           select n.id, n.run_id, n.parent_id, n.ancestors::uuid[], n.node_type, n.key, n.kind, \
             n.owner_id, n.subject, n.idempotency_key, n.payload, n.state, n.priority, n.rank, \
             n.resource_class, n.max_attempts, n.cost, n.deps_remaining, n.error, n.finished_at \
           from unnest({c}) as n(id, run_id, parent_id, ancestors, node_type, key, kind, \
             owner_id, subject, idempotency_key, payload, state, priority, rank, \
             resource_class, max_attempts, cost, deps_remaining, error, finished_at))"
    ));
    Ok(())
}

fn new_edges(st: &mut Statement, changes: &Changes) -> Result<(), Error> {
    if changes.new_edges.is_empty() {
        return Ok(());
    }
    let (dependent, prerequisite): (Vec<Uuid>, Vec<Uuid>) =
        changes.new_edges.iter().map(|(d, p)| (d.0, p.0)).unzip();
    let d = st.bind(dependent, "uuid[]")?;
    let p = st.bind(prerequisite, "uuid[]")?;
    st.ctes.push(format!(
        "new_edges as (insert into public.job_edges (job_id, depends_on_id) \
           select * from unnest({d}, {p}))"
    ));
    Ok(())
}

/// Besides the core's columns, the update stores `delayed`: whether the task is ready with its
/// `run_after` ahead (waiting for a retry's backoff or a deferral). The claim's pick reads only
/// ready tasks without it, through `jobs_ready_class_idx`, and `claim::PROMOTE` clears it once
/// `run_after` passed (migration `20261207000600_job_delayed_tasks.sql`).
///
/// Ahead of the clock, not of `now()`: `now()` is when the transaction began, and a task row
/// that this transaction writes again may carry a `run_after` set by a transaction that began
/// later and committed first (while this one waited for the run's lock). Compared with `now()`
/// that task would be flagged although it is runnable; compared with the clock, a task is never
/// flagged once its `run_after` passed, and never left unflagged while it lies ahead. Inserted
/// tasks keep the column's default (`false`): they are inserted with `run_after` at its default,
/// `now()`, never ahead.
fn task_updates(st: &mut Statement, changes: &Changes) -> Result<(), Error> {
    // Created tasks were inserted complete.
    let rows: Vec<&TaskRow> = changes
        .tasks
        .iter()
        .filter(|t| !changes.created.contains(&t.id))
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let results: Vec<Option<Value>> = rows
        .iter()
        .map(|t| changes.results.get(&t.id).cloned())
        .collect();
    let c = [
        st.bind(rows.iter().map(|t| t.id.0).collect::<Vec<_>>(), "uuid[]")?,
        st.bind(
            rows.iter().map(|t| t.state.as_str()).collect::<Vec<_>>(),
            "text[]",
        )?,
        st.bind(
            rows.iter().map(|t| t.deps_remaining).collect::<Vec<_>>(),
            "int[]",
        )?,
        st.bind(rows.iter().map(|t| t.attempts).collect::<Vec<_>>(), "int[]")?,
        st.bind(
            rows.iter().map(|t| t.deferrals).collect::<Vec<_>>(),
            "int[]",
        )?,
        st.bind(rows.iter().map(|t| t.epoch).collect::<Vec<_>>(), "bigint[]")?,
        st.bind(rows.iter().map(|t| t.charged).collect::<Vec<_>>(), "bool[]")?,
        st.bind(rows.iter().map(|t| t.cost).collect::<Vec<_>>(), "bigint[]")?,
        st.bind(
            rows.iter()
                .map(|t| t.lease_owner.map(|w| w.0))
                .collect::<Vec<_>>(),
            "uuid[]",
        )?,
        st.bind(
            rows.iter().map(|t| t.run_after).collect::<Vec<_>>(),
            "timestamptz[]",
        )?,
        st.bind(
            rows.iter().map(|t| t.cancel_requested).collect::<Vec<_>>(),
            "bool[]",
        )?,
        st.bind(
            rows.iter().map(|t| t.error.clone()).collect::<Vec<_>>(),
            "text[]",
        )?,
        st.bind(
            rows.iter().map(|t| t.started_at).collect::<Vec<_>>(),
            "timestamptz[]",
        )?,
        st.bind(
            rows.iter().map(|t| t.finished_at).collect::<Vec<_>>(),
            "timestamptz[]",
        )?,
        st.bind(
            results.iter().map(Option::is_some).collect::<Vec<_>>(),
            "bool[]",
        )?,
        st.bind(results, "jsonb[]")?,
    ]
    .join(", ");
    st.ctes.push(format!(
        "task_updates as ( \
           update public.jobs j set \
             state = u.state, deps_remaining = u.deps_remaining, attempts = u.attempts, \
             deferrals = u.deferrals, epoch = u.epoch, charged = u.charged, cost = u.cost, \
             lease_owner = u.lease_owner, run_after = u.run_after, \
             delayed = u.state = 'ready' and u.run_after > clock_timestamp(), \
             cancel_requested = u.cancel_requested, error = u.error, \
             started_at = u.started_at, finished_at = u.finished_at, \
             result = case when u.set_result then u.result else j.result end, \
             updated_at = now() \
           from unnest({c}) as u(id, state, deps_remaining, attempts, deferrals, epoch, charged, \
             cost, lease_owner, run_after, cancel_requested, error, started_at, finished_at, \
             set_result, result) \
           where j.id = u.id)"
    ));
    Ok(())
}

fn groups(st: &mut Statement, changes: &Changes) -> Result<(), Error> {
    let (created, existing): (Vec<_>, Vec<_>) = changes
        .groups
        .iter()
        .partition(|g| changes.created.contains(&g.id));
    for (rows, insert) in [(created, true), (existing, false)] {
        if rows.is_empty() {
            continue;
        }
        let ids = st.bind(rows.iter().map(|g| g.id.0).collect::<Vec<_>>(), "uuid[]")?;
        let mut c = vec![ids.clone()];
        if insert {
            c.push(st.bind(
                rows.iter().map(|g| g.run_id.0).collect::<Vec<_>>(),
                "uuid[]",
            )?);
        }
        c.push(st.bind(
            rows.iter().map(|g| g.state.as_str()).collect::<Vec<_>>(),
            "text[]",
        )?);
        for pick in [
            |g: &drama_jobs::Counts| g.total,
            |g: &drama_jobs::Counts| g.pending,
            |g: &drama_jobs::Counts| g.running,
            |g: &drama_jobs::Counts| g.completed,
            |g: &drama_jobs::Counts| g.failed,
            |g: &drama_jobs::Counts| g.skipped,
            |g: &drama_jobs::Counts| g.cancelled,
        ] {
            c.push(
                st.bind(
                    rows.iter()
                        .map(|g| count(pick(&g.counts)))
                        .collect::<Vec<_>>(),
                    "int[]",
                )?,
            );
        }
        for pick in [
            |k: &drama_jobs::CostTotals| k.total,
            |k: &drama_jobs::CostTotals| k.charged,
            |k: &drama_jobs::CostTotals| k.refundable,
            |k: &drama_jobs::CostTotals| k.refunded,
        ] {
            c.push(st.bind(
                rows.iter().map(|g| pick(&g.costs)).collect::<Vec<_>>(),
                "bigint[]",
            )?);
        }
        if insert {
            c.push(st.bind(
                rows.iter().map(|g| g.budget).collect::<Vec<_>>(),
                "bigint[]",
            )?);
        }
        c.push(st.bind(
            rows.iter().map(|g| g.cancel_requested).collect::<Vec<_>>(),
            "bool[]",
        )?);
        c.push(st.bind(
            rows.iter().map(|g| g.started_at).collect::<Vec<_>>(),
            "timestamptz[]",
        )?);
        c.push(st.bind(
            rows.iter().map(|g| g.finished_at).collect::<Vec<_>>(),
            "timestamptz[]",
        )?);
        let c = c.join(", ");
        st.ctes.push(if insert {
            format!(
                "new_groups as ( \
                   insert into public.job_groups (id, run_id, state, total, pending, running, \
                     completed, failed, skipped, cancelled, cost_total, cost_charged, \
                     cost_refundable, cost_refunded, budget, cancel_requested, started_at, \
                     finished_at) \
                   select * from unnest({c}))"
            )
        } else {
            // The ids again as an index condition, so the update probes the primary key.
            format!(
                "group_updates as ( \
                   update public.job_groups g set \
                     state = u.state, total = u.total, pending = u.pending, running = u.running, \
                     completed = u.completed, failed = u.failed, skipped = u.skipped, \
                     cancelled = u.cancelled, cost_total = u.cost_total, \
                     cost_charged = u.cost_charged, cost_refundable = u.cost_refundable, \
                     cost_refunded = u.cost_refunded, cancel_requested = u.cancel_requested, \
                     started_at = u.started_at, finished_at = u.finished_at, updated_at = now() \
                   from unnest({c}) as u(id, state, total, pending, running, completed, failed, \
                     skipped, cancelled, cost_total, cost_charged, cost_refundable, \
                     cost_refunded, cancel_requested, started_at, finished_at) \
                   where g.id = any({ids}) and g.id = u.id)"
            )
        });
    }
    Ok(())
}

/// Keeps `job_active_runs` (an owner's unsettled runs, see its migration) in step: a run
/// created unsettled or leaving a settled state gets its row, a run that settles loses it.
/// Only runs whose settled state changed are named (a root's `group_state` event says so), so
/// the claims and completions in between write nothing here. A run's root row in `jobs` is
/// always inserted by an earlier statement (submissions insert roots first), which gives the
/// owner.
fn active_runs(st: &mut Statement, changes: &Changes) -> Result<(), Error> {
    let mut active: Vec<Uuid> = changes
        .groups
        .iter()
        .filter(|g| g.id == g.run_id && changes.created.contains(&g.id))
        .filter(|g| g.finished_at.is_none())
        .map(|g| g.id.0)
        .collect();
    let mut settled: Vec<Uuid> = Vec::new();
    for e in &changes.events {
        if e.kind == EventKind::GroupState
            && e.job_id == e.run_id
            && !changes.created.contains(&e.job_id)
        {
            if e.state.is_settled() {
                settled.push(e.run_id.0);
            } else {
                active.push(e.run_id.0);
            }
        }
    }
    if !active.is_empty() {
        let ids = st.bind(active, "uuid[]")?;
        st.ctes.push(format!(
            "active_runs as (insert into public.job_active_runs (owner_id, run_id) \
               select r.owner_id, r.id from public.jobs r where r.id = any({ids}) \
               on conflict do nothing)"
        ));
    }
    if !settled.is_empty() {
        let ids = st.bind(settled, "uuid[]")?;
        st.ctes.push(format!(
            "settled_runs as (delete from public.job_active_runs a using public.jobs r \
               where r.id = any({ids}) and a.owner_id = r.owner_id and a.run_id = r.id)"
        ));
    }
    Ok(())
}

/// Runs per NOTIFY payload: an entry is about 60 bytes and a payload must stay under 8000.
const RUNS_PER_NOTIFICATION: usize = 100;

/// The events CTE (one batch row per run) and the final select that notifies: one NOTIFY per
/// 100 runs, each entry `[run, newest event id, flags]` (see [`super::parse_notification`]).
fn events(st: &mut Statement, changes: &Changes) -> Result<String, Error> {
    let ev = &changes.events;
    if ev.is_empty() {
        return Ok("select 1".to_owned());
    }
    let c = [
        st.bind(ev.iter().map(|e| e.run_id.0).collect::<Vec<_>>(), "uuid[]")?,
        st.bind(ev.iter().map(|e| e.job_id.0).collect::<Vec<_>>(), "uuid[]")?,
        st.bind(
            ev.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
            "text[]",
        )?,
        st.bind(
            ev.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(),
            "text[]",
        )?,
        st.bind(
            ev.iter().map(|e| e.state.as_str()).collect::<Vec<_>>(),
            "text[]",
        )?,
        st.bind(ev.iter().map(|e| e.attempt).collect::<Vec<_>>(), "int[]")?,
        st.bind(
            ev.iter()
                .map(|e| (!e.detail.is_null()).then(|| e.detail.clone()))
                .collect::<Vec<_>>(),
            "jsonb[]",
        )?,
    ]
    .join(", ");
    // The sequence value is taken under the run's lock, so ids grow in commit order per run.
    st.ctes.push(format!(
        "event_rows as (select * from unnest({c}) with ordinality \
           as e(run_id, job_id, key, kind, state, attempt, detail, position)), \
         event_batches as (select run_id, \
             nextval('public.job_event_batch_seq') * 1048576 as first_id, \
             array_agg(job_id order by position) as job_ids, \
             array_agg(key order by position) as keys, \
             array_agg(kind order by position) as kinds, \
             array_agg(state order by position) as states, \
             array_agg(attempt order by position) as attempts, \
             array_agg(detail order by position) as details \
           from event_rows group by run_id), \
         events as (insert into public.job_event_batches (run_id, first_id, last_id, job_ids, \
             keys, kinds, states, attempts, details) \
           select run_id, first_id, first_id + cardinality(job_ids) - 1, job_ids, keys, kinds, \
             states, attempts, details from event_batches \
           returning run_id, last_id)"
    ));
    let channel = st.bind(NOTIFY_CHANNEL, "text")?;
    let wake = st.bind(
        changes.wake.iter().map(|r| r.0).collect::<Vec<_>>(),
        "uuid[]",
    )?;
    let cancel = st.bind(
        changes
            .cancel_requested()
            .iter()
            .map(|r| r.0)
            .collect::<Vec<_>>(),
        "uuid[]",
    )?;
    Ok(format!(
        "select pg_notify({channel}, json_build_object('runs', json_agg(json_build_array(\
           run_id, last_id, \
           (case when run_id = any({wake}) then 1 else 0 end) \
             + (case when run_id = any({cancel}) then 2 else 0 end))))::text) \
         from (select run_id, last_id, \
                 (row_number() over (order by run_id) - 1) / {RUNS_PER_NOTIFICATION} as chunk \
               from events) e \
         group by chunk"
    ))
}
