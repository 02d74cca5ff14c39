//! Every media URL of a generated drama loads as it is, without any header, over HTTP, in each
//! asset backend (memory, local disk, an S3 bucket without a public URL): pictures are
//! pictures; clips answer ranges as RFC 9110 says (206 with `Content-Range`, suffix ranges,
//! ends clamped, 416 past the end, several or malformed ranges ignored), carry validators and
//! answer conditional requests; `HEAD` answers the headers of a `GET`. URLs in live messages
//! (a GraphQL subscription over WebSocket) load the same way.

use std::sync::Arc;

use actix_web::test::TestRequest;
use drama_assets::{AssetStore, LocalStore, MemoryStore, SizeLimits, UrlSigner};
use drama_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{Harness, Listening, get, post, send};

/// Every URL-valued field of a REST drama.
fn urls(drama: &Value) -> Vec<(String, String)> {
    fn walk(path: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let here = format!("{path}.{k}");
                    match v {
                        Value::String(s)
                            if [
                                "url",
                                "image_url",
                                "video_url",
                                "premise_url",
                                "imageUrl",
                                "videoUrl",
                            ]
                            .contains(&k.as_str()) =>
                        {
                            out.push((here, s.clone()));
                        }
                        _ => walk(&here, v, out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(&format!("{path}[{i}]"), item, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("drama", drama, &mut out);
    out
}

/// What one request answered.
struct Loaded {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

impl Loaded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A request with no header but the given ones, over HTTP. Signed URLs of the local and
/// memory stores name this API (`http://localhost…`), which `server` serves; presigned bucket
/// URLs go to the bucket.
async fn load(
    server: &Listening,
    method: reqwest::Method,
    url: &str,
    headers: &[(&str, &str)],
) -> Loaded {
    let local = url
        .strip_prefix("http://localhost")
        .map(|rest| rest.trim_start_matches(|c: char| c == ':' || c.is_ascii_digit()));
    let url = match local {
        Some(path) => format!("http://{}{path}", server.base),
        None => url.to_owned(),
    };
    let mut req = reqwest::Client::new().request(method, url);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let response = req.send().await.unwrap();
    Loaded {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        body: response.bytes().await.unwrap().to_vec(),
    }
}

async fn fetch(server: &Listening, url: &str, headers: &[(&str, &str)]) -> Loaded {
    load(server, reqwest::Method::GET, url, headers).await
}

fn is_picture(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        || (bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP")
}

fn is_video(bytes: &[u8]) -> bool {
    bytes.len() > 8 && &bytes[4..8] == b"ftyp"
}

/// Generates a drama (the harness's worker runs it) and answers it as REST shows it.
pub(crate) async fn generated(h: &Harness, backend: &str) -> Value {
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    crate::support::create_drama(&svc, k, "film", (2, 1, 2)).await;
    let (status, _, body) = send(&svc, post("/dramas/film/generate", k)).await;
    assert_eq!(status, 202, "{body}");
    let job = body["jobId"].as_str().unwrap().to_owned();
    let mut done = Value::Null;
    for _ in 0..1500 {
        let (_, _, record) = send(&svc, get(&format!("/dramas/film/jobs/{job}"), k)).await;
        if ["completed", "failed", "cancelled"].contains(&record["status"].as_str().unwrap_or("")) {
            done = record;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(done["status"], "completed", "{backend}: {done}");
    send(&svc, get("/dramas/film", k)).await.2
}

/// The checks of one clip. `bucket`: the URL is a presigned bucket URL, served by the bucket
/// rather than this API.
async fn clip_answers_ranges(server: &Listening, url: &str, whole: &[u8], at: &str, bucket: bool) {
    let total = whole.len();
    let range = |spec: String| async move { fetch(server, url, &[("Range", spec.as_str())]).await };
    let partial = |got: &Loaded, start: usize, end: usize| {
        assert_eq!(got.status, 206, "{at}: bytes {start}-{end}");
        assert_eq!(
            got.header("content-range"),
            Some(format!("bytes {start}-{end}/{total}").as_str()),
            "{at}"
        );
        assert_eq!(
            got.header("content-length"),
            Some((end - start + 1).to_string().as_str())
        );
        assert_eq!(got.body, whole[start..=end], "{at}: bytes {start}-{end}");
    };
    partial(&range("bytes=0-99".into()).await, 0, 99);
    partial(
        &range(format!("bytes={}-", total - 10)).await,
        total - 10,
        total - 1,
    );
    // An end past the last byte is clamped to it.
    partial(
        &range(format!("bytes=10-{}", total + 1000)).await,
        10,
        total - 1,
    );
    partial(&range("bytes=-16".into()).await, total - 16, total - 1);
    // A suffix longer than the object is the whole object (the test bucket, s3s-fs, fails
    // those with 500: it seeks before the start of the file; S3 and R2 answer them).
    if !bucket {
        partial(
            &range(format!("bytes=-{}", total + 500)).await,
            0,
            total - 1,
        );
    }
    let past = range(format!("bytes={total}-")).await;
    assert_eq!(past.status, 416, "{at}");
    let first = fetch(server, url, &[]).await;
    assert!(first.header("etag").is_some(), "{at}: no ETag");
    assert!(
        first.header("last-modified").is_some(),
        "{at}: no Last-Modified"
    );
    if bucket {
        // The rest is the bucket's own behaviour, not this server's. The test bucket (s3s-fs)
        // sends no `Accept-Ranges` nor the `Content-Range` of a 416, refuses several or
        // malformed ranges with 400 (AWS S3 and R2 serve the whole object), ignores
        // conditional headers on GET, and a presigned GET URL does not answer HEAD (S3
        // signatures bind the method): `HEAD /media/{key}` answers it from the metadata.
        return;
    }
    assert_eq!(first.header("accept-ranges"), Some("bytes"), "{at}");
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{total}").as_str()),
        "{at}"
    );
    for ignored in ["bytes=0-1,4-5", "bytes=abc", "items=0-1", "bytes=9-5"] {
        let got = range(ignored.into()).await;
        assert_eq!(
            (got.status, got.body.len()),
            (200, total),
            "{at}: {ignored}"
        );
    }
    // Cached privately for what is left of the signature, and no longer.
    let cache = first.header("cache-control").unwrap_or_default().to_owned();
    let max_age: i64 = cache
        .strip_prefix("private, max-age=")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{at}: Cache-Control {cache:?}"));
    let expires: i64 = url
        .split("expires=")
        .nth(1)
        .and_then(|s| s.split('&').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    // Both sides count whole seconds, a moment apart.
    let left = expires - chrono::Utc::now().timestamp();
    assert!(
        (left - 2..=left + 5).contains(&max_age),
        "{at}: {max_age} vs {left}"
    );

    let etag = first.header("etag").unwrap().to_owned();
    let unchanged = fetch(server, url, &[("If-None-Match", etag.as_str())]).await;
    assert_eq!(unchanged.status, 304, "{at}");
    assert!(unchanged.body.is_empty());
    assert_eq!(unchanged.header("etag"), Some(etag.as_str()));
    let changed = fetch(server, url, &[("If-None-Match", "\"another\"")]).await;
    assert_eq!((changed.status, changed.body.len()), (200, total), "{at}");
    // If-Range: the range while the copy is current, the whole object once it is stale.
    let current = fetch(
        server,
        url,
        &[("Range", "bytes=0-9"), ("If-Range", etag.as_str())],
    )
    .await;
    assert_eq!(current.status, 206, "{at}");
    let stale = fetch(
        server,
        url,
        &[("Range", "bytes=0-9"), ("If-Range", "\"stale\"")],
    )
    .await;
    assert_eq!(
        (stale.status, stale.body.len()),
        (200, total),
        "{at}: stale If-Range"
    );
    let modified = first.header("last-modified").unwrap().to_owned();
    let by_date = fetch(
        server,
        url,
        &[("Range", "bytes=0-9"), ("If-Range", modified.as_str())],
    )
    .await;
    assert_eq!(by_date.status, 206, "{at}: If-Range with Last-Modified");

    // HEAD: the headers of the GET, no body.
    for (headers, status, length) in [
        (vec![], 200, total),
        (vec![("Range", "bytes=0-99")], 206, 100),
    ] {
        let head = load(server, reqwest::Method::HEAD, url, &headers).await;
        assert_eq!(head.status, status, "{at}: HEAD {headers:?}");
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("content-length"),
            Some(length.to_string().as_str()),
            "{at}"
        );
        for name in ["content-type", "accept-ranges", "etag", "last-modified"] {
            assert_eq!(head.header(name), first.header(name), "{at}: HEAD {name}");
        }
        let cache = head.header("cache-control").unwrap_or_default();
        assert!(cache.starts_with("private, max-age="), "{at}: HEAD {cache}");
    }
}

/// Generates a drama on `assets` and loads every URL of it.
async fn every_url_loads(assets: Arc<dyn AssetStore>, backend: &str, bucket: bool) {
    let h = Harness::with_assets(assets, drama_ai::AiProviders::offline(0)).await;
    let worker = h.worker().await;
    let server = h.listen(Harness::settings());
    let drama = generated(&h, backend).await;
    let found = urls(&drama);
    let videos = found
        .iter()
        .filter(|(p, _)| p.ends_with("video_url") || p.ends_with("episodes[0].url"))
        .count();
    assert!(found.len() >= 8 && videos >= 3, "{backend}: {found:#?}");

    let mut clips = 0;
    for (path, url) in &found {
        let at = format!("{backend} {path}");
        assert!(!url.contains("/media/"), "{at}: {url} needs credentials");
        let got = fetch(&server, url, &[]).await;
        assert_eq!(got.status, 200, "{at}: {url}");
        if is_video(&got.body) {
            clips += 1;
            clip_answers_ranges(&server, url, &got.body, &at, bucket).await;
        } else {
            assert!(is_picture(&got.body), "{at}: neither picture nor MP4");
            if !bucket {
                let head = load(&server, reqwest::Method::HEAD, url, &[]).await;
                assert_eq!(head.status, 200, "{at}: HEAD");
                assert_eq!(head.header("content-type"), got.header("content-type"));
                assert_eq!(
                    head.header("content-length"),
                    Some(got.body.len().to_string().as_str())
                );
            }
        }
    }
    assert!(clips >= 3, "{backend}: {clips} clips");

    // `HEAD /media/{key}` with the caller's credentials, in every backend (a bucket's `GET`
    // redirects; its `HEAD` is answered here).
    let cover = drama["url"].as_str().unwrap();
    let key = cover.split("/files/").nth(1).map_or_else(
        || {
            let path = cover.split('?').next().unwrap();
            path[path.find(&h.alice.to_string()).unwrap()..].to_owned()
        },
        |rest| rest.split('?').next().unwrap().to_owned(),
    );
    let head = reqwest::Client::new()
        .head(format!("http://{}/media/{key}", server.base))
        .bearer_auth(&h.alice_key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200, "{backend}: HEAD /media/{key}");
    assert!(head.headers().get("etag").is_some(), "{backend}");
    let length: usize = head.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let bytes = fetch(&server, cover, &[]).await.body;
    assert_eq!(
        length,
        bytes.len(),
        "{backend}: HEAD /media/ says the GET's length"
    );

    // Only the caller's own objects are signed: Bob sees no URL of Alice's.
    let svc = h.service(Harness::settings()).await;
    let (_, _, bobs) = send(
        &svc,
        TestRequest::get()
            .uri("/dramas/film")
            .insert_header(crate::support::bearer(&h.bob_key)),
    )
    .await;
    assert_eq!(bobs["detail"]["error"], "Drama not found");
    // GraphQL answers carry the same loadable URLs.
    let (_, _, gql) = send(
        &svc,
        crate::support::post_json(
            "/graphql",
            &h.alice_key,
            json!({"query": "{ drama(id: \"film\") { url episodes { url scenes { imageUrl videoUrl } } } }"}),
        ),
    )
    .await;
    let clip = gql["data"]["drama"]["episodes"][0]["scenes"][0]["videoUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!clip.contains("/media/"), "{clip}");
    let part = fetch(&server, &clip, &[("Range", "bytes=0-0")]).await;
    assert_eq!(part.status, 206);
    worker.shutdown().await;
}

#[actix_web::test]
async fn every_url_of_a_generated_drama_loads_without_headers_in_memory() {
    every_url_loads(Arc::new(MemoryStore::default()), "memory", false).await;
}

#[actix_web::test]
async fn every_url_of_a_generated_drama_loads_without_headers_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(
        dir.path(),
        SizeLimits::default(),
        UrlSigner::random("http://localhost:8000").unwrap(),
        None,
    )
    .await
    .unwrap();
    every_url_loads(Arc::new(store), "local", false).await;
}

#[actix_web::test]
async fn every_url_of_a_generated_drama_loads_without_headers_from_a_bucket() {
    let server = S3Server::start("media-urls").await;
    every_url_loads(Arc::new(server.store(None)), "s3", true).await;
}

/// The next `next` payload of a subscription.
async fn next_payload(ws: &mut crate::websocket::Socket) -> Value {
    let message = crate::websocket::next(ws).await.unwrap();
    assert_eq!(message["type"], "next", "{message}");
    message["payload"]["data"].clone()
}

#[actix_web::test]
async fn media_urls_in_a_subscription_load_without_headers() {
    let h = Harness::new().await;
    let worker = h.worker().await;
    let server = h.listen(Harness::settings());
    let mut ws = crate::websocket::connect(&server).await;
    crate::websocket::send(
        &mut ws,
        json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {}", h.alice_key)}}),
    )
    .await;
    assert_eq!(
        crate::websocket::next(&mut ws).await.unwrap()["type"],
        "connection_ack"
    );
    // Generated first (its media exist), then followed: the subscription's first payload is
    // the drama as it is.
    generated(&h, "memory").await;
    crate::websocket::send(
        &mut ws,
        json!({"id": "d", "type": "subscribe", "payload": {
            "query": r#"subscription { dramaChanged(id: "film") { version drama { url episodes { url scenes { imageUrl videoUrl } } } } }"#
        }}),
    )
    .await;
    let current = next_payload(&mut ws).await;
    let live = urls(&current["dramaChanged"]["drama"]);
    assert!(live.len() >= 6, "{current}");
    // A query over the same socket is answered the same way.
    crate::websocket::send(
        &mut ws,
        json!({"id": "q", "type": "subscribe", "payload": {
            "query": r#"{ drama(id: "film") { url } }"#
        }}),
    )
    .await;
    let queried = next_payload(&mut ws).await;
    let mut pictures = 0;
    let mut clips = 0;
    let cover = queried["drama"]["url"].as_str().unwrap().to_owned();
    for (path, url) in live
        .iter()
        .map(|(p, u)| (p.as_str(), u.as_str()))
        .chain([("query", cover.as_str())])
    {
        assert!(!url.contains("/media/"), "{path}: {url} needs credentials");
        let got = fetch(&server, url, &[]).await;
        assert_eq!(got.status, 200, "{path}: {url}");
        if is_video(&got.body) {
            clips += 1;
        } else {
            assert!(is_picture(&got.body), "{path}");
            pictures += 1;
        }
    }
    assert!(
        pictures >= 3 && clips >= 3,
        "{pictures} pictures, {clips} clips"
    );
    worker.shutdown().await;
}

#[actix_web::test]
async fn a_signed_media_url_serves_without_credentials_and_a_bad_one_is_refused() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let key = drama_assets::ObjectKey::parse(format!("{}/d/covers/c.png", h.alice)).unwrap();
    let png = b"\x89PNG\r\n\x1a\n0123456789".to_vec();
    h.app
        .assets()
        .put_bytes(&key, bytes::Bytes::from(png.clone()), "image/png")
        .await
        .unwrap();
    let signed = h
        .app
        .assets()
        .presign_get(&key, std::time::Duration::from_secs(60))
        .await
        .unwrap()
        .url;
    let query = signed.split_once('?').unwrap().1;
    let media = format!("/media/{}?{query}", key.as_str());
    let response = actix_web::test::call_service(
        &svc,
        TestRequest::get()
            .uri(&media)
            .insert_header(("Range", "bytes=-4"))
            .to_request(),
    )
    .await;
    assert_eq!(response.status().as_u16(), 206);
    assert_eq!(actix_web::test::read_body(response).await.as_ref(), b"6789");
    let tampered = media.replace("sig=", "sig=A");
    let (status, _, _) = send(&svc, TestRequest::get().uri(&tampered)).await;
    assert_eq!(status, 403);
    let (status, _, _) = send(
        &svc,
        TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri(&tampered),
    )
    .await;
    assert_eq!(status, 403, "HEAD passes the same signature check");
    let (status, _, _) = send(
        &svc,
        TestRequest::get().uri(&format!("/media/{}", key.as_str())),
    )
    .await;
    assert_eq!(status, 401, "unsigned /media still needs credentials");
    let (status, _, _) = send(
        &svc,
        TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri(&format!("/media/{}", key.as_str())),
    )
    .await;
    assert_eq!(status, 401, "and so does an unsigned HEAD");
    let (status, headers, _) = send(
        &svc,
        TestRequest::default()
            .method(actix_web::http::Method::HEAD)
            .uri(&media),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-type").unwrap(), "image/png");
}
