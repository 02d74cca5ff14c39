//! Bounded streams: caps per user and per process on Server-Sent Events (429
//! `too_many_streams` with `Retry-After`), and one follower per job shared by every stream.

use actix_web::test::{call_service, read_body};
use drama_api::HttpSettings;
use serde_json::Value;

use crate::support::{Harness, create_drama, get, post, send};

/// Lets the tasks of closed streams run: each ends as soon as it sees its response dropped.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
}

#[actix_web::test]
async fn two_hundred_streams_of_one_user_stop_at_the_cap_while_others_are_served() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    create_drama(&svc, &h.alice_key, "alices", (1, 1, 1)).await;
    create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;

    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        let response = call_service(
            &svc,
            get("/dramas/alices/events", &h.alice_key).to_request(),
        )
        .await;
        match response.status().as_u16() {
            200 => open.push(response),
            429 => {
                assert_eq!(response.headers().get("retry-after").unwrap(), "5");
                let body: Value = serde_json::from_slice(&read_body(response).await).unwrap();
                assert_eq!(body["code"], "too_many_streams", "{body}");
                assert_eq!(body["detail"]["scope"], "user", "{body}");
                assert_eq!(body["detail"]["limit"], 20, "{body}");
                refused += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((open.len(), refused), (20, 180));

    // Meanwhile Bob follows his own drama, and everyone's ordinary requests are served.
    let bobs = call_service(&svc, get("/dramas/bobs/events", &h.bob_key).to_request()).await;
    assert_eq!(bobs.status(), 200);
    let (status, _, _) = send(&svc, get("/dramas", &h.bob_key)).await;
    assert_eq!(status, 200);
    let (status, _, _) = send(&svc, get("/dramas/alices", &h.alice_key)).await;
    assert_eq!(status, 200);

    // A closed stream frees its place (once its task, which makes its frames apart from the
    // response, sees the client gone).
    open.pop();
    settle().await;
    let again = call_service(
        &svc,
        get("/dramas/alices/events", &h.alice_key).to_request(),
    )
    .await;
    assert_eq!(again.status(), 200);
}

#[actix_web::test]
async fn the_process_cap_holds_for_everyone() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        streams_per_process: 3,
        ..Harness::settings()
    };
    let svc = h.service(settings).await;
    create_drama(&svc, &h.alice_key, "alices", (1, 1, 1)).await;
    create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;
    let mut open = Vec::new();
    for _ in 0..3 {
        let response = call_service(
            &svc,
            get("/dramas/alices/events", &h.alice_key).to_request(),
        )
        .await;
        assert_eq!(response.status(), 200);
        open.push(response);
    }
    let response = call_service(&svc, get("/dramas/bobs/events", &h.bob_key).to_request()).await;
    assert_eq!(response.status(), 429);
    let body: Value = serde_json::from_slice(&read_body(response).await).unwrap();
    assert_eq!(body["detail"]["scope"], "process", "{body}");
    open.clear();
    settle().await;
    let response = call_service(&svc, get("/dramas/bobs/events", &h.bob_key).to_request()).await;
    assert_eq!(response.status(), 200);
}

/// The event ids of an SSE body, and whether it ended with the run's outcome.
fn ids_and_end(text: &str) -> (Vec<i64>, bool) {
    let ids = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    (ids, text.contains("event: end"))
}

#[actix_web::test]
async fn followers_of_one_run_receive_the_same_events() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    create_drama(&svc, k, "shared", (1, 1, 1)).await;
    let (_, _, body) = send(&svc, post("/dramas/shared/generate", k)).await;
    let job = body["jobId"].as_str().unwrap().to_owned();
    // Every follower starts before any work is done, then the worker runs the whole run.
    let mut responses = Vec::new();
    for _ in 0..8 {
        let response =
            call_service(&svc, get(&format!("/jobs/{job}/events"), k).to_request()).await;
        assert_eq!(response.status(), 200);
        responses.push(response);
    }
    let worker = h.worker().await;
    let bodies = futures::future::join_all(responses.into_iter().map(read_body)).await;
    let streams: Vec<(Vec<i64>, bool)> = bodies
        .iter()
        .map(|b| ids_and_end(std::str::from_utf8(b).unwrap()))
        .collect();
    let (first, ended) = &streams[0];
    assert!(*ended && first.len() > 5, "{streams:?}");
    assert!(first.windows(2).all(|w| w[0] < w[1]), "in order: {first:?}");
    for stream in &streams {
        assert_eq!(stream, &streams[0]);
    }
    // A late follower replays the finished run from its start.
    let late = call_service(&svc, get(&format!("/jobs/{job}/events"), k).to_request()).await;
    let late = ids_and_end(std::str::from_utf8(&read_body(late).await).unwrap());
    assert_eq!(late, streams[0]);
    worker.shutdown().await;
}

#[actix_web::test]
async fn a_long_run_replayed_from_the_start_arrives_complete_and_in_order() {
    use drama_jobs::JobStore as _;

    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    // A settled run that logged several pages of events (a page is 500): a task each, nobody
    // working on them, then all cancelled.
    let mut graph = drama_jobs::Graph::new(drama_jobs::RunSpec::new("t", h.alice.0));
    for i in 0..1_600 {
        graph.add(drama_jobs::NodeSpec::task(
            format!("t{i}"),
            "k",
            serde_json::json!({}),
        ));
    }
    let run = h.jobs.submit(&graph).await.unwrap().run_id;
    h.jobs.cancel(run, "test").await.unwrap();
    let logged: Vec<i64> = h
        .jobs
        .events(run, None, None, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id.0)
        .collect();
    assert!(logged.len() > 1_600, "{}", logged.len());

    for request in [
        get(&format!("/jobs/{run}/events"), &h.alice_key).insert_header(("Last-Event-ID", "0")),
        get(&format!("/jobs/{run}/events?after=0"), &h.alice_key),
    ] {
        let response = call_service(&svc, request.to_request()).await;
        assert_eq!(response.status(), 200);
        let body = read_body(response).await;
        let (ids, ended) = ids_and_end(std::str::from_utf8(&body).unwrap());
        assert!(ended, "the stream ends with the run's outcome");
        assert_eq!(ids, logged, "every event once, in order");
    }
}
