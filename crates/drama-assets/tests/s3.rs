//! What only the S3 backend does: multipart uploads, presigned URLs the bucket itself checks,
//! credentials, and connectivity failures. Runs against s3s + s3s-fs started in this process.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{TestS3, jpeg, mp4, png, sha256};
use drama_assets::keys::asset_key;
use drama_assets::{
    AssetError, AssetStore, ByteStream, Category, MIN_PART_SIZE, MediaType, MultipartSettings,
    ObjectKey, S3Store, Scope, SizeLimits, verify_upload,
};
use drama_domain::{DramaId, UserId};
use futures::StreamExt;
use secrecy::SecretString;

const MIB: usize = 1024 * 1024;

fn key(category: Category, id: &str, media: MediaType) -> ObjectKey {
    let scope = Scope::drama(&DramaId::parse("drama-s3").unwrap()).unwrap();
    asset_key(
        UserId(uuid::Uuid::from_u128(7)),
        &scope,
        category,
        id,
        media,
    )
    .unwrap()
}

/// A stream of `total` bytes of a fake MP4, produced lazily in `chunk`-sized pieces, so the
/// test itself never holds the whole object.
fn lazy_mp4(total: usize, chunk: usize) -> (ByteStream, String) {
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let header = mp4(64, 0);
    let pieces: Vec<usize> = (0..total).step_by(chunk).collect();
    let mut produced = Vec::with_capacity(pieces.len());
    for start in pieces {
        let len = chunk.min(total - start);
        let mut piece = vec![(start / chunk) as u8; len];
        if start == 0 {
            piece[..64].copy_from_slice(&header);
        }
        sha2::Digest::update(&mut hasher, &piece);
        produced.push(piece);
    }
    let checksum = format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher)));
    let stream = futures::stream::iter(produced.into_iter().map(|p| Ok(Bytes::from(p)))).boxed();
    (stream, checksum)
}

/// A store that goes multipart from the smallest part size on, in parts of that size, sending
/// `concurrency` parts at once.
fn small_parts(s3: &TestS3, limits: SizeLimits, concurrency: usize) -> S3Store {
    let mut options = s3.options(limits);
    options.multipart = MultipartSettings {
        threshold: MIN_PART_SIZE,
        part_size: MIN_PART_SIZE,
        concurrency,
    };
    S3Store::new(options).unwrap()
}

/// Stores a PNG of `len` bytes (filler from `seed`) under a new key of `category`.
async fn put_png(
    store: &S3Store,
    category: Category,
    id: &str,
    len: usize,
    seed: u8,
) -> (ObjectKey, Bytes) {
    let k = key(category, id, MediaType::Png);
    let bytes = png(len, seed);
    store
        .put_bytes(&k, bytes.clone(), "image/png")
        .await
        .unwrap();
    (k, bytes)
}

#[tokio::test]
async fn streams_a_64_mib_object_through_equal_parts() {
    let s3 = TestS3::start().await;
    let store = s3.store(SizeLimits::default());
    let k = key(Category::Clips, "big", MediaType::Mp4);
    let (body, checksum) = lazy_mp4(64 * MIB, MIB);
    let put = store
        .put_stream(&k, body, "video/mp4", Some(64 * MIB as u64))
        .await
        .unwrap();
    assert_eq!(put.size, 64 * MIB as u64);
    assert_eq!(put.checksum.as_deref(), Some(checksum.as_str()));
    assert!(
        put.etag.as_deref().unwrap_or_default().contains("-8"),
        "{put:?}"
    );

    {
        let log = s3.log.lock().unwrap();
        assert_eq!(log.part_sizes_of_the_only_upload(), vec![8 * MIB as i64; 8]);
        assert_eq!(log.completed.len(), 1);
    }

    let got = store.get(&k).await.unwrap();
    assert_eq!(got.info.size, 64 * MIB as u64);
    assert_eq!(got.info.content_type, "video/mp4");
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut body = got.body;
    let mut received = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        received += chunk.len();
        sha2::Digest::update(&mut hasher, &chunk);
    }
    assert_eq!(received, 64 * MIB);
    assert_eq!(
        format!("sha256:{}", hex::encode(sha2::Digest::finalize(hasher))),
        checksum
    );
}

