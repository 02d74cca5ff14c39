//! The bounds of a GraphQL WebSocket: `connection_init` in time, the caller's rate and the
//! GraphQL limits for every operation, as for a POST.

use std::time::Duration;

use drama_api::{ErrorCode, HttpSettings};
use futures::StreamExt as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Harness, Listening, store_drama_over_http};
use crate::websocket::{Socket, connect, next, send};

/// The close code the server ends the socket with (waiting at most 30 s).
async fn close_code(ws: &mut Socket) -> Option<u16> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("the server acts within 30 s");
        match message {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

async fn init(ws: &mut Socket, key: &str) {
    send(
        ws,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}}),
    )
    .await;
    assert_eq!(next(ws).await.unwrap()["type"], "connection_ack");
}

/// `GET /dramas` on the same server as the holder of `key`: its status.
async fn list(server: &Listening, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("http://{}/dramas", server.base))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The socket still answers a query within every limit, under operation id `id`.
async fn serves(ws: &mut Socket, id: &str) {
    send(
        ws,
        json!({"id": id, "type": "subscribe", "payload": {"query": "{ dramaSummaries { id } }"}}),
    )
    .await;
    let answer = next(ws).await.unwrap();
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_str()),
        (Some("next"), Some(id)),
        "{answer}"
    );
}

/// The `errors` of an `error` message (or of a `next` payload).
fn errors(message: &Value) -> Value {
    if message["type"] == "error" {
        message["payload"].clone()
    } else {
        message["payload"]["errors"].clone()
    }
}

#[actix_web::test]
async fn a_silent_websocket_is_closed_with_4408_while_others_are_served() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        ws_init_timeout: Duration::from_millis(300),
        ..Harness::settings()
    };
    let server = h.listen(settings);
    // As many as one address may hold waiting, less the one that initialises.
    let mut silent = Vec::new();
    for _ in 1..drama_api::realtime::MAX_WAITING_SOCKETS_PER_CLIENT {
        silent.push(connect(&server).await);
    }
    // Meanwhile another caller's requests are served.
    assert_eq!(list(&server, &h.bob_key).await, 200);
    let mut late = connect(&server).await;
    init(&mut late, &h.bob_key).await;

    for ws in &mut silent {
        assert_eq!(
            close_code(ws).await,
            Some(drama_api::graphql::INIT_TIMEOUT_CLOSE)
        );
    }
    // The socket that initialised in time is still open and serves operations.
    send(
        &mut late,
        json!({"id": "q", "type": "subscribe", "payload": {"query": "{ dramaSummaries { id } }"}}),
    )
    .await;
    let answer = next(&mut late).await.unwrap();
    assert_eq!(answer["type"], "next", "{answer}");
    assert_eq!(answer["payload"]["data"]["dramaSummaries"], json!([]));
}

#[actix_web::test]
async fn operations_beyond_the_rate_are_refused_and_the_socket_stays_open() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        rate_per_second: 1,
        rate_burst: 3,
        ..Harness::settings()
    };
    let server = h.listen(settings);
    let mut ws = connect(&server).await;
    init(&mut ws, &h.alice_key).await;
    for i in 0..8 {
        send(
            &mut ws,
            json!({"id": format!("m{i}"), "type": "subscribe", "payload": {
                "query": r#"mutation { deleteDrama(id: "nothing-here") }"#
            }}),
        )
        .await;
    }
    let (mut served, mut limited) = (0, 0);
    let mut settled = std::collections::HashSet::new();
    while settled.len() < 8 {
        let message = next(&mut ws).await.expect("the socket stays open");
        let id = message["id"].as_str().unwrap().to_owned();
        match message["type"].as_str().unwrap() {
            "next" => {
                assert_eq!(
                    errors(&message)[0]["extensions"]["code"],
                    "NOT_FOUND",
                    "{message}"
                );
                served += 1;
            }
            "error" => {
                assert_eq!(
                    errors(&message)[0]["extensions"]["code"],
                    ErrorCode::RateLimited.graphql(),
                    "{message}"
                );
                assert!(
                    errors(&message)[0]["extensions"]["retryAfter"]
                        .as_u64()
                        .unwrap()
                        >= 1
                );
                limited += 1;
                settled.insert(id);
            }
            "complete" => {
                settled.insert(id);
            }
            other => panic!("unexpected {other}: {message}"),
        }
    }
    assert!(
        served >= 1 && limited >= 1,
        "served {served}, limited {limited}"
    );

    // Another user is not limited by Alice's use.
    assert_eq!(list(&server, &h.bob_key).await, 200);
}

