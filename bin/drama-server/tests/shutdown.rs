//! Stopping `serve`: streams that would never end by themselves (a drama's SSE stream, a
//! GraphQL WebSocket) end as soon as SIGTERM arrives, so the drain does not wait out its whole
//! timeout and the process exits promptly.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use support::deployment::Deployment;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

/// A GraphQL WebSocket that `connection_init` was acknowledged on.
async fn open_socket(
    port: u16,
    key: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut request = format!("ws://127.0.0.1:{port}/subscriptions")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    loop {
        if let Message::Text(body) = ws.next().await.unwrap().unwrap() {
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(body["type"], "connection_ack", "{body}");
            return ws;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_and_sockets_end_promptly_when_serve_stops() {
    let d = Deployment::start("shutdown_streams", &[]).await;
    let (_, key) = d.create_key("streams").await;
    let mut server = d.spawn("serve", &["serve"]);
    server.wait_for("/health").await;
    let (status, body) = d
        .call(
            reqwest::Method::POST,
            "/dramas",
            &key,
            Some(json!({"drama": drama_testkit::builders::drama_json("held", 1, 1, 1)})),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let response = d
        .http
        .get(d.url("/dramas/held/events"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut sse = response.bytes_stream();
    let first = sse.next().await.unwrap().unwrap();
    assert!(
        String::from_utf8_lossy(&first).contains("event: current"),
        "{first:?}"
    );
    let mut ws = open_socket(d.port, &key).await;

    let stopped = Instant::now();
    let pid = server.pid().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );

    // The stream ends (no keep-alive comes first: those are 15 s apart).
    let ended = tokio::time::timeout(Duration::from_secs(5), sse.next())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the SSE stream is still open 5 s after SIGTERM\n{}",
                server.logs()
            )
        });
    assert!(
        ended.as_ref().is_none_or(|r| r.is_err()),
        "the SSE stream sent more: {ended:?}"
    );
    // The socket is closed as going away.
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(message) = ws.next().await {
            if let Ok(Message::Close(frame)) = message {
                return frame;
            }
        }
        None
    })
    .await
    .expect("the WebSocket is still open 5 s after SIGTERM")
    .expect("the WebSocket ended without a close frame");
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    drop(ws);

    // Nothing else holds the drain: the process exits long before actix's 30 s.
    let status = server.exit_within(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}\n{}", server.logs());
    println!("serve stopped {:?} after SIGTERM", stopped.elapsed());
}
