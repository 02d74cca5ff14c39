//! The job store's transactions. Each function runs inside the caller's transaction; the
//! store's methods wrap them in their own.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use drama_jobs::core::{self, Changes, CoreError, EmptySource, Finish, FinishKind, Workset};
use drama_jobs::{Expansion, Fence, Graph, JobError, JobId, RunId, Submitted};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::error::{Error, unexpected};
use super::rows::PgSource;
use super::write::write_changes;

/// Runs `op` on `source`; when it needs rows that were not loaded, loads the whole runs once
/// and runs it again.
pub(super) async fn run_op<T>(
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

/// A new run of `graph`: its id, the ids of its nodes by key (the root's key is empty) and
/// the rows to write.
fn plan(graph: &Graph) -> Result<(JobId, BTreeMap<String, JobId>, Changes), Error> {
    let run_id = JobId::new();
    let mut ws = Workset::new(&EmptySource, Utc::now());
    match ws.submit(graph, run_id) {
        Ok(mut ids) => {
            ids.insert(String::new(), run_id);
            Ok((run_id, ids, ws.into_changes()))
        }
        Err(CoreError::Job(e)) => Err(e.into()),
        Err(_) => Err(unexpected("submission needed stored rows")),
    }
}

/// The run the owner already submitted under `graph`'s idempotency key.
async fn existing_run(conn: &mut PgConnection, graph: &Graph) -> Result<Submitted, Error> {
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
    Ok(Submitted {
        run_id: JobId(existing),
        created: false,
        ids: rows.into_iter().map(|(k, i)| (k, JobId(i))).collect(),
    })
}

pub(super) async fn submit(conn: &mut PgConnection, graph: &Graph) -> Result<Submitted, Error> {
    graph.validate().map_err(JobError::from)?;
    let (run_id, ids, changes) = plan(graph)?;
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
        return existing_run(conn, graph).await;
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
        planned.push(plan(g)?);
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
            out.push(existing_run(conn, graph).await?);
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

/// Lowers the cost of the task running under `fence` to `actual` when that is less (see
/// `Workset::settle_cost`); returns how much it dropped.
pub(super) async fn settle(
    conn: &mut PgConnection,
    fence: &Fence,
    actual: i64,
) -> Result<i64, Error> {
    let mut source = PgSource::default();
    source.lock_runs(conn, &[fence.run_id]).await?;
    source.load_tasks(conn, &[fence.job_id], &[], &[]).await?;
    if !source.tasks.contains_key(&fence.job_id) {
        return Err(JobError::FenceLost(*fence).into());
    }
    source.load_ancestor_groups(conn).await?;
    let (changes, back) = run_op(conn, &mut source, &[fence.run_id], |s, now| {
        let mut ws = Workset::new(s, now);
        let back = ws.settle_cost(fence, actual)?;
        Ok((ws.into_changes(), back))
    })
    .await?;
    if back > 0 {
        write_changes(conn, &changes, None).await?;
    }
    Ok(back)
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

pub(super) async fn resume_priced(
    conn: &mut PgConnection,
    job: JobId,
) -> Result<(RunId, usize, i64), Error> {
    whole_run_op(conn, job, |ws, run| {
        ws.resume_priced(run, job)
            .map(|(queued, price)| (run, queued, price))
    })
    .await
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
