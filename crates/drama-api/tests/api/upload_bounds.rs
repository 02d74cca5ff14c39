//! An upload is bounded before and while its body arrives: a user without room is refused
//! before the body is read, one user's uploads at once are capped, and a body that stalls is
//! answered 408 with its spool file removed. Raw HTTP/1.1 on a real socket, so that the test
//! controls how much of the body is sent and when.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use drama_api::HttpSettings;
use drama_app::Quotas;
use drama_assets::keys::asset_key;
use drama_assets::{Category, MediaType, Scope};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{Harness, listen_app};

const BOUNDARY: &str = "bounds-boundary";

/// Longest the test waits for an answer the server owes; a server that waits for the body
/// never answers, and the test then fails instead of hanging.
const OWED: Duration = Duration::from_secs(20);

/// The form up to the file's first bytes: the text fields, then the `file` part's header.
fn form_head() -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in [
        ("project_name", "p"),
        ("asset_type", "text"),
        ("tag", "character"),
    ] {
        out.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n"
        )
        .as_bytes(),
    );
    out
}

fn form_tail() -> Vec<u8> {
    format!("\r\n--{BOUNDARY}--\r\n").into_bytes()
}

/// Opens a connection and sends the request's head announcing `length` bytes of body, then
/// `first` of them.
async fn begin(base: &str, key: &str, length: usize, first: &[u8]) -> TcpStream {
    begin_at(base, "/asset-library/upload", key, length, first).await
}

/// [`begin`] for a multipart POST to `path`.
async fn begin_at(base: &str, path: &str, key: &str, length: usize, first: &[u8]) -> TcpStream {
    let mut socket = TcpStream::connect(base).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {base}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(first).await.unwrap();
    socket.flush().await.unwrap();
    socket
}

/// Reads one answer: status, headers (lower-case names) and the JSON body.
async fn answer(socket: &mut TcpStream) -> (u16, Vec<(String, String)>, Value) {
    let read = async {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 4096];
        let split = loop {
            if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed without an answer");
            buffer.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buffer[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = buffer[split + 4..].to_vec();
        while body.len() < length {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the connection closed inside the answer");
            body.extend_from_slice(&chunk[..n]);
        }
        let json = serde_json::from_slice(&body[..length]).unwrap_or(Value::Null);
        (status, headers, json)
    };
    tokio::time::timeout(OWED, read)
        .await
        .expect("the server did not answer while the body was still unsent")
}

/// A whole small upload on its own connection.
async fn whole_upload(base: &str, key: &str) -> (u16, Vec<(String, String)>, Value) {
    let mut body = form_head();
    body.extend_from_slice(b"hello");
    body.extend_from_slice(&form_tail());
    let mut socket = begin(base, key, body.len(), &body).await;
    answer(&mut socket).await
}

fn harness_settings() -> HttpSettings {
    HttpSettings {
        rate_per_second: 0,
        ..Harness::settings()
    }
}

#[actix_web::test]
async fn a_user_without_room_is_refused_before_the_body_is_read() {
    let mut h = Harness::new().await;
    h.app = h.app.clone().with_quotas(Quotas {
        stored_bytes: 10_000,
        ..Quotas::UNLIMITED
    });
    // Alice is over the quota already.
    let key = asset_key(
        h.alice,
        &Scope::project("seed").unwrap(),
        Category::Uploads,
        "big",
        MediaType::Binary,
    )
    .unwrap();
    h.app
        .assets()
        .put_bytes(
            &key,
            Bytes::from(vec![b'x'; 20_000]),
            "application/octet-stream",
        )
        .await
        .unwrap();
    let server = listen_app(h.app.clone(), harness_settings());

    // 50 MB announced, 64 KB sent: the answer comes with the rest of the body unsent.
    let length = 50 * 1024 * 1024;
    let mut first = form_head();
    first.extend_from_slice(&vec![b'a'; 64 * 1024]);
    let mut socket = begin(&server.base, &h.alice_key, length, &first).await;
    let (status, _, body) = answer(&mut socket).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{body}"
    );
    assert_eq!(body["detail"]["quota"], "stored_bytes", "{body}");

    // Bob holds nothing, but announces more than the quota leaves him.
    let mut socket = begin(&server.base, &h.bob_key, length, &first).await;
    let (status, _, body) = answer(&mut socket).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{body}"
    );

    // What fits is stored.
    let (status, _, body) = whole_upload(&server.base, &h.bob_key).await;
    assert_eq!(status, 200, "{body}");
}

