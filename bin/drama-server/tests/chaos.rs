//! Money under chaos, on PostgreSQL: several users with modest balances generate, regenerate,
//! cancel and resume dramas in an order drawn from a seeded generator (the seed is printed;
//! `CHAOS_SEED=<n>` draws the same numbers again — what they pick, such as the task to cancel,
//! also depends on how far the jobs got), while `serve --no-workers` and worker processes run
//! their jobs with priced offline calls, and one worker is killed with SIGKILL in the middle of
//! a task and replaced. Once every run settled and every refund was paid:
//!
//! - every balance equals the sum of its ledger (`drama-server credits check`), and no balance
//!   and no ledger entry went below zero;
//! - every refused request (402, or a quota's 429) charged nothing and re-queued nothing;
//! - every run cost its owner exactly what the refund policy of docs/API.md says — the cost of
//!   its tasks less the failed, skipped, and cancelled-before-the-provider-accepted ones — and
//!   never less than nothing;
//! - the provider was called at most once per media task and paid start (a resume that
//!   re-queues a task pays for a new start), plus once for each task the killed worker held.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::Server;
use support::deployment::{Deployment, logs_of, media_calls, warnings};
use uuid::Uuid;

const MEDIA_KINDS: [&str; 5] = ["portrait", "audition", "storyboard", "clip", "cover"];
/// Users who act; the last one cannot afford a generation.
const USERS: usize = 4;
const DRAMAS_PER_USER: usize = 2;
/// Random actions after each user's first generation.
const ACTIONS: usize = 32;
/// The random action after which a worker is killed in the middle of a task.
const KILL_AFTER: usize = 4;

struct User {
    id: Uuid,
    key: String,
    dramas: Vec<String>,
    runs: Vec<Uuid>,
}

/// A request the server refused: nothing may have moved for it.
struct Refusal {
    user: Uuid,
    what: String,
    /// The user's newest ledger entry before the request and after its answer.
    ledger: (i64, i64),
    /// For a resume: the run, and its newest event before the request and after the answer.
    run: Option<(Uuid, i64, i64)>,
}

#[derive(Debug, Default)]
struct Tally {
    started: usize,
    refused: usize,
    cancels: usize,
    resumes: usize,
}

struct Chaos {
    d: Deployment,
    rng: StdRng,
    users: Vec<User>,
    refusals: Vec<Refusal>,
    tally: Tally,
}

