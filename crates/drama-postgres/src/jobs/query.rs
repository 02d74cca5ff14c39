//! Read queries: single nodes, children, whole runs, events, run lists; and retention.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use drama_jobs::{
    Event, EventId, EventKind, JobId, JobView, PruneReport, RunFilter, RunId, RunTree,
};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use super::error::{Error, unexpected};
use super::rows::{costs_of, counts_of, node_type, state};

const VIEW_COLUMNS: &str = "j.id, j.run_id, j.parent_id, j.node_type, j.key, j.kind, j.state, \
     j.owner_id, j.subject, j.idempotency_key, j.payload, j.result, j.error, j.checkpoint, \
     j.resource_class, j.priority, j.attempts, j.max_attempts, j.cost, j.run_after, \
     j.cancel_requested, j.created_at, j.started_at, j.finished_at, j.updated_at, \
     g.state as g_state, g.total, g.pending, g.running, g.completed, g.failed, g.skipped, \
     g.cancelled, g.cost_total, g.cost_charged, g.cost_refundable, g.cost_refunded, g.budget, \
     g.cancel_requested as g_cancel, g.started_at as g_started, g.finished_at as g_finished, \
     g.updated_at as g_updated";

const DEPENDENCY_KEYS: &str = "array(select p.key from public.job_edges e \
     join public.jobs p on p.id = e.depends_on_id where e.job_id = j.id order by p.id) \
     as dependencies";

fn view_from_row(row: &PgRow, dependencies: Option<Vec<String>>) -> Result<JobView, Error> {
    let nt: String = row.try_get("node_type")?;
    let node_type = node_type(&nt)?;
    let dependencies = match dependencies {
        Some(d) => d,
        None => row.try_get("dependencies")?,
    };
    let mut view = JobView {
        id: JobId(row.try_get("id")?),
        run_id: JobId(row.try_get("run_id")?),
        parent_id: row.try_get::<Option<Uuid>, _>("parent_id")?.map(JobId),
        node_type,
        key: row.try_get("key")?,
        kind: row.try_get("kind")?,
        state: drama_jobs::JobState::Waiting,
        owner: row.try_get("owner_id")?,
        subject: row.try_get("subject")?,
        idempotency_key: row.try_get("idempotency_key")?,
        payload: row.try_get("payload")?,
        result: row.try_get("result")?,
        error: row.try_get("error")?,
        checkpoint: row.try_get("checkpoint")?,
        dependencies,
        resource_class: row.try_get("resource_class")?,
        priority: row.try_get("priority")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        cost: row.try_get("cost")?,
        run_after: None,
        cancel_requested: row.try_get("cancel_requested")?,
        counts: None,
        costs: None,
        budget: None,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        updated_at: row.try_get("updated_at")?,
    };
    if node_type.is_group() {
        let gs: String = row.try_get("g_state")?;
        view.state = state(&gs)?;
        view.counts = Some(counts_of(row)?);
        view.costs = Some(costs_of(row)?);
        view.budget = row.try_get("budget")?;
        view.cancel_requested = row.try_get("g_cancel")?;
        view.started_at = row.try_get("g_started")?;
        view.finished_at = row.try_get("g_finished")?;
        view.updated_at = row.try_get("g_updated")?;
    } else {
        let st: Option<String> = row.try_get("state")?;
        view.state = state(st.as_deref().unwrap_or_default())?;
        if view.state == drama_jobs::JobState::Ready {
            view.run_after = Some(row.try_get("run_after")?);
        }
    }
    Ok(view)
}

pub(super) async fn job(conn: &mut PgConnection, id: JobId) -> Result<Option<JobView>, Error> {
    let sql = format!(
        "select {VIEW_COLUMNS}, {DEPENDENCY_KEYS} from public.jobs j \
         left join public.job_groups g on g.id = j.id where j.id = $1"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.0)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| view_from_row(&r, None)).transpose()
}

/// The run `owner` keyed `key` less than `max_age` ago (by the database's clock, which
/// stamped `created_at`); an older holder gives the key up in the same statement (the select
/// reads the snapshot from before that update).
pub(super) async fn keyed_run(
    conn: &mut PgConnection,
    owner: Uuid,
    key: &str,
    max_age: std::time::Duration,
) -> Result<Option<JobView>, Error> {
    let sql = format!(
        "with released as ( \
           update public.jobs set idempotency_key = null \
           where owner_id = $1 and idempotency_key = $2 \
             and created_at <= now() - make_interval(secs => $3) returning id) \
         select {VIEW_COLUMNS}, {DEPENDENCY_KEYS} from public.jobs j \
         left join public.job_groups g on g.id = j.id \
         where j.owner_id = $1 and j.idempotency_key = $2 \
           and j.created_at > now() - make_interval(secs => $3)"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(owner)
        .bind(key)
        // Past a century every run is young enough (and `now() - interval` stays in range).
        .bind(max_age.as_secs_f64().min(100.0 * 365.25 * 86_400.0))
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| view_from_row(&r, None)).transpose()
}

