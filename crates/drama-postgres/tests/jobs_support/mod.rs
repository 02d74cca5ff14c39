//! Helpers shared by the store tests: pools on the test database, and (for the job store) a
//! commit-time invariant check installed as a deferred constraint trigger.
#![allow(dead_code)]

use drama_testkit::StatementCounter;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// The URL of the database `pool` is connected to.
pub async fn url_of(pool: &PgPool) -> String {
    let db: String = sqlx::query_scalar("select current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for database tests");
    let (without_db, _) = base.rsplit_once('/').unwrap();
    format!("{without_db}/{db}")
}

/// A registration that may reap at once, for a test that plays the reaper: alive for an
/// hour, and since two hours ago (a reaper takes tasks back only once its own registration
/// has been alive for its lease, see `JobStore::reap_expired`).
pub async fn seasoned_reaper(
    store: &drama_postgres::jobs::PgJobStore,
    pool: &PgPool,
) -> drama_jobs::WorkerId {
    use drama_jobs::JobStore as _;
    let id = drama_jobs::WorkerId::new();
    store
        .register_worker(&drama_jobs::WorkerRegistration {
            id,
            name: "reaper".into(),
            kinds: vec![],
            ttl: std::time::Duration::from_secs(3600),
        })
        .await
        .unwrap();
    sqlx::query(
        "update public.job_workers set alive_since = now() - interval '2 hours' where id = $1",
    )
    .bind(id.0)
    .execute(pool)
    .await
    .unwrap();
    id
}

/// A one-connection pool on the database of `pool` whose statements the counter counts.
pub async fn counted_pool(pool: &PgPool) -> (PgPool, StatementCounter) {
    let url = url_of(pool).await;
    let counter = StatementCounter::start(&url).await;
    let counted = PgPoolOptions::new()
        .max_connections(1)
        .test_before_acquire(false)
        .connect(&counter.url(&url))
        .await
        .unwrap();
    (counted, counter)
}

/// A pool with room for several workers (the test pool has five connections).
pub async fn wide_pool(pool: &PgPool, connections: u32) -> PgPool {
    PgPoolOptions::new()
        .max_connections(connections)
        .connect(&url_of(pool).await)
        .await
        .unwrap()
}

