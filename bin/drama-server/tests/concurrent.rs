//! Eight dramas written and generated at once on PostgreSQL by `serve --no-workers` and two
//! `worker` processes, with the bytes in an S3 server: no transaction deadlocks or fails to
//! serialize (no 40P01/40001 in the job events), and the offline provider is called exactly
//! once per media task (the workers log their calls when they stop).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use serde_json::json;
use support::deployment::{Deployment, media_calls, warnings};

const DRAMAS: usize = 8;

const MEDIA_KINDS: [&str; 5] = ["portrait", "audition", "storyboard", "clip", "cover"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_generations_at_once_neither_deadlock_nor_pay_a_provider_twice() {
    let d = Deployment::start(
        "concurrent",
        &[
            // No worker dies here: leases long enough for heartbeats of loaded processes.
            ("DRAMA__WORKER__LEASE_SECONDS", "30"),
            // Wide class limits: more completions of different dramas overlap.
            ("DRAMA__WORKER__IMAGE_LIMIT", "16"),
            ("DRAMA__WORKER__VIDEO_LIMIT", "8"),
            ("RUST_LOG", "warn,drama_server=info"),
        ],
    )
    .await;
    let (owner, key) = d.create_key("load").await;
    d.set_balance(owner, 10_000_000).await;
    let pool = d.pool.clone();

    let mut server = d.spawn("serve", &["serve", "--no-workers"]);
    server.wait_for("/health").await;
    let mut workers = [
        d.spawn("worker-1", &["worker"]),
        d.spawn("worker-2", &["worker"]),
    ];

    // Written at once, then generated at once.
    let created = futures::future::join_all((0..DRAMAS).map(|i| {
        let body = json!({
            "premise": format!("Bakery number {i} shares one oven with a rival, in 1 episode."),
            "id": format!("oven-{i}"),
        });
        d.call(reqwest::Method::POST, "/dramas", &key, Some(body))
    }))
    .await;
    let jobs: Vec<String> = created
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["jobId"].as_str().unwrap().to_owned()
        })
        .collect();
    let watch = [&server, &workers[0], &workers[1]];
    for view in d
        .settle_all(&key, &jobs, Duration::from_secs(300), &watch)
        .await
    {
        assert_eq!(view["status"], "completed", "{view}");
    }
    let paths: Vec<String> = (0..DRAMAS)
        .map(|i| format!("/dramas/oven-{i}/generate"))
        .collect();
    let started = futures::future::join_all(
        paths
            .iter()
            .map(|p| d.call(reqwest::Method::POST, p, &key, None)),
    )
    .await;
    let runs: Vec<String> = started
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["jobId"].as_str().unwrap().to_owned()
        })
        .collect();
    for view in d
        .settle_all(&key, &runs, Duration::from_secs(300), &watch)
        .await
    {
        assert_eq!(view["status"], "completed", "{view}");
    }

    let busy: Vec<(String, String)> = sqlx::query_as(
        "select key, detail::text from public.job_events \
         where detail::text like '%40P01%' or detail::text like '%40001%'",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        busy,
        Vec::<(String, String)>::new(),
        "transactions collided"
    );

    let media_tasks: i64 = sqlx::query_scalar(
        "select count(*) from public.jobs where node_type = 'task' and kind = any($1)",
    )
    .bind(MEDIA_KINDS.to_vec())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        media_tasks >= (DRAMAS * 4) as i64,
        "{media_tasks} media tasks"
    );
    let mut calls = 0;
    for worker in &mut workers {
        let status = worker.stop().await.expect("the worker stops on SIGTERM");
        assert!(status.success(), "{status}\n{}", worker.logs());
        calls += media_calls(&worker.logs())
            .unwrap_or_else(|| panic!("no call count in the log\n{}", worker.logs()));
    }
    // Every event that can put a media task's provider call in again, for the failure message.
    let repeats: Vec<(String, String, String)> = sqlx::query_as(
        "select j.key, e.kind, coalesce(e.detail::text, '') from public.job_events e \
         join public.jobs j on j.id = e.job_id \
         where j.node_type = 'task' and j.kind = any($1) \
           and e.kind in ('retrying', 'deferred', 'lease_expired', 'released', 'resumed') \
         order by e.id",
    )
    .bind(MEDIA_KINDS.to_vec())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        calls,
        u64::try_from(media_tasks).unwrap(),
        "provider calls for {media_tasks} media tasks; repeated attempts: {repeats:#?}\nworker logs:\n{}",
        workers
            .iter()
            .map(|w| warnings(&w.logs(), 60))
            .collect::<Vec<_>>()
            .join("\n---\n")
    );

    server.stop().await;
    // The server's own count, for transactions that were retried before a job event saw them.
    let deadlocks: i64 = sqlx::query_scalar(
        "select deadlocks from pg_stat_database where datname = current_database()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(deadlocks, 0, "deadlocks detected by PostgreSQL");
    d.finish().await;
}
