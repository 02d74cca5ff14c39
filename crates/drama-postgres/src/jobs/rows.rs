//! Loading tasks and groups into a [`RowSource`] for the transition rules.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use drama_jobs::core::{GroupRow, RowSource, TaskRow};
use drama_jobs::{CostTotals, Counts, JobId, JobState, NodeType, RunId, WorkerId};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row as _};
use uuid::Uuid;

use super::error::{Error, unexpected};

/// Task columns of `jobs j`, with the dependents of each task.
pub(super) const TASK_COLUMNS: &str = "j.id, j.run_id, j.key, j.kind, j.ancestors, j.state, \
     j.deps_remaining, j.attempts, j.max_attempts, j.deferrals, j.epoch, j.cost, j.charged, \
     j.lease_owner, j.run_after, j.cancel_requested, j.error, j.started_at, j.finished_at, \
     j.checkpoint is not null as spent, \
     array(select e.job_id from public.job_edges e where e.depends_on_id = j.id \
           order by e.job_id) as dependents";

/// [`TASK_COLUMNS`] without the dependents (an index probe per task): for claims, which
/// need them only when a start can end cancelled (see [`PgSource::load_dependents`]).
pub(super) const TASK_COLUMNS_WITHOUT_DEPENDENTS: &str = "j.id, j.run_id, j.key, j.kind, \
     j.ancestors, j.state, j.deps_remaining, j.attempts, j.max_attempts, j.deferrals, j.epoch, \
     j.cost, j.charged, j.lease_owner, j.run_after, j.cancel_requested, j.error, j.started_at, \
     j.finished_at, j.checkpoint is not null as spent, \
     '{}'::uuid[] as dependents";

/// Columns of a run's root in `job_groups g`, without its `jobs` row (a root's key, type and
/// ancestors are known; its owner and subject are read only with whole runs).
const ROOT_COLUMNS: &str = "g.id, g.run_id, '' as key, 'run' as node_type, \
     '{}'::uuid[] as ancestors, g.state, g.total, g.pending, g.running, g.completed, g.failed, \
     g.skipped, g.cancelled, g.cost_total, g.cost_charged, g.cost_refundable, g.cost_refunded, \
     g.budget, g.cancel_requested, g.started_at, g.finished_at";

/// Group columns of `job_groups g join jobs j on j.id = g.id`.
pub(super) const GROUP_COLUMNS: &str = "g.id, g.run_id, j.key, j.node_type, j.ancestors, \
     j.owner_id, j.subject, g.state, g.total, g.pending, g.running, g.completed, g.failed, \
     g.skipped, g.cancelled, g.cost_total, g.cost_charged, g.cost_refundable, g.cost_refunded, \
     g.budget, g.cancel_requested, g.started_at, g.finished_at";

fn ids(v: Vec<Uuid>) -> Vec<JobId> {
    v.into_iter().map(JobId).collect()
}

pub(super) fn state(s: &str) -> Result<JobState, Error> {
    JobState::parse(s).ok_or_else(|| unexpected(format!("unknown job state {s:?}")))
}

pub(super) fn node_type(s: &str) -> Result<NodeType, Error> {
    NodeType::parse(s).ok_or_else(|| unexpected(format!("unknown node type {s:?}")))
}

pub(super) fn task_from_row(row: &PgRow, with_prerequisites: bool) -> Result<TaskRow, Error> {
    let st: String = row.try_get("state")?;
    Ok(TaskRow {
        id: JobId(row.try_get("id")?),
        run_id: JobId(row.try_get("run_id")?),
        key: row.try_get("key")?,
        kind: row.try_get("kind")?,
        ancestors: ids(row.try_get("ancestors")?),
        state: state(&st)?,
        deps_remaining: row.try_get("deps_remaining")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        deferrals: row.try_get("deferrals")?,
        epoch: row.try_get("epoch")?,
        cost: row.try_get("cost")?,
        charged: row.try_get("charged")?,
        spent: row.try_get("spent")?,
        lease_owner: row.try_get::<Option<Uuid>, _>("lease_owner")?.map(WorkerId),
        run_after: row.try_get("run_after")?,
        cancel_requested: row.try_get("cancel_requested")?,
        error: row.try_get("error")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        dependents: ids(row.try_get("dependents")?),
        prerequisites: if with_prerequisites {
            ids(row.try_get("prerequisites")?)
        } else {
            Vec::new()
        },
    })
}

pub(super) fn group_from_row(row: &PgRow) -> Result<(GroupRow, Uuid, Option<String>), Error> {
    Ok((
        group_row(row)?,
        row.try_get("owner_id")?,
        row.try_get("subject")?,
    ))
}

