//! Costs that must not grow with what waits or what was kept: a claim while many tasks wait
//! for a full resource class or for their retry, and pruning settled runs from an event log of millions of rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use drama_jobs::core::{Finish, FinishKind};
use drama_jobs::{
    ClaimRequest, Graph, JobStore, NodeSpec, ResourceLimit, RunSpec, WorkerId, WorkerRegistration,
};
use drama_postgres::jobs::PgJobStore;
use serde_json::json;
use uuid::Uuid;

use super::{Opts, fresh_database, percentiles, quiesce};

async fn register(store: &PgJobStore) -> WorkerId {
    let worker = WorkerId::new();
    store
        .register_worker(&WorkerRegistration {
            id: worker,
            name: "bench".into(),
            kinds: vec!["image".into(), "video".into()],
            ttl: Duration::from_secs(600),
        })
        .await
        .unwrap();
    worker
}

/// Runs of `per_run` tasks of one kind and class (the class named like the kind).
async fn submit_tasks(store: &PgJobStore, kind: &str, count: usize, priority: i32) {
    let per_run = 10_000;
    let owner = Uuid::new_v4();
    let graphs: Vec<Graph> = (0..count.div_ceil(per_run))
        .map(|r| {
            let mut g = Graph::new(RunSpec::new("bench", owner));
            for i in (r * per_run)..((r + 1) * per_run).min(count) {
                g.add(
                    NodeSpec::task(format!("{kind}{i}"), kind, json!({}))
                        .class(kind)
                        .priority(priority),
                );
            }
            g
        })
        .collect();
    for g in &graphs {
        store.submit(g).await.unwrap();
    }
}

/// The time of one-task claims while `waiting` tasks of a higher priority wait for a full
/// class, against the same claims with none waiting; with `--deferred N`, while `N` tasks of
/// the claimed class and kind and a higher priority wait for their `run_after`, an hour ahead
/// (see [`claim_cost_deferred`]).
pub async fn claim_cost(opts: Opts) {
    let samples = opts.num("samples", 300);
    let deferred = opts.num("deferred", 0);
    if deferred > 0 {
        claim_cost_deferred(deferred, samples).await;
        return;
    }
    let waiting = opts.num("waiting", 100_000);
    for n in [0, waiting] {
        let pool = fresh_database(4).await;
        let store = Arc::new(PgJobStore::new(pool.clone()));
        store
            .set_resource_limits(&[ResourceLimit::concurrency("video", 1)])
            .await
            .unwrap();
        // One video task holds the class's only slot; `n` more wait behind it.
        submit_tasks(&store, "video", n + 1, 1).await;
        submit_tasks(&store, "image", samples, 0).await;
        quiesce(&pool).await;
        let worker = register(&store).await;
        let kinds = vec!["image".to_owned(), "video".to_owned()];
        let request = ClaimRequest {
            worker,
            kinds,
            limit: 1,
        };
        let first = store.claim(&request).await.unwrap();
        assert_eq!(
            first[0].resource_class, "video",
            "the video slot is taken first"
        );
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let t = Instant::now();
            let claimed = store.claim(&request).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(claimed.len(), 1);
            assert_eq!(claimed[0].resource_class, "image");
        }
        println!(
            "claim-cost: {n} tasks waiting for a full class; one-task claims: {}",
            percentiles(times)
        );
        pool.close().await;
    }
}

/// The time of one-task claims of `image` tasks while `deferred` tasks of the same class and
/// kind and a higher priority wait for their retry, against the same claims with none
/// deferred. The deferred tasks are claimed and deferred an hour through the store, as a
/// provider outage leaves them: ready, ranked above the runnable ones, not runnable.
async fn claim_cost_deferred(deferred: usize, samples: usize) {
    for n in [0, deferred] {
        let pool = fresh_database(4).await;
        let store = PgJobStore::new(pool.clone());
        let worker = register(&store).await;
        let request = |limit| ClaimRequest {
            worker,
            kinds: vec!["image".to_owned()],
            limit,
        };
        submit_tasks(&store, "image", n, 1).await;
        loop {
            let claimed = store.claim(&request(1000)).await.unwrap();
            if claimed.is_empty() {
                break;
            }
            let deferrals = claimed
                .iter()
                .map(|j| Finish {
                    fence: j.fence,
                    kind: FinishKind::Defer {
                        reason: "provider unavailable".into(),
                        delay: Duration::from_secs(3600),
                    },
                })
                .collect();
            store.finish(deferrals).await.unwrap();
        }
        submit_tasks(&store, "image", samples, 0).await;
        quiesce(&pool).await;
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let t = Instant::now();
            let claimed = store.claim(&request(1)).await.unwrap();
            times.push(t.elapsed());
            assert_eq!(claimed.len(), 1);
        }
        println!(
            "claim-cost: {n} tasks deferred an hour in the claimed class and kind, ranked first; \
             one-task claims: {}",
            percentiles(times)
        );
        pool.close().await;
    }
}

