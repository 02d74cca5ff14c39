//! The whole system as it is deployed: `serve --no-workers` and separate `worker` processes on
//! one PostgreSQL database, assets in an S3 server, offline AI with realistic clip latency.
//! A worker is killed with SIGKILL in the middle of rendering clips; another finishes the run
//! without losing or duplicating work, objects or charges, and a GraphQL subscription on the
//! API process follows progress made in the worker processes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use drama_assets::AssetStore as _;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use support::deployment::{Deployment, logs_of};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// The keys of the run's video tasks that a worker is rendering now.
/// The clips being rendered, once every clip in flight has the provider's task id recorded.
/// A clip between the mark of its submission and the task id is not waited on by a worker
/// that dies there: its next attempt ends it failed rather than paying for a second render
/// (`provider_submit_uncertain`), which is not the case this test kills a worker in.
async fn videos_in_flight(d: &Deployment, run: uuid::Uuid) -> Vec<String> {
    let running: Vec<(String, bool)> = sqlx::query_as(
        "select key, coalesce(checkpoint ? 'task_id', false) from public.jobs
         where run_id = $1 and node_type = 'task' and state = 'running' and resource_class = 'video'",
    )
    .bind(run)
    .fetch_all(&d.pool)
    .await
    .unwrap();
    if running.iter().any(|(_, submitted)| !submitted) {
        return Vec::new();
    }
    running.into_iter().map(|(key, _)| key).collect()
}

/// Follows `jobProgress` over `graphql-transport-ws` until the server completes it; returns
/// every `next` payload.
async fn follow_over_websocket(url: String, key: String, job: String) -> Vec<Value> {
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("graphql-transport-ws")
    );
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(json!({
        "type": "connection_init",
        "payload": {"authorization": format!("Bearer {key}")}
    })))
    .await
    .unwrap();
    let query = format!(
        r#"subscription {{ jobProgress(jobId: "{job}") {{ eventId jobId key event state status at }} }}"#
    );
    let mut events = Vec::new();
    while let Some(message) = ws.next().await {
        let body = match message.unwrap() {
            Message::Text(body) => body,
            Message::Close(frame) => panic!("the server closed the subscription: {frame:?}"),
            _ => continue,
        };
        let body: Value = serde_json::from_str(&body).unwrap();
        match body["type"].as_str().unwrap() {
            "connection_ack" => ws
                .send(send(
                    json!({"id": "1", "type": "subscribe", "payload": {"query": query}}),
                ))
                .await
                .unwrap(),
            "ping" => ws.send(send(json!({"type": "pong"}))).await.unwrap(),
            // The server's keep-alive (a unidirectional pong is allowed by the protocol).
            "pong" => {}
            "next" => {
                assert!(body["payload"]["errors"].is_null(), "{body}");
                events.push(body["payload"]["data"]["jobProgress"].clone());
            }
            "complete" => break,
            other => panic!("unexpected {other} message: {body}"),
        }
    }
    let _ = ws.close(None).await;
    events
}

/// Versions seen by [`follow_drama_versions`] (read after its task is aborted).
static VERSIONS: std::sync::Mutex<Vec<i64>> = std::sync::Mutex::new(Vec::new());

