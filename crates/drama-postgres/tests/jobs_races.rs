//! The guarantees the batched hot path relies on, under contention: several claimers on the
//! same runs at once, batches of every size, leases that expire while their holders are still
//! working (zombies that try to finish afterwards), and a reaper running all along. Every task
//! must be completed exactly once, by the attempt that held it, and the counters, events and
//! fences must agree.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drama_jobs::core::{Finish, FinishKind};
use drama_jobs::{
    ClaimRequest, ClaimedJob, Graph, JobError, JobId, JobState, JobStore, NodeSpec, RunSpec,
    WorkerId, WorkerRegistration,
};
use drama_postgres::jobs::PgJobStore;
use jobs_support::{install_invariant_checks, seasoned_reaper, violations, wide_pool};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// Successful completions per task, from every claimer.
type Ledger = Arc<Mutex<HashMap<JobId, usize>>>;

async fn register(store: &PgJobStore, ttl: Duration) -> WorkerId {
    let id = WorkerId::new();
    store
        .register_worker(&WorkerRegistration {
            id,
            name: "race".into(),
            kinds: vec!["k".into()],
            ttl,
        })
        .await
        .unwrap();
    id
}

async fn complete(store: &PgJobStore, jobs: &[ClaimedJob], ledger: &Ledger) -> (usize, usize) {
    let items = jobs
        .iter()
        .map(|j| Finish {
            fence: j.fence,
            kind: FinishKind::Complete {
                result: json!({"epoch": j.fence.epoch}),
                expansion: None,
            },
        })
        .collect();
    let results = store.finish(items).await.unwrap();
    let (mut ok, mut fenced) = (0, 0);
    let mut ledger = ledger.lock().unwrap();
    for (job, result) in jobs.iter().zip(results) {
        match result {
            Ok(()) => {
                *ledger.entry(job.fence.job_id).or_default() += 1;
                ok += 1;
            }
            Err(JobError::FenceLost(_)) => fenced += 1,
            Err(e) => panic!("unexpected finish error: {e}"),
        }
    }
    (ok, fenced)
}

/// A claimer that heartbeats and completes what it claims, in batches of random size.
async fn steady(store: Arc<PgJobStore>, ledger: Ledger, seed: u64, total: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let worker = register(&store, Duration::from_secs(60)).await;
    let mut done = 0;
    while ledger.lock().unwrap().len() < total {
        let request = ClaimRequest {
            worker,
            kinds: vec!["k".into()],
            limit: rng.random_range(1..60),
        };
        let jobs = store.claim(&request).await.unwrap();
        if jobs.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        done += complete(&store, &jobs, &ledger).await.0;
    }
    done
}