/// Fills the event log with `runs` settled one-task runs (two event batches of their three
/// events each, as the engine writes them; ids ascending in insertion order, as the engine's
/// UUIDv7 ids are) straight in SQL, then prunes them in batches of
/// `batch` runs, timing every call: the cost per pruned run must stay flat from the first call
/// (millions of rows kept) to the last.
pub async fn retention(opts: Opts) {
    let runs = opts.num("runs", 1_000_000);
    let batch = opts.num("batch", 1000);
    let pool = fresh_database(4).await;
    let store = PgJobStore::new(pool.clone());
    let t = Instant::now();
    for chunk in 0..runs.div_ceil(100_000) {
        let n = i64::try_from(100_000.min(runs - chunk * 100_000)).unwrap();
        let offset = i64::try_from(chunk * 100_000).unwrap();
        sqlx::query(FILL)
            .bind(n)
            .bind(offset)
            .execute(&pool)
            .await
            .unwrap();
    }
    quiesce(&pool).await;
    let (rows, events, size): (i64, i64, String) = sqlx::query_as(
        "select count(*), coalesce(sum(cardinality(job_ids)), 0)::bigint, \
           pg_size_pretty(pg_total_relation_size('job_event_batches')) from job_event_batches",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    eprintln!(
        "filled {runs} settled runs, {rows} event rows ({events} events, {size}) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let cutoff = chrono::Utc::now() - chrono::Duration::hours(1);
    let mut times = Vec::new();
    let (mut pruned_runs, mut pruned_events) = (0, 0);
    let started = Instant::now();
    loop {
        let t = Instant::now();
        let report = store.prune(cutoff, batch).await.unwrap();
        if report.runs == 0 {
            break;
        }
        times.push((t.elapsed(), report.runs));
        pruned_runs += report.runs;
        pruned_events += report.events;
    }
    let per_run = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    let tenth = (times.len() / 10).max(1);
    let first: f64 = times[..tenth]
        .iter()
        .map(|(d, n)| per_run(*d, *n))
        .sum::<f64>()
        / tenth as f64;
    let last: f64 = times[times.len() - tenth..]
        .iter()
        .map(|(d, n)| per_run(*d, *n))
        .sum::<f64>()
        / tenth as f64;
    println!(
        "retention: pruned {pruned_runs} runs ({pruned_events} events) from {rows} event rows in \
         {:.1} s with {} calls of up to {batch} runs: {:.0} µs per run in the first tenth of the \
         calls, {:.0} µs in the last tenth",
        started.elapsed().as_secs_f64(),
        times.len(),
        first,
        last
    );
    pool.close().await;
}

/// `$1` settled one-task runs, each with its root, group row, task and two event batches
/// (started; completed and the run's group_state), finished two days ago.
const FILL: &str = "\
with r as (
  select (lpad(to_hex(2 * (g + $2)), 8, '0') || substr(gen_random_uuid()::text, 9))::uuid as run,
    (lpad(to_hex(2 * (g + $2) + 1), 8, '0') || substr(gen_random_uuid()::text, 9))::uuid as task,
    gen_random_uuid() as owner, now() - interval '2 days' as at
  from generate_series(1, $1) g
), roots as (
  insert into jobs (id, run_id, node_type, key, kind, owner_id, payload, created_at)
  select run, run, 'run', '', 'bench', owner, '{}', at from r
), tasks as (
  insert into jobs (id, run_id, parent_id, ancestors, node_type, key, kind, owner_id, payload,
    state, attempts, epoch, charged, created_at, started_at, finished_at)
  select task, run, run, array[run], 'task', 't', 'noop', owner, '{}', 'completed', 1, 1, true,
    at, at, at from r
), groups as (
  insert into job_groups (id, run_id, state, total, completed, started_at, finished_at)
  select run, run, 'completed', 1, 1, at, at from r
), started as (
  insert into job_event_batches (run_id, first_id, last_id, at, job_ids, keys, kinds, states,
    attempts, details)
  select run, n * 1048576, n * 1048576, at, array[task], array['t'], array['started'],
    array['running'], array[1], array[null::jsonb]
  from (select r.*, nextval('job_event_batch_seq') as n from r) s
)
insert into job_event_batches (run_id, first_id, last_id, at, job_ids, keys, kinds, states,
  attempts, details)
select run, n * 1048576, n * 1048576 + 1, at, array[task, run], array['t', ''],
  array['completed', 'group_state'], array['completed', 'completed'], array[1, 0],
  array[null::jsonb, '{\"counts\": {\"total\": 1, \"completed\": 1}}'::jsonb]
from (select r.*, nextval('job_event_batch_seq') as n from r) s";
