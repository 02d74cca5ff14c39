//! Claims: which ready tasks a worker gets, and the statements that find, lock and start them.
//!
//! Before its transaction, a claim runs [`PROMOTE`] on its own: deferred tasks that came due
//! become visible to the pick. Then its transaction is four statements in the common case:
//! 1. [`PICK`]: the transaction's time, whether the worker is alive, and the best runnable
//!    tasks, read without locks through the ready index, which leads with the resource class
//!    and the kind. Distinct (class, kind) pairs are enumerated with a loose index scan, classes
//!    that are full (by an unlocked look at their limits) are left out before any of their tasks
//!    is read, and each remaining pair contributes at most the claim's size (or the class's free
//!    capacity), read from the pair's entries that are not `delayed`: the cost depends on the
//!    number of pairs and the claim's size, never on how many tasks wait in full classes or
//!    for their `run_after`.
//! 2. Lock the runs of those tasks (`for no key update skip locked`, in id order), waiting for
//!    one run only when all are held. A claim that waited and cannot be filled from its pick
//!    picks again with the run held (the transaction it waited for, usually a completion, may
//!    have made tasks runnable), as does one whose picked tasks were all taken meanwhile.
//! 3. Read the picked tasks of the locked runs again (a fresh snapshot after the locks), with
//!    what their handlers need, including their dependencies' results.
//! 4. Write the transitions (tasks, counters, events, notifications) in one statement.
//!
//! Limited classes add three statements: their rows are locked by name after the runs, the
//! exact free capacity (running count, tokens) is computed under that lock by a statement of its
//! own (so it sees what the claim that held the lock before started) and applied to the
//! candidates, so two claimers never both see the same free slot; the tokens spent are written
//! back.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use drama_jobs::core::{self, TaskRow};
use drama_jobs::{ClaimRequest, ClaimedJob, Fence, JobError, JobId, RunId, WorkerId};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use super::error::Error;
use super::ops::run_op;
use super::rows::{PgSource, TASK_COLUMNS_WITHOUT_DEPENDENTS, task_from_row};
use super::write::write_changes;

/// Clears `delayed` on deferred tasks whose `run_after` passed (at most 1000, soonest first,
/// through `jobs_delayed_due_idx`), so that [`PICK`], which reads only ready tasks without it,
/// sees them. Runs before the claim's transaction, in one of its own.
///
/// `delayed` is no state: the engine never reads it, and a ready task is runnable once its
/// `run_after` passed whatever the flag says. It only says whether the pick may skip the task
/// (`write::task_updates` sets it from the state and `run_after` it writes). So clearing it
/// needs no run lock: the task's state, lease and fence are untouched, and a transaction that
/// holds the run's lock and writes the task sets the flag from what it writes, before or after
/// this statement. Locked rows are skipped, never waited for: a task some transaction is
/// writing gets its flag from that transaction (or from the next claim's promotion).
///
/// It is a transaction of its own because its row locks are held until commit: inside the
/// claim's transaction, a claim waiting for a run's lock (`lock_picked_runs`) would hold the
/// promoted rows while the transaction holding that run waits to update one of them, a
/// deadlock. On its own it waits for nothing and commits at once.
///
/// The due ids are an array the update probes by primary key: joined as a subquery, the
/// planner hashed the due rows and read every deferred task through the due index to match
/// them (85 ms with 50,000 deferred and one due), on every claim while retries came due.
pub(super) const PROMOTE: &str = "\
update public.jobs j set delayed = false
where j.id = any(array(
        select d.id from public.jobs d
        where d.state = 'ready' and d.delayed and d.run_after <= now()
        order by d.run_after limit 1000
        for no key update skip locked))
  and j.state = 'ready' and j.delayed";