async fn newest_entry(pool: &PgPool, user: Uuid) -> i64 {
    sqlx::query_scalar(
        "select coalesce(max(id), 0)::bigint from public.credit_ledger where owner_id = $1",
    )
    .bind(user)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn newest_event(pool: &PgPool, run: Uuid) -> i64 {
    sqlx::query_scalar(
        "select coalesce(max(last_id), 0)::bigint from public.job_event_batches where run_id = $1",
    )
    .bind(run)
    .fetch_one(pool)
    .await
    .unwrap()
}

impl Chaos {
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.rng.random_range(0..items.len())]
    }

    /// `POST /dramas/{drama}/generate` (with `force` a regeneration of everything).
    async fn generate(&mut self, u: usize, drama: &str, force: bool) {
        let user = &self.users[u];
        let (id, key) = (user.id, user.key.clone());
        let before = newest_entry(&self.d.pool, id).await;
        let body = force.then(|| json!({"force": true}));
        let (status, answer) = self
            .d
            .call(
                reqwest::Method::POST,
                &format!("/dramas/{drama}/generate"),
                &key,
                body,
            )
            .await;
        let what = format!("generate {drama} (force: {force})");
        println!("user {u}: {what} → {status}");
        match status {
            202 => {
                let run = answer["jobId"].as_str().unwrap().parse().unwrap();
                self.users[u].runs.push(run);
                self.tally.started += 1;
            }
            402 | 429 => {
                if status == 402 {
                    assert_eq!(answer["code"], "insufficient_tokens", "{answer}");
                }
                let after = newest_entry(&self.d.pool, id).await;
                self.refusals.push(Refusal {
                    user: id,
                    what,
                    ledger: (before, after),
                    run: None,
                });
                self.tally.refused += 1;
            }
            _ => panic!("{what}: {status} {answer}"),
        }
    }

    /// The user's runs that are still going, or all of them when none is.
    async fn runs_to_cancel(&self, u: usize) -> Vec<Uuid> {
        let runs = &self.users[u].runs;
        let active: Vec<Uuid> = sqlx::query_scalar(
            "select id from public.job_groups where id = any($1) and id = run_id \
             and state in ('waiting', 'running') order by id",
        )
        .bind(runs)
        .fetch_all(&self.d.pool)
        .await
        .unwrap();
        if active.is_empty() {
            runs.clone()
        } else {
            active
        }
    }

    /// Cancels a run, or one unsettled task of it.
    async fn cancel(&mut self, u: usize) {
        let runs = self.runs_to_cancel(u).await;
        if runs.is_empty() {
            return;
        }
        let run = *self.pick(&runs);
        let tasks: Vec<Uuid> = sqlx::query_scalar(
            "select id from public.jobs where run_id = $1 and node_type = 'task' \
             and state in ('waiting', 'ready', 'running') order by id",
        )
        .bind(run)
        .fetch_all(&self.d.pool)
        .await
        .unwrap();
        let target = if !tasks.is_empty() && self.rng.random_bool(0.5) {
            *self.pick(&tasks)
        } else {
            run
        };
        let key = self.users[u].key.clone();
        let (status, answer) = self
            .d
            .call(
                reqwest::Method::POST,
                &format!("/jobs/{target}/cancel"),
                &key,
                None,
            )
            .await;
        println!(
            "user {u}: cancel {} of run {run} → {status}",
            if target == run { "all" } else { "a task" }
        );
        assert_eq!(status, 200, "{answer}");
        self.tally.cancels += 1;
    }

    /// Resumes a run with something to re-queue (any run when none has).
    async fn resume(&mut self, u: usize) {
        let runs = self.users[u].runs.clone();
        if runs.is_empty() {
            return;
        }
        let unfinished: Vec<Uuid> = sqlx::query_scalar(
            "select distinct run_id from public.jobs where run_id = any($1) \
             and node_type = 'task' and state in ('failed', 'skipped', 'cancelled') order by run_id",
        )
        .bind(&runs)
        .fetch_all(&self.d.pool)
        .await
        .unwrap();
        let run = if unfinished.is_empty() {
            *self.pick(&runs)
        } else {
            *self.pick(&unfinished)
        };
        let (id, key) = (self.users[u].id, self.users[u].key.clone());
        let before = (
            newest_entry(&self.d.pool, id).await,
            newest_event(&self.d.pool, run).await,
        );
        let (status, answer) = self
            .d
            .call(
                reqwest::Method::POST,
                &format!("/jobs/{run}/resume"),
                &key,
                None,
            )
            .await;
        println!("user {u}: resume run {run} → {status}");
        match status {
            200 => self.tally.resumes += 1,
            402 => {
                assert_eq!(answer["code"], "insufficient_tokens", "{answer}");
                self.refusals.push(Refusal {
                    user: id,
                    what: format!("resume {run}"),
                    ledger: (before.0, newest_entry(&self.d.pool, id).await),
                    run: Some((run, before.1, newest_event(&self.d.pool, run).await)),
                });
                self.tally.refused += 1;
            }
            _ => panic!("resume {run}: {status} {answer}"),
        }
    }

    /// One action drawn at random for a user drawn at random.
    async fn act(&mut self) {
        let u = self.rng.random_range(0..self.users.len());
        let dramas = self.users[u].dramas.clone();
        let drama = self.pick(&dramas).clone();
        match self.rng.random_range(0..10) {
            0..=2 => self.generate(u, &drama, false).await,
            3..=4 => self.generate(u, &drama, true).await,
            5..=7 => self.cancel(u).await,
            _ => self.resume(u).await,
        }
    }
}

