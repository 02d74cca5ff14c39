//! The job store's transactions. Each function runs inside the caller's transaction; the
//! store's methods wrap them in their own.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use drama_jobs::core::{self, Changes, CoreError, EmptySource, Finish, FinishKind, Workset};
use drama_jobs::{
    ClaimRequest, ClaimedJob, Expansion, Fence, Graph, Heartbeat, JobError, JobId, ResourceLimit,
    RunId, Submitted, WorkerId, WorkerRegistration,
};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use super::error::{Error, unexpected};
use super::rows::{PgSource, TASK_COLUMNS, task_from_row};
use super::write::write_changes;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Runs `op` on `source`; when it needs rows that were not loaded, loads the whole runs once
/// and runs it again.
async fn run_op<T>(
    conn: &mut PgConnection,
    source: &mut PgSource,
    runs: &[RunId],
    op: impl Fn(&PgSource, DateTime<Utc>) -> Result<(Changes, T), CoreError>,
) -> Result<(Changes, T), Error> {
    let mut reloaded = false;
    loop {
        match op(source, source.now) {
            Ok(done) => return Ok(done),
            Err(CoreError::NotLoaded(_) | CoreError::RunNotLoaded(_)) if !reloaded => {
                reloaded = true;
                source.load_whole(conn, runs).await?;
                source.load_ancestor_groups(conn).await?;
            }
            Err(CoreError::Job(e)) => return Err(e.into()),
            Err(CoreError::NotLoaded(id) | CoreError::RunNotLoaded(id)) => {
                return Err(unexpected(format!("job {id} is referenced but missing")));
            }
        }
    }
}

pub(super) async fn submit(conn: &mut PgConnection, graph: &Graph) -> Result<Submitted, Error> {
    graph.validate().map_err(JobError::from)?;
    let run_id = JobId::new();
    let (mut ids, changes) = {
        let mut ws = Workset::new(&EmptySource, Utc::now());
        match ws.submit(graph, run_id) {
            Ok(ids) => (ids, ws.into_changes()),
            Err(CoreError::Job(e)) => return Err(e.into()),
            Err(_) => return Err(unexpected("submission needed stored rows")),
        }
    };
    ids.insert(String::new(), run_id);
    let inserted: Option<Uuid> = sqlx::query_scalar(
        "insert into public.jobs (id, run_id, node_type, key, kind, owner_id, subject, \
           idempotency_key, payload) \
         values ($1, $1, 'run', '', $2, $3, $4, $5, $6) \
         on conflict (owner_id, idempotency_key) where idempotency_key is not null do nothing \
         returning id",
    )
    .bind(run_id.0)
    .bind(&graph.run.kind)
    .bind(graph.run.owner)
    .bind(&graph.run.subject)
    .bind(&graph.run.idempotency_key)
    .bind(&graph.run.payload)
    .fetch_optional(&mut *conn)
    .await?;
    if inserted.is_none() {
        let existing: Uuid = sqlx::query_scalar(
            "select id from public.jobs where owner_id = $1 and idempotency_key = $2",
        )
        .bind(graph.run.owner)
        .bind(&graph.run.idempotency_key)
        .fetch_one(&mut *conn)
        .await?;
        let rows: Vec<(String, Uuid)> =
            sqlx::query_as("select key, id from public.jobs where run_id = $1")
                .bind(existing)
                .fetch_all(&mut *conn)
                .await?;
        return Ok(Submitted {
            run_id: JobId(existing),
            created: false,
            ids: rows.into_iter().map(|(k, i)| (k, JobId(i))).collect(),
        });
    }
    write_changes(conn, &changes, Some(run_id)).await?;
    Ok(Submitted {
        run_id,
        created: true,
        ids,
    })
}

