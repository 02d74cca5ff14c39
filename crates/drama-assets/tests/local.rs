//! What only the local backend does (atomic files, API-served signed URLs), and building each
//! backend from settings.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{TestS3, mp4, png};
use drama_assets::keys::asset_key;
use drama_assets::{
    AssetError, AssetSettings, AssetStore, ByteStream, Category, FILES_PATH, LocalStore, MediaType,
    ObjectKey, Scope, SignedRequest, SizeLimits, UrlSigner, open_store,
};
use drama_domain::{DramaId, UserId};
use futures::StreamExt;

fn key(category: Category, id: &str, media: MediaType) -> ObjectKey {
    let scope = Scope::drama(&DramaId::parse("d").unwrap()).unwrap();
    asset_key(
        UserId(uuid::Uuid::from_u128(1)),
        &scope,
        category,
        id,
        media,
    )
    .unwrap()
}

async fn local(dir: &std::path::Path) -> LocalStore {
    let signer = UrlSigner::new(
        b"0123456789abcdef0123456789abcdef",
        "https://api.example.com",
    )
    .unwrap();
    LocalStore::open(dir, SizeLimits::default(), signer, None)
        .await
        .unwrap()
}

fn split_url(url: &str) -> (&str, &str) {
    let rest = url
        .strip_prefix("https://api.example.com")
        .unwrap()
        .strip_prefix(FILES_PATH)
        .unwrap();
    rest.split_once('?').unwrap()
}

#[tokio::test]
async fn objects_are_plain_files_replaced_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(dir.path()).await;
    let k = key(Category::Clips, "c1", MediaType::Mp4);
    let first = mp4(50_000, 1);
    store
        .put_bytes(&k, first.clone(), "video/mp4")
        .await
        .unwrap();
    let on_disk = std::fs::read(dir.path().join("objects").join(k.as_str())).unwrap();
    assert_eq!(on_disk, first);

    // An overwrite that breaks halfway leaves the old object whole.
    let broken: ByteStream = futures::stream::iter(vec![
        Ok(mp4(30_000, 2)),
        Err(std::io::Error::other("disk on fire")),
    ])
    .boxed();
    assert!(matches!(
        store.put_stream(&k, broken, "video/mp4", None).await,
        Err(AssetError::Input(_))
    ));
    assert_eq!(store.get_bytes(&k).await.unwrap().1, first);
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );

    // Deleting prunes the now-empty directories.
    store.delete(&k).await.unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path().join("objects"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn a_stale_sidecar_falls_back_to_the_extension() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(dir.path()).await;
    let k = key(Category::Portraits, "p", MediaType::Png);
    store
        .put_bytes(&k, png(1000, 1), "image/png")
        .await
        .unwrap();
    // Simulate a crash between the data rename and the sidecar rename of a later write.
    std::fs::write(dir.path().join("objects").join(k.as_str()), png(100, 2)).unwrap();
    let info = store.head(&k).await.unwrap();
    assert_eq!(info.size, 100);
    assert_eq!(info.content_type, "image/png");
    assert_eq!(info.checksum, None);
}

#[tokio::test]
async fn signed_urls_round_trip_through_the_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let store = local(dir.path()).await;
    let k = key(Category::Uploads, "u", MediaType::Png);
    let signer = store.url_signer().unwrap();

    let get = store
        .presign_get(&k, Duration::from_secs(60))
        .await
        .unwrap();
    let (path, query) = split_url(&get.url);
    let request = SignedRequest {
        method: "GET",
        key: path,
        query,
        content_type: None,
    };
    assert_eq!(signer.verify(&request).unwrap(), k);
    assert_eq!(
        signer.verify_until(&request).unwrap(),
        (k.clone(), get.expires_at),
        "the deadline is the one the URL was signed with"
    );
    let after = get.expires_at + chrono::Duration::seconds(1);
    assert!(matches!(
        signer.verify_at(&request, after),
        Err(AssetError::AccessDenied { .. })
    ));

    let put = store
        .presign_put(&k, "image/png", Duration::from_secs(60))
        .await
        .unwrap();
    let (path, query) = split_url(&put.url);
    let upload = SignedRequest {
        method: "PUT",
        key: path,
        query,
        content_type: Some("image/png"),
    };
    assert_eq!(signer.verify(&upload).unwrap(), k);
    let other_type = SignedRequest {
        content_type: Some("image/gif"),
        ..upload
    };
    assert!(matches!(
        signer.verify(&other_type),
        Err(AssetError::AccessDenied { .. })
    ));
    // A server with another secret refuses the URL.
    let other = UrlSigner::new(&[1; 32], "https://api.example.com").unwrap();
    assert!(other.verify(&upload).is_err());
    // The API then streams the body into the store with the signed type.
    store
        .put_bytes(&k, png(100, 3), upload.content_type.unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn settings_build_each_backend() {
    let dir = tempfile::tempdir().unwrap();
    let vars = |pairs: &[(&str, &str)]| {
        AssetSettings::from_vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
        .unwrap()
    };
    let dir_str = dir.path().to_str().unwrap().to_owned();
    let local = open_store(&vars(&[
        ("ASSETS_DIR", dir_str.as_str()),
        (
            "ASSETS_SIGNING_SECRET",
            "a-signing-secret-of-32-bytes-or-more",
        ),
        ("ASSETS_PUBLIC_URL", "https://files.example.com/"),
    ]))
    .await
    .unwrap();
    assert_eq!(local.backend(), "local");
    let k = key(Category::Covers, "c", MediaType::Png);
    assert_eq!(
        local.public_url(&k).unwrap(),
        format!("https://files.example.com/{k}")
    );
    assert!(local.check().await.ok());

    let memory = open_store(&vars(&[("ASSETS_BACKEND", "memory")]))
        .await
        .unwrap();
    assert_eq!(memory.backend(), "memory");
    assert!(memory.url_signer().is_some());

    let s3 = TestS3::start().await;
    let remote = open_store(&vars(&[
        ("R2_ENDPOINT_URL", s3.endpoint.as_str()),
        ("R2_BUCKET", common::BUCKET),
        ("R2_ACCESS_KEY_ID", common::ACCESS_KEY),
        ("R2_SECRET_ACCESS_KEY", common::SECRET_KEY),
        ("R2_PUBLIC_URL", "https://pub.example.r2.dev"),
    ]))
    .await
    .unwrap();
    assert_eq!(remote.backend(), "s3");
    assert!(remote.url_signer().is_none());
    let report = remote.check().await;
    assert!(report.ok(), "{report}");
    remote
        .put_bytes(&k, png(500, 1), "image/png")
        .await
        .unwrap();
    assert_eq!(remote.head(&k).await.unwrap().size, 500);

    let err = open_store(&vars(&[("ASSETS_BACKEND", "s3")]))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("R2_ACCOUNT_ID"), "{err}");
}
