//! What the job store's periodic and per-request reads examine, read from the plans of the
//! statements it runs (captured through the statement-counting proxy): they must not grow
//! with the runs an owner or the whole table keeps, nor with the tasks that wait.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use chrono::Utc;
use drama_jobs::core::{Finish, FinishKind};
use drama_jobs::{
    ClaimRequest, Graph, JobStore, NodeSpec, RunFilter, RunId, RunSpec, WorkerId,
    WorkerRegistration,
};
use drama_postgres::jobs::PgJobStore;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

/// Submits `n` runs of `owner` without tasks: each is settled (completed) at once.
async fn settled_runs(store: &PgJobStore, owner: Uuid, n: usize) {
    let graphs: Vec<Graph> = (0..n)
        .map(|_| Graph::new(RunSpec::new("empty", owner)))
        .collect();
    for chunk in graphs.chunks(500) {
        store.submit_many(chunk).await.unwrap();
    }
}

/// A run of `owner` with one task that nothing runs: active.
async fn active_run(store: &PgJobStore, owner: Uuid) -> RunId {
    let graph =
        Graph::new(RunSpec::new("busy", owner)).with(NodeSpec::task("t", "work", json!({})));
    store.submit(&graph).await.unwrap().run_id
}

/// The plan nodes of `plan` (an `EXPLAIN (ANALYZE, FORMAT JSON)` node) and below.
fn nodes<'a>(plan: &'a Value, out: &mut Vec<&'a Value>) {
    out.push(plan);
    for child in plan["Plans"].as_array().into_iter().flatten() {
        nodes(child, out);
    }
}