/// Submits many graphs at once: roots with one statement (idempotency keys that exist return
/// their runs), everything else with one write.
pub(super) async fn submit_many(
    conn: &mut PgConnection,
    graphs: &[Graph],
) -> Result<Vec<Submitted>, Error> {
    for g in graphs {
        g.validate().map_err(JobError::from)?;
    }
    let mut planned = Vec::with_capacity(graphs.len());
    for g in graphs {
        let run_id = JobId::new();
        let mut ws = Workset::new(&EmptySource, Utc::now());
        match ws.submit(g, run_id) {
            Ok(mut ids) => {
                ids.insert(String::new(), run_id);
                planned.push((run_id, ids, ws.into_changes()));
            }
            Err(CoreError::Job(e)) => return Err(e.into()),
            Err(_) => return Err(unexpected("submission needed stored rows")),
        }
    }
    let inserted: Vec<Uuid> = sqlx::query_scalar(
        "insert into public.jobs (id, run_id, node_type, key, kind, owner_id, subject,            idempotency_key, payload)          select r.id, r.id, 'run', '', r.kind, r.owner_id, r.subject, r.idempotency_key, r.payload          from unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::jsonb[])            as r(id, kind, owner_id, subject, idempotency_key, payload)          on conflict (owner_id, idempotency_key) where idempotency_key is not null do nothing          returning id",
    )
    .bind(planned.iter().map(|p| p.0.0).collect::<Vec<_>>())
    .bind(graphs.iter().map(|g| g.run.kind.clone()).collect::<Vec<_>>())
    .bind(graphs.iter().map(|g| g.run.owner).collect::<Vec<_>>())
    .bind(graphs.iter().map(|g| g.run.subject.clone()).collect::<Vec<_>>())
    .bind(graphs.iter().map(|g| g.run.idempotency_key.clone()).collect::<Vec<_>>())
    .bind(graphs.iter().map(|g| g.run.payload.clone()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let inserted: HashSet<Uuid> = inserted.into_iter().collect();
    let mut merged = Changes::default();
    let mut out = Vec::with_capacity(graphs.len());
    for ((run_id, ids, changes), graph) in planned.into_iter().zip(graphs) {
        if !inserted.contains(&run_id.0) {
            // The owner used this idempotency key before (or twice in this batch).
            let existing: Uuid = sqlx::query_scalar(
                "select id from public.jobs where owner_id = $1 and idempotency_key = $2",
            )
            .bind(graph.run.owner)
            .bind(&graph.run.idempotency_key)
            .fetch_one(&mut *conn)
            .await?;
            let rows: Vec<(String, Uuid)> =
                sqlx::query_as("select key, id from public.jobs where run_id = $1")
                    .bind(existing)
                    .fetch_all(&mut *conn)
                    .await?;
            out.push(Submitted {
                run_id: JobId(existing),
                created: false,
                ids: rows.into_iter().map(|(k, i)| (k, JobId(i))).collect(),
            });
            continue;
        }
        merged
            .new_nodes
            .extend(changes.new_nodes.into_iter().filter(|n| n.id != run_id));
        merged.new_edges.extend(changes.new_edges);
        merged.created.extend(changes.created);
        merged.tasks.extend(changes.tasks);
        merged.groups.extend(changes.groups);
        merged.events.extend(changes.events);
        merged.wake.extend(changes.wake);
        out.push(Submitted {
            run_id,
            created: true,
            ids,
        });
    }
    write_changes(conn, &merged, None).await?;
    Ok(out)
}

/// Locks the runs of `items` and loads what finishing them touches.
async fn load_for_finish(conn: &mut PgConnection, items: &[Finish]) -> Result<PgSource, Error> {
    let mut source = PgSource::default();
    let runs: Vec<RunId> = items.iter().map(|i| i.fence.run_id).collect();
    source.lock_runs(conn, &runs).await?;
    let expanding: Vec<RunId> = items
        .iter()
        .filter(
            |i| matches!(&i.kind, FinishKind::Complete { expansion: Some(e), .. } if !e.is_empty()),
        )
        .map(|i| i.fence.run_id)
        .collect();
    source.load_whole(conn, &expanding).await?;
    let ids: Vec<JobId> = items.iter().map(|i| i.fence.job_id).collect();
    let (direct, transitive): (Vec<&Finish>, Vec<&Finish>) = items
        .iter()
        .partition(|i| matches!(i.kind, FinishKind::Complete { .. }));
    let direct: Vec<JobId> = direct.iter().map(|i| i.fence.job_id).collect();
    let transitive: Vec<JobId> = transitive.iter().map(|i| i.fence.job_id).collect();
    source.load_tasks(conn, &ids, &direct, &transitive).await?;
    source.load_ancestor_groups(conn).await?;
    Ok(source)
}

pub(super) async fn finish(
    conn: &mut PgConnection,
    items: &[Finish],
) -> Result<Vec<Result<(), JobError>>, Error> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let mut source = load_for_finish(conn, items).await?;
    let runs: Vec<RunId> = items.iter().map(|i| i.fence.run_id).collect();
    let (changes, results) = run_op(conn, &mut source, &runs, |s, now| {
        core::apply_finishes(s, now, items)
    })
    .await?;
    write_changes(conn, &changes, None).await?;
    Ok(results)
}

pub(super) async fn complete(
    conn: &mut PgConnection,
    fence: &Fence,
    result: Value,
    expansion: Option<Expansion>,
) -> Result<(), Error> {
    let item = Finish {
        fence: *fence,
        kind: FinishKind::Complete { result, expansion },
    };
    let items = std::slice::from_ref(&item);
    let mut source = load_for_finish(conn, items).await?;
    if !source.tasks.contains_key(&fence.job_id) {
        return Err(JobError::FenceLost(*fence).into());
    }
    let (changes, ()) = run_op(conn, &mut source, &[fence.run_id], |s, now| {
        let mut ws = Workset::new(s, now);
        ws.finish(&item)?;
        Ok((ws.into_changes(), ()))
    })
    .await?;
    write_changes(conn, &changes, None).await
}

struct Candidate {
    payload: Value,
    checkpoint: Option<Value>,
    resource_class: String,
    parent_id: Option<Uuid>,
    owner: Uuid,
    subject: Option<String>,
    has_dependencies: bool,
    key: String,
    kind: String,
    cost: i64,
}

/// The transaction's time, whether the worker is alive, and which limited classes look full
/// (a hint, read without locks, to skip runs whose only runnable tasks could not start).
const CLAIM_CONTEXT: &str = "\
select now() as now,
  exists (select 1 from public.job_workers w where w.id = $1 and w.expires_at > now()) as alive,
  exists (select 1 from public.job_resource_classes c
          where c.max_running is not null or c.per_minute is not null
             or c.throttled_until > now()) as limited,
  array(select c.name from public.job_resource_classes c
        where c.throttled_until > now()
           or c.max_running <= (select count(*) from public.jobs r
                                where r.state = 'running' and r.resource_class = c.name)
           or (c.per_minute is not null
               and c.tokens + extract(epoch from now() - coalesce(c.refilled_at, now()))
                              * c.per_minute / 60.0 < 1)) as full_classes";

/// Locks the runs of the best runnable tasks, skipping runs other transactions hold.
///
/// The ready index is read in its order and filtered outside (`offset 0` keeps the filter out
/// of the scan): a generic plan cannot know how selective the kind and class filters are, and
/// with the filters inside it would sort every ready task instead of stopping at the limit.
const PICK_RUNS: &str = "\
select GROUP_COLUMNS from public.job_groups g join public.jobs j on j.id = g.id
where g.id = any(array(
  select s.run_id from (
    select t.run_id, t.run_after, t.kind, t.resource_class from public.jobs t
    where t.state = 'ready' order by t.priority desc, t.rank desc, t.id offset 0) s
  where s.run_after <= now() and s.kind = any($1) and s.resource_class <> all($3)
  limit $2))
order by g.id";

const CANDIDATES: &str = "\
with caps as (
  select l.name, greatest(0, least(
      coalesce(l.max_running - (select count(*) from public.jobs r
                                where r.state = 'running' and r.resource_class = l.name),
               2147483647),
      l.token_cap)) as cap
  from unnest($3::text[], $4::int[], $5::int[]) as l(name, max_running, token_cap)
), cand as (
  (select j.id, j.priority, j.rank from public.jobs j
   where j.run_id = any($1) and j.state = 'ready' and j.run_after <= now()
     and j.kind = any($2) and j.resource_class <> all($3)
   order by j.priority desc, j.rank desc, j.id limit $6)
  union all
  (select x.id, x.priority, x.rank from caps c cross join lateral (
     select j.id, j.priority, j.rank from public.jobs j
     where j.run_id = any($1) and j.state = 'ready' and j.run_after <= now()
       and j.kind = any($2) and j.resource_class = c.name
     order by j.priority desc, j.rank desc, j.id limit least(c.cap, $6)) x)
)
select TASK_COLUMNS, j.payload, j.checkpoint, j.resource_class, j.parent_id, j.owner_id,
  j.subject, exists (select 1 from public.job_edges e where e.job_id = j.id) as has_deps
