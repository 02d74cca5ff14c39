//! Open streams end with their credentials: a revoked API key ends its SSE streams and
//! GraphQL WebSockets within `http.stream_auth_interval`, an expired token at its `exp`.

use std::time::Duration;

use chrono::Utc;
use drama_api::{AuthSettings, HttpSettings};
use drama_domain::UserId;
use futures::StreamExt as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Harness, Listening, store_drama_over_http};
use crate::websocket::{Socket, connect, next, send};

const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters";

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// An SSE stream of `path` opened with `credential`, once its first frame has arrived.
async fn open_sse(server: &Listening, path: &str, credential: &str) -> reqwest::Response {
    let mut response = client()
        .get(format!("http://{}{path}", server.base))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().expect("a first frame");
    assert!(
        String::from_utf8_lossy(&first).contains("event: "),
        "{first:?}"
    );
    response
}

/// The rest of an SSE stream, which must end (waiting at most 30 s in all: keep-alives do
/// not count as progress).
async fn rest_of(mut response: reqwest::Response) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut text = String::new();
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the stream ends within 30 s");
        match chunk {
            Ok(Some(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) | Err(_) => return text,
        }
    }
}

/// The close frame of a socket (waiting at most 30 s in all), skipping what comes before it.
pub async fn closed(ws: &mut Socket) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the socket closes within 30 s");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(_)) => {}
            other => panic!("no close frame: {other:?}"),
        }
    }
}

/// A socket initialised with `credential` and following drama `id`.
async fn subscribed(server: &Listening, credential: &str, id: &str) -> Socket {
    let mut ws = connect(server).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {credential}")}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(
        &mut ws,
        json!({"id": "follow", "type": "subscribe", "payload": {
            "query": format!(r#"subscription {{ dramaChanged(id: "{id}") {{ version }} }}"#)
        }}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "next");
    ws
}

#[actix_web::test]
async fn revoking_a_key_ends_its_open_streams_and_no_others() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        stream_auth_interval: Duration::from_millis(200),
        ..Harness::settings()
    };
    let server = h.listen(settings);
    store_drama_over_http(&server, &h.alice_key, "watched").await;
    let made: Value = client()
        .post(format!("http://{}/api-keys", server.base))
        .bearer_auth(&h.alice_key)
        .json(&json!({"name": "laptop"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (laptop, id) = (made["key"].as_str().unwrap(), made["id"].as_str().unwrap());

    let drama_sse = open_sse(&server, "/dramas/watched/events", laptop).await;
    let mut ws = subscribed(&server, laptop, "watched").await;
    // Streams of Alice's other key are not concerned.
    let mut other_sse = open_sse(&server, "/dramas/watched/events", &h.alice_key).await;
    let mut other_ws = subscribed(&server, &h.alice_key, "watched").await;

    let revoked = client()
        .delete(format!("http://{}/api-keys/{id}", server.base))
        .bearer_auth(&h.alice_key)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(revoked, 200);

    let rest = rest_of(drama_sse).await;
    assert!(rest.contains("event: unauthenticated"), "{rest}");
    assert!(rest.contains("API key revoked"), "{rest}");
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, drama_api::graphql::CREDENTIALS_LAPSED_CLOSE);
    assert!(reason.contains("API key revoked"), "{reason}");

    // The streams of the key that still works go on: they see the next change.
    let status = client()
        .patch(format!("http://{}/dramas/watched", server.base))
        .bearer_auth(&h.alice_key)
        .json(&json!({"title": "Still watched"}))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    let changed = tokio::time::timeout(Duration::from_secs(30), other_sse.chunk())
        .await
        .expect("a change within 30 s")
        .unwrap()
        .expect("the stream is open");
    assert!(
        String::from_utf8_lossy(&changed).contains("event: changed"),
        "{changed:?}"
    );
    let answer = next(&mut other_ws).await.unwrap();
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_str()),
        (Some("next"), Some("follow")),
        "{answer}"
    );
}

#[actix_web::test]
async fn an_expired_token_ends_its_open_streams_at_its_exp() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        auth: AuthSettings {
            jwt_secret: Some(SECRET.to_owned()),
            ..AuthSettings::default()
        },
        // Far longer than the test: the streams end at the token's `exp`, not at a re-check.
        stream_auth_interval: Duration::from_secs(3600),
        ..Harness::settings()
    };
    let server = h.listen(settings);
    let subject = UserId::random();
    let now = Utc::now().timestamp();
    let token = encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": subject.to_string(), "aud": "authenticated", "role": "authenticated",
                "exp": now + 3, "iat": now}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    store_drama_over_http(&server, &token, "brief").await;

    let sse = open_sse(&server, "/dramas/brief/events", &token).await;
    let mut ws = subscribed(&server, &token, "brief").await;

    let rest = rest_of(sse).await;
    assert!(rest.contains("event: unauthenticated"), "{rest}");
    assert!(rest.contains("expired"), "{rest}");
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, drama_api::graphql::CREDENTIALS_LAPSED_CLOSE);
    assert!(reason.contains("expired"), "{reason}");
}
