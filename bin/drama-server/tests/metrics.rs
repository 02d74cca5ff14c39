//! `/metrics` and the access log of a real `serve` on PostgreSQL: requests by route and status
//! with latency histograms, jobs by kind and state, the queue, provider work, the pool; the
//! token; one access-log line per request carrying the request id.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use drama_testkit::pg::ScratchDb;
use serde_json::{Value, json};
use support::{Server, binary, free_port, output, text};

/// Checks the text format line by line: comments are HELP/TYPE, samples are
/// `name{labels} number` of a declared family. Returns the samples.
fn parse(body: &str) -> Vec<(String, f64)> {
    let mut declared = BTreeSet::new();
    let mut samples = Vec::new();
    for line in body.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            declared.insert(parts.next().unwrap().to_owned());
            let kind = parts.next().unwrap();
            assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|f| declared.contains(*f))
            .unwrap_or(name);
        assert!(declared.contains(family), "undeclared: {line}");
        if series.contains('{') {
            assert!(series.ends_with('}'), "{line}");
        }
        samples.push((series.to_owned(), value));
    }
    samples
}

fn value(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

#[tokio::test]
async fn metrics_count_requests_jobs_and_the_pool_and_every_request_is_logged() {
    let db = ScratchDb::create("metrics").await;
    let dir = tempfile::tempdir().unwrap();
    let env = |c: &mut std::process::Command| {
        c.env("DATABASE_URL", db.url())
            .env("ASSETS_DIR", dir.path().join("assets"))
            .env("AI_OFFLINE", "true");
    };
    let mut migrate = binary(&["migrate"]);
    env(&mut migrate);
    assert!(output(migrate).await.status.success());
    let mut keys = binary(&["keys", "create", "--name", "m"]);
    env(&mut keys);
    let created = output(keys).await;
    let key = support::printed_key(&text(&created));

    let port = free_port();
    let mut serve = binary(&["serve", "--host", "127.0.0.1", "--port", &port.to_string()]);
    env(&mut serve);
    // The pool of a `serve` with workers: 5 for requests, one per handler slot, 6 for the
    // job engine.
    serve
        .env("DATABASE_MAX_CONNECTIONS", "5")
        .env("WORKER_CONCURRENCY", "4")
        .env("METRICS_TOKEN", "scrape-token")
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let mut server = Server::spawn(serve, port, dir.path(), "serve");
    server.wait_for("/health").await;
    let http = reqwest::Client::new();
    let created = http
        .post(server.url("/dramas"))
        .bearer_auth(&key)
        .json(&json!({"premise": "A clock that runs backwards, in 2 episodes", "id": "clock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 202);
    let missing = http
        .get(server.url("/dramas/nope"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The drama gets written by a job; wait until it exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    while http
        .get(server.url("/dramas/clock"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .status()
        != 200
    {
        assert!(Instant::now() < deadline, "{}", server.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let refused = http.get(server.url("/metrics")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let wrong = http
        .get(server.url("/metrics"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // Past the snapshot cache, so the completed job is counted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let answer = http
        .get(server.url("/metrics"))
        .bearer_auth("scrape-token")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(
        answer.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let body = answer.text().await.unwrap();
    let samples = parse(&body);
    let series = |s: &str| value(&samples, s).unwrap_or_else(|| panic!("no {s} in\n{body}"));
    assert_eq!(
        series(r#"drama_http_requests_total{method="POST",route="/dramas",status="202"}"#),
        1.0
    );
    // The wrong id, and the polls before the drama was written.
    assert!(
        series(
            r#"drama_http_requests_total{method="GET",route="/dramas/{drama_id}",status="404"}"#
        ) >= 1.0
    );
    let count = series(
        r#"drama_http_request_duration_seconds_count{method="GET",route="/dramas/{drama_id}"}"#,
    );
    assert!(count >= 2.0);
    assert_eq!(
        series(
            r#"drama_http_request_duration_seconds_bucket{method="GET",route="/dramas/{drama_id}",le="+Inf"}"#
        ),
        count
    );
    assert_eq!(
        series(r#"drama_jobs{kind="write_drama",state="completed"}"#),
        1.0
    );
    assert_eq!(
        series(r#"drama_provider_calls{class="script",outcome="attempted"}"#),
        1.0
    );
    assert_eq!(series(r#"drama_db_pool_connections{state="max"}"#), 15.0);
    assert_eq!(series(r#"drama_metrics_source_up{source="0"}"#), 1.0);
    assert!(
        body.contains("# TYPE drama_job_queue_depth gauge"),
        "{body}"
    );

    server.stop().await;
    // One access line per request, inside the request's span (its id).
    let logs = server.logs();
    let access: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["message"] == "access")
        .collect();
    let post = access
        .iter()
        .find(|v| v["method"] == "POST" && v["route"] == "/dramas")
        .unwrap_or_else(|| panic!("no access line for POST /dramas:\n{logs}"));
    assert_eq!(post["status"], 202);
    assert_eq!(post["level"], "INFO");
    assert!(post["span"]["request.id"].is_string(), "{post}");
    assert!(
        access
            .iter()
            .any(|v| v["path"] == "/dramas/nope" && v["status"] == 404)
    );
    // The startup says how the pool was divided.
    let sized = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("database pool sized"))
        })
        .unwrap_or_else(|| panic!("no pool line:\n{logs}"));
    assert_eq!(
        (
            &sized["pool"],
            &sized["requests"],
            &sized["handler_slots"],
            &sized["engine"]
        ),
        (&json!(15), &json!(5), &json!(4), &json!(6)),
        "{sized}"
    );
    db.drop_it().await;
}
