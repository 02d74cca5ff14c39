//! What `/metrics` reads from the database: tasks by kind and state, the ready queue by
//! resource class, and provider work by class (attempts, outcomes, credits charged), over the
//! jobs the database still holds (settled runs are kept `worker.retention_days`).

use sqlx::{PgPool, Row as _};

use crate::error::PgError;

/// Provider work of one resource class (`image`, `video`, `script`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassWork {
    /// The resource class.
    pub class: String,
    /// Attempts made (each one a provider call, retries included).
    pub attempts: i64,
    /// Tasks that completed.
    pub completed: i64,
    /// Tasks that failed for good.
    pub failed: i64,
    /// Credits charged for them.
    pub credits: i64,
}

/// A snapshot of the job tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobMetrics {
    /// `(kind, state, tasks)`.
    pub tasks: Vec<(String, String, i64)>,
    /// `(resource class, tasks ready to run)`: the queue waiting for a worker or a slot. Ready
    /// tasks whose `run_after` lies ahead (waiting for a retry's backoff) are not counted:
    /// no worker could take them yet.
    pub ready: Vec<(String, i64)>,
    /// Work per resource class.
    pub work: Vec<ClassWork>,
}

const TASKS: &str = "\
select kind, coalesce(state, 'none'), count(*) from public.jobs \
where node_type = 'task' group by 1, 2 order by 1, 2";

const READY: &str = "\
select resource_class, count(*) from public.jobs \
where node_type = 'task' and state = 'ready' and run_after <= now() group by 1 order by 1";

const WORK: &str = "\
select resource_class, coalesce(sum(attempts), 0)::bigint, \
       count(*) filter (where state = 'completed'), count(*) filter (where state = 'failed'), \
       coalesce(sum(cost) filter (where charged), 0)::bigint \
from public.jobs where node_type = 'task' group by 1 order by 1";

/// Reads the snapshot (three statements).
///
/// # Errors
/// [`PgError::Query`].
pub async fn job_metrics(pool: &PgPool) -> Result<JobMetrics, PgError> {
    let tasks = sqlx::query_as(TASKS)
        .fetch_all(pool)
        .await
        .map_err(PgError::Query)?;
    let ready = sqlx::query_as(READY)
        .fetch_all(pool)
        .await
        .map_err(PgError::Query)?;
    let work = sqlx::query(WORK)
        .fetch_all(pool)
        .await
        .map_err(PgError::Query)?
        .iter()
        .map(|row| {
            Ok(ClassWork {
                class: row.try_get(0)?,
                attempts: row.try_get(1)?,
                completed: row.try_get(2)?,
                failed: row.try_get(3)?,
                credits: row.try_get(4)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(PgError::Query)?;
    Ok(JobMetrics { tasks, ready, work })
}
