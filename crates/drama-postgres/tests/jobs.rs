//! The PostgreSQL job store: the engine's conformance scenarios (with counters checked at
//! every commit by a deferred constraint trigger), statement-count bounds, and the functions
//! that run inside a caller's transaction.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use std::sync::Arc;

use drama_postgres::jobs::PgJobStore;
use jobs_support::{install_invariant_checks, violations, wide_pool};
use sqlx::PgPool;

macro_rules! case {
    ($name:ident) => {
        #[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
        async fn $name(pool: PgPool) {
            install_invariant_checks(&pool).await;
            let store = Arc::new(PgJobStore::new(wide_pool(&pool, 16).await));
            drama_jobs::conformance::$name(store).await;
            let (found, checked) = violations(&pool).await;
            assert_eq!(found, Vec::<String>::new());
            assert!(checked > 0, "the commit-time check ran");
        }
    };
}

drama_jobs::for_each_job_scenario!(case);

use std::time::Duration;

use drama_jobs::core::{Finish, FinishKind};
use drama_jobs::{
    ClaimRequest, ClaimedJob, Expansion, Graph, JobError, JobState, JobStore, NodeSpec, Outcome,
    Registry, RunSpec, Worker, WorkerId, WorkerRegistration,
};
use drama_postgres::jobs::{self as pgjobs, NOTIFY_CHANNEL};
use drama_testkit::StatementCounter;
use serde_json::json;
use sqlx::postgres::PgListener;
use uuid::Uuid;

async fn registered(store: &PgJobStore) -> WorkerId {
    let id = WorkerId::new();
    store
        .register_worker(&WorkerRegistration {
            id,
            name: "test".into(),
            kinds: vec!["k".into()],
            ttl: Duration::from_secs(60),
        })
        .await
        .unwrap();
    id
}

async fn claim(store: &PgJobStore, worker: WorkerId, limit: usize) -> Vec<ClaimedJob> {
    store
        .claim(&ClaimRequest {
            worker,
            kinds: vec!["k".into()],
            limit,
        })
        .await
        .unwrap()
}

fn flat(n: usize) -> Graph {
    let mut g = Graph::new(RunSpec::new("flat", Uuid::new_v4()));
    g.add(NodeSpec::group("g", "grp"));
    for i in 0..n {
        g.add(NodeSpec::task(format!("t{i}"), "k", json!({"i": i})).parent("g"));
    }
    g
}

fn chain_pairs(n: usize) -> Graph {
    // n independent tasks, each with one dependent, so completions release work.
    let mut g = Graph::new(RunSpec::new("pairs", Uuid::new_v4()));
    for i in 0..n {
        g.add(NodeSpec::task(format!("a{i}"), "k", json!({})));
        g.add(NodeSpec::task(format!("b{i}"), "z", json!({})).after([format!("a{i}")]));
    }
    g
}