/// A claimer whose leases expire: it claims, stops heartbeating until its registration is
/// reaped, then tries to finish anyway (a zombie) and registers again.
async fn flaky(store: Arc<PgJobStore>, ledger: Ledger, seed: u64, total: usize) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fenced_out = 0;
    while ledger.lock().unwrap().len() < total {
        let worker = register(&store, Duration::from_millis(300)).await;
        let request = ClaimRequest {
            worker,
            kinds: vec!["k".into()],
            limit: rng.random_range(1..40),
        };
        let jobs = match store.claim(&request).await {
            Ok(jobs) => jobs,
            Err(JobError::WorkerExpired(_)) => continue,
            Err(e) => panic!("claim failed: {e}"),
        };
        tokio::time::sleep(Duration::from_millis(rng.random_range(350..700))).await;
        // Some of these were retaken (and maybe completed) by others meanwhile.
        fenced_out += complete(&store, &jobs, &ledger).await.1;
    }
    fenced_out
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn concurrent_claims_and_expiring_leases_complete_every_task_once(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let store = Arc::new(PgJobStore::new(wide_pool(&pool, 16).await));
    // One run of many tasks (its claims and completions contend for one lock) and many
    // one-task runs (claims lock hundreds of runs at once).
    let mut big = Graph::new(RunSpec::new("race", Uuid::new_v4()));
    for i in 0..250 {
        big.add(NodeSpec::task(format!("t{i}"), "k", json!({})).max_attempts(100));
    }
    let small: Vec<Graph> = (0..250)
        .map(|i| {
            Graph::new(RunSpec::new("race", Uuid::new_v4()))
                .with(NodeSpec::task(format!("s{i}"), "k", json!({})).max_attempts(100))
        })
        .collect();
    let mut runs = vec![store.submit(&big).await.unwrap().run_id];
    runs.extend(
        store
            .submit_many(&small)
            .await
            .unwrap()
            .iter()
            .map(|s| s.run_id),
    );
    let total = 500;

    let ledger: Ledger = Arc::default();
    let reaper = {
        let store = store.clone();
        let id = seasoned_reaper(&store, &pool).await;
        tokio::spawn(async move {
            loop {
                store.reap_expired(id, 1000).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut steady_claimers = Vec::new();
    for seed in 0..3 {
        steady_claimers.push(tokio::spawn(steady(
            store.clone(),
            ledger.clone(),
            seed,
            total,
        )));
    }
    let mut flaky_claimers = Vec::new();
    for seed in 10..13 {
        flaky_claimers.push(tokio::spawn(flaky(
            store.clone(),
            ledger.clone(),
            seed,
            total,
        )));
    }
    let race = async {
        let mut completed = 0;
        for c in steady_claimers {
            completed += c.await.unwrap();
        }
        let mut fenced_out = 0;
        for c in flaky_claimers {
            fenced_out += c.await.unwrap();
        }
        (completed, fenced_out)
    };
    let (_, fenced_out) = tokio::time::timeout(Duration::from_secs(240), race)
        .await
        .expect("every task completes");
    reaper.abort();

    // Exactly one successful completion per task, and nothing else.
    let ledger = ledger.lock().unwrap().clone();
    assert_eq!(ledger.len(), total);
    let doubled: Vec<_> = ledger.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "completed more than once: {doubled:?}");
    assert!(fenced_out > 0, "some zombies tried to finish retaken tasks");

    // The rows agree: every run settled completed with its counters, every task completed
    // once in the event log, with as many starts as claims (its epoch), and the stored
    // result is the one of the attempt that held the lease.
    for run in &runs {
        let tree = drama_jobs::conformance::assert_consistent(&*store, *run).await;
        assert_eq!(tree.nodes[0].state, JobState::Completed);
    }
    let per_task: Vec<(Uuid, i64, i64, i64, serde_json::Value)> = sqlx::query_as(
        "select j.id, j.epoch, \
           (select count(*) from job_events e where e.job_id = j.id and e.kind = 'completed'), \
           (select count(*) from job_events e where e.job_id = j.id and e.kind = 'started'), \
           j.result \
         from jobs j where j.node_type = 'task'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(per_task.len(), total);
    for (id, epoch, completed, started, result) in per_task {
        assert_eq!(completed, 1, "task {id} has {completed} completed events");
        assert_eq!(
            started, epoch,
            "task {id}: {started} starts for epoch {epoch}"
        );
        assert_eq!(
            result,
            json!({"epoch": epoch}),
            "task {id} kept a stale result"
        );
    }
    let (found, checked) = violations(&pool).await;
    assert_eq!(found, Vec::<String>::new());
    assert!(checked > 0);
}

/// Waits until some session of the database waits for a lock (a claim blocked on a run).
async fn until_a_session_waits_for_a_lock(pool: &PgPool) {
    for _ in 0..500 {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no session waited for a lock");
}

/// A claim that had to wait for its run (held by a completion that makes dependents runnable)
/// picks again once it holds the run: it gets the released tasks along with the one it picked
/// before the wait, instead of a short batch from a stale pick. What claims rely on: the run's
/// lock is taken before anything of the run is started, so the second pick is exact.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_claim_that_waited_for_its_run_gets_what_the_holder_released(pool: PgPool) {
    let store = Arc::new(PgJobStore::new(wide_pool(&pool, 4).await));
    let worker = register(&store, Duration::from_secs(60)).await;
    let mut graph = Graph::new(RunSpec::new("release", Uuid::new_v4()));
    graph.add(NodeSpec::task("a", "k", json!({})).priority(1));
    graph.add(NodeSpec::task("c", "k", json!({})));
    for i in 0..5 {
        graph.add(NodeSpec::task(format!("b{i}"), "k", json!({})).after(["a"]));
    }
    let run = store.submit(&graph).await.unwrap();
    let request = move |limit| ClaimRequest {
        worker,
        kinds: vec!["k".into()],
        limit,
    };
    let first = store.claim(&request(1)).await.unwrap();
    assert_eq!(first[0].key, "a");

    // The completion of `a` holds the run until it commits; a claim meanwhile sees only `c`.
    let mut tx = pool.begin().await.unwrap();
    drama_postgres::jobs::complete_in_tx(&mut tx, &first[0].fence, json!(1), None)
        .await
        .unwrap();
    let claimer = {
        let store = store.clone();
        tokio::spawn(async move { store.claim(&request(10)).await.unwrap() })
    };
    until_a_session_waits_for_a_lock(&pool).await;
    tx.commit().await.unwrap();
    let mut keys: Vec<String> = claimer.await.unwrap().into_iter().map(|j| j.key).collect();
    keys.sort();
    assert_eq!(keys, ["b0", "b1", "b2", "b3", "b4", "c"]);
    let tree = drama_jobs::conformance::assert_consistent(&*store, run.run_id).await;
    assert_eq!(tree.nodes[0].counts.unwrap().running, 6);
}

/// A follower of one part of a run (an episode's group) reads the events of the nodes under it.
/// An expansion commits its new nodes and their events in one transaction, so a scoped read
/// must see both or neither. Here the read is held at the event table (the committing
/// transaction locks it) after it could have looked its scope up; meanwhile one transaction
/// completes `write` with an expansion (a scene group, born cancelled with an event, since the
/// run is being cancelled) and then `write2` under the same episode. A read that took the
/// scope before that commit would return `write2`'s later events without the scene's, and its
/// cursor, past them, would never come back to it.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_scoped_event_read_during_an_expansion_keeps_the_new_nodes_events(pool: PgPool) {
    let store = Arc::new(PgJobStore::new(wide_pool(&pool, 4).await));
    let worker = register(&store, Duration::from_secs(60)).await;
    let mut graph = Graph::new(RunSpec::new("expand", Uuid::new_v4()));
    graph.add(NodeSpec::group("ep", "episode"));
    graph.add(NodeSpec::task("write", "k", json!({})).parent("ep"));
    graph.add(NodeSpec::task("write2", "k", json!({})).parent("ep"));
    let run = store.submit(&graph).await.unwrap();
    let episode = run.ids["ep"];
    let mut claimed = store
        .claim(&ClaimRequest {
            worker,
            kinds: vec!["k".into()],
            limit: 2,
        })
        .await
        .unwrap();
    claimed.sort_by(|a, b| a.key.cmp(&b.key));
    store.cancel(run.run_id, "user").await.unwrap();
    let seen = store
        .events(run.run_id, None, Some(episode), 1000)
        .await
        .unwrap();
    let cursor = seen.last().map(|e| e.id);

    let mut tx = pool.begin().await.unwrap();
    let expansion = drama_jobs::Expansion::new()
        .with(NodeSpec::group("scene", "scene").parent("ep"))
        .with(NodeSpec::task("clip", "k", json!({})).parent("scene"));
    drama_postgres::jobs::complete_in_tx(&mut tx, &claimed[0].fence, json!(1), Some(expansion))
        .await
        .unwrap();
    drama_postgres::jobs::complete_in_tx(&mut tx, &claimed[1].fence, json!(2), None)
        .await
        .unwrap();
    sqlx::query("lock table public.job_event_batches in access exclusive mode")
        .execute(&mut *tx)
        .await
        .unwrap();
    let reader = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .events(run.run_id, cursor, Some(episode), 1000)
                .await
                .unwrap()
        })
    };
    until_a_session_waits_for_a_lock(&pool).await;
    tx.commit().await.unwrap();
    let mut read = reader.await.unwrap();
    let after = read.last().map(|e| e.id).or(cursor);
    read.extend(
        store
            .events(run.run_id, after, Some(episode), 1000)
            .await
            .unwrap(),
    );
    let all = store.events(run.run_id, cursor, None, 1000).await.unwrap();
    let expected: Vec<_> = all.iter().filter(|e| !e.key.is_empty()).cloned().collect();
    assert!(
        expected.iter().any(|e| e.key == "scene") && expected.last().unwrap().key != "scene",
        "the scene's event comes before later events of the episode: {expected:?}"
    );
    assert_eq!(read, expected, "a follower of the episode missed events");
}

