//! Guessing API keys costs the guesser the anonymous rate of its address, over HTTP and in a
//! WebSocket's `connection_init` alike, while a valid key is accepted from that address even
//! when it was not used there before (a shared address where someone else guesses). On
//! PostgreSQL, with the real key lookups.

use std::time::Duration;

use drama_api::HttpSettings;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::postgres::PgApi;
use crate::stream_auth::closed;
use crate::support::{Harness, Listening, listen_app};
use crate::websocket::{Socket, next, send};

/// Longer than the anonymous rate takes to allow one more request.
const REFILL: Duration = Duration::from_millis(1100);

const LIMITED: &str = "Too many requests without credentials from this address; slow down.";

/// One request without valid credentials a second per address, and no burst above it.
fn settings() -> HttpSettings {
    HttpSettings {
        anonymous_per_second: 1,
        anonymous_burst: 1,
        ..Harness::settings()
    }
}

/// A key of the right shape that no one holds.
fn guess() -> String {
    drama_dal::api_key::generate().0
}

async fn list_dramas(server: &Listening, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{}/dramas", server.base))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A socket whose upgrade carries a credential header (which the upgrade does not read, so it
/// is counted against the anonymous rate all the same), initialised with `key`.
async fn init_with(server: &Listening, key: &str) -> Socket {
    let mut request = format!("ws://{}/subscriptions", server.base)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    headers.insert("X-API-Key", "anything".parse().unwrap());
    let mut ws = tokio_tungstenite::connect_async(request).await.unwrap().0;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"x-api-key": key}}),
    )
    .await;
    ws
}

#[actix_web::test]
async fn guessed_keys_cost_the_anonymous_rate_and_a_valid_key_is_served_over_it() {
    let pg = PgApi::start("api_key_guesses").await;

    // Over HTTP: the guesses take the address over its rate...
    let server = listen_app(pg.app.clone(), settings());
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(list_dramas(&server, &guess()).await);
    }
    assert!(answers.contains(&401), "{answers:?}");
    assert!(
        answers.iter().filter(|s| **s == 429).count() >= 3,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| matches!(s, 401 | 429)),
        "{answers:?}"
    );
    // ...and a key never used from it (nor held by the process) is served there.
    assert_eq!(list_dramas(&server, &pg.key).await, 200);
    drop(server);

    // Over the WebSocket: a refused `connection_init` is counted as a failed request is (as
    // is every upgrade; a burst of two holds one upgrade and one guess).
    let two = HttpSettings {
        anonymous_burst: 2,
        ..settings()
    };
    let server = listen_app(pg.app.clone(), two);
    let mut ws = init_with(&server, &guess()).await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, 4403, "{reason}");
    assert_ne!(reason, LIMITED);
    tokio::time::sleep(REFILL).await;
    // One more request allowed: the upgrade takes it, and the guess is over the rate.
    let mut ws = init_with(&server, &guess()).await;
    let (code, reason) = closed(&mut ws).await;
    assert_eq!(code, 4403, "{reason}");
    assert_eq!(reason, LIMITED);
    tokio::time::sleep(REFILL).await;
    let mut ws = init_with(&server, &pg.key).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    drop(server);

    pg.finish().await;
}

/// The status of a WebSocket upgrade of `/subscriptions` carrying `X-API-Key: x`.
async fn upgrade_with_a_header(server: &Listening) -> u16 {
    let mut request = format!("ws://{}/subscriptions", server.base)
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    headers.insert("X-API-Key", "x".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[actix_web::test]
async fn socket_upgrades_count_against_the_anonymous_rate_whatever_their_headers() {
    let h = Harness::new().await;
    let server = h.listen(settings());
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(upgrade_with_a_header(&server).await);
    }
    assert_eq!(statuses[0], 101, "{statuses:?}");
    assert!(
        statuses[1..].iter().filter(|s| **s == 429).count() >= 3,
        "{statuses:?}"
    );
}