#[tokio::test]
async fn multipart_parts_are_equal_but_the_last() {
    let s3 = TestS3::start().await;
    let store = small_parts(&s3, SizeLimits::default(), 2);
    let k = key(Category::Episodes, "ep1", MediaType::Mp4);
    let total = 2 * MIN_PART_SIZE as usize + 1234;
    // Odd-sized chunks, so parts never line up with what the caller sends.
    let (body, checksum) = lazy_mp4(total, 777_777);
    let put = store.put_stream(&k, body, "video/mp4", None).await.unwrap();
    assert_eq!(put.checksum.as_deref(), Some(checksum.as_str()));
    assert!(
        put.etag.as_deref().unwrap_or_default().ends_with("-3\""),
        "{put:?}"
    );
    let parts = s3.log.lock().unwrap().part_sizes_of_the_only_upload();
    let part = MIN_PART_SIZE as i64;
    assert_eq!(parts, vec![part, part, 1234]);
    assert_eq!(store.head(&k).await.unwrap().size, total as u64);

    // put_bytes above the threshold goes the same way.
    let bytes = mp4(MIN_PART_SIZE as usize + 10, 3);
    let k2 = key(Category::Episodes, "ep2", MediaType::Mp4);
    store
        .put_bytes(&k2, bytes.clone(), "video/mp4")
        .await
        .unwrap();
    assert_eq!(store.get_bytes(&k2).await.unwrap().1, bytes);
    assert_eq!(s3.log.lock().unwrap().completed.len(), 2);
}

#[tokio::test]
async fn a_failed_multipart_upload_is_aborted() {
    let s3 = TestS3::start().await;
    let store = small_parts(&s3, SizeLimits::default(), 2);
    let k = key(Category::Clips, "broken", MediaType::Mp4);
    let good = mp4(3 * MIN_PART_SIZE as usize, 1);
    let broken: ByteStream = futures::stream::iter(vec![
        Ok(good),
        Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "upload cut",
        )),
    ])
    .boxed();
    let err = store
        .put_stream(&k, broken, "video/mp4", None)
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::Input(_)), "{err}");
    {
        let log = s3.log.lock().unwrap();
        assert_eq!(log.aborted.len(), 1, "{log:?}");
        assert!(log.parts.contains_key(&log.aborted[0]));
        assert!(log.completed.is_empty());
    }
    assert!(!store.exists(&k).await.unwrap());

    // An oversized stream is aborted the same way.
    let limits = SizeLimits::default().with(Category::Clips, 2 * MIN_PART_SIZE);
    let limited = small_parts(&s3, limits, 1);
    let (body, _) = lazy_mp4(3 * MIN_PART_SIZE as usize, MIB);
    let err = limited
        .put_stream(&k, body, "video/mp4", None)
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::TooLarge { .. }), "{err}");
    assert_eq!(s3.log.lock().unwrap().aborted.len(), 2);
}