from cand join public.jobs j on j.id = cand.id
order by cand.priority desc, cand.rank desc, cand.id limit $6";

/// [`CANDIDATES`] when no class is limited (the common case): one index range per run, and a
/// statement that plans in a fraction of the time of the one with per-class caps.
const CANDIDATES_UNLIMITED: &str = "\
select TASK_COLUMNS, j.payload, j.checkpoint, j.resource_class, j.parent_id, j.owner_id,
  j.subject, exists (select 1 from public.job_edges e where e.job_id = j.id) as has_deps
from public.jobs j
where j.run_id = any($1) and j.state = 'ready' and j.run_after <= now() and j.kind = any($2)
order by j.priority desc, j.rank desc, j.id limit $3";

struct ClassState {
    name: String,
    max_running: Option<i32>,
    per_minute: Option<i32>,
    tokens: f64,
}

pub(super) async fn claim(
    conn: &mut PgConnection,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedJob>, Error> {
    if request.limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
    let context = sqlx::query(CLAIM_CONTEXT)
        .bind(request.worker.0)
        .fetch_one(&mut *conn)
        .await?;
    if !context.try_get::<bool, _>("alive")? {
        return Err(JobError::WorkerExpired(request.worker).into());
    }
    let now: DateTime<Utc> = context.try_get("now")?;
    let limited: bool = context.try_get("limited")?;
    let full: Vec<String> = context.try_get("full_classes")?;
    let pick = |blocking: bool| {
        let base = PICK_RUNS.replace("GROUP_COLUMNS", super::rows::GROUP_COLUMNS);
        let sql = if blocking {
            format!("{base} limit 1 for no key update of g")
        } else {
            format!("{base} for no key update of g skip locked")
        };
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&request.kinds)
            .bind(limit)
            .bind(&full)
    };
    let mut rows = pick(false).fetch_all(&mut *conn).await?;
    if rows.is_empty() {
        // Every run with runnable tasks is held by another transaction: wait for one.
        rows = pick(true).fetch_all(&mut *conn).await?;
    }
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let mut source = PgSource {
        now,
        ..PgSource::default()
    };
    let mut runs = Vec::with_capacity(rows.len());
    for row in &rows {
        let (g, owner, subject) = super::rows::group_from_row(row)?;
        runs.push(g.id.0);
        source.identity.insert(g.id, (owner, subject));
        source.groups.insert(g.id, g);
    }

    // Limited classes are locked (by name, after the runs) so that two claimers never both
    // see the same free slot.
    let mut classes = Vec::new();
    if limited {
        let rows = sqlx::query(
            "select name, max_running, per_minute, tokens, refilled_at, throttled_until \
             from public.job_resource_classes \
             where max_running is not null or per_minute is not null or throttled_until > now() \
             order by name for no key update",
        )
        .fetch_all(&mut *conn)
        .await?;
        for row in &rows {
            let per_minute: Option<i32> = row.try_get("per_minute")?;
            let throttled: Option<DateTime<Utc>> = row.try_get("throttled_until")?;
            let mut tokens = f64::from(i32::MAX);
            if let Some(rate) = per_minute {
                let stored: f64 = row.try_get("tokens")?;
                let refilled: Option<DateTime<Utc>> = row.try_get("refilled_at")?;
                let minutes = refilled.map_or(0.0, |t| {
                    (now - t).num_microseconds().unwrap_or(0).max(0) as f64 / 60e6
                });
                tokens = (stored + minutes * f64::from(rate)).min(f64::from(rate.max(1)));
            }
            if throttled.is_some_and(|t| t > now) {
                tokens = 0.0;
            }
            classes.push(ClassState {
                name: row.try_get("name")?,
                max_running: row.try_get("max_running")?,
                per_minute,
                tokens,
            });
        }
    }
    let candidate_rows = if classes.is_empty() {
        let sql = CANDIDATES_UNLIMITED.replace("TASK_COLUMNS", TASK_COLUMNS);
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&runs)
            .bind(&request.kinds)
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
    } else {
        let sql = CANDIDATES.replace("TASK_COLUMNS", TASK_COLUMNS);
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&runs)
            .bind(&request.kinds)
            .bind(classes.iter().map(|c| c.name.clone()).collect::<Vec<_>>())
            .bind(classes.iter().map(|c| c.max_running).collect::<Vec<_>>())
            .bind(
                classes
                    .iter()
                    .map(|c| c.tokens.floor().clamp(0.0, f64::from(i32::MAX)) as i32)
                    .collect::<Vec<_>>(),
            )
            .bind(limit)
            .fetch_all(&mut *conn)
            .await?
    };
    let run_ids: Vec<RunId> = runs.iter().map(|r| JobId(*r)).collect();
    let mut order = Vec::with_capacity(candidate_rows.len());
    let mut extras: HashMap<JobId, Candidate> = HashMap::new();
    for row in &candidate_rows {
        let task = task_from_row(row, false)?;
        order.push(task.id);
        extras.insert(task.id, candidate(row, &task.key, &task.kind, task.cost)?);
        source.tasks.insert(task.id, task);
    }
    if order.is_empty() {
        return Ok(Vec::new());
    }
    source.load_ancestor_groups(conn).await?;
    let (changes, started) = run_op(conn, &mut source, &run_ids, |s, now| {
        core::apply_claims(s, now, &order, request.worker, request.limit)
    })
    .await?;
    write_changes(conn, &changes, None).await?;

    let started_set: HashSet<JobId> = started.iter().copied().collect();
    let rate_used: Vec<(String, f64)> = classes
        .iter()
        .filter(|c| c.per_minute.is_some())
        .map(|c| {
            let used = extras
                .iter()
                .filter(|(id, x)| started_set.contains(id) && x.resource_class == c.name)
                .count();
            (c.name.clone(), (c.tokens - used as f64).max(0.0))
        })
        .collect();
    if !rate_used.is_empty() {
        let (names, tokens): (Vec<String>, Vec<f64>) = rate_used.into_iter().unzip();
        sqlx::query(
            "update public.job_resource_classes c set tokens = u.tokens, refilled_at = now(), \
               updated_at = now() \
             from unnest($1::text[], $2::float8[]) as u(name, tokens) where c.name = u.name",
        )
        .bind(names)
        .bind(tokens)
        .execute(&mut *conn)
        .await?;
    }

    let needing: Vec<Uuid> = started
        .iter()
        .filter(|id| extras.get(id).is_some_and(|x| x.has_dependencies))
        .map(|id| id.0)
        .collect();
    let mut dependencies: HashMap<JobId, std::collections::BTreeMap<String, Value>> =
        HashMap::new();
    if !needing.is_empty() {
        let rows: Vec<(Uuid, String, Option<Value>)> = sqlx::query_as(
            "select e.job_id, p.key, p.result from public.job_edges e \
             join public.jobs p on p.id = e.depends_on_id where e.job_id = any($1)",
        )
        .bind(needing)
        .fetch_all(&mut *conn)
        .await?;
        for (job, key, result) in rows {
            dependencies
                .entry(JobId(job))
                .or_default()
                .insert(key, result.unwrap_or(Value::Null));
        }
    }
    let tasks: HashMap<JobId, &core::TaskRow> = changes.tasks.iter().map(|t| (t.id, t)).collect();
    let mut claimed = Vec::with_capacity(started.len());
    for id in started {
        let (Some(task), Some(x)) = (tasks.get(&id), extras.remove(&id)) else {
            continue;
        };
        claimed.push(ClaimedJob {
            fence: Fence {
                job_id: id,
                run_id: task.run_id,
                epoch: task.epoch,
            },
            key: x.key,
            kind: x.kind,
            payload: x.payload,
            attempt: u32::try_from(task.attempts).unwrap_or_default(),
            max_attempts: u32::try_from(task.max_attempts).unwrap_or_default(),
            checkpoint: x.checkpoint,
            dependencies: dependencies.remove(&id).unwrap_or_default(),
            owner: x.owner,
            subject: x.subject,
            parent_id: x.parent_id.map(JobId),
            resource_class: x.resource_class,
            cost: x.cost,
        });
    }
    Ok(claimed)
}

