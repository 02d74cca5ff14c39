//! Set-ups shared by the pipeline tests: a migrated scratch database and the ports on it, a
//! user holding tokens, the workers' settings, and the macro that runs a scenario on every
//! backend.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use drama_ai::AiProviders;
use drama_app::Ports;
use drama_app::pipeline::jobs_port::EngineJobs;
use drama_dal::{NewUser, UserRepository};
use drama_domain::UserId;
use drama_jobs::WorkerConfig;
use drama_postgres::PgStore;
use drama_postgres::jobs::PgJobStore;
use drama_testkit::pg::ScratchDb;
use sqlx::PgPool;

/// Where the pipeline runs: in memory, or on PostgreSQL (a database made for the test).
pub enum Backend {
    Memory,
    Postgres(ScratchDb),
}

/// Runs each scenario `name(backend)` on every backend, as `memory::name` and
/// `postgres::name`; the scratch databases are named after `$db`. (Unused by the tests that
/// run on PostgreSQL only.)
#[allow(unused_macros)]
macro_rules! on_every_backend {
    ($db:literal: $($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::support::Backend::Memory).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = drama_testkit::pg::ScratchDb::create($db).await;
                    super::$name(super::support::Backend::Postgres(db)).await;
                }
            )*
        }
    };
}
#[allow(unused_imports)]
pub(crate) use on_every_backend;

/// A pool of `connections` on `db`, migrated, with `install` (SQL, may be empty) run on it.
pub async fn migrated(db: &ScratchDb, connections: u32, install: &str) -> PgPool {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect(&db.url())
        .await
        .unwrap();
    drama_postgres::migrate(&pool).await.unwrap();
    if !install.is_empty() {
        sqlx::raw_sql(sqlx::AssertSqlSafe(install.to_owned()))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool
}

/// The ports on PostgreSQL `pool`, with the store and the job store behind them.
pub fn pg_ports(
    pool: &PgPool,
    assets: Arc<drama_assets::MemoryStore>,
    ai: AiProviders,
) -> (Ports, Arc<PgStore>, Arc<PgJobStore>) {
    let store = Arc::new(PgStore::new(pool.clone()));
    let jobs = Arc::new(PgJobStore::new(pool.clone()));
    let ports = Ports {
        store: store.clone(),
        assets,
        generation: store.clone(),
        jobs: Arc::new(EngineJobs(jobs.clone())),
        ai,
    };
    (ports, store, jobs)
}

/// A worker running eight tasks at once and polling every 20 ms.
pub fn worker_config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 8,
        poll_interval: Duration::from_millis(20),
        ..WorkerConfig::default()
    }
}

/// A new user holding `tokens`.
pub async fn user_with(store: &(impl UserRepository + ?Sized), tokens: i64) -> UserId {
    let user = UserId::random();
    let mut new = NewUser::new(user);
    new.tokens = tokens;
    store.create_user(&new).await.unwrap();
    user
}

/// SQL installing a trigger `test_fail_{name}` (fired on `event`, for the rows `when` holds
/// for) that raises serialization_failure (40001) for its first `failures` firings; its
/// sequence `test_{name}_failures` counts every firing and survives the rollbacks of the
/// failed transactions ([`firings`] reads it).
pub fn failing_trigger(name: &str, failures: u32, event: &str, when: &str) -> String {
    format!(
        "create sequence public.test_{name}_failures;
         create function public.test_fail_{name}() returns trigger language plpgsql as $$
         declare n bigint;
         begin
           n := nextval('public.test_{name}_failures');
           if n <= {failures} then
             raise exception 'injected failure % of the completing transaction', n
               using errcode = 'serialization_failure';
           end if;
           return new;
         end $$;
         create trigger test_fail_{name} {event}
           for each row when ({when})
           execute function public.test_fail_{name}();"
    )
}

/// How many times the trigger of [`failing_trigger`] `name` fired, the failed firings included.
pub async fn firings(pool: &PgPool, name: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select last_value from public.test_{name}_failures"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}
