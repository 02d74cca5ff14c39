//! Worker processes and resource classes: registration, heartbeats, reaping expired leases,
//! checkpoints, throttling and limits.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use drama_jobs::core::Workset;
use drama_jobs::{
    Fence, Heartbeat, JobError, JobId, ResourceLimit, RunId, WorkerId, WorkerRegistration,
};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use super::error::Error;
use super::ops::run_op;
use super::rows::PgSource;
use super::write::write_changes;

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Removes the registrations that expired and lease no running task any more. One that still
/// leases tasks (more than a reap's limit, or tasks another reaper is taking back) stays until
/// they are requeued: its row is what [`reap`] locks against a worker registering again.
/// Rows other transactions hold are skipped (a reaper holding some of them removes them
/// itself), so two reapers never wait for each other here.
const DELETE_EXPIRED: &str = "\
delete from public.job_workers w where w.id in (
  select d.id from public.job_workers d
  where d.expires_at <= now()
    and not exists (select 1 from public.jobs j where j.lease_owner = d.id and j.state = 'running')
  for update skip locked)";

/// Whether `reaper` may take tasks back: its own registration is alive and has been since at
/// least one lease ago (`alive_since`, see `register` and [`HEARTBEAT`]; the lease is the
/// registration's own, `expires_at - heartbeat_at`). After a database outage longer than the
/// lease every registration has expired, the reaper's too; a reaper that trusted the others'
/// expiry would take back the tasks of every live process, whose handlers have paid their
/// providers. Waiting one lease after its own registration came back lets the live ones
/// register again first; the dead ones are reaped a lease later.
const MAY_REAP: &str = "\
select coalesce((select w.expires_at > now() and w.alive_since <= now() - (w.expires_at - w.heartbeat_at)
                 from public.job_workers w where w.id = $1), false)";