/// Node keys are unique within a run by constraint: a second node with a key the run has
/// fails, through the engine's tables directly, and keys cannot be changed afterwards.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn node_keys_are_unique_within_a_run_by_constraint(pool: PgPool) {
    let store = PgJobStore::new(pool.clone());
    let graph = Graph::new(RunSpec::new("keys", Uuid::new_v4()))
        .with(NodeSpec::task("a", "k", json!({})))
        .with(NodeSpec::task("b", "k", json!({})));
    let run = store.submit(&graph).await.unwrap();
    let other = store.submit(&graph).await.unwrap();
    let insert = |run: Uuid, key: &'static str| {
        sqlx::query(
            "insert into jobs (id, run_id, parent_id, ancestors, node_type, key, kind, owner_id, \
               state) \
             values (gen_random_uuid(), $1, $1, array[$1], 'task', $2, 'k', gen_random_uuid(), \
               'waiting')",
        )
        .bind(run)
        .bind(key)
    };
    let err = insert(run.run_id.0, "a").execute(&pool).await.unwrap_err();
    let db = err.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("23505"), "{err}");
    assert_eq!(db.constraint(), Some("job_node_keys_pkey"));
    // The same key in another run, and a new key in the run, are fine.
    let mut tx = pool.begin().await.unwrap();
    insert(other.run_id.0, "c").execute(&mut *tx).await.unwrap();
    insert(run.run_id.0, "c").execute(&mut *tx).await.unwrap();
    tx.rollback().await.unwrap();
    let err = sqlx::query("update jobs set key = 'a' where run_id = $1 and key = 'b'")
        .bind(run.run_id.0)
        .execute(&pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23514"),
        "{err}"
    );
    // Pruning runs removes their keys with them.
    let keys = || sqlx::query_scalar::<_, i64>("select count(*) from job_node_keys");
    assert_eq!(keys().fetch_one(&pool).await.unwrap(), 4);
    for r in [run.run_id, other.run_id] {
        store.cancel(r, "done").await.unwrap();
    }
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    assert_eq!(store.prune(later, 10).await.unwrap().runs, 2);
    assert_eq!(keys().fetch_one(&pool).await.unwrap(), 0);
}

