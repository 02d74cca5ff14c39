//! Bounded streams: caps per user and per process on Server-Sent Events (429
//! `too_many_streams` with `Retry-After`), and one follower per job shared by every stream.

use std::time::Duration;

use actix_web::test::{call_service, read_body};
use drama_api::HttpSettings;
use serde_json::Value;

use crate::support::{Harness, Listening, create_drama, get, post, send};

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

    // A closed stream frees its place.
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

/// A settled run of Alice's with thousands of events (a task each, all cancelled): megabytes
/// of frames, far more than the buffers between the server and a client hold.
async fn a_long_settled_run(h: &Harness) -> drama_jobs::RunId {
    use drama_jobs::JobStore as _;

    let mut graph = drama_jobs::Graph::new(drama_jobs::RunSpec::new("t", h.alice.0));
    for i in 0..40_000 {
        graph.add(drama_jobs::NodeSpec::task(
            format!("t{i}"),
            "k",
            serde_json::json!({}),
        ));
    }
    let run = h.jobs.submit(&graph).await.unwrap().run_id;
    h.jobs.cancel(run, "test").await.unwrap();
    run
}

/// A real connection with a small receive window that asks for `run`'s events as Alice and
/// never reads a byte of the answer.
async fn never_read(
    server: &Listening,
    h: &Harness,
    run: drama_jobs::RunId,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(server.base.parse().unwrap()).await.unwrap();
    let request = format!(
        "GET /jobs/{run}/events?after=0 HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\r\n",
        server.base, h.alice_key
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

/// The status of a new stream of `run`'s events for Alice (closed at once).
async fn opens(server: &Listening, h: &Harness, run: drama_jobs::RunId) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{}/jobs/{run}/events?after=0", server.base))
        .bearer_auth(&h.alice_key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Whether a new stream of `run` opens within `within`, trying every 100 ms.
async fn opens_within(
    server: &Listening,
    h: &Harness,
    run: drama_jobs::RunId,
    within: Duration,
) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if opens(server, h, run).await == 200 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// A client that opens streams and never reads them holds its places for as long as its
/// connections stay open, also once the server stopped making frames for them (after the
/// grace a stalled stream gets): it cannot take a new place every 30 s.
#[actix_web::test]
async fn streams_never_read_hold_their_places_until_their_connections_close() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        streams_per_user: 2,
        // The kernel does not cut the connections off here (see the next test).
        dead_peer_timeout: Duration::ZERO,
        ..Harness::settings()
    };
    let server = h.listen(settings);
    let run = a_long_settled_run(&h).await;
    let mut stalled = vec![
        never_read(&server, &h, run).await,
        never_read(&server, &h, run).await,
    ];
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(opens(&server, &h, run).await, 429, "both places are taken");
    // The streams give up on their client after the grace (30 s), and still hold their
    // places, as their connections are open.
    tokio::time::sleep(Duration::from_secs(35)).await;
    assert_eq!(
        opens(&server, &h, run).await,
        429,
        "a stalled connection gave its place back"
    );

    // Closed, they give them back.
    stalled.clear();
    assert!(
        opens_within(&server, &h, run, Duration::from_secs(5)).await,
        "closed connections kept their places"
    );
}

/// The kernel drops the connection of a client that keeps its receive window shut for
/// `http.dead_peer_timeout`, and the stream's place is given back although the client never
/// closes it.
#[actix_web::test]
async fn a_connection_that_stopped_reading_is_dropped_after_the_dead_peer_timeout() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        streams_per_user: 1,
        dead_peer_timeout: Duration::from_secs(2),
        ..Harness::settings()
    };
    let server = h.listen(settings);
    let run = a_long_settled_run(&h).await;
    let stalled = never_read(&server, &h, run).await;
    let opened = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(opens(&server, &h, run).await, 429, "the place is taken");
    assert!(
        opens_within(&server, &h, run, Duration::from_secs(20)).await,
        "the stalled connection was not dropped"
    );
    assert!(opened.elapsed() >= Duration::from_secs(2));
    drop(stalled);
}