/// Waits until a media task runs on `worker`, kills it (SIGKILL) and returns how many media
/// tasks it held when it died.
async fn kill_mid_task(pool: &PgPool, worker: &mut Server, server: &Server) -> i64 {
    // A worker registers as `worker-<pid>`.
    let name = format!("worker-{}", worker.pid());
    let held = "select count(*) from public.jobs j \
                where j.state = 'running' and j.kind = any($2) and j.lease_owner in \
                  (select id from public.job_workers where name = $1)";
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running: i64 = sqlx::query_scalar(held)
            .bind(&name)
            .bind(MEDIA_KINDS.to_vec())
            .fetch_one(pool)
            .await
            .unwrap();
        if running > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no media task ran on {name}\n{}",
            logs_of(&[server, &*worker])
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    worker.kill();
    // Its tasks stay leased to it until its registration expires.
    sqlx::query_scalar(held)
        .bind(&name)
        .bind(MEDIA_KINDS.to_vec())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until `query` (a count) answers 0.
async fn wait_for_none(
    pool: &PgPool,
    query: &'static str,
    what: &str,
    limit: Duration,
    watch: &[&Server],
) {
    let deadline = Instant::now() + limit;
    loop {
        let left: i64 = sqlx::query_scalar(query).fetch_one(pool).await.unwrap();
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} runs still {what} after {limit:?}\n{}",
            logs_of(watch)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Offline media calls a process logged one by one (a killed process logs no totals).
fn media_call_lines(log: &str) -> u64 {
    log.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["message"] == "offline provider call"
                && (v["call"] == "Image" || v["call"] == "Video")
        })
        .count() as u64
}

