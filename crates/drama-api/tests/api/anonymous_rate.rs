//! Guessing API keys costs the guesser the anonymous rate of its address, over HTTP and in a
//! WebSocket's `connection_init` alike: once the address is over it, a guess is refused
//! without a lookup, while a key in use there is still accepted. On PostgreSQL, whose
//! statements show the lookups.

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

/// The key lookups the store has run since the counter was reset.
fn lookups(pg: &PgApi) -> usize {
    pg.counter
        .statement_sql()
        .iter()
        .filter(|sql| sql.contains("from public.api_keys where prefix"))
        .count()
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

/// A socket whose upgrade carries a credential header (which the upgrade does not read, and
/// which keeps it out of the anonymous count), initialised with `key`.
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
async fn guessed_keys_beyond_the_anonymous_rate_are_refused_without_a_lookup() {
    let pg = PgApi::start("api_key_guesses").await;

    // Over HTTP.
    let server = listen_app(pg.app.clone(), settings());
    // The user's key is in use from this address (looked up once, then held).
    assert_eq!(list_dramas(&server, &pg.key).await, 200);
    // Its lookup counted; the next request is allowed a second later.
    tokio::time::sleep(REFILL).await;
    pg.counter.reset();
    let mut answers = Vec::new();
    for _ in 0..6 {
        answers.push(list_dramas(&server, &guess()).await);
    }
    let refused = answers.iter().filter(|s| **s == 401).count();
    assert!(refused >= 1, "{answers:?}");
    assert!(
        answers.iter().filter(|s| **s == 429).count() >= 3,
        "{answers:?}"
    );
    assert!(
        answers.iter().all(|s| matches!(s, 401 | 429)),
        "{answers:?}"
    );
    // Only the guesses answered 401 were looked up.
    assert_eq!(lookups(&pg), refused, "{answers:?}");
    // The key in use is accepted from the address over the rate.
    assert_eq!(list_dramas(&server, &pg.key).await, 200);
    drop(server);

    // Over the WebSocket: a refused `connection_init` is counted as a failed request is.
    let server = listen_app(pg.app.clone(), settings());
    let mut ws = init_with(&server, &pg.key).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    tokio::time::sleep(REFILL).await;
    pg.counter.reset();
    let mut reasons = Vec::new();
    for _ in 0..6 {
        let mut ws = init_with(&server, &guess()).await;
        let (code, reason) = closed(&mut ws).await;
        assert_eq!(code, 4403, "{reason}");
        reasons.push(reason);
    }
    let refused = reasons.iter().filter(|r| *r != LIMITED).count();
    assert!(refused >= 1, "{reasons:?}");
    assert!(
        reasons.iter().filter(|r| *r == LIMITED).count() >= 3,
        "{reasons:?}"
    );
    assert_eq!(lookups(&pg), refused, "{reasons:?}");
    let mut ws = init_with(&server, &pg.key).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    drop(server);

    pg.finish().await;
}