/// Executes `sql` with the binds under `EXPLAIN ANALYZE` and returns, for the scans of
/// `table`, their node types and the rows they read (returned and filtered out, all loops).
async fn scans_of(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    table: &str,
    bind: impl FnOnce(
        sqlx::query::QueryScalar<'_, sqlx::Postgres, Value, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryScalar<
        '_,
        sqlx::Postgres,
        Value,
        sqlx::postgres::PgArguments,
    >,
) -> (Vec<String>, f64) {
    let explain = format!("explain (analyze, format json) {sql}");
    let plan: Value = bind(sqlx::query_scalar(sqlx::AssertSqlSafe(explain)))
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let mut all = Vec::new();
    nodes(&plan[0]["Plan"], &mut all);
    let scans: Vec<&Value> = all
        .into_iter()
        .filter(|n| n["Relation Name"].as_str() == Some(table))
        .collect();
    let types = scans
        .iter()
        .map(|n| n["Node Type"].as_str().unwrap_or_default().to_owned())
        .collect();
    let read = scans
        .iter()
        .map(|n| {
            let per_loop = n["Actual Rows"].as_f64().unwrap_or_default()
                + n["Rows Removed by Filter"].as_f64().unwrap_or_default();
            per_loop * n["Actual Loops"].as_f64().unwrap_or(1.0)
        })
        .sum();
    (types, read)
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn an_owners_active_runs_are_found_without_reading_the_settled_ones(pool: PgPool) {
    let store = PgJobStore::new(pool.clone());
    let (heavy, other) = (Uuid::new_v4(), Uuid::new_v4());
    settled_runs(&store, heavy, 2000).await;
    settled_runs(&store, other, 500).await;
    let first = active_run(&store, heavy).await;
    let second = active_run(&store, heavy).await;
    active_run(&store, other).await;
    // Settling, resuming and settling again leave no trace of the run among the active ones.
    let third = active_run(&store, heavy).await;
    let kept = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from public.job_active_runs where owner_id = $1",
        )
        .bind(heavy)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    assert_eq!(kept(pool.clone()).await, 3);
    store.cancel(third, "test").await.unwrap();
    assert_eq!(kept(pool.clone()).await, 2);
    store.resume(third).await.unwrap();
    assert_eq!(kept(pool.clone()).await, 3);
    store.cancel(third, "test").await.unwrap();
    assert_eq!(kept(pool.clone()).await, 2);
    sqlx::query("analyze").execute(&pool).await.unwrap();

    let (counted_pool, counter) = jobs_support::counted_pool(&pool).await;
    let counted = PgJobStore::new(counted_pool);
    let filter = RunFilter {
        owner: Some(heavy),
        subject: None,
        active_only: true,
        limit: 11,
    };
    counter.reset();
    let active = counted.list_runs(&filter).await.unwrap();
    let ids: Vec<RunId> = active.iter().map(|r| r.id).collect();
    assert_eq!(ids, vec![second, first], "newest first");
    let sql = counter
        .statement_sql()
        .into_iter()
        .find(|s| s.contains("job_groups"))
        .expect("the list was read");

    let mut conn = pool.acquire().await.unwrap();
    let (types, read) = scans_of(&mut conn, &sql, "job_groups", |q| {
        q.bind(None::<String>).bind(heavy).bind(11_i64)
    })
    .await;
    assert!(!types.iter().any(|t| t == "Seq Scan"), "{types:?} in {sql}");
    assert!(
        read <= 2.0,
        "read {read} group rows for 2 active runs: {sql}"
    );
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn prune_with_nothing_due_reads_no_run(pool: PgPool) {
    let store = PgJobStore::new(pool.clone());
    settled_runs(&store, Uuid::new_v4(), 1000).await;
    sqlx::query("analyze").execute(&pool).await.unwrap();

    let (counted_pool, counter) = jobs_support::counted_pool(&pool).await;
    let counted = PgJobStore::new(counted_pool);
    // Kept for another hour: every run settled after the cutoff, none is due.
    let cutoff = Utc::now() - chrono::Duration::hours(1);
    counter.reset();
    assert_eq!(counted.prune(cutoff, 1000).await.unwrap().runs, 0);
    let sql = counter
        .statement_sql()
        .into_iter()
        .find(|s| s.contains("skip locked"))
        .expect("the runs were picked");

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local enable_sort = off")
        .execute(&mut *tx)
        .await
        .unwrap();
    let (_, read) = scans_of(&mut tx, &sql, "job_groups", |q| {
        q.bind(cutoff).bind(1000_i64)
    })
    .await;
    tx.rollback().await.unwrap();
    assert_eq!(read, 0.0, "{sql}");

    // Everything made before a cutoff that passed is still found.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert_eq!(store.prune(Utc::now(), 1000).await.unwrap().runs, 1000);
}

/// Tasks waiting for a retry's backoff stay ready and sort with the runnable ones of their
/// (class, kind) pair; when they rank above them (here 5,000 of a higher priority), the claim's
/// pick must still read none of them. A provider outage puts thousands of tasks into backoff,
/// and every claim of every worker would read them all.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_claim_reads_no_task_waiting_for_its_retry(pool: PgPool) {
    let store = PgJobStore::new(pool.clone());
    let worker = WorkerId::new();
    store
        .register_worker(&WorkerRegistration {
            id: worker,
            name: "plans".into(),
            kinds: vec!["work".into()],
            ttl: std::time::Duration::from_secs(600),
        })
        .await
        .unwrap();
    let request = |limit| ClaimRequest {
        worker,
        kinds: vec!["work".into()],
        limit,
    };
    let owner = Uuid::new_v4();
    let mut deferred = Graph::new(RunSpec::new("outage", owner));
    for i in 0..5000 {
        deferred.add(NodeSpec::task(format!("d{i}"), "work", json!({})).priority(1));
    }
    store.submit(&deferred).await.unwrap();
    loop {
        let claimed = store.claim(&request(1000)).await.unwrap();
        if claimed.is_empty() {
            break;
        }
        let retries = claimed
            .iter()
            .map(|j| Finish {
                fence: j.fence,
                kind: FinishKind::Defer {
                    reason: "provider unavailable".into(),
                    delay: std::time::Duration::from_secs(3600),
                },
            })
            .collect();
        store.finish(retries).await.unwrap();
    }
    // Two runnable tasks below them: one for the claim whose statement is captured, one for
    // the pick run again under EXPLAIN.
    active_run(&store, owner).await;
    active_run(&store, owner).await;
    sqlx::query("analyze").execute(&pool).await.unwrap();

    let (counted_pool, counter) = jobs_support::counted_pool(&pool).await;
    let counted = PgJobStore::new(counted_pool);
    counter.reset();
    let claimed = counted.claim(&request(1)).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        claimed[0].key, "t",
        "the runnable task, below the deferred ones"
    );
    let sql = counter
        .statement_sql()
        .into_iter()
        .find(|s| s.contains("recursive pairs"))
        .expect("the tasks were picked");

    // As the claim runs it: a generic plan (`HOT_PATH_BEGIN`).
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local plan_cache_mode = force_generic_plan")
        .execute(&mut *tx)
        .await
        .unwrap();
    let (types, read) = scans_of(&mut tx, &sql, "jobs", |q| {
        q.bind(worker.0).bind(vec!["work".to_owned()]).bind(1_i64)
    })
    .await;
    tx.rollback().await.unwrap();
    // The loose scan reads one entry per (class, kind) pair; the pair's pick reads the one
    // runnable task it returns.
    assert!(
        read <= 3.0,
        "the pick read {read} task rows with 5,000 deferred ones ranked first: {sql}"
    );
    assert!(!types.iter().any(|t| t == "Seq Scan"), "{types:?} in {sql}");

    // Retries come due one by one: the promotion before each claim reads the due ones, not
    // every deferred task (joined as a subquery, it read all of them to match one).
    let promote = counter
        .statement_sql()
        .into_iter()
        .find(|s| s.contains("set delayed = false"))
        .expect("the claim promoted due tasks first");
    sqlx::query(
        "update public.jobs set run_after = now() - interval '1 second' \
         where key = 'd0' and delayed",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("analyze").execute(&pool).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let (_, read) = scans_of(&mut tx, &promote, "jobs", |q| q).await;
    tx.rollback().await.unwrap();
    assert!(
        read <= 4.0,
        "the promotion read {read} task rows for one due among 5,000 deferred: {promote}"
    );
}

/// The heartbeat reads the tasks its worker leases and no others: one probe of the running
/// tasks' index by lease owner, however many tasks other workers run. It names the leased
/// tasks the worker does not hold without reading more.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_heartbeat_reads_only_its_workers_leased_tasks(pool: PgPool) {
    let store = PgJobStore::new(pool.clone());
    let register = |name: &'static str| {
        let store = store.clone();
        async move {
            let id = WorkerId::new();
            store
                .register_worker(&WorkerRegistration {
                    id,
                    name: name.into(),
                    kinds: vec!["work".into()],
                    ttl: std::time::Duration::from_secs(600),
                })
                .await
                .unwrap();
            id
        }
    };
    let busy = register("busy").await;
    let mut graph = Graph::new(RunSpec::new("many", Uuid::new_v4()));
    for i in 0..3000 {
        graph.add(NodeSpec::task(format!("m{i}"), "work", json!({})));
    }
    store.submit(&graph).await.unwrap();
    let claim = |worker, limit| ClaimRequest {
        worker,
        kinds: vec!["work".into()],
        limit,
    };
    while !store.claim(&claim(busy, 1000)).await.unwrap().is_empty() {}
    let worker = register("few").await;
    let mut few = Graph::new(RunSpec::new("few", Uuid::new_v4()));
    for i in 0..3 {
        few.add(NodeSpec::task(format!("f{i}"), "work", json!({})));
    }
    store.submit(&few).await.unwrap();
    let held = store.claim(&claim(worker, 10)).await.unwrap();
    assert_eq!(held.len(), 3);
    sqlx::query("analyze").execute(&pool).await.unwrap();

    let (counted_pool, counter) = jobs_support::counted_pool(&pool).await;
    let counted = PgJobStore::new(counted_pool);
    counter.reset();
    let listed = vec![held[0].fence.job_id];
    let hb = counted
        .heartbeat(worker, std::time::Duration::from_secs(600), Some(&listed))
        .await
        .unwrap();
    assert!(hb.alive);
    assert_eq!(hb.unheld.len(), 2);
    let sql = counter
        .statement_sql()
        .into_iter()
        .find(|s| s.contains("leased as"))
        .expect("the heartbeat ran");
    let mut tx = pool.begin().await.unwrap();
    let (types, read) = scans_of(&mut tx, &sql, "jobs", |q| {
        q.bind(worker.0)
            .bind(600.0_f64)
            .bind(vec![held[0].fence.job_id.0])
    })
    .await;
    tx.rollback().await.unwrap();
    assert!(
        read <= 3.0,
        "the heartbeat read {read} task rows for a worker leasing 3 among 3,003: {sql}"
    );
    assert!(!types.iter().any(|t| t == "Seq Scan"), "{types:?} in {sql}");
}