fn candidate(row: &PgRow, key: &str, kind: &str, cost: i64) -> Result<Candidate, Error> {
    Ok(Candidate {
        payload: row.try_get("payload")?,
        checkpoint: row.try_get("checkpoint")?,
        resource_class: row.try_get("resource_class")?,
        parent_id: row.try_get("parent_id")?,
        owner: row.try_get("owner_id")?,
        subject: row.try_get("subject")?,
        has_dependencies: row.try_get("has_deps")?,
        key: key.to_owned(),
        kind: kind.to_owned(),
        cost,
    })
}

pub(super) async fn reap(conn: &mut PgConnection, limit: usize) -> Result<usize, Error> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "select j.id, j.run_id from public.jobs j \
         where j.state = 'running' and not exists ( \
           select 1 from public.job_workers w where w.id = j.lease_owner and w.expires_at > now()) \
         limit $1",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        sqlx::query("delete from public.job_workers where expires_at <= now()")
            .execute(&mut *conn)
            .await?;
        return Ok(0);
    }
    let ids: Vec<JobId> = rows.iter().map(|(id, _)| JobId(*id)).collect();
    let runs: Vec<RunId> = rows.iter().map(|(_, r)| JobId(*r)).collect();
    let mut source = PgSource::default();
    source.lock_runs(conn, &runs).await?;
    source.load_tasks(conn, &ids, &[], &ids).await?;
    source.load_ancestor_groups(conn).await?;
    // Fresh look after the lock: the task may have been finished and claimed again since.
    let owners: Vec<Uuid> = ids
        .iter()
        .filter_map(|id| source.tasks.get(id).and_then(|t| t.lease_owner))
        .map(|w| w.0)
        .collect();
    let alive: Vec<Uuid> = sqlx::query_scalar(
        "select id from public.job_workers where id = any($1) and expires_at > now()",
    )
    .bind(owners)
    .fetch_all(&mut *conn)
    .await?;
    let alive: HashSet<WorkerId> = alive.into_iter().map(WorkerId).collect();
    let expired: Vec<JobId> = ids
        .into_iter()
        .filter(|id| {
            source
                .tasks
                .get(id)
                .is_some_and(|t| t.lease_owner.is_none_or(|w| !alive.contains(&w)))
        })
        .collect();
    let (changes, n) = run_op(conn, &mut source, &runs, |s, now| {
        let mut ws = Workset::new(s, now);
        let mut n = 0;
        for id in &expired {
            if ws.lease_expired(*id)? {
                n += 1;
            }
        }
        Ok((ws.into_changes(), n))
    })
    .await?;
    write_changes(conn, &changes, None).await?;
    sqlx::query("delete from public.job_workers where expires_at <= now()")
        .execute(&mut *conn)
        .await?;
    Ok(n)
}