/// Sessions of this database waiting for a lock.
async fn lock_waiters(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity \
         where datname = current_database() and wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn until_lock_waiters(pool: &PgPool, n: i64) {
    for _ in 0..2000 {
        if lock_waiters(pool).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} sessions ever waited for a lock");
}

/// Two claimers of one class limited to one running task, each for a run of its own: the
/// second waits for the class row while the first, holding it, starts its task. After the
/// wait, the second must count that task and start nothing.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_claim_that_waited_for_a_class_counts_the_task_its_holder_started(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let store = Arc::new(PgJobStore::new(wide_pool(&pool, 8).await));
    store
        .set_resource_limits(&[drama_jobs::ResourceLimit::concurrency("video", 1)])
        .await
        .unwrap();
    let submit = |kind: &str| {
        Graph::new(RunSpec::new("limits", Uuid::new_v4()))
            .with(NodeSpec::task("t", kind, json!({})).class("video"))
    };
    let first = store.submit(&submit("a")).await.unwrap();
    store.submit(&submit("b")).await.unwrap();
    let worker = register(&store, Duration::from_secs(60)).await;
    let claim = |kind: &'static str| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim(&ClaimRequest {
                    worker,
                    kinds: vec![kind.into()],
                    limit: 1,
                })
                .await
                .unwrap()
        })
    };
    // The first claim's write waits for the task row, which is held here: by then the claim
    // holds the class row and has counted no running task.
    let mut row = pool.begin().await.unwrap();
    sqlx::query("select 1 from jobs where id = $1 for no key update")
        .bind(first.ids["t"].0)
        .execute(&mut *row)
        .await
        .unwrap();
    let a = claim("a");
    until_lock_waiters(&pool, 1).await;
    // The second claim sees a free slot (the first has not committed), locks its run and waits
    // for the class row.
    let b = claim("b");
    until_lock_waiters(&pool, 2).await;
    row.rollback().await.unwrap();
    let (a, b) = (a.await.unwrap(), b.await.unwrap());
    assert_eq!(a.len(), 1, "the first claim starts its task");
    assert_eq!(b.len(), 0, "the only slot is taken");
    let running: i64 = sqlx::query_scalar(
        "select count(*) from jobs where resource_class = 'video' and state = 'running'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(running, 1);
    let (found, _) = violations(&pool).await;
    assert_eq!(found, Vec::<String>::new());
}