#[actix_web::test]
async fn operations_over_a_graphql_limit_are_refused_by_name() {
    let h = Harness::new().await;
    let server = h.listen(Harness::settings());
    let mut ws = connect(&server).await;
    init(&mut ws, &h.alice_key).await;
    let aliases: Vec<String> = (0..1000)
        .map(|i| format!("a{i}: dramaSummaries(limit: 100) {{ id }}"))
        .collect();
    send(
        &mut ws,
        json!({"id": "wide", "type": "subscribe", "payload": {
            "query": format!("{{ {} }}", aliases.join(" "))
        }}),
    )
    .await;
    let answer = next(&mut ws).await.unwrap();
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["id"], "wide");
    assert_eq!(
        errors(&answer)[0]["extensions"]["code"],
        ErrorCode::TooManyAliases.graphql()
    );

    let page = "dramas(limit: 100) { episodes { scenes { jobs { jobId status createdAt } } } }";
    send(
        &mut ws,
        json!({"id": "dear", "type": "subscribe", "payload": {
            "query": format!("{{ a: {page} b: {page} c: {page} }}")
        }}),
    )
    .await;
    let answer = next(&mut ws).await.unwrap();
    assert_eq!(
        errors(&answer)[0]["extensions"]["code"],
        ErrorCode::QueryTooComplex.graphql(),
        "{answer}"
    );

    // The socket still serves what is within the limits.
    serves(&mut ws, "ok").await;
}

#[actix_web::test]
async fn subscriptions_count_against_the_stream_cap() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        streams_per_user: 1,
        ..Harness::settings()
    };
    let server = h.listen(settings);
    store_drama_over_http(&server, &h.alice_key, "capped").await;
    let mut ws = connect(&server).await;
    init(&mut ws, &h.alice_key).await;
    let follow = |id: &str| {
        json!({"id": id, "type": "subscribe", "payload": {
            "query": r#"subscription { dramaChanged(id: "capped") { version } }"#
        }})
    };
    send(&mut ws, follow("one")).await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "next");
    send(&mut ws, follow("two")).await;
    let answer = next(&mut ws).await.unwrap();
    assert_eq!(answer["id"], "two", "{answer}");
    let extensions = &errors(&answer)[0]["extensions"];
    assert_eq!(
        extensions["code"],
        ErrorCode::TooManyStreams.graphql(),
        "{answer}"
    );
    // The numbers are numbers, as in REST's answer.
    assert_eq!(
        (
            &extensions["scope"],
            &extensions["limit"],
            &extensions["retryAfter"]
        ),
        (&json!("user"), &json!(1), &json!(5)),
        "{answer}"
    );
    // Stopping the first frees its place.
    send(&mut ws, json!({"id": "one", "type": "complete"})).await;
    let mut freed = false;
    for attempt in 0..50 {
        let id = format!("again{attempt}");
        send(&mut ws, follow(&id)).await;
        let answer = next(&mut ws).await.unwrap();
        if answer["type"] == "next" {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the stopped subscription's place is given back");
}

/// The offline image model, taking a minute per image.
struct Slow(drama_ai::OfflineProvider);

#[async_trait::async_trait]
impl drama_ai::ImageModel for Slow {
    fn model(&self) -> drama_ai::ModelInfo {
        drama_ai::ImageModel::model(&self.0)
    }
    fn max_references(&self) -> usize {
        self.0.max_references()
    }
    async fn generate_image(
        &self,
        request: &drama_ai::ImageRequest,
    ) -> Result<drama_ai::Generated<drama_ai::GeneratedImage>, drama_ai::AiError> {
        tokio::time::sleep(Duration::from_secs(60)).await;
        self.0.generate_image(request).await
    }
}

#[actix_web::test]
async fn a_mutation_over_the_socket_stops_at_the_request_deadline() {
    let ai = drama_ai::AiProviders::offline(0)
        .with_image_model(std::sync::Arc::new(Slow(drama_ai::OfflineProvider::new(0))));
    let h = Harness::with_ai(ai).await;
    let settings = HttpSettings {
        request_timeout: Duration::from_millis(500),
        ..Harness::settings()
    };
    let server = h.listen(settings);
    store_drama_over_http(&server, &h.alice_key, "slow").await;
    let mut ws = connect(&server).await;
    init(&mut ws, &h.alice_key).await;
    send(
        &mut ws,
        json!({"id": "portrait", "type": "subscribe", "payload": {
            "query": r#"mutation { generateCharacterImage(dramaId: "slow", characterId: "c0") { id url } }"#
        }}),
    )
    .await;
    let answer = next(&mut ws).await.unwrap();
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_str()),
        (Some("error"), Some("portrait")),
        "{answer}"
    );
    assert_eq!(
        errors(&answer)[0]["extensions"]["code"],
        ErrorCode::Unavailable.graphql(),
        "{answer}"
    );
    // The socket goes on serving.
    serves(&mut ws, "list").await;
}