pub(super) async fn children(
    conn: &mut PgConnection,
    parent: JobId,
    after: Option<JobId>,
    limit: usize,
) -> Result<Vec<JobView>, Error> {
    let sql = format!(
        "select {VIEW_COLUMNS}, {DEPENDENCY_KEYS} from public.jobs j \
         left join public.job_groups g on g.id = j.id \
         where j.run_id = (select p.run_id from public.jobs p where p.id = $1) \
           and j.parent_id = $1 \
           and j.id > coalesce($2, '00000000-0000-0000-0000-000000000000'::uuid) \
         order by j.id limit $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(parent.0)
        .bind(after.map(|a| a.0))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| view_from_row(r, None)).collect()
}

pub(super) async fn run_tree(
    conn: &mut PgConnection,
    run: RunId,
) -> Result<Option<RunTree>, Error> {
    // One statement, so the nodes and edges are one snapshot.
    let sql = format!(
        "select {VIEW_COLUMNS}, \
           array(select e.depends_on_id from public.job_edges e where e.job_id = j.id \
                 order by e.depends_on_id) as prerequisites \
         from public.jobs j left join public.job_groups g on g.id = j.id \
         where j.run_id = $1 order by j.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(run.0)
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut keys: HashMap<Uuid, String> = HashMap::with_capacity(rows.len());
    for row in &rows {
        keys.insert(row.try_get("id")?, row.try_get("key")?);
    }
    let mut nodes = Vec::with_capacity(rows.len());
    let mut edges = Vec::new();
    for row in &rows {
        let id: Uuid = row.try_get("id")?;
        let prerequisites: Vec<Uuid> = row.try_get("prerequisites")?;
        let dependencies = prerequisites
            .iter()
            .map(|p| {
                keys.get(p)
                    .cloned()
                    .ok_or_else(|| unexpected("dangling edge"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        edges.extend(prerequisites.iter().map(|p| (JobId(id), JobId(*p))));
        nodes.push(view_from_row(row, Some(dependencies))?);
    }
    Ok(Some(RunTree { nodes, edges }))
}

/// Event batches read per round trip while paging through a run's events.
const BATCHES_PER_READ: i64 = 64;

pub(super) async fn events(
    conn: &mut PgConnection,
    run: RunId,
    after: Option<EventId>,
    scope: Option<JobId>,
    limit: usize,
) -> Result<Vec<Event>, Error> {
    let after = after.map_or(0, |e| e.0);
    // Which of a batch's nodes lie in the scope is worked out by the statement that reads the
    // batch, so both see one snapshot: an expansion commits its nodes and their events
    // together, and a scope read apart from the batches could miss nodes whose events the
    // batch read then finds (and the cursor would step past them for good).
    let mut out = Vec::new();
    let mut cursor = after;
    while out.len() < limit {
        let rows = sqlx::query(
            "select b.first_id, b.last_id, b.at, b.job_ids, b.keys, b.kinds, b.states, \
                    b.attempts, b.details, \
                    case when $4::uuid is null then null else array( \
                      select j.id from public.jobs j \
                      where j.run_id = $1 and j.id = any(b.job_ids) \
                        and (j.id = $4 or $4 = any(j.ancestors))) end as in_scope \
             from public.job_event_batches b where b.run_id = $1 and b.last_id > $2 \
             order by b.last_id limit $3",
        )
        .bind(run.0)
        .bind(cursor)
        .bind(BATCHES_PER_READ)
        .bind(scope.map(|s| s.0))
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            cursor = row.try_get("last_id")?;
            let in_scope: Option<Vec<Uuid>> = row.try_get("in_scope")?;
            let in_scope: Option<HashSet<Uuid>> = in_scope.map(|ids| ids.into_iter().collect());
            unpack_batch(row, run, after, in_scope.as_ref(), limit, &mut out)?;
        }
        if i64::try_from(rows.len()).unwrap_or(0) < BATCHES_PER_READ {
            break;
        }
    }
    Ok(out)
}

/// Appends the events of one batch row after `after` (of the nodes in `scope`) to `out`, up
/// to `limit` events in all.
fn unpack_batch(
    row: &PgRow,
    run: RunId,
    after: i64,
    scope: Option<&HashSet<Uuid>>,
    limit: usize,
    out: &mut Vec<Event>,
) -> Result<(), Error> {
    let first: i64 = row.try_get("first_id")?;
    let at: DateTime<Utc> = row.try_get("at")?;
    let job_ids: Vec<Uuid> = row.try_get("job_ids")?;
    let keys: Vec<String> = row.try_get("keys")?;
    let kinds: Vec<String> = row.try_get("kinds")?;
    let states: Vec<String> = row.try_get("states")?;
    let attempts: Vec<i32> = row.try_get("attempts")?;
    let details: Vec<Option<serde_json::Value>> = row.try_get("details")?;
    let events = job_ids
        .into_iter()
        .zip(keys)
        .zip(kinds.iter().zip(&states))
        .zip(attempts.into_iter().zip(details));
    for (position, (((job_id, key), (kind, st)), (attempt, detail))) in events.enumerate() {
        let id = first + i64::try_from(position).unwrap_or(i64::MAX);
        if id <= after || scope.is_some_and(|s| !s.contains(&job_id)) {
            continue;
        }
        if out.len() >= limit {
            break;
        }
        out.push(Event {
            id: EventId(id),
            run_id: run,
            job_id: JobId(job_id),
            key,
            kind: EventKind::parse(kind)
                .ok_or_else(|| unexpected(format!("unknown event kind {kind:?}")))?,
            state: state(st)?,
            attempt,
            at,
            detail: detail.unwrap_or(serde_json::Value::Null),
        });
    }
    Ok(())
}

pub(super) async fn list_runs(
    conn: &mut PgConnection,
    filter: &RunFilter,
) -> Result<Vec<JobView>, Error> {
    let limit = i64::try_from(if filter.limit == 0 { 100 } else { filter.limit }).unwrap_or(100);
    // One statement per filter shape, so each uses its index with a stable plan.
    let condition = match (&filter.subject, filter.owner) {
        (Some(_), Some(_)) => "j.subject = $1 and j.owner_id = $2",
        (Some(_), None) => "j.subject = $1",
        (None, Some(_)) => "j.owner_id = $2",
        (None, None) => "true",
    };
    let active = if filter.active_only {
        " and g.finished_at is null"
    } else {
        ""
    };
    // An owner's active runs (the `active_runs` quota, checked on every paid request) come
    // from `job_active_runs`: no index of `job_groups` tells active runs from settled ones
    // (it would cost the settling update its HOT path), so the join below would read every
    // group of every owner. `finished_at` stays the truth for the rows found there.
    let (from, condition, order) =
        if filter.active_only && filter.subject.is_none() && filter.owner.is_some() {
            (
                "public.job_active_runs a join public.jobs j on j.id = a.run_id \
                 join public.job_groups g on g.id = a.run_id",
                "a.owner_id = $2",
                "a.run_id desc",
            )
        } else {
            (
                "public.jobs j join public.job_groups g on g.id = j.id",
                condition,
                "j.id desc",
            )
        };
    let sql = format!(
        "select {VIEW_COLUMNS}, '{{}}'::text[] as dependencies from {from} \
         where j.node_type = 'run' and {condition}{active} \
           and ($1::text is null or true) and ($2::uuid is null or true) \
         order by {order} limit $3"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&filter.subject)
        .bind(filter.owner)
        .bind(limit)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| view_from_row(r, None)).collect()
}

pub(super) async fn first_children(
    conn: &mut PgConnection,
    parents: &[JobId],
    per_parent: usize,
) -> Result<Vec<JobView>, Error> {
    if parents.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = parents.iter().map(|p| p.0).collect();
    // Per parent, through the run index as `children` reads (a lateral limit each).
    let sql = format!(
        "select {VIEW_COLUMNS}, {DEPENDENCY_KEYS} \
         from unnest($1::uuid[]) as p(id) \
         join public.jobs parent on parent.id = p.id \
         cross join lateral ( \
           select c.id from public.jobs c \
           where c.run_id = parent.run_id and c.parent_id = parent.id \
           order by c.id limit $2) firsts \
         join public.jobs j on j.id = firsts.id \
         left join public.job_groups g on g.id = j.id \
         order by j.parent_id, j.id"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&ids)
        .bind(i64::try_from(per_parent).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| view_from_row(r, None)).collect()
}

pub(super) async fn nodes_of_runs(
    conn: &mut PgConnection,
    runs: &[RunId],
    max_nodes: usize,
) -> Result<Vec<JobView>, Error> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = runs.iter().map(|r| r.0).collect();
    let sql = format!(
        "select {VIEW_COLUMNS}, {DEPENDENCY_KEYS} from public.jobs j \
         left join public.job_groups g on g.id = j.id \
         where j.run_id = any($1) \
         order by j.run_id desc, j.id limit $2"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&ids)
        .bind(i64::try_from(max_nodes.saturating_add(1)).unwrap_or(i64::MAX))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|r| view_from_row(r, None)).collect()
}

pub(super) async fn nodes_of_subjects(
    conn: &mut PgConnection,
    subjects: &[String],
    owner: Option<Uuid>,
    runs_per_subject: usize,
    max_nodes: usize,
) -> Result<Vec<JobView>, Error> {
    if subjects.is_empty() {
        return Ok(Vec::new());
    }
    let per_subject = i64::try_from(runs_per_subject.max(1)).unwrap_or(i64::MAX);
    let rows_at_most = i64::try_from(max_nodes.saturating_add(1)).unwrap_or(i64::MAX);
    // The newest runs of each subject through the subject index (a lateral limit per
    // subject), then all their nodes through the run index; dependency keys per task.
    let sql = format!(
        "select {VIEW_COLUMNS}, {DEPENDENCY_KEYS} \
         from unnest($1::text[]) as s(subject) \
         cross join lateral ( \
           select r.id from public.jobs r \
           where r.node_type = 'run' and r.subject = s.subject \
             and ($2::uuid is null or r.owner_id = $2) \
           order by r.id desc limit $3) runs \
         join public.jobs j on j.run_id = runs.id \
         left join public.job_groups g on g.id = j.id \
         order by s.subject, j.run_id desc, j.id \
         limit $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(subjects)
        .bind(owner)
        .bind(per_subject)
        .bind(rows_at_most)
        .fetch_all(&mut *conn)
        .await?;
    rows.iter()
        .map(|r| {
            let dependencies: Vec<String> = r.try_get("dependencies")?;
            view_from_row(r, Some(dependencies))
        })
        .collect()
}

/// Runs are found oldest first through `job_groups_runs_idx` (ids are UUIDv7), not through an
/// index on `finished_at`: such an index would make every update that settles a group non-HOT
/// (see the migration `job_groups_hot_settle`). The walk ends at the first id made at the
/// cutoff: a run settles after it was created, so none made later can be due. It therefore
/// steps over only the runs created before the cutoff that are still active or settled after
/// it, which retention keeps few, and never over the runs retention keeps (before, a pass that
/// found fewer than `max_runs` due walked every run in the table). The ids' clock is the
/// engine's and `finished_at` the database's: a skew between them only delays a run's pruning
/// by the skew. Runs in the caller's transaction.
pub(super) async fn prune(
    conn: &mut PgConnection,
    settled_before: DateTime<Utc>,
    max_runs: usize,
) -> Result<PruneReport, Error> {
    // The planner takes `id = run_id` and `cost_refundable = cost_refunded` to match 0.5 % of
    // the rows (its default for comparing two columns), so it would read every settled run
    // and sort them to keep the first `max_runs`; the walk in index order stops at them. Only
    // this pick goes without sorts: the deletes below keep the planner's own choices.
    sqlx::query("set local enable_sort = off")
        .execute(&mut *conn)
        .await?;
    let picked: Vec<uuid::Uuid> = sqlx::query_scalar(
        // The bound is the least UUIDv7 of the cutoff's millisecond: its 48 leading bits.
        "select g.id from public.job_groups g \
         where g.id = g.run_id and g.finished_at < $1 \
           and g.id < (lpad(to_hex(floor(extract(epoch from $1::timestamptz) * 1000)::bigint), \
                            12, '0') || '00000000000000000000')::uuid \
           and g.cost_refundable = g.cost_refunded \
         order by g.id limit $2 for update skip locked",
    )
    .bind(settled_before)
    .bind(i64::try_from(max_runs).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query("set local enable_sort = on")
        .execute(&mut *conn)
        .await?;
    if picked.is_empty() {
        return Ok(PruneReport::default());
    }
    let (runs, nodes, events): (i64, i64, i64) = sqlx::query_as(
        // `= any` of the ids, not a join with them: a join sized at a thousand runs is planned
        // as a hash join over the whole table; `any` probes each table's run index.
        "with nodes as (delete from public.jobs j where j.run_id = any($1) returning j.id), \
         edges as (delete from public.job_edges e using nodes n where e.job_id = n.id), \
         groups as (delete from public.job_groups g where g.run_id = any($1)), \
         active as (delete from public.job_active_runs a using public.jobs r \
           where r.id = any($1) and a.owner_id = r.owner_id and a.run_id = r.id), \
         keys as (delete from public.job_node_keys k where k.run_id = any($1)), \
         events as (delete from public.job_event_batches e where e.run_id = any($1) \
           returning cardinality(e.job_ids) as n) \
         select cardinality($1::uuid[])::bigint, (select count(*) from nodes), \
                (select coalesce(sum(n), 0)::bigint from events)",
    )
    .bind(&picked)
    .fetch_one(&mut *conn)
    .await?;
    let n = |v: i64| usize::try_from(v).unwrap_or_default();
    Ok(PruneReport {
        runs: n(runs),
        nodes: n(nodes),
        events: n(events),
    })
}