/// After every transaction that appends job events, checks the runs it touched: each group's
/// counters and costs equal what its descendant tasks add up to, no task runs or completed
/// before all of its dependencies completed, waiting tasks count their unfinished
/// dependencies, and exactly the ready tasks whose `run_after` lies ahead are `delayed`. Violations are recorded in `test_invariant_violations`.
pub async fn install_invariant_checks(pool: &PgPool) {
    sqlx::raw_sql(
        r#"
        create table test_invariant_violations (at timestamptz default now(), message text);
        create unlogged table test_checked (tx xid8, run uuid, primary key (tx, run));
        create function test_check_run() returns trigger language plpgsql as $fn$
        declare
          bad text;
        begin
          insert into test_checked values (pg_current_xact_id(), new.run_id) on conflict do nothing;
          if not found then
            return null;
          end if;
          -- One pass over the run's tasks and their ancestors (not one per group), so the
          -- check of a run of a thousand tasks in twenty groups stays cheap.
          with sums as (
            select a.id,
              count(*)::int as total,
              count(*) filter (where t.state in ('waiting', 'ready'))::int as pending,
              count(*) filter (where t.state = 'running')::int as running,
              count(*) filter (where t.state = 'completed')::int as completed,
              count(*) filter (where t.state = 'failed')::int as failed,
              count(*) filter (where t.state = 'skipped')::int as skipped,
              count(*) filter (where t.state = 'cancelled')::int as cancelled,
              coalesce(sum(t.cost), 0)::bigint as cost_total,
              coalesce(sum(t.cost) filter (where t.charged), 0)::bigint as cost_charged,
              coalesce(sum(t.cost) filter (where t.state in ('failed', 'skipped', 'cancelled')
                and t.checkpoint is null), 0)::bigint
                as cost_refundable
            from public.jobs t cross join lateral unnest(t.ancestors) as a(id)
            where t.run_id = new.run_id and t.node_type = 'task'
            group by a.id)
          select string_agg(format('group %s has %s, its tasks add up to %s', g.id,
                   row(g.total, g.pending, g.running, g.completed, g.failed, g.skipped,
                       g.cancelled, g.cost_total, g.cost_charged, g.cost_refundable),
                   row(c.total, c.pending, c.running, c.completed, c.failed, c.skipped,
                       c.cancelled, c.cost_total, c.cost_charged, c.cost_refundable)), '; ')
            into bad
          from public.job_groups g
          left join sums s on s.id = g.id
          cross join lateral (
            select coalesce(s.total, 0) as total, coalesce(s.pending, 0) as pending,
              coalesce(s.running, 0) as running, coalesce(s.completed, 0) as completed,
              coalesce(s.failed, 0) as failed, coalesce(s.skipped, 0) as skipped,
              coalesce(s.cancelled, 0) as cancelled, coalesce(s.cost_total, 0) as cost_total,
              coalesce(s.cost_charged, 0) as cost_charged,
              coalesce(s.cost_refundable, 0) as cost_refundable) c
          where g.run_id = new.run_id
            and row(g.total, g.pending, g.running, g.completed, g.failed, g.skipped, g.cancelled,
                    g.cost_total, g.cost_charged, g.cost_refundable)
                is distinct from
                row(c.total, c.pending, c.running, c.completed, c.failed, c.skipped, c.cancelled,
                    c.cost_total, c.cost_charged, c.cost_refundable);
          if bad is not null then
            insert into test_invariant_violations (message) values (bad);
          end if;
          select string_agg(format('%s is %s before %s completed', t.key, t.state, p.key), '; ')
            into bad
          from public.jobs t
          join public.job_edges e on e.job_id = t.id
          join public.jobs p on p.id = e.depends_on_id
          where t.run_id = new.run_id and t.state in ('ready', 'running', 'completed')
            and p.state <> 'completed';
          if bad is not null then
            insert into test_invariant_violations (message) values (bad);
          end if;
          select string_agg(format('%s waits for %s, %s are unfinished', t.key, t.deps_remaining, u.n), '; ')
            into bad
          from public.jobs t
          cross join lateral (
            select count(*) as n from public.job_edges e join public.jobs p on p.id = e.depends_on_id
            where e.job_id = t.id and p.state <> 'completed') u
          where t.run_id = new.run_id and t.state = 'waiting' and (t.deps_remaining <> u.n or u.n = 0);
          if bad is not null then
            insert into test_invariant_violations (message) values (bad);
          end if;
          -- `delayed` (what the claim's pick skips) is set on ready tasks whose run_after lies
          -- ahead, and only on ready tasks. Against the clock: this transaction's now() may
          -- precede a run_after that a later transaction wrote.
          select string_agg(format('%s is %s, delayed %s, run_after %s', t.key, t.state,
                   t.delayed, t.run_after), '; ')
            into bad
          from public.jobs t
          where t.run_id = new.run_id and t.node_type = 'task'
            and (t.delayed and t.state <> 'ready'
                 or t.state = 'ready' and not t.delayed and t.run_after > clock_timestamp());
          if bad is not null then
            insert into test_invariant_violations (message) values (bad);
          end if;
          return null;
        end
        $fn$;
        create constraint trigger test_check_run after insert on public.job_event_batches
          deferrable initially deferred for each row execute function test_check_run();
        "#,
    )
    .execute(pool)
    .await
    .unwrap();
}

/// The violations recorded so far, and how many transactions were checked.
pub async fn violations(pool: &PgPool) -> (Vec<String>, i64) {
    let v: Vec<String> =
        sqlx::query_scalar("select message from test_invariant_violations order by at")
            .fetch_all(pool)
            .await
            .unwrap();
    let checked: i64 = sqlx::query_scalar("select count(*) from test_checked")
        .fetch_one(pool)
        .await
        .unwrap();
    (v, checked)
}

/// A migrated database of its own, for tests that cannot use `#[sqlx::test]`.
pub struct TempDatabase {
    pub pool: PgPool,
    name: String,
    admin: String,
}

impl TempDatabase {
    pub async fn create() -> Self {
        let admin = std::env::var("DATABASE_URL").expect("DATABASE_URL is set for database tests");
        let name = format!("jobs_tmp_{}", uuid::Uuid::new_v4().simple());
        let admin_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&admin)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("create database {name}")))
            .execute(&admin_pool)
            .await
            .unwrap();
        admin_pool.close().await;
        let (without_db, _) = admin.rsplit_once('/').unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(10)
            .connect(&format!("{without_db}/{name}"))
            .await
            .unwrap();
        drama_postgres::MIGRATOR.run(&pool).await.unwrap();
        Self { pool, name, admin }
    }

    pub async fn drop(self) {
        self.pool.close().await;
        let admin_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(&self.admin)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "drop database {} with (force)",
            self.name
        )))
        .execute(&admin_pool)
        .await
        .unwrap();
    }
}
