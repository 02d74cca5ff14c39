//! The behavioural suite every backend passes: S3 (against an in-process s3s-fs server),
//! local disk and memory.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TestS3, jpeg, mp4, png, sha256};
use drama_assets::keys::{asset_key, category_prefix, scope_prefix, user_prefix};
use drama_assets::{
    AssetError, AssetStore, ByteRange, ByteStream, Category, KeyPrefix, LocalStore, MediaType,
    MemoryStore, ObjectKey, Scope, SizeLimits, UrlSigner,
};
use drama_domain::{DramaId, UserId};
use futures::StreamExt;

#[derive(Clone, Copy, Debug)]
enum Kind {
    S3,
    Local,
    Memory,
}

/// A store plus whatever keeps its backend alive.
struct Harness {
    store: Arc<dyn AssetStore>,
    _s3: Option<TestS3>,
    dir: Option<tempfile::TempDir>,
}

impl Harness {
    async fn new(kind: Kind, limits: SizeLimits) -> Self {
        match kind {
            Kind::S3 => {
                let s3 = TestS3::start().await;
                Self {
                    store: Arc::new(s3.store(limits)),
                    _s3: Some(s3),
                    dir: None,
                }
            }
            Kind::Local => {
                let dir = tempfile::tempdir().unwrap();
                let signer = UrlSigner::new(&[9; 32], "http://api.test").unwrap();
                let store = LocalStore::open(dir.path().join("assets"), limits, signer, None)
                    .await
                    .unwrap();
                Self {
                    store: Arc::new(store),
                    _s3: None,
                    dir: Some(dir),
                }
            }
            Kind::Memory => Self {
                store: Arc::new(MemoryStore::with_signer(
                    limits,
                    UrlSigner::new(&[9; 32], "http://api.test").unwrap(),
                    None,
                )),
                _s3: None,
                dir: None,
            },
        }
    }
}

fn user() -> UserId {
    UserId(uuid::Uuid::from_u128(0xABCD))
}

fn drama(id: &str) -> Scope {
    Scope::drama(&DramaId::parse(id).unwrap()).unwrap()
}

fn key(scope: &Scope, category: Category, id: &str, media: MediaType) -> ObjectKey {
    asset_key(user(), scope, category, id, media).unwrap()
}

fn chunked(bytes: Bytes, chunk: usize) -> ByteStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = (0..bytes.len())
        .step_by(chunk)
        .map(|i| Ok(bytes.slice(i..(i + chunk).min(bytes.len()))))
        .collect();
    futures::stream::iter(chunks).boxed()
}

async fn put_get_head_delete(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let k = key(&drama("d1"), Category::Portraits, "char-a", MediaType::Png);
    let bytes = png(10_000, 1);
    let put = h
        .store
        .put_bytes(&k, bytes.clone(), "image/png")
        .await
        .unwrap();
    assert_eq!(put.size, 10_000);
    assert_eq!(put.checksum.as_deref(), Some(sha256(&bytes).as_str()));

    let head = h.store.head(&k).await.unwrap();
    assert_eq!(head.size, 10_000);
    assert_eq!(head.content_type, "image/png");
    assert_eq!(head.checksum, put.checksum);
    assert!(h.store.exists(&k).await.unwrap());

    let (info, got) = h.store.get_bytes(&k).await.unwrap();
    assert_eq!(got, bytes);
    assert_eq!(info.content_type, "image/png");

    h.store.delete(&k).await.unwrap();
    assert!(matches!(
        h.store.head(&k).await,
        Err(AssetError::NotFound { .. })
    ));
    assert!(matches!(
        h.store.get(&k).await.map(|_| ()),
        Err(AssetError::NotFound { .. })
    ));
    assert!(!h.store.exists(&k).await.unwrap());
    // Deleting again is not an error.
    h.store.delete(&k).await.unwrap();
}

async fn overwrite_replaces_the_object(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let k = key(&drama("d1"), Category::Covers, "cover", MediaType::Png);
    h.store
        .put_bytes(&k, png(5000, 1), "image/png")
        .await
        .unwrap();
    let second = png(3000, 2);
    h.store
        .put_bytes(&k, second.clone(), "image/png")
        .await
        .unwrap();
    let (info, got) = h.store.get_bytes(&k).await.unwrap();
    assert_eq!(got, second);
    assert_eq!(info.size, 3000);
}