/// The run of a node, without locking.
async fn run_of(conn: &mut PgConnection, job: JobId) -> Result<RunId, Error> {
    let run: Option<Uuid> = sqlx::query_scalar("select run_id from public.jobs where id = $1")
        .bind(job.0)
        .fetch_optional(&mut *conn)
        .await?;
    run.map(JobId).ok_or(Error::Job(JobError::NotFound(job)))
}

async fn whole_run_op<T>(
    conn: &mut PgConnection,
    job: JobId,
    op: impl Fn(&mut Workset<'_>, RunId) -> Result<T, CoreError>,
) -> Result<T, Error> {
    let run = run_of(conn, job).await?;
    let mut source = PgSource::default();
    source.lock_runs(conn, &[run]).await?;
    source.load_whole(conn, &[run]).await?;
    let (changes, out) = run_op(conn, &mut source, &[run], |s, now| {
        let mut ws = Workset::new(s, now);
        let out = op(&mut ws, run)?;
        Ok((ws.into_changes(), out))
    })
    .await?;
    write_changes(conn, &changes, None).await?;
    Ok(out)
}

pub(super) async fn cancel(
    conn: &mut PgConnection,
    job: JobId,
    reason: &str,
) -> Result<(usize, usize), Error> {
    whole_run_op(conn, job, |ws, run| ws.cancel(run, job, reason)).await
}

pub(super) async fn resume(conn: &mut PgConnection, job: JobId) -> Result<usize, Error> {
    whole_run_op(conn, job, |ws, run| ws.resume(run, job)).await
}

pub(super) async fn take_refund(conn: &mut PgConnection, run: RunId) -> Result<i64, Error> {
    let mut source = PgSource::default();
    if source.lock_runs(conn, &[run]).await?.is_empty() {
        return Err(JobError::NotFound(run).into());
    }
    let (changes, delta) = run_op(conn, &mut source, &[run], |s, now| {
        let mut ws = Workset::new(s, now);
        let delta = ws.take_refund(run)?;
        Ok((ws.into_changes(), delta))
    })
    .await?;
    write_changes(conn, &changes, None).await?;
    Ok(delta)
}

pub(super) async fn checkpoint(
    conn: &mut PgConnection,
    fence: &Fence,
    value: &Value,
) -> Result<(), Error> {
    let done = sqlx::query(
        "update public.jobs set checkpoint = $4, updated_at = now() \
         where id = $1 and run_id = $2 and epoch = $3 and state = 'running'",
    )
    .bind(fence.job_id.0)
    .bind(fence.run_id.0)
    .bind(fence.epoch)
    .bind(value)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(JobError::FenceLost(*fence).into());
    }
    Ok(())
}