/// The context of a claim and its best candidates, without locks. `$1` worker, `$2` kinds,
/// `$3` limit. A class is full when it is throttled, all its running slots are taken or its
/// token bucket is empty; a limited class that is not full contributes at most its free
/// capacity.
const PICK: &str = "\
with recursive pairs(class, kind) as (
  (select t.resource_class, t.kind from public.jobs t where t.state = 'ready'
   order by t.resource_class, t.kind limit 1)
  union all
  select n.resource_class, n.kind from pairs p cross join lateral (
    select t.resource_class, t.kind from public.jobs t
    where t.state = 'ready' and (t.resource_class, t.kind) > (p.class, p.kind)
    order by t.resource_class, t.kind limit 1) n
), caps as (
  select c.name, greatest(0, least(
      case when c.throttled_until > now() then 0 else 2147483647 end,
      coalesce(c.max_running - (select count(*) from public.jobs r
                                where r.state = 'running' and r.resource_class = c.name),
               2147483647),
      case when c.per_minute is null then 2147483647
           else floor(least(c.per_minute::float8, c.tokens
                  + extract(epoch from now() - coalesce(c.refilled_at, now())) * c.per_minute / 60.0))
      end))::bigint as free
  from public.job_resource_classes c
  where c.max_running is not null or c.per_minute is not null or c.throttled_until > now()
), picked as (
  select x.id, x.run_id, x.priority, x.rank from pairs p
  left join caps on caps.name = p.class
  cross join lateral (
    select t.id, t.run_id, t.priority, t.rank from public.jobs t
    where t.state = 'ready' and t.resource_class = p.class and t.kind = p.kind
      and not t.delayed and t.run_after <= now()
    order by t.priority desc, t.rank desc, t.id
    limit least($3, coalesce(caps.free, $3))) x
  where p.kind = any($2)
  order by x.priority desc, x.rank desc, x.id limit $3
)
select now() as now,
  exists (select 1 from public.job_workers w where w.id = $1 and w.expires_at > now()) as alive,
  exists (select 1 from caps) as limited,
  array(select id from picked order by priority desc, rank desc, id) as ids,
  array(select distinct run_id from picked order by run_id) as runs";

/// The picked tasks of the locked runs, read again after the locks, best first, if the
/// worker is still alive. `$1` ids, `$2` locked runs, `$3` the worker.
///
/// The worker's registration is locked here (`for key share`, after the runs) and held until
/// the claim commits: a reaper that decided the registration expired holds it `for update`
/// until its requeue commits, and this waits, then finds it expired (or gone) and starts
/// nothing; a reaper that comes later waits for this claim and checks the expiry again. The
/// pick's unlocked look at the registration is older than the claim's write, and a claim that
/// trusted it could start tasks under a registration reaped in between. The expiry is compared
/// with the clock, not `now()` (the transaction's start, before any wait for the lock): a
/// registration that expired while the claim waited starts nothing. Heartbeats do not
/// conflict with the lock (they update no key column).
const CANDIDATES: &str = "\
select COLUMNS, j.payload, j.checkpoint, j.resource_class, j.parent_id, j.owner_id, j.subject,
  (select jsonb_object_agg(p.key, coalesce(p.result, 'null'::jsonb))
   from public.job_edges e join public.jobs p on p.id = e.depends_on_id
   where e.job_id = j.id) as dependency_results
from public.jobs j
where j.id = any($1) and j.run_id = any($2) and j.state = 'ready' and j.run_after <= now()
  and exists (select 1 from public.job_workers w where w.id = $3
              and w.expires_at > clock_timestamp() for key share)
order by j.priority desc, j.rank desc, j.id";

/// What a claimed task's handler needs besides its mutable row.
struct Candidate {
    payload: Value,
    checkpoint: Option<Value>,
    resource_class: String,
    parent_id: Option<Uuid>,
    owner: Uuid,
    subject: Option<String>,
    dependencies: BTreeMap<String, Value>,
}

/// A limited class as its locked row says: how many more tasks may start now.
struct ClassCap {
    name: String,
    free: i64,
    rate_limited: bool,
    tokens: f64,
}

/// The result of [`PICK`].
struct Picked {
    now: DateTime<Utc>,
    limited: bool,
    ids: Vec<Uuid>,
    runs: Vec<Uuid>,
}