/// Sets a worker's registration to have expired a second ago (its heartbeats came too late).
async fn expire(pool: &PgPool, worker: WorkerId) {
    sqlx::query("update job_workers set expires_at = now() - interval '1 second' where id = $1")
        .bind(worker.0)
        .execute(pool)
        .await
        .unwrap();
}

/// A reaper takes back the task of a worker whose registration expired while the worker
/// registers again and asks which of its tasks it still holds. Whatever the interleaving, the
/// answer must be true: a task it is told it holds stays running under its attempt, and one
/// that was requeued is not reported held (its handler, kept running, would pay its provider
/// for an attempt whose result is refused, while the next attempt pays again). Here the reaper
/// is held back after it decided (its write waits for the task's group row, held by this
/// test); the registration must wait for the reaper, not slip in between its check of the
/// registration and its requeue.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_worker_registering_again_while_its_task_is_reaped_sees_the_requeue(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let store = Arc::new(PgJobStore::new(wide_pool(&pool, 8).await));
    let worker = register(&store, Duration::from_secs(10)).await;
    let graph = Graph::new(RunSpec::new("reap", Uuid::new_v4()))
        .with(NodeSpec::group("g", "group"))
        .with(
            NodeSpec::task("t", "k", json!({}))
                .parent("g")
                .max_attempts(3),
        );
    let run = store.submit(&graph).await.unwrap();
    let claimed = store
        .claim(&ClaimRequest {
            worker,
            kinds: vec!["k".into()],
            limit: 1,
        })
        .await
        .unwrap();
    let fence = claimed[0].fence;
    expire(&pool, worker).await;

    let mut group = pool.begin().await.unwrap();
    sqlx::query("select 1 from job_groups where id = $1 for update")
        .bind(run.ids["g"].0)
        .execute(&mut *group)
        .await
        .unwrap();
    let reaper = {
        let store = store.clone();
        let id = seasoned_reaper(&store, &pool).await;
        tokio::spawn(async move { store.reap_expired(id, 100).await.unwrap() })
    };
    until_lock_waiters(&pool, 1).await;
    let again = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .register_worker(&WorkerRegistration {
                    id: worker,
                    name: "race".into(),
                    kinds: vec!["k".into()],
                    ttl: Duration::from_secs(10),
                })
                .await
                .unwrap();
            store.still_held(&[fence]).await.unwrap()
        })
    };
    // The registration either waits for the reaper or (the race) is done already.
    for _ in 0..300 {
        if again.is_finished() || lock_waiters(&pool).await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    group.rollback().await.unwrap();
    let reaped = reaper.await.unwrap();
    let held = again.await.unwrap();
    let (state, epoch, owner): (String, i64, Option<Uuid>) =
        sqlx::query_as("select state, epoch, lease_owner from jobs where id = $1")
            .bind(fence.job_id.0)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(reaped, 1, "the reaper had decided before the registration");
    assert_eq!(
        held,
        Vec::<JobId>::new(),
        "the task was requeued ({state}, epoch {epoch}, owner {owner:?}), so it is not held"
    );
    assert_eq!(state, "ready");
    let (found, _) = violations(&pool).await;
    assert_eq!(found, Vec::<String>::new());
}