fn seed() -> u64 {
    std::env::var("CHAOS_SEED")
        .ok()
        .map(|s| s.trim().parse().expect("CHAOS_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_cancels_resumes_and_a_killed_worker_keep_every_credit_accounted_for() {
    let seed = seed();
    println!("chaos seed {seed} (CHAOS_SEED={seed} draws the same numbers again)");
    let d = Deployment::start(
        "chaos",
        &[
            ("PRICE_OFFLINE_CALLS", "true"),
            ("OFFLINE_IMAGE_DELAY_MS", "200"),
            ("OFFLINE_VIDEO_DELAY_MS", "1000"),
            // A killed worker's tasks are taken again after five seconds.
            ("DRAMA__WORKER__LEASE_SECONDS", "5"),
            ("DRAMA__WORKER__VIDEO_LIMIT", "4"),
            ("RUST_LOG", "warn,drama_server=info,drama_ai::offline=debug"),
        ],
    )
    .await;
    let mut users = Vec::new();
    for u in 0..USERS {
        let (id, key) = d.create_key(&format!("chaos-{u}")).await;
        users.push(User {
            id,
            key,
            dramas: (0..DRAMAS_PER_USER).map(|i| format!("u{u}-d{i}")).collect(),
            runs: Vec::new(),
        });
    }
    let mut server = d.spawn("serve", &["serve", "--no-workers"]);
    server.wait_for("/health").await;
    let mut doomed = d.spawn("worker-1", &["worker"]);
    let survivor = d.spawn("worker-2", &["worker"]);

    // Every drama written (with its portraits and cover) before the chaos starts.
    let mut writes = Vec::new();
    for user in &users {
        d.set_balance(user.id, 100_000).await;
        for drama in &user.dramas {
            let premise = format!("Neighbours {drama} feud over a shared garden, in 1 episode.");
            let (status, body) = d
                .call(
                    reqwest::Method::POST,
                    "/dramas",
                    &user.key,
                    Some(json!({"premise": premise, "id": drama})),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            writes.push((user.key.clone(), body["jobId"].as_str().unwrap().to_owned()));
        }
    }
    for (key, job) in &writes {
        let view = d
            .settle(
                key,
                &format!("/jobs/{job}"),
                Duration::from_secs(60),
                &[&server, &doomed, &survivor],
            )
            .await;
        assert_eq!(view["status"], "completed", "{view}");
    }

    // Modest balances: a few forced generations each; the last user cannot pay for its
    // first generation.
    let price = |user: &User, force: bool| {
        let (drama, key) = (user.dramas[0].clone(), user.key.clone());
        let d = &d;
        async move {
            let (status, estimate) = d
                .call(
                    reqwest::Method::POST,
                    &format!("/dramas/{drama}/estimate"),
                    &key,
                    Some(json!({"force": force})),
                )
                .await;
            assert_eq!(status, 200, "{estimate}");
            let cost = estimate["cost"].as_i64().unwrap();
            assert!(cost > 0, "offline calls are priced: {estimate}");
            cost
        }
    };
    let forced = price(&users[0], true).await;
    let first_of_last = price(&users[USERS - 1], false).await;
    println!("a forced generation is estimated at {forced} credits");
    for user in &users[..USERS - 1] {
        d.set_balance(user.id, 4 * forced).await;
    }
    d.set_balance(users[USERS - 1].id, first_of_last - 1).await;

    let mut chaos = Chaos {
        d,
        rng: StdRng::seed_from_u64(seed),
        users,
        refusals: Vec::new(),
        tally: Tally::default(),
    };
    // Work for every user at once, then the random part.
    for u in 0..USERS {
        let drama = chaos.users[u].dramas[0].clone();
        chaos.generate(u, &drama, false).await;
    }
    let mut killed = None;
    for step in 0..ACTIONS {
        chaos.act().await;
        if step == KILL_AFTER {
            let held = kill_mid_task(&chaos.d.pool, &mut doomed, &server).await;
            println!("worker-1 killed holding {held} media tasks");
            killed = Some(held);
        }
        let pause = chaos.rng.random_range(100..500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    // The seed fixes the draws, not the balances the workers leave when a draw comes: a seed
    // can draw only resumes that are refused (or no cancel). The checks below are about
    // cancels and resumes that happened, so one of each is made here when the draws made
    // none, the resume with the credit to pay for it.
    if chaos.tally.cancels == 0 {
        chaos.cancel(0).await;
    }
    if chaos.tally.resumes == 0 {
        let user = chaos.users[0].id;
        let tokens = chaos.d.tokens(user).await;
        chaos.d.set_balance(user, tokens + 10 * forced).await;
        chaos.resume(0).await;
    }
    let killed = killed.unwrap();
    let replacement = chaos.d.spawn("worker-3", &["worker"]);
    let watch = [&server, &survivor, &replacement];
    let pool = chaos.d.pool.clone();
    wait_for_none(
        &pool,
        "select count(*) from public.job_groups where id = run_id and state in ('waiting', 'running')",
        "unsettled",
        Duration::from_secs(90),
        &watch,
    )
    .await;
    wait_for_none(
        &pool,
        "select count(*) from public.job_groups where id = run_id and cost_refundable <> cost_refunded",
        "waiting for their refund",
        Duration::from_secs(30),
        &watch,
    )
    .await;
    println!("{:?}", chaos.tally);

    // Provider calls: one line per call in every worker's log; the workers that stop say
    // their totals too, which the lines must match.
    let mut calls = media_call_lines(&doomed.logs());
    let mut warned = Vec::new();
    for mut worker in [survivor, replacement] {
        let status = worker.stop().await.expect("the worker stops on SIGTERM");
        assert!(status.success(), "{status}\n{}", worker.logs());
        let lines = media_call_lines(&worker.logs());
        // A process that made no offline call of any kind (a seed can leave a worker idle)
        // logs no totals at its stop: that stands for zero, which its lines must then be too.
        assert_eq!(
            lines,
            media_calls(&worker.logs()).unwrap_or(0),
            "{}",
            worker.logs()
        );
        calls += lines;
        warned.push(warnings(&worker.logs(), 60));
    }
    server.stop().await;
    let d = &chaos.d;

    let out = d.run(&["credits", "check"]).await;
    assert!(
        out.status.success(),
        "credits check: {}",
        support::text(&out)
    );
    let negative: Vec<(Uuid, i64)> = sqlx::query_as(
        "select owner_id, balance_after from public.credit_ledger where balance_after < 0 \
         union all select id, tokens from public.users where tokens < 0",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(negative, Vec::new(), "balances below zero");

    assert_eq!(
        chaos.refusals.first().map(|r| r.user),
        Some(chaos.users[USERS - 1].id),
        "the user who cannot pay is refused first"
    );
    for r in &chaos.refusals {
        let charged: Vec<(String, i64)> = sqlx::query_as(
            "select reason, amount from public.credit_ledger where owner_id = $1 \
             and id > $2 and id <= $3 and reason in ('run_charge', 'resume_charge')",
        )
        .bind(r.user)
        .bind(r.ledger.0)
        .bind(r.ledger.1)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(charged, Vec::new(), "{} was refused but charged", r.what);
        if let Some((run, before, after)) = r.run {
            let resumed: i64 = sqlx::query_scalar(
                "select count(*) from public.job_events where run_id = $1 and id > $2 \
                 and id <= $3 and kind = 'resumed'",
            )
            .bind(run)
            .bind(before)
            .bind(after)
            .fetch_one(&pool)
            .await
            .unwrap();
            assert_eq!(resumed, 0, "{} was refused but re-queued tasks", r.what);
        }
    }

    // Each run cost exactly its tasks less the refundable ones (failed, skipped or cancelled
    // before the provider accepted the call), counted from the task rows.
    let runs: Vec<(Uuid, i64, i64, i64, i64, i64)> = sqlx::query_as(
        "select g.run_id, g.cost_total, g.cost_refundable, g.cost_refunded, \
           (select coalesce(sum(t.cost), 0)::bigint from public.jobs t \
             where t.run_id = g.run_id and t.node_type = 'task' \
               and t.state in ('failed', 'skipped', 'cancelled') \
               and t.checkpoint is null), \
           (select coalesce(-sum(l.amount), 0)::bigint from public.credit_ledger l \
             where l.run_id = g.run_id) \
         from public.job_groups g where g.id = g.run_id order by g.run_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // Every run a request was answered with is accounted for below (a generate whose work an
    // active run of the drama already made answers that run, so answers may repeat a run).
    let listed: std::collections::HashSet<Uuid> = runs.iter().map(|r| r.0).collect();
    let answered: std::collections::HashSet<Uuid> = chaos
        .users
        .iter()
        .flat_map(|u| u.runs.iter().copied())
        .chain(writes.iter().map(|(_, job)| job.parse().unwrap()))
        .collect();
    assert!(
        chaos.tally.started == 0 || !answered.is_empty(),
        "{} generates started, none answered with a run",
        chaos.tally.started
    );
    let missing: Vec<&Uuid> = answered.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "runs answered but not found: {missing:?}"
    );
    for (run, total, refundable, refunded, by_tasks, paid) in &runs {
        assert_eq!(refundable, by_tasks, "run {run}: the refundable sum");
        assert_eq!(refunded, refundable, "run {run}: refunds paid");
        assert!(*paid >= 0, "run {run} paid its owner {}", -paid);
        assert_eq!(
            *paid,
            total - refundable,
            "run {run}: {total} of tasks, {refundable} refundable"
        );
    }

    // At most one provider call per media task and paid start (a resume that re-queues a
    // task pays for its next start), plus one per task held by the killed worker.
    let starts: i64 = sqlx::query_scalar(
        "with ev as ( \
           select e.job_id, e.kind, count(*) filter (where e.kind = 'resumed') \
             over (partition by e.job_id order by e.id) as paid_start \
           from public.job_events e join public.jobs j on j.id = e.job_id \
           where j.node_type = 'task' and j.kind = any($1) and e.kind in ('started', 'resumed')) \
         select count(*) from (select distinct job_id, paid_start from ev where kind = 'started') s",
    )
    .bind(MEDIA_KINDS.to_vec())
    .fetch_one(&pool)
    .await
    .unwrap();
    println!(
        "{calls} media calls for {starts} paid media starts; {killed} held by the killed worker"
    );
    assert!(killed > 0, "the worker died in the middle of a task");
    assert!(
        calls <= u64::try_from(starts + killed).unwrap(),
        "{calls} provider calls for {starts} paid starts and {killed} interrupted tasks; \
         the workers warned:\n{}",
        warned.join("\n---\n")
    );
    assert!(
        chaos.tally.cancels > 0 && chaos.tally.resumes > 0,
        "{:?}",
        chaos.tally
    );

    drop(doomed);
    chaos.d.finish().await;
}