/// Picks at most this many times: again when every picked task was taken meanwhile (the next
/// look sees that commit), and again when a claim that waited for a run got less than it asked
/// for (the wait outdated the pick).
const PICK_ATTEMPTS: usize = 3;

/// Runs [`PROMOTE`] (outside a transaction: it commits on its own).
pub(super) async fn promote_due(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::query(PROMOTE).execute(&mut *conn).await?;
    Ok(())
}

pub(super) async fn claim(
    conn: &mut PgConnection,
    request: &ClaimRequest,
) -> Result<Vec<ClaimedJob>, Error> {
    if request.limit == 0 {
        return Ok(Vec::new());
    }
    let mut source = PgSource::default();
    let mut runs: Vec<Uuid> = Vec::new();
    let mut limited = false;
    let mut candidates = (Vec::new(), HashMap::new());
    for _ in 0..PICK_ATTEMPTS {
        let picked = pick(conn, request).await?;
        if picked.ids.is_empty() {
            break;
        }
        source.now = picked.now;
        limited = picked.limited;
        // Waiting while holding another run could deadlock with a claimer doing the opposite.
        let may_wait = runs.is_empty();
        let (locked, waited) = lock_picked_runs(conn, &mut source, &picked.runs, may_wait).await?;
        runs.extend(&locked);
        runs.sort_unstable();
        runs.dedup();
        candidates = load_candidates(conn, &mut source, &picked.ids, &runs, request.worker).await?;
        let found = candidates.0.len();
        // Nothing left of the pick: the runs' tasks were taken meanwhile; look again. Or the
        // claim waited for a run and the pick, which predates the wait, cannot fill it: the
        // transaction it waited for (usually a completion) may have made dependents runnable,
        // which a pick with the run held sees.
        let again = (found == 0 && !locked.is_empty()) || (waited && found < request.limit);
        if !again {
            break;
        }
    }
    let (order, mut extras) = candidates;
    if order.is_empty() {
        return Ok(Vec::new());
    }
    // Limited classes are locked after the runs, by name; their exact free capacity is known
    // only under that lock.
    let caps = if limited {
        lock_classes(conn, source.now).await?
    } else {
        Vec::new()
    };
    let order = within_capacity(order, &extras, &caps);
    source.load_ancestor_groups(conn).await?;
    if may_cancel(&source, &order) {
        // A budget or a cancelled group may end candidates cancelled, and their dependents
        // with them.
        source.load_dependents(conn, &order).await?;
    }
    let run_ids: Vec<RunId> = runs.iter().map(|r| JobId(*r)).collect();
    let (changes, started) = run_op(conn, &mut source, &run_ids, |s, now| {
        core::apply_claims(s, now, &order, request.worker, request.limit)
    })
    .await?;
    write_changes(conn, &changes, None).await?;
    spend_tokens(conn, &caps, &started, &extras).await?;
    let rows: HashMap<JobId, &TaskRow> = changes.tasks.iter().map(|t| (t.id, t)).collect();
    Ok(started
        .into_iter()
        .filter_map(|id| Some(claimed(rows.get(&id)?, extras.remove(&id)?)))
        .collect())
}

/// The candidates (best first) that fit their limited classes' free capacity.
fn within_capacity(
    order: Vec<JobId>,
    extras: &HashMap<JobId, Candidate>,
    caps: &[ClassCap],
) -> Vec<JobId> {
    let mut free: HashMap<&str, i64> = caps.iter().map(|c| (c.name.as_str(), c.free)).collect();
    order
        .into_iter()
        .filter(|id| {
            let Some(class) = extras.get(id).map(|x| x.resource_class.as_str()) else {
                return false;
            };
            match free.get_mut(class) {
                Some(n) if *n <= 0 => false,
                Some(n) => {
                    *n -= 1;
                    true
                }
                None => true,
            }
        })
        .collect()
}