#[tokio::test]
async fn presigned_get_works_and_expires() {
    let s3 = TestS3::start().await;
    let store = s3.store(SizeLimits::default());
    let (k, bytes) = put_png(&store, Category::Covers, "cover", 4000, 1).await;
    let http = reqwest::Client::new();

    let url = store
        .presign_get(&k, Duration::from_secs(300))
        .await
        .unwrap();
    assert!(url.url.starts_with(&s3.endpoint), "{}", url.url);
    let resp = http.get(&url.url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap(), bytes);

    // A URL for another key made by editing the path is refused.
    let tampered = url.url.replace("/cover.png", "/other.png");
    assert_eq!(http.get(&tampered).send().await.unwrap().status(), 403);

    let short = store.presign_get(&k, Duration::from_secs(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(http.get(&short.url).send().await.unwrap().status(), 403);
}

#[tokio::test]
async fn presigned_put_is_bound_to_its_content_type_and_expiry() {
    let s3 = TestS3::start().await;
    let store = s3.store(SizeLimits::default());
    let http = reqwest::Client::new();
    let k = key(Category::Uploads, "client-upload", MediaType::Png);
    let bytes = png(3000, 2);

    let url = store
        .presign_put(&k, "image/png", Duration::from_secs(300))
        .await
        .unwrap();
    let wrong = http
        .put(&url.url)
        .header("content-type", "image/jpeg")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
    assert!(!store.exists(&k).await.unwrap());

    let mut request = http.put(&url.url).body(bytes.clone());
    for (name, value) in &url.headers {
        request = request.header(name, value);
    }
    let ok = request.send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let info = verify_upload(&store, &k, "image/png").await.unwrap();
    assert_eq!(info.size, 3000);
    assert_eq!(store.get_bytes(&k).await.unwrap().1, bytes);

    let short = store
        .presign_put(&k, "image/png", Duration::from_secs(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let late = http
        .put(&short.url)
        .header("content-type", "image/png")
        .body(png(10, 9))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), 403);
    assert_eq!(store.get_bytes(&k).await.unwrap().1, bytes);
}

#[tokio::test]
async fn verify_upload_deletes_what_a_client_lied_about() {
    let s3 = TestS3::start().await;
    let store = s3.store(SizeLimits::default().with(Category::Uploads, 10_000));
    let http = reqwest::Client::new();
    let upload = |k: ObjectKey, body: Bytes| {
        let store = store.clone();
        let http = http.clone();
        async move {
            let url = store
                .presign_put(&k, "image/png", Duration::from_secs(60))
                .await
                .unwrap();
            let resp = http
                .put(&url.url)
                .header("content-type", "image/png")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            k
        }
    };
    // JPEG bytes sent as image/png.
    let k = upload(
        key(Category::Uploads, "liar", MediaType::Png),
        jpeg(2000, 1),
    )
    .await;
    let err = verify_upload(&store, &k, "image/png").await.unwrap_err();
    assert!(
        matches!(&err, AssetError::ContentMismatch { detail, .. } if detail.contains("image/jpeg")),
        "{err}"
    );
    assert!(!store.exists(&k).await.unwrap());
    // Too large for its category.
    let k = upload(
        key(Category::Uploads, "huge", MediaType::Png),
        png(20_000, 1),
    )
    .await;
    let err = verify_upload(&store, &k, "image/png").await.unwrap_err();
    assert!(matches!(err, AssetError::TooLarge { .. }), "{err}");
    assert!(!store.exists(&k).await.unwrap());
    // Nothing uploaded.
    let k = key(Category::Uploads, "never", MediaType::Png);
    assert!(matches!(
        verify_upload(&store, &k, "image/png").await,
        Err(AssetError::NotFound { .. })
    ));
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused() {
    let s3 = TestS3::start().await;
    let mut options = s3.options(SizeLimits::default());
    options.secret_access_key = SecretString::from("not-the-secret");
    let store = S3Store::new(options).unwrap();
    let k = key(Category::Covers, "c", MediaType::Png);
    let err = store
        .put_bytes(&k, png(100, 1), "image/png")
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::AccessDenied { .. }), "{err}");
    assert!(!err.is_retryable());
    assert!(matches!(
        store.head(&k).await,
        Err(AssetError::AccessDenied { .. })
    ));
    let report = store.check().await;
    assert!(!report.ok());
    assert_eq!(report.steps.len(), 1, "{report}");
    assert!(report.to_string().contains("access denied"), "{report}");
}

#[tokio::test]
async fn check_names_a_missing_bucket() {
    let s3 = TestS3::start().await;
    let mut options = s3.options(SizeLimits::default());
    options.bucket = "no-such-bucket".to_owned();
    let report = S3Store::new(options).unwrap().check().await;
    assert!(!report.ok());
    assert!(report.to_string().contains("does not exist"), "{report}");
    let good = s3.store(SizeLimits::default()).check().await;
    assert!(good.ok(), "{good}");
    assert_eq!(
        good.steps.iter().map(|s| s.name).collect::<Vec<_>>(),
        vec!["head bucket", "put probe", "delete probe"]
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retryable() {
    // Bind then drop a listener so the port is closed.
    let port = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let s3 = TestS3::start().await;
    let mut options = s3.options(SizeLimits::default());
    options.endpoint_url = format!("http://127.0.0.1:{port}");
    options.max_attempts = 1;
    let store = S3Store::new(options).unwrap();
    let err = store
        .head(&key(Category::Covers, "c", MediaType::Png))
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::Unavailable { .. }), "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn objects_keep_their_checksum_in_metadata() {
    let s3 = TestS3::start().await;
    let store = s3.store(SizeLimits::default());
    let (k, bytes) = put_png(&store, Category::Portraits, "p", 1000, 8).await;
    // A second client (another process) sees the same checksum.
    let other = s3.store(SizeLimits::default());
    assert_eq!(
        other.head(&k).await.unwrap().checksum.as_deref(),
        Some(sha256(&bytes).as_str())
    );
}