/// Requeues (or fails) the running tasks of workers whose registration expired, when
/// `reaper` may reap ([`MAY_REAP`]).
///
/// Lock order: the runs, then the tasks (`for no key update`, in id order: a checkpoint,
/// which updates its task without the run's lock, waits, and finds its fence gone when the
/// task was requeued, instead of committing between the read and the write and leaving the
/// task's refundable cost behind its group's), then the registrations of their owners (`for
/// update`, in id order), whose expiry is checked under that lock. A worker that registers
/// again (an upsert of its row) or heartbeats waits for the requeue to commit, so the
/// `still_held` that follows its registration sees the tasks gone and stops their handlers;
/// or it commits first, and the reaper sees it alive and leaves its tasks. Registration and
/// heartbeats lock only the worker's row, and claims lock it (`for key share`) after their
/// runs, so the order is the same for everybody.
///
/// Every one of those locks is taken `skip locked`: what another transaction holds is left
/// for the next pass. A reaper that waited would wait, holding the runs it had locked already,
/// for whatever holds the next one, and a session that stopped in the middle of a transaction
/// (a process paused, a connection lost without the server noticing) holds its locks until the
/// server ends it (`idle_in_transaction_session_timeout`, see `PgSettings`): meanwhile every
/// claim, completion and cancellation of the runs the reaper held waited too, across the
/// cluster. A registration another transaction holds is being renewed, or claimed under, or
/// reaped by another reaper; none of these is a reason to take its tasks now.
pub(super) async fn reap(
    conn: &mut PgConnection,
    reaper: WorkerId,
    limit: usize,
) -> Result<usize, Error> {
    let may: bool = sqlx::query_scalar(MAY_REAP)
        .bind(reaper.0)
        .fetch_one(&mut *conn)
        .await?;
    if !may {
        return Ok(0);
    }
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
        sqlx::query(DELETE_EXPIRED).execute(&mut *conn).await?;
        return Ok(0);
    }
    let picked: Vec<RunId> = rows.iter().map(|(_, r)| JobId(*r)).collect();
    let mut source = PgSource::default();
    let runs: Vec<RunId> = source.lock_runs_skip_locked(conn, &picked).await?;
    let held: HashSet<Uuid> = runs.iter().map(|r| r.0).collect();
    let mut ids: Vec<Uuid> = rows
        .iter()
        .filter(|(_, run)| held.contains(run))
        .map(|(id, _)| *id)
        .collect();
    ids.sort_unstable();
    let locked: Vec<Uuid> = sqlx::query_scalar(
        "select id from public.jobs where id = any($1) and state = 'running' \
         order by id for no key update skip locked",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    let ids: Vec<JobId> = locked.into_iter().map(JobId).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    source.load_tasks(conn, &ids, &[], &ids).await?;
    source.load_ancestor_groups(conn).await?;
    // Fresh look after the locks: the task may have been finished and claimed again since.
    let mut owners: Vec<Uuid> = ids
        .iter()
        .filter_map(|id| source.tasks.get(id))
        .filter(|t| t.state == drama_jobs::JobState::Running)
        .filter_map(|t| t.lease_owner)
        .map(|w| w.0)
        .collect();
    owners.sort_unstable();
    owners.dedup();
    // Every owner's row that nobody else holds is locked, the expired ones above all (a
    // filter on the expiry, even outside a subquery, would be pushed below the lock and leave
    // them unlocked). Then the rows that exist: one that exists and was not locked is held by
    // another transaction, and its tasks are left; one that does not exist is gone.
    let registrations: Vec<(Uuid, bool)> = sqlx::query_as(
        "select id, expires_at > now() from public.job_workers \
         where id = any($1) order by id for update skip locked",
    )
    .bind(&owners)
    .fetch_all(&mut *conn)
    .await?;
    let present: HashSet<Uuid> =
        sqlx::query_scalar("select id from public.job_workers where id = any($1)")
            .bind(&owners)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    let expired_owners: HashSet<WorkerId> = registrations
        .iter()
        .filter(|(_, alive)| !*alive)
        .map(|(id, _)| WorkerId(*id))
        .chain(
            owners
                .iter()
                .filter(|id| !present.contains(id))
                .map(|id| WorkerId(*id)),
        )
        .collect();
    let expired: Vec<JobId> = ids
        .into_iter()
        .filter(|id| {
            source
                .tasks
                .get(id)
                .is_some_and(|t| t.lease_owner.is_none_or(|w| expired_owners.contains(&w)))
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
    sqlx::query(DELETE_EXPIRED).execute(&mut *conn).await?;
    Ok(n)
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
    // JSON null clears it (SQL null: the task no longer counts as spent).
    .bind((!value.is_null()).then_some(value))
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 0 {
        return Err(JobError::FenceLost(*fence).into());
    }
    Ok(())
}

pub(super) async fn still_held(
    conn: &mut PgConnection,
    fences: &[Fence],
) -> Result<Vec<JobId>, Error> {
    if fences.is_empty() {
        return Ok(Vec::new());
    }
    let held: Vec<Uuid> = sqlx::query_scalar(
        "select j.id from public.jobs j \
         join unnest($1::uuid[], $2::uuid[], $3::bigint[]) as f(id, run_id, epoch) \
           on j.id = f.id and j.run_id = f.run_id and j.epoch = f.epoch \
         where j.state = 'running'",
    )
    .bind(fences.iter().map(|f| f.job_id.0).collect::<Vec<_>>())
    .bind(fences.iter().map(|f| f.run_id.0).collect::<Vec<_>>())
    .bind(fences.iter().map(|f| f.epoch).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    Ok(held.into_iter().map(JobId).collect())
}

/// Registers the worker, or renews its registration. `alive_since` is kept while the
/// registration is alive and starts again when it had expired (see [`MAY_REAP`]).
pub(super) async fn register(
    conn: &mut PgConnection,
    worker: &WorkerRegistration,
) -> Result<(), Error> {
    sqlx::query(
        "insert into public.job_workers (id, name, kinds, expires_at, alive_since) \
         values ($1, $2, $3, now() + make_interval(secs => $4), now()) \
         on conflict (id) do update set expires_at = excluded.expires_at, heartbeat_at = now(), \
           alive_since = case when job_workers.expires_at > now() \
                              then job_workers.alive_since else now() end",
    )
    .bind(worker.id.0)
    .bind(&worker.name)
    .bind(&worker.kinds)
    .bind(secs(worker.ttl))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(super) async fn deregister(conn: &mut PgConnection, worker: WorkerId) -> Result<(), Error> {
    sqlx::query("delete from public.job_workers where id = $1")
        .bind(worker.0)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Renews the registration and looks at the worker's leased tasks, in one statement: an index
/// probe of `jobs_running_idx (lease_owner, resource_class) where state = 'running'` that
/// reads the rows of the tasks the worker leases (its handlers' tasks, a few hundred at most
/// with prefetch) and returns those with a cancellation requested and, when the worker named
/// what it holds (`held`), those it does not hold. The same rows the look for cancellations
/// alone read.
pub(super) async fn heartbeat(
    conn: &mut PgConnection,
    worker: WorkerId,
    ttl: Duration,
    held: Option<Vec<Uuid>>,
) -> Result<Heartbeat, Error> {
    type Row = (bool, Vec<Uuid>, Vec<Uuid>, Vec<Uuid>, Vec<i64>);
    let (alive, cancels, ids, runs, epochs): Row = sqlx::query_as(HEARTBEAT)
        .bind(worker.0)
        .bind(secs(ttl))
        .bind(held)
        .fetch_one(&mut *conn)
        .await?;
    if !alive {
        return Ok(Heartbeat::default());
    }
    Ok(Heartbeat {
        alive,
        cancel_requested: cancels.into_iter().map(JobId).collect(),
        unheld: ids
            .into_iter()
            .zip(runs)
            .zip(epochs)
            .map(|((id, run), epoch)| Fence {
                job_id: JobId(id),
                run_id: JobId(run),
                epoch,
            })
            .collect(),
    })
}

/// `$1` worker, `$2` ttl in seconds, `$3` the tasks it holds (null: do not compare).
///
/// A heartbeat that comes more than half a lease after the previous one starts `alive_since`
/// again (see [`MAY_REAP`]): the process could not reach the database for that long (or was
/// stalled), so its peers may not have either, and those whose heartbeats fell due earlier in
/// the gap may have expired while its own registration did not. Workers heartbeat every third
/// of the lease at most (`WorkerConfig::validate`), so a gap that long is no ordinary delay.
pub(super) const HEARTBEAT: &str = "\
with w as (
  update public.job_workers set expires_at = now() + make_interval(secs => $2),
    heartbeat_at = now(),
    alive_since = case when heartbeat_at >= now() - make_interval(secs => $2 / 2)
                       then alive_since else now() end
  where id = $1 and expires_at > now() returning id),
leased as (
  select j.id, j.run_id, j.epoch, j.cancel_requested,
    $3::uuid[] is not null and j.id <> all($3::uuid[]) as unheld
  from public.jobs j where j.lease_owner = $1 and j.state = 'running')
select exists (select 1 from w) as alive,
  array(select id from leased where cancel_requested order by id) as cancels,
  array(select id from leased where unheld order by id) as ids,
  array(select run_id from leased where unheld order by id) as runs,
  array(select epoch from leased where unheld order by id) as epochs";

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
    .bind(secs(drama_jobs::core::defer_delay(delay)))
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