/// The node counts of a `job_groups` row (its `total` … `cancelled` columns).
pub(super) fn counts_of(row: &PgRow) -> Result<Counts, Error> {
    let count = |c: &str| -> Result<i64, Error> { Ok(i64::from(row.try_get::<i32, _>(c)?)) };
    Ok(Counts {
        total: count("total")?,
        pending: count("pending")?,
        running: count("running")?,
        completed: count("completed")?,
        failed: count("failed")?,
        skipped: count("skipped")?,
        cancelled: count("cancelled")?,
    })
}

/// The cost totals of a `job_groups` row (its `cost_*` columns).
pub(super) fn costs_of(row: &PgRow) -> Result<CostTotals, Error> {
    Ok(CostTotals {
        total: row.try_get("cost_total")?,
        charged: row.try_get("cost_charged")?,
        refundable: row.try_get("cost_refundable")?,
        refunded: row.try_get("cost_refunded")?,
    })
}

/// A run or group row of [`GROUP_COLUMNS`] or [`ROOT_COLUMNS`].
fn group_row(row: &PgRow) -> Result<GroupRow, Error> {
    let st: String = row.try_get("state")?;
    let nt: String = row.try_get("node_type")?;
    Ok(GroupRow {
        id: JobId(row.try_get("id")?),
        run_id: JobId(row.try_get("run_id")?),
        key: row.try_get("key")?,
        node_type: node_type(&nt)?,
        ancestors: ids(row.try_get("ancestors")?),
        state: state(&st)?,
        counts: counts_of(row)?,
        costs: costs_of(row)?,
        budget: row.try_get("budget")?,
        cancel_requested: row.try_get("cancel_requested")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// Rows loaded for one operation. Runs listed in `whole` are loaded completely.
#[derive(Default)]
pub(super) struct PgSource {
    pub tasks: HashMap<JobId, TaskRow>,
    pub groups: HashMap<JobId, GroupRow>,
    pub identity: HashMap<RunId, (Uuid, Option<String>)>,
    pub whole: HashMap<RunId, Vec<(JobId, NodeType)>>,
    pub now: DateTime<Utc>,
}

impl RowSource for PgSource {
    fn task(&self, id: JobId) -> Option<TaskRow> {
        self.tasks.get(&id).cloned()
    }
    fn group(&self, id: JobId) -> Option<GroupRow> {
        self.groups.get(&id).cloned()
    }
    fn run_nodes(&self, run: RunId) -> Option<Vec<(JobId, NodeType)>> {
        self.whole.get(&run).cloned()
    }
    fn run_identity(&self, run: RunId) -> Option<(Uuid, Option<String>)> {
        self.identity.get(&run).cloned()
    }
}

impl PgSource {
    fn add_group(&mut self, row: &PgRow) -> Result<(), Error> {
        let (g, owner, subject) = group_from_row(row)?;
        if g.node_type == NodeType::Run {
            self.identity.insert(g.id, (owner, subject));
        }
        self.groups.insert(g.id, g);
        Ok(())
    }

    /// Locks the runs' root rows (in id order, so concurrent transactions cannot deadlock)
    /// and reads them and the transaction's time. Returns the runs that exist.
    pub async fn lock_runs(
        &mut self,
        conn: &mut PgConnection,
        runs: &[RunId],
    ) -> Result<Vec<RunId>, Error> {
        self.lock_roots(conn, runs, "").await
    }

    /// [`Self::lock_runs`], leaving out the runs other transactions hold.
    pub async fn lock_runs_skip_locked(
        &mut self,
        conn: &mut PgConnection,
        runs: &[RunId],
    ) -> Result<Vec<RunId>, Error> {
        self.lock_roots(conn, runs, " skip locked").await
    }

    async fn lock_roots(
        &mut self,
        conn: &mut PgConnection,
        runs: &[RunId],
        wait: &str,
    ) -> Result<Vec<RunId>, Error> {
        let sorted: Vec<Uuid> = runs
            .iter()
            .map(|r| r.0)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let sql = format!(
            "select now() as now, {ROOT_COLUMNS} from public.job_groups g \
             where g.id = any($1) and g.id = g.run_id order by g.id for no key update{wait}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&sorted)
            .fetch_all(&mut *conn)
            .await?;
        let mut locked = Vec::with_capacity(rows.len());
        for row in &rows {
            self.now = row.try_get("now")?;
            let g = group_row(row)?;
            locked.push(g.id);
            self.groups.insert(g.id, g);
        }
        if rows.is_empty() {
            self.now = sqlx::query_scalar("select now()")
                .fetch_one(&mut *conn)
                .await?;
        }
        Ok(locked)
    }

    /// Loads the direct dependents of loaded tasks that were read without them.
    pub async fn load_dependents(
        &mut self,
        conn: &mut PgConnection,
        tasks: &[JobId],
    ) -> Result<(), Error> {
        let rows: Vec<(Uuid, Vec<Uuid>)> = sqlx::query_as(
            "select depends_on_id, array_agg(job_id order by job_id) from public.job_edges \
             where depends_on_id = any($1) group by depends_on_id",
        )
        .bind(tasks.iter().map(|t| t.0).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for (id, dependents) in rows {
            if let Some(t) = self.tasks.get_mut(&JobId(id)) {
                t.dependents = ids(dependents);
            }
        }
        Ok(())
    }

    /// Loads tasks by id, the direct dependents of `direct`, and every transitive dependent
    /// of `transitive` (the rows a completion or a failure propagates to).
    pub async fn load_tasks(
        &mut self,
        conn: &mut PgConnection,
        tasks: &[JobId],
        direct: &[JobId],
        transitive: &[JobId],
    ) -> Result<(), Error> {
        let raw = |v: &[JobId]| v.iter().map(|i| i.0).collect::<Vec<Uuid>>();
        // A join on the collected ids, so every lookup is an index probe.
        let sql = format!(
            "with recursive closure(id) as ( \
                 select e.job_id from public.job_edges e where e.depends_on_id = any($3) \
                 union \
                 select e.job_id from public.job_edges e join closure c on e.depends_on_id = c.id \
             ), ids as ( \
                 select unnest($1::uuid[]) as id \
                 union select e.job_id from public.job_edges e where e.depends_on_id = any($2) \
                 union select id from closure \
             ) \
             select {TASK_COLUMNS} from ids join public.jobs j on j.id = ids.id \
             where j.node_type = 'task'"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(raw(tasks))
            .bind(raw(direct))
            .bind(raw(transitive))
            .fetch_all(&mut *conn)
            .await?;
        for row in &rows {
            let t = task_from_row(row, false)?;
            self.tasks.entry(t.id).or_insert(t);
        }
        Ok(())
    }

    /// Loads the groups above the loaded tasks that are not loaded yet.
    pub async fn load_ancestor_groups(&mut self, conn: &mut PgConnection) -> Result<(), Error> {
        let missing: BTreeSet<Uuid> = self
            .tasks
            .values()
            .flat_map(|t| t.ancestors.iter())
            .filter(|a| !self.groups.contains_key(a))
            .map(|a| a.0)
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "select {GROUP_COLUMNS} from public.job_groups g join public.jobs j on j.id = g.id \
             where g.id = any($1)"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(missing.into_iter().collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
        for row in &rows {
            self.add_group(row)?;
        }
        Ok(())
    }

    /// Loads every node of the runs (tasks with their prerequisites), for operations that
    /// look at a whole run: cancel, resume, expansion.
    pub async fn load_whole(
        &mut self,
        conn: &mut PgConnection,
        runs: &[RunId],
    ) -> Result<(), Error> {
        let runs: Vec<Uuid> = runs
            .iter()
            .filter(|r| !self.whole.contains_key(r))
            .map(|r| r.0)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if runs.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "select {TASK_COLUMNS}, \
                array(select e.depends_on_id from public.job_edges e where e.job_id = j.id \
                      order by e.depends_on_id) as prerequisites \
             from public.jobs j where j.run_id = any($1) and j.node_type = 'task'"
        );
        let task_rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&runs)
            .fetch_all(&mut *conn)
            .await?;
        let sql = format!(
            "select {GROUP_COLUMNS} from public.job_groups g join public.jobs j on j.id = g.id \
             where g.run_id = any($1)"
        );
        let group_rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&runs)
            .fetch_all(&mut *conn)
            .await?;
        let mut members: HashMap<RunId, Vec<(JobId, NodeType)>> =
            runs.iter().map(|r| (JobId(*r), Vec::new())).collect();
        for row in &task_rows {
            let t = task_from_row(row, true)?;
            members
                .entry(t.run_id)
                .or_default()
                .push((t.id, NodeType::Task));
            // Whole-run rows replace partial ones (they carry prerequisites).
            self.tasks.insert(t.id, t);
        }
        for row in &group_rows {
            let (g, owner, subject) = group_from_row(row)?;
            members
                .entry(g.run_id)
                .or_default()
                .push((g.id, g.node_type));
            if g.node_type == NodeType::Run {
                self.identity.insert(g.id, (owner, subject));
            }
            // A locked root read earlier is the same row; keep whichever is loaded.
            self.groups.entry(g.id).or_insert(g);
        }
        for (run, mut nodes) in members {
            nodes.sort_by_key(|(id, _)| *id);
            self.whole.insert(run, nodes);
        }
        Ok(())
    }
}