/// A one-connection store whose statements are counted.
async fn counted(pool: &PgPool) -> (PgJobStore, StatementCounter) {
    let (counted_pool, counter) = jobs_support::counted_pool(pool).await;
    (PgJobStore::new(counted_pool), counter)
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn the_commit_time_check_catches_a_corrupted_counter(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let store = PgJobStore::new(pool.clone());
    let run = store.submit(&flat(3)).await.unwrap();
    assert_eq!(violations(&pool).await.0, Vec::<String>::new());
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(
        "update job_groups set pending = pending - 1, completed = completed + 1 where id = $1",
    )
    .bind(run.run_id.0)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("insert into job_events (run_id, job_id, key, kind, state) values ($1, $1, '', 'group_state', 'running')")
        .bind(run.run_id.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let (found, _) = violations(&pool).await;
    assert_eq!(found.len(), 1, "{found:?}");
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn batches_cost_a_constant_number_of_statements(pool: PgPool) {
    let (store, counter) = counted(&pool).await;
    let worker = registered(&store).await;
    let mut rows = Vec::new();
    for n in [5, 200] {
        counter.reset();
        let run = store.submit(&chain_pairs(n)).await.unwrap();
        let submit = (counter.statements(), counter.transaction_control());
        counter.reset();
        let claimed = claim(&store, worker, n).await;
        assert_eq!(claimed.len(), n);
        let claim_cost = counter.statements();
        counter.reset();
        let items = claimed
            .iter()
            .map(|j| Finish {
                fence: j.fence,
                kind: FinishKind::Complete {
                    result: json!({"ok": true}),
                    expansion: None,
                },
            })
            .collect();
        let results = store.finish(items).await.unwrap();
        assert!(results.iter().all(Result::is_ok));
        let finish_cost = counter.statements();
        let root = store.job(run.run_id).await.unwrap().unwrap();
        let counts = root.counts.unwrap();
        assert_eq!((counts.completed, counts.pending), (n as i64, n as i64));
        rows.push((submit, claim_cost, finish_cost));
    }
    assert_eq!(
        rows[0], rows[1],
        "statements do not grow with the batch: {rows:?}"
    );
    let (submit, claim_cost, finish_cost) = rows[0];
    assert_eq!(
        submit,
        (2, 2),
        "submit: root insert + one write, in one transaction"
    );
    assert!(
        claim_cost <= 5,
        "claim: promotion of due deferred tasks (on its own), then pick, runs, candidates, \
         write: {claim_cost}"
    );
    assert!(finish_cost <= 4, "finish: lock, load, write: {finish_cost}");
    eprintln!("statements per batch — submit {submit:?}, claim {claim_cost}, finish {finish_cost}");
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn submit_in_tx_commits_or_rolls_back_with_the_callers_rows(pool: PgPool) {
    sqlx::query("create table app_rows (note text)")
        .execute(&pool)
        .await
        .unwrap();
    let store = PgJobStore::new(pool.clone());
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(NOTIFY_CHANNEL).await.unwrap();

    let graph = flat(2);
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("insert into app_rows values ('debit 5 credits')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rolled_back = pgjobs::submit_in_tx(&mut tx, &graph).await.unwrap();
    tx.rollback().await.unwrap();
    assert!(store.job(rolled_back.run_id).await.unwrap().is_none());
    // Nothing was notified for the rolled-back submission.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "a rolled-back submission must not notify"
    );

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("insert into app_rows values ('debit 5 credits')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let run = pgjobs::submit_in_tx(&mut tx, &graph).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        store
            .job(run.run_id)
            .await
            .unwrap()
            .unwrap()
            .counts
            .unwrap()
            .total,
        2
    );
    let rows: i64 = sqlx::query_scalar("select count(*) from app_rows")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 1);
    // Only the committed submission notified, with a small payload naming its run.
    let n = tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(n.payload().len() < 200, "{}", n.payload());
    let parsed = pgjobs::parse_notification(n.payload()).remove(0);
    assert_eq!(parsed.run_id, run.run_id);
    assert!(parsed.wake);
    let events = store.events(run.run_id, None, None, 10).await.unwrap();
    assert_eq!(parsed.event_id, events.last().unwrap().id);
    // Invalid graphs fail before anything is written, without breaking the transaction.
    let mut tx = pool.begin().await.unwrap();
    let bad = Graph::new(RunSpec::new("t", Uuid::new_v4()))
        .with(NodeSpec::task("a", "k", json!({})).after(["a"]));
    assert!(matches!(
        pgjobs::submit_in_tx(&mut tx, &bad).await,
        Err(JobError::InvalidGraph(_))
    ));
    sqlx::query("insert into app_rows values ('still usable')")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn complete_in_tx_is_fenced_and_atomic_with_the_callers_writes(pool: PgPool) {
    sqlx::query("create table app_assets (job uuid, url text)")
        .execute(&pool)
        .await
        .unwrap();
    let store = PgJobStore::new(pool.clone());
    let worker = registered(&store).await;
    let graph = Graph::new(RunSpec::new("t", Uuid::new_v4()))
        .with(NodeSpec::group("ep", "episode"))
        .with(NodeSpec::task("write", "k", json!({})).parent("ep"))
        .with(
            NodeSpec::task("stitch", "z", json!({}))
                .parent("ep")
                .after(["write"]),
        );
    let run = store.submit(&graph).await.unwrap();
    let job = claim(&store, worker, 1).await.remove(0);

    // A stale fence: the caller's writes roll back with it.
    let stale = drama_jobs::Fence {
        epoch: job.fence.epoch + 1,
        ..job.fence
    };
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("insert into app_assets values ($1, 'https://cdn/zombie.png')")
        .bind(job.fence.job_id.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    let err = pgjobs::complete_in_tx(&mut tx, &stale, json!("zombie"), None)
        .await
        .unwrap_err();
    assert!(err.is_fence_lost(), "{err}");
    tx.rollback().await.unwrap();

    // An invalid expansion is an error too, and changes nothing.
    let mut tx = pool.begin().await.unwrap();
    let bad = Expansion::new()
        .with(NodeSpec::task("x", "k", json!({})))
        .add_dependency("write", "x");
    let err = pgjobs::complete_in_tx(&mut tx, &job.fence, json!(1), Some(bad))
        .await
        .unwrap_err();
    assert!(matches!(err, JobError::InvalidGraph(_)), "{err}");
    tx.rollback().await.unwrap();

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("insert into app_assets values ($1, 'https://cdn/e1.png')")
        .bind(job.fence.job_id.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    let expansion = Expansion::new()
        .with(NodeSpec::task("clip", "z", json!({})).parent("ep"))
        .add_dependency("stitch", "clip");
    pgjobs::complete_in_tx(&mut tx, &job.fence, json!({"scenes": 1}), Some(expansion))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let urls: Vec<String> = sqlx::query_scalar("select url from app_assets")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(urls, vec!["https://cdn/e1.png"]);
    let tree = drama_jobs::conformance::assert_consistent(&store, run.run_id).await;
    let by_key = |k: &str| tree.nodes.iter().find(|n| n.key == k).unwrap().clone();
    assert_eq!(by_key("write").state, JobState::Completed);
    assert_eq!(by_key("write").result, Some(json!({"scenes": 1})));
    assert_eq!(
        by_key("stitch").dependencies,
        vec!["write".to_owned(), "clip".to_owned()]
    );
    assert_eq!(by_key("ep").counts.unwrap().total, 3);
    // Completing twice is rejected like any stale fence.
    let mut tx = pool.begin().await.unwrap();
    assert!(
        pgjobs::complete_in_tx(&mut tx, &job.fence, json!(2), None)
            .await
            .unwrap_err()
            .is_fence_lost()
    );
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn handlers_can_commit_their_own_completion(pool: PgPool) {
    sqlx::query("create table app_assets (job uuid primary key, url text)")
        .execute(&pool)
        .await
        .unwrap();
    let pool = wide_pool(&pool, 12).await;
    let store = Arc::new(PgJobStore::new(pool.clone()));
    let mut registry = Registry::new();
    let db = pool.clone();
    registry.register("image", move |ctx: drama_jobs::JobContext| {
        let db = db.clone();
        async move {
            let url = format!("https://cdn/{}.png", ctx.key());
            let mut tx = match db.begin().await {
                Ok(tx) => tx,
                Err(e) => return Outcome::retry(e),
            };
            // The asset row and the completion commit together, or not at all.
            if let Err(e) = sqlx::query("insert into app_assets values ($1, $2) on conflict (job) do update set url = excluded.url")
                .bind(ctx.id().0)
                .bind(&url)
                .execute(&mut *tx)
                .await
            {
                return Outcome::retry(e);
            }
            match pgjobs::complete_in_tx(&mut tx, &ctx.fence(), json!({"url": url}), None).await {
                Ok(()) => {}
                Err(e) if e.is_fence_lost() => return Outcome::cancelled("lease lost"),
                Err(e) => return Outcome::retry(e),
            }
            match tx.commit().await {
                Ok(()) => Outcome::committed_externally(),
                Err(e) => Outcome::retry(e),
            }
        }
    });
    registry.register("cover", |ctx: drama_jobs::JobContext| async move {
        Outcome::success(json!({"from": ctx.dependencies()}))
    });
    let worker = Worker::start(
        store.clone(),
        registry,
        drama_jobs::conformance::fast_config(),
    )
    .await
    .unwrap();
    let mut graph = Graph::new(RunSpec::new("t", Uuid::new_v4()));
    for i in 0..6 {
        graph.add(NodeSpec::task(format!("p{i}"), "image", json!({})));
    }
    graph.add(NodeSpec::task("cover", "cover", json!({})).after((0..6).map(|i| format!("p{i}"))));
    let run = store.submit(&graph).await.unwrap();
    let root =
        drama_jobs::conformance::wait_settled(&*store, run.run_id, Duration::from_secs(30)).await;
    assert_eq!(root.state, JobState::Completed);
    let cover = store.job(run.ids["cover"]).await.unwrap().unwrap();
    assert_eq!(
        cover.result.unwrap()["from"]["p3"],
        json!({"url": "https://cdn/p3.png"})
    );
    let assets: i64 = sqlx::query_scalar("select count(*) from app_assets")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(assets, 6);
    let stats = worker.shutdown().await.stats;
    assert_eq!((stats.succeeded, stats.fenced_out, stats.failed), (7, 0, 0));
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn clients_read_only_their_own_runs_through_rls(pool: PgPool) {
    let store = PgJobStore::new(pool.clone());
    let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
    let mine = store
        .submit(&Graph::new(RunSpec::new("t", alice)).with(NodeSpec::task("a", "k", json!({}))))
        .await
        .unwrap();
    store
        .submit(&Graph::new(RunSpec::new("t", bob)).with(NodeSpec::task("a", "k", json!({}))))
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local role authenticated")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("select set_config('request.jwt.claim.sub', $1, true)")
        .bind(alice.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let runs: Vec<Uuid> = sqlx::query_scalar("select run_id from jobs where node_type = 'run'")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(runs, vec![mine.run_id.0]);
    let groups: i64 = sqlx::query_scalar("select count(*) from job_groups")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar("select count(*) from job_events")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!((groups, events), (1, 1));
    let write = sqlx::query("update jobs set state = 'completed'")
        .execute(&mut *tx)
        .await;
    assert!(write.is_err(), "clients cannot write jobs");
    tx.rollback().await.unwrap();
    let report = drama_postgres::schema_report(&pool).await.unwrap();
    assert!(
        report.tables_without_rls.is_empty(),
        "{:?}",
        report.tables_without_rls
    );
}

/// The in-memory store runs 3,000 random DAGs through the same rules; here the PostgreSQL
/// store's own loading and locking get a few hundred, checked at every commit.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn hundreds_of_random_dags_never_start_a_task_early(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let store = Arc::new(PgJobStore::new(wide_pool(&pool, 16).await));
    drama_jobs::conformance::random_dags(store, 300, 7_2026).await;
    let (found, checked) = violations(&pool).await;
    assert_eq!(found, Vec::<String>::new());
    assert!(checked > 300, "every transaction was checked: {checked}");
}

/// Claims and completions rewrite a run's and its groups' counter rows (twice per job for a run
/// of one task). PostgreSQL keeps such an update on its page without new index entries (HOT)
/// only when the value of no indexed column changes — key, expression or predicate. So the
/// indexes of `job_groups` may cover `id` and `run_id` (never changed) and the refund columns
/// (changed only when a paid task fails or is cancelled, which makes a refund due), and no
/// column that every claim and completion writes (counts, state, `started_at`, `finished_at`).
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn counter_updates_touch_no_indexed_column(pool: PgPool) {
    let covered: Vec<(String, String)> = sqlx::query_as(
        "select distinct c.relname::text, a.attname::text \
         from pg_index i \
         join pg_class c on c.oid = i.indexrelid \
         join pg_depend d on d.classid = 'pg_class'::regclass and d.objid = i.indexrelid \
           and d.refclassid = 'pg_class'::regclass and d.refobjid = i.indrelid \
           and d.refobjsubid > 0 \
         join pg_attribute a on a.attrelid = i.indrelid and a.attnum = d.refobjsubid \
         where i.indrelid = 'public.job_groups'::regclass \
         order by 1, 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        covered.iter().any(|(_, column)| column == "run_id"),
        "the query sees index columns: {covered:?}"
    );
    let unchanging = ["id", "run_id", "cost_refundable", "cost_refunded"];
    let written: Vec<_> = covered
        .iter()
        .filter(|(_, column)| !unchanging.contains(&column.as_str()))
        .collect();
    assert_eq!(written, Vec::<&(String, String)>::new());
}