async fn streams_in_and_out(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let k = key(&drama("d1"), Category::Clips, "ep1-sc1", MediaType::Mp4);
    let bytes = mp4(3 * 1024 * 1024 + 17, 3);
    let put = h
        .store
        .put_stream(&k, chunked(bytes.clone(), 64 * 1024), "video/mp4", None)
        .await
        .unwrap();
    assert_eq!(put.size, bytes.len() as u64);
    assert_eq!(put.checksum.as_deref(), Some(sha256(&bytes).as_str()));

    let got = h.store.get(&k).await.unwrap();
    assert_eq!(got.info.size, bytes.len() as u64);
    assert_eq!(got.info.content_type, "video/mp4");
    let mut body = got.body;
    let mut received = Vec::new();
    while let Some(chunk) = body.next().await {
        received.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(sha256(&received), sha256(&bytes));
}

async fn refuses_content_that_is_not_what_it_claims(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let scope = drama("d1");
    // PNG bytes declared as JPEG, under a .jpg key.
    let k = key(&scope, Category::Storyboards, "sb1", MediaType::Jpeg);
    let err = h
        .store
        .put_bytes(&k, png(2000, 1), "image/jpeg")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AssetError::ContentMismatch { detail, .. } if detail.contains("image/png")),
        "{err}"
    );
    assert!(!h.store.exists(&k).await.unwrap());

    // The same through a stream.
    let err = h
        .store
        .put_stream(&k, chunked(png(2000, 1), 3), "image/jpeg", None)
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::ContentMismatch { .. }), "{err}");
    assert!(!h.store.exists(&k).await.unwrap());

    // A video among portraits, and a declared type the key's extension contradicts.
    let portrait = key(&scope, Category::Portraits, "p", MediaType::Png);
    let err = h
        .store
        .put_bytes(&portrait, mp4(2000, 1), "video/mp4")
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::ContentMismatch { .. }), "{err}");
    let err = h
        .store
        .put_bytes(&portrait, jpeg(2000, 1), "image/jpeg")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("extension"), "{err}");

    // Unsupported declared types are refused outright.
    let upload = key(&scope, Category::Uploads, "u1", MediaType::Text);
    let err = h
        .store
        .put_bytes(&upload, Bytes::from_static(b"<html>"), "text/html")
        .await
        .unwrap_err();
    assert!(
        matches!(err, AssetError::UnsupportedContentType(_)),
        "{err}"
    );
    assert!(!h.store.exists(&portrait).await.unwrap());
}

async fn enforces_size_limits(kind: Kind) {
    let limits = SizeLimits::default().with(Category::Portraits, 4096);
    let h = Harness::new(kind, limits).await;
    let k = key(&drama("d1"), Category::Portraits, "big", MediaType::Png);
    let err = h
        .store
        .put_bytes(&k, png(5000, 1), "image/png")
        .await
        .unwrap_err();
    assert!(
        matches!(err, AssetError::TooLarge { limit: 4096, .. }),
        "{err}"
    );
    // A stream without a length hint is stopped when it crosses the limit.
    let err = h
        .store
        .put_stream(&k, chunked(png(5000, 1), 1000), "image/png", None)
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::TooLarge { .. }), "{err}");
    // A hint above the limit fails before reading.
    let err = h
        .store
        .put_stream(&k, chunked(png(10, 1), 10), "image/png", Some(1 << 30))
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::TooLarge { .. }), "{err}");
    assert!(!h.store.exists(&k).await.unwrap());
    // At the limit is fine.
    h.store
        .put_bytes(&k, png(4096, 1), "image/png")
        .await
        .unwrap();
}