async fn pick(conn: &mut PgConnection, request: &ClaimRequest) -> Result<Picked, Error> {
    let row = sqlx::query(PICK)
        .bind(request.worker.0)
        .bind(&request.kinds)
        .bind(i64::try_from(request.limit).unwrap_or(i64::MAX))
        .fetch_one(&mut *conn)
        .await?;
    if !row.try_get::<bool, _>("alive")? {
        return Err(JobError::WorkerExpired(request.worker).into());
    }
    Ok(Picked {
        now: row.try_get("now")?,
        limited: row.try_get("limited")?,
        ids: row.try_get("ids")?,
        runs: row.try_get("runs")?,
    })
}

/// Locks the runs that other transactions do not hold (runs this transaction holds already
/// are returned again); when every one is held and `may_wait`, waits for the first (so a busy
/// run delays a claim instead of starving it). Returns the locked runs and whether it waited.
async fn lock_picked_runs(
    conn: &mut PgConnection,
    source: &mut PgSource,
    runs: &[Uuid],
    may_wait: bool,
) -> Result<(Vec<Uuid>, bool), Error> {
    let ids: Vec<RunId> = runs.iter().map(|r| JobId(*r)).collect();
    let mut locked = source.lock_runs_skip_locked(conn, &ids).await?;
    let mut waited = false;
    if locked.is_empty()
        && may_wait
        && let Some(first) = ids.first()
    {
        locked = source.lock_runs(conn, &[*first]).await?;
        waited = true;
    }
    Ok((locked.into_iter().map(|r| r.0).collect(), waited))
}

/// Locks the limited classes (by name, after the runs) and computes what each still allows.
///
/// The lock and the count are two statements. Under READ COMMITTED a statement reads with the
/// snapshot it took when it began, also after waiting for a row lock: a count in the locking
/// statement would miss the tasks that the transaction it waited for (another claim of the
/// class) just started, and both claims would take the same free slot. The count that follows
/// the lock takes a snapshot that includes them.
async fn lock_classes(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Vec<ClassCap>, Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "select c.name from public.job_resource_classes c \
         where c.max_running is not null or c.per_minute is not null or c.throttled_until > now() \
         order by c.name for no key update of c",
    )
    .fetch_all(&mut *conn)
    .await?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "select c.name, c.max_running, c.per_minute, c.tokens, c.refilled_at, c.throttled_until, \
           (select count(*) from public.jobs r \
            where r.state = 'running' and r.resource_class = c.name) as running \
         from public.job_resource_classes c where c.name = any($1) order by c.name",
    )
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    let mut caps = Vec::with_capacity(rows.len());
    for row in &rows {
        let per_minute: Option<i32> = row.try_get("per_minute")?;
        let max_running: Option<i32> = row.try_get("max_running")?;
        let running: i64 = row.try_get("running")?;
        let throttled: Option<DateTime<Utc>> = row.try_get("throttled_until")?;
        let mut tokens = f64::from(i32::MAX);
        if let Some(rate) = per_minute {
            let stored: f64 = row.try_get("tokens")?;
            let refilled: Option<DateTime<Utc>> = row.try_get("refilled_at")?;
            // A claim that waited for the lock behind one that began later finds a
            // `refilled_at` ahead of its own `now`: nothing has accrued since then, and
            // `spend_tokens` keeps the later time (see there).
            let minutes = refilled.map_or(0.0, |t| {
                (now - t).num_microseconds().unwrap_or(0).max(0) as f64 / 60e6
            });
            tokens = (stored + minutes * f64::from(rate)).min(f64::from(rate.max(1)));
        }
        if throttled.is_some_and(|t| t > now) {
            tokens = 0.0;
        }
        let slots = max_running.map_or(i64::MAX, |m| i64::from(m) - running);
        caps.push(ClassCap {
            name: row.try_get("name")?,
            free: slots.min(tokens.floor() as i64).max(0),
            rate_limited: per_minute.is_some(),
            tokens,
        });
    }
    Ok(caps)
}

