//! Every media URL of a generated drama loads as it is, without any header, in each asset
//! backend (memory, local disk, an S3 bucket without a public URL): pictures are pictures,
//! clips answer ranges with 206 (suffix ranges too) and 416 past their end.

use std::sync::Arc;

use actix_web::test::TestRequest;
use drama_assets::{AssetStore, LocalStore, MemoryStore, SizeLimits, UrlSigner};
use drama_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{Harness, get, post, send};

/// Every URL-valued field of a REST drama.
fn urls(drama: &Value) -> Vec<(String, String)> {
    fn walk(path: &str, v: &Value, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let here = format!("{path}.{k}");
                    match v {
                        Value::String(s)
                            if ["url", "image_url", "video_url", "premise_url"]
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

/// A GET without any header (but `Range` when given): status, headers, bytes.
async fn load(
    svc: &impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
    http: &reqwest::Client,
    url: &str,
    range: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    // Signed URLs of the local and memory stores name this API (served in process here);
    // presigned bucket URLs go to the bucket over HTTP.
    let local = url
        .strip_prefix("http://localhost")
        .map(|rest| rest.trim_start_matches(|c: char| c == ':' || c.is_ascii_digit()));
    if let Some(path) = local {
        let mut req = TestRequest::get().uri(path);
        if let Some(r) = range {
            req = req.insert_header(("Range", r));
        }
        let response = actix_web::test::call_service(svc, req.to_request()).await;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = actix_web::test::read_body(response).await.to_vec();
        return (status, headers, body);
    }
    let mut req = http.get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let response = req.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn is_picture(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\x89PNG\r\n\x1a\n")
        || bytes.starts_with(&[0xFF, 0xD8, 0xFF])
        || (bytes.len() > 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP")
}

/// Generates a drama on `assets` and loads every URL of it.
async fn every_url_loads(assets: Arc<dyn AssetStore>, backend: &str, bucket: bool) {
    let h = Harness::with_assets(assets, drama_ai::AiProviders::offline(0)).await;
    let worker = h.worker().await;
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
    let (_, _, drama) = send(&svc, get("/dramas/film", k)).await;
    let found = urls(&drama);
    let videos = found
        .iter()
        .filter(|(p, _)| p.ends_with("video_url") || p.ends_with("episodes[0].url"))
        .count();
    assert!(found.len() >= 8 && videos >= 3, "{backend}: {found:#?}");

    let http = reqwest::Client::new();
    for (path, url) in &found {
        assert!(
            !url.contains("/media/"),
            "{backend} {path}: {url} needs credentials"
        );
        let (status, headers, bytes) = load(&svc, &http, url, None).await;
        assert_eq!(status, 200, "{backend} {path}: {url}");
        let is_video = bytes.len() > 8 && &bytes[4..8] == b"ftyp";
        assert!(
            is_video || is_picture(&bytes),
            "{backend} {path}: neither picture nor MP4"
        );
        if !is_video {
            continue;
        }
        let total = bytes.len();
        let (status, headers_206, part) = load(&svc, &http, url, Some("bytes=0-99")).await;
        assert_eq!(status, 206, "{backend} {path}");
        assert_eq!(
            header(&headers_206, "content-range"),
            Some(format!("bytes 0-99/{total}").as_str())
        );
        assert_eq!(part, bytes[..100]);
        let (status, headers_tail, tail) = load(&svc, &http, url, Some("bytes=-16")).await;
        assert_eq!(status, 206, "{backend} {path}: suffix range");
        assert_eq!(
            header(&headers_tail, "content-range"),
            Some(format!("bytes {}-{}/{total}", total - 16, total - 1).as_str())
        );
        assert_eq!(tail, bytes[total - 16..]);
        let past = format!("bytes={total}-");
        let (status, headers_416, _) = load(&svc, &http, url, Some(&past)).await;
        assert_eq!(status, 416, "{backend} {path}");
        if !bucket {
            assert_eq!(header(&headers, "accept-ranges"), Some("bytes"));
            assert_eq!(
                header(&headers_416, "content-range"),
                Some(format!("bytes */{total}").as_str())
            );
        }
    }

    // Only the caller's own objects are signed: Bob sees no URL of Alice's.
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
            k,
            json!({"query": "{ drama(id: \"film\") { url episodes { url scenes { imageUrl videoUrl } } } }"}),
        ),
    )
    .await;
    let clip = gql["data"]["drama"]["episodes"][0]["scenes"][0]["videoUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!clip.contains("/media/"), "{clip}");
    let (status, _, _) = load(&svc, &http, &clip, Some("bytes=0-0")).await;
    assert_eq!(status, 206);
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
        TestRequest::get().uri(&format!("/media/{}", key.as_str())),
    )
    .await;
    assert_eq!(status, 401, "unsigned /media still needs credentials");
}