async fn a_wrong_length_or_a_broken_stream_stores_nothing(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let k = key(&drama("d1"), Category::Clips, "c1", MediaType::Mp4);
    let err = h
        .store
        .put_stream(&k, chunked(mp4(1000, 1), 100), "video/mp4", Some(2000))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("announced 2000 bytes but sent 1000"),
        "{err}"
    );
    let broken: ByteStream = futures::stream::iter(vec![
        Ok(mp4(1000, 1)),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ])
    .boxed();
    let err = h
        .store
        .put_stream(&k, broken, "video/mp4", None)
        .await
        .unwrap_err();
    assert!(matches!(err, AssetError::Input(_)), "{err}");
    assert!(!err.is_retryable());
    assert!(!h.store.exists(&k).await.unwrap());
    if let Some(dir) = &h.dir {
        let tmp = std::fs::read_dir(dir.path().join("assets/tmp"))
            .unwrap()
            .count();
        assert_eq!(tmp, 0, "temporary files left behind");
    }
}

async fn lists_and_deletes_by_prefix(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let (a, b) = (drama("drama-a"), drama("drama-ab"));
    let mut written = Vec::new();
    for (i, id) in ["c2", "c1", "c3"].iter().enumerate() {
        let k = key(&a, Category::Portraits, id, MediaType::Png);
        h.store
            .put_bytes(&k, png(100 + i, 1), "image/png")
            .await
            .unwrap();
        written.push(k);
    }
    let clip = key(&a, Category::Clips, "s1", MediaType::Mp4);
    h.store
        .put_bytes(&clip, mp4(300, 1), "video/mp4")
        .await
        .unwrap();
    // A drama whose id extends the first one's must not be touched.
    let other = key(&b, Category::Portraits, "c1", MediaType::Png);
    h.store
        .put_bytes(&other, png(100, 2), "image/png")
        .await
        .unwrap();

    let portraits = h
        .store
        .list(&category_prefix(user(), &a, Category::Portraits))
        .await
        .unwrap();
    let names: Vec<&str> = portraits.iter().map(|o| o.key.as_str()).collect();
    written.sort();
    assert_eq!(
        names,
        written.iter().map(ObjectKey::as_str).collect::<Vec<_>>()
    );
    assert_eq!(portraits[0].size, 101);

    let all_of_a = h.store.list(&scope_prefix(user(), &a)).await.unwrap();
    assert_eq!(all_of_a.len(), 4);

    let deleted = h
        .store
        .delete_prefix(&scope_prefix(user(), &a))
        .await
        .unwrap();
    assert_eq!(deleted, 4);
    assert!(
        h.store
            .list(&scope_prefix(user(), &a))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.store.exists(&other).await.unwrap());
    assert_eq!(h.store.list(&user_prefix(user())).await.unwrap().len(), 1);
    assert_eq!(
        h.store
            .delete_prefix(&KeyPrefix::parse("nobody/").unwrap())
            .await
            .unwrap(),
        0
    );
}

async fn lists_a_page_after_a_key(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let (a, b) = (drama("drama-a"), drama("drama-ab"));
    for id in ["c5", "c3", "c1", "c4", "c2"] {
        let k = key(&a, Category::Portraits, id, MediaType::Png);
        h.store
            .put_bytes(&k, png(100, 1), "image/png")
            .await
            .unwrap();
    }
    // Keys after the prefix's last one, and under a longer prefix, are not on its pages.
    for k in [
        key(&a, Category::Uploads, "c0", MediaType::Png),
        key(&b, Category::Portraits, "c0", MediaType::Png),
    ] {
        h.store
            .put_bytes(&k, png(100, 2), "image/png")
            .await
            .unwrap();
    }
    let prefix = category_prefix(user(), &a, Category::Portraits);
    let names = |page: &drama_assets::ListPage| -> Vec<String> {
        page.objects
            .iter()
            .map(|o| o.key.as_str().rsplit('/').next().unwrap().to_owned())
            .collect()
    };
    let mut after: Option<ObjectKey> = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = h.store.list_page(&prefix, after.as_ref(), 2).await.unwrap();
        assert!(page.objects.len() <= 2);
        seen.extend(names(&page));
        pages += 1;
        if !page.more {
            break;
        }
        after = page.objects.last().map(|o| o.key.clone());
    }
    assert_eq!(seen, ["c1.png", "c2.png", "c3.png", "c4.png", "c5.png"]);
    assert_eq!(pages, 3);
    let whole = h.store.list_page(&prefix, None, 5).await.unwrap();
    assert_eq!((whole.objects.len(), whole.more), (5, false));
    // After the last key: nothing, and nothing more.
    let last = whole.objects[4].key.clone();
    let end = h.store.list_page(&prefix, Some(&last), 5).await.unwrap();
    assert_eq!((end.objects.len(), end.more), (0, false));
    // A key that sorts before the prefix starts the listing at its first key.
    let before = key(&drama("drama-0"), Category::Portraits, "z", MediaType::Png);
    let page = h.store.list_page(&prefix, Some(&before), 1).await.unwrap();
    assert_eq!((names(&page), page.more), (vec!["c1.png".to_owned()], true));
}

