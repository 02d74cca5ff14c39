//! The server's own `/metrics` sources: the job tables (tasks by kind and state, the ready
//! queue, provider work and credits charged by resource class) and the connection pool.
//! The database part is cached for a few seconds, so frequent scrapes by several Prometheus
//! servers cost the database one snapshot at most that often.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use drama_api::metrics::{MetricsSource, escape};
use sqlx::PgPool;
use tokio::sync::Mutex;

/// How long a database snapshot is reused.
const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// Metrics read from PostgreSQL.
pub(crate) struct DatabaseMetrics {
    pool: PgPool,
    snapshot: Mutex<Option<(Instant, String)>>,
}

impl DatabaseMetrics {
    pub(crate) fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Self {
            pool,
            snapshot: Mutex::new(None),
        })
    }

    async fn jobs(&self) -> Result<String, String> {
        let mut guard = self.snapshot.lock().await;
        if let Some((at, text)) = guard.as_ref()
            && at.elapsed() < SNAPSHOT_TTL
        {
            return Ok(text.clone());
        }
        let m = drama_postgres::job_metrics(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        let mut family = |name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            "drama_jobs",
            "gauge",
            "Tasks in the database by kind and state (settled runs are kept worker.retention_days).",
        );
        for (kind, state, n) in &m.tasks {
            let _ = writeln!(
                out,
                "drama_jobs{{kind=\"{}\",state=\"{}\"}} {n}",
                escape(kind),
                escape(state)
            );
        }
        let _ = writeln!(
            out,
            "# HELP drama_job_queue_depth Tasks ready to run and waiting for a worker or a slot of their class.\n\
             # TYPE drama_job_queue_depth gauge"
        );
        for (class, n) in &m.ready {
            let _ = writeln!(
                out,
                "drama_job_queue_depth{{class=\"{}\"}} {n}",
                escape(class)
            );
        }
        let _ = writeln!(
            out,
            "# HELP drama_provider_calls Attempts by resource class (image, video, script: provider calls, retries included) and outcome of their tasks.\n\
             # TYPE drama_provider_calls gauge\n\
             # HELP drama_provider_errors Tasks of the class that failed for good.\n\
             # TYPE drama_provider_errors gauge\n\
             # HELP drama_credits_spent Credits charged for the class's tasks.\n\
             # TYPE drama_credits_spent gauge"
        );
        for w in &m.work {
            let class = escape(&w.class);
            let _ = writeln!(
                out,
                "drama_provider_calls{{class=\"{class}\",outcome=\"attempted\"}} {}\n\
                 drama_provider_calls{{class=\"{class}\",outcome=\"completed\"}} {}\n\
                 drama_provider_errors{{class=\"{class}\"}} {}\n\
                 drama_credits_spent{{class=\"{class}\"}} {}",
                w.attempts, w.completed, w.failed, w.credits
            );
        }
        *guard = Some((Instant::now(), out.clone()));
        Ok(out)
    }
}

#[async_trait]
impl MetricsSource for DatabaseMetrics {
    async fn render(&self, out: &mut String) -> Result<(), String> {
        let max = self.pool.options().get_max_connections();
        let _ = writeln!(
            out,
            "# HELP drama_db_pool_connections Connections of this process's pool, by state.\n\
             # TYPE drama_db_pool_connections gauge\n\
             drama_db_pool_connections{{state=\"open\"}} {}\n\
             drama_db_pool_connections{{state=\"idle\"}} {}\n\
             drama_db_pool_connections{{state=\"max\"}} {max}",
            self.pool.size(),
            self.pool.num_idle()
        );
        out.push_str(&self.jobs().await?);
        Ok(())
    }
}