pub(super) async fn register(
    conn: &mut PgConnection,
    worker: &WorkerRegistration,
) -> Result<(), Error> {
    sqlx::query(
        "insert into public.job_workers (id, name, kinds, expires_at) \
         values ($1, $2, $3, now() + make_interval(secs => $4)) \
         on conflict (id) do update set expires_at = excluded.expires_at, heartbeat_at = now()",
    )
    .bind(worker.id.0)
    .bind(&worker.name)
    .bind(&worker.kinds)
    .bind(secs(worker.ttl))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn heartbeat(
    conn: &mut PgConnection,
    worker: WorkerId,
    ttl: Duration,
) -> Result<Heartbeat, Error> {
    let (alive, cancels): (bool, Vec<Uuid>) = sqlx::query_as(
        "with w as ( \
           update public.job_workers set expires_at = now() + make_interval(secs => $2), \
             heartbeat_at = now() \
           where id = $1 and expires_at > now() returning id) \
         select exists (select 1 from w), \
           array(select j.id from public.jobs j \
                 where j.lease_owner = $1 and j.state = 'running' and j.cancel_requested)",
    )
    .bind(worker.0)
    .bind(secs(ttl))
    .fetch_one(&mut *conn)
    .await?;
    Ok(Heartbeat {
        alive,
        cancel_requested: if alive {
            cancels.into_iter().map(JobId).collect()
        } else {
            Vec::new()
        },
    })
}

pub(super) async fn throttle(
    conn: &mut PgConnection,
    class: &str,
    delay: Duration,
) -> Result<(), Error> {
    sqlx::query(
        "insert into public.job_resource_classes (name, throttled_until) \
         values ($1, now() + make_interval(secs => $2)) \
         on conflict (name) do update set \
           throttled_until = greatest(coalesce(job_resource_classes.throttled_until, now()), \
                                      excluded.throttled_until), \
           updated_at = now()",
    )
    .bind(class)
    .bind(secs(delay))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn set_limits(
    conn: &mut PgConnection,
    limits: &[ResourceLimit],
) -> Result<(), Error> {
    let mut seen = BTreeSet::new();
    for l in limits {
        drama_jobs::graph::check_class_name(&l.class).map_err(|e| JobError::Invalid {
            field: "class",
            reason: e.to_string(),
        })?;
        if !seen.insert(l.class.as_str()) {
            return Err(JobError::Invalid {
                field: "class",
                reason: format!("{:?} is listed twice", l.class),
            }
            .into());
        }
    }
    let names: Vec<&str> = limits.iter().map(|l| l.class.as_str()).collect();
    let max: Vec<Option<i32>> = limits
        .iter()
        .map(|l| l.max_running.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
        .collect();
    let rate: Vec<Option<i32>> = limits
        .iter()
        .map(|l| l.per_minute.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
        .collect();
    sqlx::query(
        "insert into public.job_resource_classes (name, max_running, per_minute, tokens, refilled_at) \
         select l.name, l.max_running, l.per_minute, coalesce(l.per_minute, 0), now() \
         from unnest($1::text[], $2::int[], $3::int[]) as l(name, max_running, per_minute) \
         on conflict (name) do update set \
           max_running = excluded.max_running, \
           tokens = case when job_resource_classes.per_minute is distinct from excluded.per_minute \
                         then excluded.tokens else job_resource_classes.tokens end, \
           refilled_at = case when job_resource_classes.per_minute is distinct from excluded.per_minute \
                              then now() else job_resource_classes.refilled_at end, \
           per_minute = excluded.per_minute, updated_at = now()",
    )
    .bind(names)
    .bind(max)
    .bind(rate)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