/// A claim picks a task while its worker is alive, then waits for the task's run; meanwhile
/// the registration expires. The claim must not start the task under the expired
/// registration (a reaper would take it back at once, using an attempt): it starts nothing
/// and tells the worker to register again.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_claim_starts_nothing_for_a_registration_that_expired_after_its_pick(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let store = Arc::new(PgJobStore::new(wide_pool(&pool, 8).await));
    let worker = register(&store, Duration::from_secs(60)).await;
    let graph = Graph::new(RunSpec::new("gap", Uuid::new_v4()))
        .with(NodeSpec::task("t", "k", json!({})).max_attempts(1));
    let run = store.submit(&graph).await.unwrap();
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("select 1 from job_groups where id = $1 for no key update")
        .bind(run.run_id.0)
        .execute(&mut *holder)
        .await
        .unwrap();
    let claim = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim(&ClaimRequest {
                    worker,
                    kinds: vec!["k".into()],
                    limit: 1,
                })
                .await
        })
    };
    until_lock_waiters(&pool, 1).await;
    expire(&pool, worker).await;
    holder.rollback().await.unwrap();
    match claim.await.unwrap() {
        Err(JobError::WorkerExpired(w)) => assert_eq!(w, worker),
        Ok(jobs) => assert!(jobs.is_empty(), "started {jobs:?} for an expired worker"),
        Err(e) => panic!("unexpected claim error: {e}"),
    }
    let (state, attempts): (String, i32) =
        sqlx::query_as("select state, attempts from jobs where id = $1")
            .bind(run.ids["t"].0)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((state.as_str(), attempts), ("ready", 0));
    let (found, _) = violations(&pool).await;
    assert_eq!(found, Vec::<String>::new());
}

/// A checkpoint comes while the reaper takes back a task whose run was cancelled (it ends
/// cancelled, refundable unless its provider call was accepted, which the checkpoint says).
/// The reaper must not write what it read before the checkpoint: the task's refundable cost
/// would stay in its groups' sums while the task, checkpointed, is not refundable. Here the
/// reaper is held back after it locked and read the task (its write waits for the task's
/// group row, held by this test); the checkpoint must wait for it and then find its fence
/// gone.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_checkpoint_during_a_reap_waits_for_it(pool: PgPool) {
    install_invariant_checks(&pool).await;
    let store = Arc::new(PgJobStore::new(wide_pool(&pool, 8).await));
    let worker = register(&store, Duration::from_secs(60)).await;
    let graph = Graph::new(RunSpec::new("reap", Uuid::new_v4()))
        .with(NodeSpec::group("g", "group"))
        .with(
            NodeSpec::task("t", "k", json!({}))
                .parent("g")
                .cost(7)
                .max_attempts(3),
        );
    let run = store.submit(&graph).await.unwrap();
    let claimed = store
        .claim(&ClaimRequest {
            worker,
            kinds: vec!["k".into()],
            limit: 1,
        })
        .await
        .unwrap();
    let fence = claimed[0].fence;
    store.cancel(run.run_id, "user").await.unwrap();
    expire(&pool, worker).await;

    let mut group = pool.begin().await.unwrap();
    sqlx::query("select 1 from job_groups where id = $1 for update")
        .bind(run.ids["g"].0)
        .execute(&mut *group)
        .await
        .unwrap();
    let reaper = {
        let store = store.clone();
        let id = seasoned_reaper(&store, &pool).await;
        tokio::spawn(async move { store.reap_expired(id, 100).await.unwrap() })
    };
    until_lock_waiters(&pool, 1).await;
    let checkpoint = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .checkpoint(&fence, &json!({"provider_task": "p1"}))
                .await
        })
    };
    for _ in 0..300 {
        if checkpoint.is_finished() || lock_waiters(&pool).await >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    group.rollback().await.unwrap();
    assert_eq!(reaper.await.unwrap(), 1);
    let checkpointed = checkpoint.await.unwrap();
    assert!(
        matches!(checkpointed, Err(JobError::FenceLost(_))),
        "the checkpoint came after the task was taken back: {checkpointed:?}"
    );
    let tree = drama_jobs::conformance::assert_consistent(&*store, run.run_id).await;
    assert_eq!(tree.nodes[0].costs.unwrap().refundable, 7);
    let (found, _) = violations(&pool).await;
    assert_eq!(found, Vec::<String>::new());
}