/// Reads `GET /dramas/{id}/events` and records every version it announces.
async fn follow_drama_versions(http: reqwest::Client, url: String, key: String) {
    let response = http.get(url).bearer_auth(key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut pending = String::new();
    while let Some(chunk) = body.next().await {
        pending.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        while let Some(end) = pending.find("\n\n") {
            let frame: String = pending.drain(..end + 2).collect();
            if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                let data: Value = serde_json::from_str(data).unwrap();
                VERSIONS
                    .lock()
                    .unwrap()
                    .push(data["version"].as_i64().unwrap());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_render_loses_and_duplicates_nothing() {
    let d = Deployment::start(
        "e2e",
        &[
            ("PRICE_OFFLINE_CALLS", "true"),
            ("OFFLINE_VIDEO_DELAY_MS", "1500"),
            ("DRAMA__WORKER__LEASE_SECONDS", "5"),
        ],
    )
    .await;
    let (owner, key) = d.create_key("e2e").await;
    d.set_balance(owner, 1_000_000).await;
    let tokens_before = d.tokens(owner).await;

    let mut server = d.spawn("serve", &["serve", "--no-workers"]);
    server.wait_for("/health").await;
    let mut first_worker = d.spawn("worker-1", &["worker"]);

    let (status, created) = d
        .call(
            reqwest::Method::POST,
            "/dramas",
            &key,
            Some(json!({"premise": "Two rival bakers share one oven for a week, in 2 episodes.", "id": "oven"})),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let written = d
        .settle(
            &key,
            &format!("/jobs/{}", created["jobId"].as_str().unwrap()),
            Duration::from_secs(60),
            &[&server, &first_worker],
        )
        .await;
    assert_eq!(written["status"], "completed", "{written}");

    // Follow the drama itself: every asset a worker process writes bumps its version.
    let versions = tokio::spawn(follow_drama_versions(
        d.http.clone(),
        d.url("/dramas/oven/events"),
        key.clone(),
    ));
    let (status, started) = d
        .call(reqwest::Method::POST, "/dramas/oven/generate", &key, None)
        .await;
    assert_eq!(status, 202, "{started}");
    let job = started["jobId"].as_str().unwrap().to_owned();
    let run: uuid::Uuid = job.parse().unwrap();
    let subscription = tokio::spawn(follow_over_websocket(
        format!("ws://127.0.0.1:{}/subscriptions", d.port),
        key.clone(),
        job.clone(),
    ));

    // Kill the worker while it renders clips: their provider tasks are half done, their
    // leases are held by a process that no longer exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    let interrupted = loop {
        let running = videos_in_flight(&d, run).await;
        if !running.is_empty() {
            break running;
        }
        assert!(
            Instant::now() < deadline,
            "no clip started\n{}",
            logs_of(&[&server, &first_worker])
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    first_worker.kill();
    let second_worker = d.spawn("worker-2", &["worker"]);

    let done = d
        .settle(
            &key,
            &format!("/jobs/{job}"),
            Duration::from_secs(120),
            &[&server, &second_worker],
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["counts"]["completed"], done["counts"]["total"],
        "{done}"
    );

    // The interrupted clips were taken again and finished.
    let retaken: Vec<(String, i32, String)> = sqlx::query_as(
        "select key, attempts, state from public.jobs where run_id = $1 and key = any($2)",
    )
    .bind(run)
    .bind(&interrupted)
    .fetch_all(&d.pool)
    .await
    .unwrap();
    assert_eq!(retaken.len(), interrupted.len());
    for (task, attempts, state) in &retaken {
        assert_eq!(state, "completed", "{task}");
        assert!(*attempts >= 2, "{task} finished without being taken again");
    }

    // Every part of the drama has its media, and every URL serves it.
    let (status, drama) = d
        .call(reqwest::Method::GET, "/dramas/oven", &key, None)
        .await;
    assert_eq!(status, 200);
    let mut urls = Vec::new();
    for character in drama["characters"].as_array().unwrap() {
        urls.push(character["url"].as_str().expect("a portrait").to_owned());
    }
    for episode in drama["episodes"].as_array().unwrap() {
        urls.push(
            episode["url"]
                .as_str()
                .expect("a stitched episode")
                .to_owned(),
        );
        for scene in episode["scenes"].as_array().unwrap() {
            urls.push(
                scene["image_url"]
                    .as_str()
                    .expect("a storyboard")
                    .to_owned(),
            );
            urls.push(scene["video_url"].as_str().expect("a clip").to_owned());
        }
    }
    // As a player loads them: no credentials, whatever the backend (presigned bucket URLs here).
    for url in &urls {
        let response = d.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let bytes = response.bytes().await.unwrap();
        assert!(
            drama_assets::MediaType::detect(&bytes).is_some(),
            "{url} does not serve media"
        );
    }

    // Every object in the bucket is referenced by the drama, or is on the orphan list that the
    // sweeper empties: a retaken task wrote no second copy that nothing tracks.
    let referenced: BTreeSet<String> =
        sqlx::query_scalar("select storage_key from public.assets where storage_key is not null")
            .fetch_all(&d.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let orphaned: BTreeSet<String> =
        sqlx::query_scalar("select storage_key from public.orphaned_objects")
            .fetch_all(&d.pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let store = d.s3.store(None);
    let stored: BTreeSet<String> = store
        .list(&drama_assets::keys::user_prefix(drama_domain::UserId(
            owner,
        )))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect();
    assert!(!stored.is_empty());
    let untracked: Vec<&String> = stored
        .iter()
        .filter(|k| !referenced.contains(*k) && !orphaned.contains(*k))
        .collect();
    assert!(
        untracked.is_empty(),
        "objects nothing tracks: {untracked:?}"
    );
    assert!(
        referenced.is_subset(&stored),
        "assets whose object is missing: {:?}",
        referenced.difference(&stored).collect::<Vec<_>>()
    );
    assert!(
        orphaned.is_disjoint(&referenced),
        "a referenced object is queued for deletion"
    );

    // Each task was paid for once, at submission: the crash cost the user nothing extra.
    let (charged, refunded): (i64, i64) = sqlx::query_as(
        "select coalesce(sum(cost), 0)::bigint,
                (select coalesce(sum(cost_refunded), 0)::bigint from public.job_groups
                  where id = run_id and run_id in (select run_id from public.jobs where owner_id = $1))
         from public.jobs where owner_id = $1 and node_type = 'task' and charged",
    )
    .bind(owner)
    .fetch_one(&d.pool)
    .await
    .unwrap();
    assert!(charged > 0, "offline calls are priced in this deployment");
    assert_eq!(refunded, 0, "nothing failed, nothing is refunded");
    assert_eq!(tokens_before - d.tokens(owner).await, charged);

    // The API process saw the worker processes' progress over the subscription.
    let events = tokio::time::timeout(Duration::from_secs(30), subscription)
        .await
        .expect("the subscription ends when the run settles")
        .unwrap();
    assert!(events.len() > 2, "{events:?}");
    let ids: Vec<i64> = events
        .iter()
        .map(|e| e["eventId"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "events repeat or go back: {ids:?}"
    );
    assert!(
        events.iter().any(
            |e| interrupted.contains(&e["key"].as_str().unwrap().to_owned())
                && e["event"] == "completed"
        ),
        "the retaken clips' completions arrive: {events:?}"
    );
    assert_eq!(
        events.last().unwrap()["status"],
        "completed",
        "the last event carries the final status: {:?}\n{}",
        &events[events.len().saturating_sub(5)..],
        logs_of(&[&server])
    );

    // The API process told its follower about the versions the workers wrote, in order, up
    // to the final one.
    versions.abort();
    let seen = match versions.await {
        Err(e) if e.is_cancelled() => VERSIONS.lock().unwrap().clone(),
        other => panic!("the drama stream ended early: {other:?}"),
    };
    let (_, latest) = d
        .call(reqwest::Method::GET, "/dramas/oven", &key, None)
        .await;
    let final_version: i64 =
        sqlx::query_scalar("select version from public.dramas where id = 'oven'")
            .fetch_one(&d.pool)
            .await
            .unwrap();
    assert!(latest["title"].is_string());
    assert!(
        seen.len() > urls.len() / 2,
        "{} versions for {} assets",
        seen.len(),
        urls.len()
    );
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "{seen:?}");
    assert_eq!(seen.last().copied(), Some(final_version), "{seen:?}");

    drop(second_worker);
    drop(server);
    drop(first_worker);
    d.finish().await;
}