#[actix_web::test]
async fn a_third_upload_at_once_is_refused_with_429() {
    let h = Harness::new().await;
    let server = listen_app(
        h.app.clone(),
        HttpSettings {
            uploads_per_user: 2,
            ..harness_settings()
        },
    );
    let mut first = form_head();
    first.extend_from_slice(&vec![b'a'; 1024]);
    let length = first.len() + 1024 * 1024;
    let held = [
        begin(&server.base, &h.alice_key, length, &first).await,
        begin(&server.base, &h.alice_key, length, &first).await,
    ];

    // The held uploads take their slots once the server reads their heads; until then a
    // third may still pass (and is then stored, which costs nothing here).
    let mut refusal = None;
    for _ in 0..400 {
        let (status, headers, body) = whole_upload(&server.base, &h.alice_key).await;
        if status == 429 {
            refusal = Some((headers, body));
            break;
        }
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (headers, body) = refusal.expect("the third upload at once was not refused");
    assert_eq!(body["code"], "too_many_uploads", "{body}");
    assert!(
        headers.iter().any(|(n, _)| n == "retry-after"),
        "{headers:?}"
    );

    // Another user is not held to Alice's uploads.
    let (status, _, body) = whole_upload(&server.base, &h.bob_key).await;
    assert_eq!(status, 200, "{body}");

    // A service caller uploads for the users it names: it is not held to one user's cap.
    let service_held = [
        begin(&server.base, &h.service_key, length, &first).await,
        begin(&server.base, &h.service_key, length, &first).await,
    ];
    for _ in 0..20 {
        let (status, _, body) = whole_upload(&server.base, &h.service_key).await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(service_held);

    // Abandoning the held uploads frees the slots.
    drop(held);
    let mut freed = false;
    for _ in 0..400 {
        let (status, _, _) = whole_upload(&server.base, &h.alice_key).await;
        if status == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(freed, "the abandoned uploads kept their slots");
}

/// The spool files whose bytes begin with `marker`.
fn spooled_with(marker: &[u8]) -> Vec<PathBuf> {
    std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with("drama-upload-"))
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read(p)
                .map(|bytes| bytes.starts_with(marker))
                .unwrap_or(false)
        })
        .collect()
}

#[actix_web::test]
async fn a_stalled_upload_body_is_answered_408_and_its_spool_file_removed() {
    let h = Harness::new().await;
    let server = listen_app(
        h.app.clone(),
        HttpSettings {
            upload_idle_timeout: Duration::from_secs(3),
            ..harness_settings()
        },
    );
    let marker = format!("stall-{}", uuid::Uuid::new_v4());
    let mut first = form_head();
    first.extend_from_slice(marker.as_bytes());
    first.extend_from_slice(&vec![b'a'; 16 * 1024]);
    let length = first.len() + 1024 * 1024;
    let mut socket = begin(&server.base, &h.alice_key, length, &first).await;

    // The part sent so far is spooled while the body stalls.
    let mut spooled = Vec::new();
    for _ in 0..200 {
        spooled = spooled_with(marker.as_bytes());
        if !spooled.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        spooled.len(),
        1,
        "the stalled upload's spool file was not found"
    );

    let (status, _, body) = answer(&mut socket).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (408, Some("request_timeout")),
        "{body}"
    );
    assert!(!spooled[0].exists(), "the spool file was left behind");
    assert!(spooled_with(marker.as_bytes()).is_empty());
}

/// A premise form's body (its reference image) is bounded as an upload's is: a body that
/// stalls is answered 408, not held for ever (the request deadline does not cover it).
#[actix_web::test]
async fn a_stalled_premise_form_is_answered_408() {
    let h = Harness::new().await;
    let server = listen_app(
        h.app.clone(),
        HttpSettings {
            upload_idle_timeout: Duration::from_secs(3),
            ..harness_settings()
        },
    );
    let first = premise_head();
    let length = first.len() + 1024 * 1024;
    let mut socket = begin_at(
        &server.base,
        "/dramas",
        &h.alice_key,
        length,
        first.as_bytes(),
    )
    .await;
    let (status, _, body) = answer(&mut socket).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (408, Some("request_timeout")),
        "{body}"
    );
}

/// The head of a premise form up to its reference image's first bytes.
fn premise_head() -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"premise\"\r\n\r\nA corgi.\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"reference_image\"; \
         filename=\"r.png\"\r\nContent-Type: image/png\r\n\r\n"
    )
}

/// A premise form is held in memory while it arrives: it takes one of the user's upload
/// slots (shared with library uploads) before its body is read, and one announced larger
/// than a form may be is refused before its body is sent.
#[actix_web::test]
async fn premise_forms_take_upload_slots_and_an_oversized_one_is_refused_up_front() {
    let h = Harness::new().await;
    let server = listen_app(
        h.app.clone(),
        HttpSettings {
            uploads_per_user: 2,
            ..harness_settings()
        },
    );
    let first = premise_head();
    let length = first.len() + 1024 * 1024;
    let stalled = || {
        begin_at(
            &server.base,
            "/dramas",
            &h.alice_key,
            length,
            first.as_bytes(),
        )
    };
    let held = [stalled().await, stalled().await];

    // Once the held forms have their slots, Alice's library upload is refused: the slots are
    // the same.
    let mut taken = false;
    for _ in 0..400 {
        let (status, _, body) = whole_upload(&server.base, &h.alice_key).await;
        if status == 429 {
            taken = true;
            break;
        }
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(taken, "the stalled premise forms took no upload slot");

    // A third form is refused at once, with the rest of its body unsent.
    let mut third = stalled().await;
    let (status, headers, body) = answer(&mut third).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("too_many_uploads")),
        "{body}"
    );
    assert!(
        headers.iter().any(|(n, _)| n == "retry-after"),
        "{headers:?}"
    );

    // Bob has slots of his own, but a form announced above the form's limit (21 MiB) is
    // refused before its body is sent.
    let mut oversized = begin_at(
        &server.base,
        "/dramas",
        &h.bob_key,
        22 * 1024 * 1024,
        first.as_bytes(),
    )
    .await;
    let (status, _, body) = answer(&mut oversized).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );

    // Abandoning the held forms frees the slots.
    drop(held);
    let mut freed = false;
    for _ in 0..400 {
        let (status, _, _) = whole_upload(&server.base, &h.alice_key).await;
        if status == 200 {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(freed, "the abandoned premise forms kept their slots");
}