/// The close frame the server ends the socket with: code and reason (waiting at most 30 s in
/// all: keep-alives do not count).
async fn close_frame(ws: &mut Socket) -> Option<(u16, String)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the server acts within 30 s");
        match message {
            Some(Ok(Message::Close(frame))) => {
                return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

#[actix_web::test]
async fn pings_and_refusals_sent_without_reading_are_each_answered_once() {
    let h = Harness::new().await;
    let server = h.listen(Harness::settings());
    let mut ws = connect(&server).await;
    init(&mut ws, &h.alice_key).await;
    // Over the alias limit (30): refused by the gate, whose answers share the pongs' queue.
    let aliases: Vec<String> = (0..31)
        .map(|i| format!("a{i}: dramaSummaries(limit: 1) {{ id }}"))
        .collect();
    let wide = format!("{{ {} }}", aliases.join(" "));
    let pings = 2_000;
    let (mut refused, mut protocol_pings) = (0, 0);
    for i in 0..pings {
        use futures::SinkExt as _;
        ws.send(Message::Ping(format!("{i}").into_bytes().into()))
            .await
            .unwrap();
        if i % 20 == 0 {
            let id = format!("wide{refused}");
            send(
                &mut ws,
                json!({"id": id, "type": "subscribe", "payload": {"query": wide}}),
            )
            .await;
            refused += 1;
        }
        if i % 7 == 0 {
            send(&mut ws, json!({"type": "ping"})).await;
            protocol_pings += 1;
        }
    }
    // Only now does the client read: every frame is answered, once, in order.
    let (mut pongs, mut refusals, mut protocol_pongs) = (0, 0, 0);
    while pongs < pings || refusals < refused || protocol_pongs < protocol_pings {
        let message = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("answers keep coming")
            .expect("the socket stays open")
            .unwrap();
        match message {
            Message::Pong(payload) => {
                assert_eq!(payload, format!("{pongs}").into_bytes(), "in order");
                pongs += 1;
            }
            Message::Text(text) => {
                let answer: Value = serde_json::from_str(&text).unwrap();
                match answer["type"].as_str() {
                    Some("pong") => protocol_pongs += 1,
                    Some("error") => {
                        assert_eq!(answer["id"], format!("wide{refusals}"), "{answer}");
                        assert_eq!(
                            errors(&answer)[0]["extensions"]["code"],
                            ErrorCode::TooManyAliases.graphql()
                        );
                        refusals += 1;
                    }
                    _ => panic!("unexpected {answer}"),
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // juniper's keep-alives are protocol pongs too, so those may be more.
    assert_eq!((pongs, refusals), (pings, refused));
    // The socket goes on serving.
    serves(&mut ws, "ok").await;
}

#[actix_web::test]
async fn initialised_sockets_count_against_the_stream_caps() {
    let h = Harness::new().await;
    let settings = HttpSettings {
        streams_per_user: 2,
        streams_per_process: 3,
        ..Harness::settings()
    };
    let server = h.listen(settings);
    store_drama_over_http(&server, &h.alice_key, "capped").await;
    let sse = |key: &str| {
        reqwest::Client::new()
            .get(format!("http://{}/dramas/capped/events", server.base))
            .bearer_auth(key)
            .send()
    };

    // Two idle sockets fill Alice's place: a third, and an SSE stream, are refused.
    let mut first = connect(&server).await;
    init(&mut first, &h.alice_key).await;
    let mut second = connect(&server).await;
    init(&mut second, &h.alice_key).await;
    let refused = sse(&h.alice_key).await.unwrap();
    assert_eq!(refused.status(), 429);
    let mut third = connect(&server).await;
    send(
        &mut third,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", h.alice_key)}}),
    )
    .await;
    let (code, reason) = close_frame(&mut third).await.expect("a close frame");
    assert_eq!(code, drama_api::graphql::TOO_MANY_STREAMS_CLOSE);
    assert!(reason.contains("Too many open streams (user)"), "{reason}");

    // An idle socket's first subscription runs on the socket's place.
    send(
        &mut second,
        json!({"id": "one", "type": "subscribe", "payload": {
            "query": r#"subscription { dramaChanged(id: "capped") { version } }"#
        }}),
    )
    .await;
    assert_eq!(next(&mut second).await.unwrap()["type"], "next");

    // Bob takes the process's last place; then the process is full for him too.
    let mut bobs = connect(&server).await;
    init(&mut bobs, &h.bob_key).await;
    let mut more = connect(&server).await;
    send(
        &mut more,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", h.bob_key)}}),
    )
    .await;
    let (code, reason) = close_frame(&mut more).await.expect("a close frame");
    assert_eq!(code, drama_api::graphql::TOO_MANY_STREAMS_CLOSE);
    assert!(reason.contains("(process)"), "{reason}");

    // A socket that closes gives its place back.
    first.close(None).await.unwrap();
    let mut freed = false;
    for _ in 0..50 {
        if sse(&h.alice_key).await.unwrap().status() == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(freed, "the closed socket's place is given back");
}

#[actix_web::test]
async fn an_idle_socket_is_closed_and_gives_its_place_back() {
    let h = Harness::new().await;
    let idle = Duration::from_millis(1500);
    let settings = HttpSettings {
        streams_per_user: 1,
        ws_idle_timeout: idle,
        ..Harness::settings()
    };
    let server = h.listen(settings);
    store_drama_over_http(&server, &h.alice_key, "idle").await;

    // A socket that runs nothing is closed once idle, pings or not.
    let mut ws = connect(&server).await;
    let opened = tokio::time::Instant::now();
    init(&mut ws, &h.alice_key).await;
    send(&mut ws, json!({"type": "ping"})).await;
    let (code, reason) = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(code, drama_api::graphql::IDLE_CLOSE, "{reason}");
    assert!(reason.contains("Idle for 1.5 s"), "{reason}");
    assert!(opened.elapsed() >= idle, "{:?}", opened.elapsed());

    // Its place is Alice's one again; a socket running a subscription is not idle.
    let mut place = None;
    for _ in 0..50 {
        let mut ws = connect(&server).await;
        send(
            &mut ws,
            json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", h.alice_key)}}),
        )
        .await;
        if next(&mut ws).await.unwrap()["type"] == "connection_ack" {
            place = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = place.expect("the idle socket's place is given back");
    send(
        &mut ws,
        json!({"id": "follow", "type": "subscribe", "payload": {
            "query": r#"subscription { dramaChanged(id: "idle") { version } }"#
        }}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "next");
    let quiet = tokio::time::timeout(idle * 3, close_frame(&mut ws)).await;
    assert!(
        quiet.is_err(),
        "a socket with a subscription was closed: {quiet:?}"
    );

    // Once its subscription ends, the idle clock starts.
    send(&mut ws, json!({"id": "follow", "type": "complete"})).await;
    let stopped = tokio::time::Instant::now();
    let (code, _) = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(code, drama_api::graphql::IDLE_CLOSE);
    assert!(stopped.elapsed() < idle * 3, "{:?}", stopped.elapsed());
}

/// An upgrade of `/subscriptions` on `server` from the loopback address `from`: the socket, or
/// the refusal's status and body.
async fn upgrade_from(
    server: &Listening,
    from: [u8; 4],
) -> Result<tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>, (u16, Value)> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind((from, 0).into()).unwrap();
    let stream = socket.connect(server.base.parse().unwrap()).await.unwrap();
    let mut request = format!("ws://{}/subscriptions", server.base)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    match tokio_tungstenite::client_async(request, stream).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or_default();
            Err((
                response.status().as_u16(),
                serde_json::from_slice(body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

/// A few addresses opening sockets and never initialising them cannot keep every other
/// client out: one address holds at most its share of the sockets waiting for
/// `connection_init`.
#[actix_web::test]
async fn one_address_holds_at_most_its_share_of_the_sockets_waiting_for_their_init() {
    let h = Harness::new().await;
    let server = h.listen(Harness::settings());
    let cap = drama_api::realtime::MAX_WAITING_SOCKETS_PER_CLIENT;
    let mut waiting = Vec::new();
    for _ in 0..cap {
        waiting.push(upgrade_from(&server, [127, 0, 0, 1]).await.unwrap());
    }
    let (status, body) = upgrade_from(&server, [127, 0, 0, 1]).await.err().unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], ErrorCode::Unavailable.code(), "{body}");
    assert_eq!(
        body["detail"],
        "Too many sockets from this address are waiting for their connection_init; retry \
         shortly",
        "{body}"
    );

    // Another address is not held up, and its socket serves.
    let mut other = upgrade_from(&server, [127, 0, 0, 2]).await.unwrap();
    send_on(
        &mut other,
        json!({"type": "connection_init", "payload": {"x-api-key": h.bob_key}}),
    )
    .await;
    let ack = tokio::time::timeout(Duration::from_secs(10), other.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack}");

    // A socket that initialises gives its waiting place back to its address.
    send_on(
        &mut waiting[0],
        json!({"type": "connection_init", "payload": {"x-api-key": h.alice_key}}),
    )
    .await;
    let ack = tokio::time::timeout(Duration::from_secs(10), waiting[0].next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(ack.to_text().unwrap().contains("connection_ack"), "{ack}");
    assert!(upgrade_from(&server, [127, 0, 0, 1]).await.is_ok());
}

async fn send_on(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    message: Value,
) {
    use futures::SinkExt as _;

    ws.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}