async fn copies_with_type_and_checksum(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let scope = drama("d1");
    let from = key(&scope, Category::Portraits, "hero", MediaType::Png);
    let to = key(&scope, Category::Covers, "cover", MediaType::Png);
    let bytes = png(7000, 4);
    h.store
        .put_bytes(&from, bytes.clone(), "image/png")
        .await
        .unwrap();
    let copied = h.store.copy(&from, &to).await.unwrap();
    assert_eq!(copied.size, 7000);
    assert_eq!(copied.content_type, "image/png");
    assert_eq!(copied.checksum.as_deref(), Some(sha256(&bytes).as_str()));
    assert_eq!(h.store.get_bytes(&to).await.unwrap().1, bytes);
    assert!(h.store.exists(&from).await.unwrap());

    let wrong = key(&scope, Category::Clips, "x", MediaType::Mp4);
    assert!(matches!(
        h.store.copy(&from, &wrong).await,
        Err(AssetError::ContentMismatch { .. })
    ));
    let missing = key(&scope, Category::Portraits, "nobody", MediaType::Png);
    assert!(matches!(
        h.store.copy(&missing, &to).await,
        Err(AssetError::NotFound { .. })
    ));
}

async fn reads_byte_ranges(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let k = key(&drama("d1"), Category::Clips, "r", MediaType::Mp4);
    let bytes = mp4(1000, 5);
    h.store
        .put_bytes(&k, bytes.clone(), "video/mp4")
        .await
        .unwrap();
    let part = h
        .store
        .get_range(
            &k,
            ByteRange {
                start: 10,
                end: Some(19),
            },
        )
        .await
        .unwrap();
    let range = part.range.unwrap();
    assert_eq!((range.start, range.end, range.total), (10, 19, 1000));
    assert_eq!(part.body_len(), 10);
    assert_eq!(part.collect().await.unwrap().1, bytes.slice(10..20));

    let tail = h
        .store
        .get_range(
            &k,
            ByteRange {
                start: 990,
                end: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.collect().await.unwrap().1, bytes.slice(990..));

    let err = h
        .store
        .get_range(
            &k,
            ByteRange {
                start: 1000,
                end: None,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, AssetError::RangeNotSatisfiable { size: 1000, .. }),
        "{err}"
    );
}

async fn presigns_within_bounds(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let k = key(&drama("d1"), Category::Uploads, "up", MediaType::Png);
    for bad in [Duration::ZERO, Duration::from_secs(8 * 24 * 3600)] {
        assert!(matches!(
            h.store.presign_get(&k, bad).await,
            Err(AssetError::InvalidRequest(_))
        ));
    }
    let put = h
        .store
        .presign_put(&k, "image/png", Duration::from_secs(600))
        .await
        .unwrap();
    assert!(
        put.headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v == "image/png"),
        "{:?}",
        put.headers
    );
    assert!(put.expires_at > chrono::Utc::now());
    // The type must fit the key.
    assert!(matches!(
        h.store
            .presign_put(&k, "image/jpeg", Duration::from_secs(60))
            .await,
        Err(AssetError::ContentMismatch { .. })
    ));
    assert!(matches!(
        h.store
            .presign_put(&k, "text/html", Duration::from_secs(60))
            .await,
        Err(AssetError::UnsupportedContentType(_))
    ));
}

