//! GraphQL subscriptions over a real WebSocket (graphql-transport-ws): a drama followed
//! through edits to its deletion, and the credentials and errors of the protocol.

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use crate::support::{Harness, Listening};

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(server: &Listening) -> Socket {
    let mut request = format!("ws://{}/subscriptions", server.base)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

pub async fn send(ws: &mut Socket, message: Value) {
    ws.send(Message::Text(message.to_string().into()))
        .await
        .unwrap();
}

/// The next protocol message other than keep-alives; `None` when the server closed.
pub async fn next(ws: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message within 10 s")?
            .unwrap();
        match message {
            Message::Text(text) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "pong" && value["type"] != "ping" {
                    return Some(value);
                }
            }
            Message::Close(frame) => {
                return Some(
                    json!({"type": "close", "reason": frame.map(|f| f.reason.to_string())}),
                );
            }
            _ => {}
        }
    }
}

async fn http(
    server: &Listening,
    method: reqwest::Method,
    path: &str,
    key: &str,
    body: Value,
) -> u16 {
    reqwest::Client::new()
        .request(method, format!("http://{}{path}", server.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn a_drama_is_followed_through_its_edits_to_its_deletion() {
    let h = Harness::new().await;
    let server = h.listen(Harness::settings());
    let k = h.alice_key.clone();
    let created = http(
        &server,
        reqwest::Method::POST,
        "/dramas",
        &k,
        json!({"drama": drama_testkit::builders::drama_json("ws", 1, 1, 1)}),
    )
    .await;
    assert_eq!(created, 201);

    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {k}")}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(
        &mut ws,
        json!({"id": "d", "type": "subscribe", "payload": {
            "query": r#"subscription { dramaChanged(id: "ws") { dramaId version deleted drama { title } } }"#
        }}),
    )
    .await;
    let first = next(&mut ws).await.unwrap();
    assert_eq!(first["type"], "next", "{first}");
    let current = &first["payload"]["data"]["dramaChanged"];
    assert_eq!(current["deleted"], false);
    let start = current["version"].as_i64().unwrap();
    assert_eq!(current["drama"]["title"], "Drama ws");

    assert_eq!(
        http(
            &server,
            reqwest::Method::PATCH,
            "/dramas/ws",
            &k,
            json!({"title": "Renamed"})
        )
        .await,
        200
    );
    let changed = next(&mut ws).await.unwrap();
    let changed = &changed["payload"]["data"]["dramaChanged"];
    assert_eq!(changed["version"].as_i64().unwrap(), start + 1, "{changed}");
    assert_eq!(changed["drama"]["title"], "Renamed");

    assert_eq!(
        http(
            &server,
            reqwest::Method::DELETE,
            "/dramas/ws",
            &k,
            json!({})
        )
        .await,
        200
    );
    let gone = next(&mut ws).await.unwrap();
    let gone = &gone["payload"]["data"]["dramaChanged"];
    assert_eq!(gone["deleted"], true, "{gone}");
    assert!(gone["drama"].is_null());
    assert_eq!(next(&mut ws).await.unwrap()["type"], "complete");
}

#[actix_web::test]
async fn subscriptions_need_credentials_and_an_own_drama() {
    let h = Harness::new().await;
    let server = h.listen(Harness::settings());
    let created = http(
        &server,
        reqwest::Method::POST,
        "/dramas",
        &h.alice_key,
        json!({"drama": drama_testkit::builders::drama_json("mine", 1, 1, 1)}),
    )
    .await;
    assert_eq!(created, 201);

    // No credentials: the connection is refused in the protocol's way.
    let mut ws = connect(&server).await;
    send(&mut ws, json!({"type": "connection_init", "payload": {}})).await;
    let refused = next(&mut ws).await.unwrap();
    assert_eq!(refused["type"], "close", "{refused}");

    // Bob cannot follow Alice's drama: the subscription answers NOT_FOUND.
    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"x-api-key": h.bob_key}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(
        &mut ws,
        json!({"id": "x", "type": "subscribe", "payload": {
            "query": r#"subscription { dramaChanged(id: "mine") { version } }"#
        }}),
    )
    .await;
    let answer = next(&mut ws).await.unwrap();
    let errors = if answer["type"] == "error" {
        answer["payload"].clone()
    } else {
        answer["payload"]["errors"].clone()
    };
    assert_eq!(errors[0]["extensions"]["code"], "NOT_FOUND", "{answer}");

    // Nor a job: a job id of no job, or text that cannot be one, is NOT_FOUND, as REST
    // answers both 404.
    for (n, job) in [uuid::Uuid::now_v7().to_string(), "nope".to_owned()]
        .iter()
        .enumerate()
    {
        let id = format!("job{n}");
        send(
            &mut ws,
            json!({"id": id, "type": "subscribe", "payload": {
                "query": format!(r#"subscription {{ jobProgress(jobId: "{job}") {{ eventId }} }}"#)
            }}),
        )
        .await;
        let answer = loop {
            let answer = next(&mut ws).await.unwrap();
            if answer["type"] != "complete" {
                break answer;
            }
        };
        let errors = if answer["type"] == "error" {
            answer["payload"].clone()
        } else {
            answer["payload"]["errors"].clone()
        };
        assert_eq!(
            errors[0]["extensions"]["code"], "NOT_FOUND",
            "{job}: {answer}"
        );
        let rest = reqwest::Client::new()
            .get(format!("http://{}/jobs/{job}", server.base))
            .bearer_auth(&h.bob_key)
            .send()
            .await
            .unwrap();
        assert_eq!(rest.status(), 404, "{job}");
    }
}

/// A document the schema refuses carries `BAD_USER_INPUT`, as in a POST's answer, on both
/// protocols (graphql-transport-ws and the legacy graphql-ws of older Apollo clients).
#[actix_web::test]
async fn a_refused_document_is_coded_as_bad_input_on_both_protocols() {
    let h = Harness::new().await;
    let server = h.listen(Harness::settings());
    let refused = [
        "{ noSuchField }",
        r#"subscription { dramaChanged(id: 5) { version } }"#,
    ];

    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"x-api-key": h.alice_key}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    for (n, query) in refused.iter().enumerate() {
        send(
            &mut ws,
            json!({"id": n.to_string(), "type": "subscribe", "payload": {"query": query}}),
        )
        .await;
        // (An earlier operation's `complete` may come first.)
        let answer = loop {
            let answer = next(&mut ws).await.unwrap();
            if answer["type"] != "complete" {
                break answer;
            }
        };
        assert_eq!(answer["type"], "error", "{query} → {answer}");
        assert_eq!(
            answer["payload"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{query} → {answer}"
        );
    }

    let mut request = format!("ws://{}/subscriptions", server.base)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-ws".parse().unwrap());
    let mut legacy = tokio_tungstenite::connect_async(request).await.unwrap().0;
    send(
        &mut legacy,
        json!({"type": "connection_init", "payload": {"x-api-key": h.alice_key}}),
    )
    .await;
    assert_eq!(not_ka(&mut legacy).await["type"], "connection_ack");
    for (n, query) in refused.iter().enumerate() {
        send(
            &mut legacy,
            json!({"id": n.to_string(), "type": "start", "payload": {"query": query}}),
        )
        .await;
        let message = not_ka(&mut legacy).await;
        assert_eq!(message["type"], "error", "{query} → {message}");
        let payload = &message["payload"];
        let error = if payload.is_array() {
            &payload[0]
        } else {
            payload
        };
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{query} → {message}"
        );
    }
}

/// The next message of a legacy socket other than its keep-alive (`ka`) and the end of an
/// earlier operation (`complete`).
async fn not_ka(ws: &mut Socket) -> Value {
    loop {
        let message = next(ws).await.unwrap();
        if message["type"] != "ka" && message["type"] != "complete" {
            return message;
        }
    }
}

/// The answer of a POST of `body` to `/graphql` on `server`.
async fn posted(server: &Listening, key: &str, body: &Value) -> Value {
    reqwest::Client::new()
        .post(format!("http://{}/graphql", server.base))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The old clients' documents answer over the socket as they do posted: a nullable variable
/// for a defaulted argument, an `Int` written `10.0`, and a null read by `@include` (an error
/// for that operation, where juniper alone would panic); the socket stays open.
#[actix_web::test]
async fn old_client_documents_answer_over_the_socket_as_posted() {
    let h = Harness::new().await;
    let server = h.listen(Harness::settings());
    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"x-api-key": h.alice_key}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    let served = [
        json!({"query": "query Old($l: Int) { dramaSummaries(limit: $l) { id } }", "variables": {}}),
        json!({"query": "query Old($l: Int) { dramaSummaries(limit: $l) { id } }", "variables": {"l": 10.0}}),
        json!({"query": "query Old($w: Boolean = false) { dramaSummaries @include(if: $w) { id } }", "variables": {"w": true}}),
    ];
    for (n, body) in served.iter().enumerate() {
        let id = format!("ok{n}");
        send(
            &mut ws,
            json!({"id": id, "type": "subscribe", "payload": body}),
        )
        .await;
        let answer = next(&mut ws).await.unwrap();
        assert_eq!(answer["type"], "next", "{body} → {answer}");
        assert_eq!(answer["id"], id.as_str());
        let post = posted(&server, &h.alice_key, body).await;
        assert!(post["errors"].is_null(), "{post}");
        assert_eq!(answer["payload"]["data"], post["data"], "{body}");
        assert_eq!(next(&mut ws).await.unwrap()["type"], "complete");
    }

    let nulled = json!({"query": "query Old($w: Boolean = false) { dramaSummaries @include(if: $w) { id } }", "variables": {"w": null}});
    send(
        &mut ws,
        json!({"id": "null", "type": "subscribe", "payload": nulled}),
    )
    .await;
    let answer = next(&mut ws).await.unwrap();
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_str()),
        (Some("error"), Some("null")),
        "{answer}"
    );
    let post = posted(&server, &h.alice_key, &nulled).await;
    assert_eq!(
        answer["payload"][0]["message"],
        post["errors"][0]["message"]
    );
    assert_eq!(answer["payload"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert_eq!(post["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    // The socket goes on serving.
    send(
        &mut ws,
        json!({"id": "after", "type": "subscribe", "payload": served[0]}),
    )
    .await;
    let answer = next(&mut ws).await.unwrap();
    assert_eq!(answer["type"], "next", "{answer}");
}

#[actix_web::test]
async fn each_drama_changed_event_reads_the_jobs_as_they_are_then() {
    let h = Harness::new().await;
    let server = h.listen(Harness::settings());
    let k = h.alice_key.clone();
    let created = http(
        &server,
        reqwest::Method::POST,
        "/dramas",
        &k,
        json!({"drama": drama_testkit::builders::drama_json("wj", 1, 1, 1)}),
    )
    .await;
    assert_eq!(created, 201);

    let mut ws = connect(&server).await;
    send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {k}")}}),
    )
    .await;
    assert_eq!(next(&mut ws).await.unwrap()["type"], "connection_ack");
    send(
        &mut ws,
        json!({"id": "d", "type": "subscribe", "payload": {
            "query": r#"subscription { dramaChanged(id: "wj") { version drama { title jobs { jobId } } } }"#
        }}),
    )
    .await;
    let first = next(&mut ws).await.unwrap();
    let jobs = &first["payload"]["data"]["dramaChanged"]["drama"]["jobs"];
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{first}");

    // A run started after the first event, then a change to the drama.
    let generated = http(
        &server,
        reqwest::Method::POST,
        "/dramas/wj/generate",
        &k,
        json!({}),
    )
    .await;
    assert_eq!(generated, 202);
    let renamed = http(
        &server,
        reqwest::Method::PATCH,
        "/dramas/wj",
        &k,
        json!({"title": "Renamed"}),
    )
    .await;
    assert_eq!(renamed, 200);
    for _ in 0..10 {
        let event = next(&mut ws).await.unwrap();
        let drama = &event["payload"]["data"]["dramaChanged"]["drama"];
        if drama["title"] == "Renamed" {
            let jobs = drama["jobs"].as_array().map_or(0, Vec::len);
            assert!(jobs > 0, "the run started since is not shown: {event}");
            return;
        }
    }
    panic!("no event shows the drama renamed");
}