/// Reads the candidates (the picked tasks of the locked runs, best first) into `source`.
async fn load_candidates(
    conn: &mut PgConnection,
    source: &mut PgSource,
    ids: &[Uuid],
    runs: &[Uuid],
    worker: WorkerId,
) -> Result<(Vec<JobId>, HashMap<JobId, Candidate>), Error> {
    if runs.is_empty() {
        return Ok((Vec::new(), HashMap::new()));
    }
    let sql = CANDIDATES.replace("COLUMNS", TASK_COLUMNS_WITHOUT_DEPENDENTS);
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .bind(runs)
        .bind(worker.0)
        .fetch_all(&mut *conn)
        .await?;
    let mut order = Vec::with_capacity(rows.len());
    let mut extras = HashMap::with_capacity(rows.len());
    for row in &rows {
        let task = task_from_row(row, false)?;
        order.push(task.id);
        extras.insert(task.id, candidate(row)?);
        source.tasks.insert(task.id, task);
    }
    Ok((order, extras))
}

fn candidate(row: &PgRow) -> Result<Candidate, Error> {
    let dependencies: Option<Value> = row.try_get("dependency_results")?;
    let dependencies = match dependencies {
        Some(Value::Object(map)) => map.into_iter().collect(),
        _ => BTreeMap::new(),
    };
    Ok(Candidate {
        payload: row.try_get("payload")?,
        checkpoint: row.try_get("checkpoint")?,
        resource_class: row.try_get("resource_class")?,
        parent_id: row.try_get("parent_id")?,
        owner: row.try_get("owner_id")?,
        subject: row.try_get("subject")?,
        dependencies,
    })
}

/// Whether starting the candidates can cancel some of them instead (a run budget, or a
/// cancelled group above them): then their dependents must be loaded.
fn may_cancel(source: &PgSource, order: &[JobId]) -> bool {
    order.iter().filter_map(|id| source.tasks.get(id)).any(|t| {
        t.ancestors.iter().any(|a| {
            source
                .groups
                .get(a)
                .is_some_and(|g| g.cancel_requested || g.budget.is_some())
        })
    })
}

/// Writes back the tokens that the started tasks of rate-limited classes used.
///
/// `refilled_at` never moves backwards: `now()` is the transaction's start, and a claim that
/// waited for the class's lock behind a claim that began later would otherwise set it back
/// to before that claim's refill, and the next claim would credit the interval between the
/// two a second time (more starts per minute than the limit). The tokens were computed up to
/// the later of the two times ([`lock_classes`] accrues nothing for a negative interval).
async fn spend_tokens(
    conn: &mut PgConnection,
    caps: &[ClassCap],
    started: &[JobId],
    extras: &HashMap<JobId, Candidate>,
) -> Result<(), Error> {
    let (names, tokens): (Vec<&str>, Vec<f64>) = caps
        .iter()
        .filter(|c| c.rate_limited)
        .map(|c| {
            let used = started
                .iter()
                .filter(|id| extras.get(id).is_some_and(|x| x.resource_class == c.name))
                .count();
            (c.name.as_str(), (c.tokens - used as f64).max(0.0))
        })
        .unzip();
    if names.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "update public.job_resource_classes c set tokens = u.tokens, \
           refilled_at = greatest(c.refilled_at, now()), \
           updated_at = now() \
         from unnest($1::text[], $2::float8[]) as u(name, tokens) where c.name = u.name",
    )
    .bind(names)
    .bind(tokens)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn claimed(task: &TaskRow, x: Candidate) -> ClaimedJob {
    ClaimedJob {
        fence: Fence {
            job_id: task.id,
            run_id: task.run_id,
            epoch: task.epoch,
        },
        key: task.key.clone(),
        kind: task.kind.clone(),
        payload: x.payload,
        attempt: u32::try_from(task.attempts).unwrap_or_default(),
        max_attempts: u32::try_from(task.max_attempts).unwrap_or_default(),
        checkpoint: x.checkpoint,
        dependencies: x.dependencies,
        owner: x.owner,
        subject: x.subject,
        parent_id: x.parent_id.map(JobId),
        resource_class: x.resource_class,
        cost: task.cost,
    }
}