async fn check_reports_a_writable_store(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let report = h.store.check().await;
    assert!(report.ok(), "{report}");
    let text = report.to_string();
    assert!(text.contains(h.store.backend()), "{text}");
    if !matches!(kind, Kind::Memory) {
        let names: Vec<&str> = report.steps.iter().map(|s| s.name).collect();
        assert!(names.ends_with(&["put probe", "delete probe"]), "{names:?}");
    }
    // The probe is gone.
    assert!(
        h.store
            .list(&KeyPrefix::parse("_check/").unwrap())
            .await
            .unwrap()
            .is_empty()
    );
}

async fn malicious_names_stay_inside_their_prefix(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let long = "n".repeat(2048);
    let names = [
        "../../etc/passwd",
        "a/../../b",
        "..",
        "/etc/shadow",
        "..\\..\\boot.ini",
        "\u{ff0e}\u{ff0e}\u{ff0f}\u{ff0e}\u{ff0e}\u{ff0f}x",
        "\u{2024}\u{2024}/\u{2024}\u{2024}/y",
        "safe\u{202e}gnp.exe",
        "nul\u{0}byte",
        "%2e%2e%2f%2e%2e%2f",
        long.as_str(),
    ];
    for name in names {
        let scope = match Scope::project(name) {
            Ok(scope) => scope,
            Err(e) => {
                assert!(matches!(e, AssetError::InvalidKey { .. }), "{name:?}: {e}");
                continue;
            }
        };
        let k = asset_key(user(), &scope, Category::Uploads, "f", MediaType::Png).unwrap();
        assert!(k.is_under(&scope_prefix(user(), &scope)), "{name:?} -> {k}");
        h.store
            .put_bytes(&k, png(64, 1), "image/png")
            .await
            .unwrap();
        let listed = h.store.list(&scope_prefix(user(), &scope)).await.unwrap();
        assert_eq!(listed.len(), 1, "{name:?}");
    }
    // Everything written is under the user's prefix, and nothing else exists.
    let everything = h.store.list(&user_prefix(user())).await.unwrap();
    assert!(!everything.is_empty());
    for object in &everything {
        assert_eq!(object.key.as_str().split('/').count(), 4, "{}", object.key);
        assert!(!object.key.as_str().contains(".."));
    }
    // Raw keys that try to climb are refused before any backend sees them.
    for raw in [
        "../../etc/passwd",
        "a/../../b",
        "/abs",
        "a\\b",
        "a\u{7}b",
        long.as_str(),
    ] {
        assert!(matches!(
            ObjectKey::parse(raw),
            Err(AssetError::InvalidKey { .. })
        ));
    }
    if let Some(dir) = &h.dir {
        // On disk, everything is inside objects/ and meta/ of the root.
        let root = dir.path().join("assets");
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                assert!(path.starts_with(&root), "{}", path.display());
                if path.is_dir() {
                    stack.push(path);
                }
            }
        }
    }
}

async fn a_public_url_needs_a_public_base(kind: Kind) {
    let h = Harness::new(kind, SizeLimits::default()).await;
    let k = key(&drama("d1"), Category::Covers, "cover", MediaType::Png);
    match kind {
        Kind::S3 => assert_eq!(
            h.store.public_url(&k).as_deref(),
            Some(format!("https://assets.example.com/{k}").as_str())
        ),
        Kind::Local | Kind::Memory => assert_eq!(h.store.public_url(&k), None),
    }
}

macro_rules! for_every_backend {
    ($($case:ident),* $(,)?) => {
        mod s3 {
            $(#[tokio::test] async fn $case() { super::$case(super::Kind::S3).await; })*
        }
        mod local {
            $(#[tokio::test] async fn $case() { super::$case(super::Kind::Local).await; })*
        }
        mod memory {
            $(#[tokio::test] async fn $case() { super::$case(super::Kind::Memory).await; })*
        }
    };
}

for_every_backend!(
    put_get_head_delete,
    overwrite_replaces_the_object,
    streams_in_and_out,
    refuses_content_that_is_not_what_it_claims,
    enforces_size_limits,
    a_wrong_length_or_a_broken_stream_stores_nothing,
    lists_and_deletes_by_prefix,
    lists_a_page_after_a_key,
    copies_with_type_and_checksum,
    reads_byte_ranges,
    presigns_within_bounds,
    check_reports_a_writable_store,
    malicious_names_stay_inside_their_prefix,
    a_public_url_needs_a_public_base,
);
