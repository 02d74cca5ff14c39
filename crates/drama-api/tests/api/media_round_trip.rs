//! Media URLs a client sends back: answers carry time-limited URLs, and an old client that
//! reads a scene and writes it back whole (or copies a drama as it was answered) must not store
//! them, or its pictures and clips break for good when the signatures expire. Each backend that
//! signs: memory (this server's `/files/` signatures) and an S3 bucket (presigned URLs).

use std::sync::Arc;

use drama_assets::{AssetStore, MemoryStore};
use drama_dal::DramaRepository as _;
use drama_domain::DramaId;
use drama_testkit::s3::S3Server;
use serde_json::{Value, json};

use crate::support::{Harness, patch_json, post_json, send};

/// The stored text of drama `id` of the harness's Alice.
async fn stored(h: &Harness, id: &str) -> String {
    let drama = h
        .store
        .get_complete(h.alice, &DramaId::parse(id).unwrap())
        .await
        .unwrap();
    serde_json::to_string(&drama.drama).unwrap()
}

async fn signed_urls_sent_back_are_stored_lasting(assets: Arc<dyn AssetStore>, backend: &str) {
    let h = Harness::with_assets(assets, drama_ai::AiProviders::offline(0)).await;
    let worker = h.worker().await;
    let drama = crate::media_urls::generated(&h, backend).await;
    let svc = h.service(Harness::settings()).await;
    let lasting = stored(&h, "film").await;
    assert!(!lasting.contains('?'), "{backend}: {lasting}");

    let episode = &drama["episodes"][0];
    let scene = &episode["scenes"][0];
    let (image, video) = (
        scene["image_url"].as_str().unwrap(),
        scene["video_url"].as_str().unwrap(),
    );
    assert!(
        image.contains('?') && video.contains('?'),
        "{backend}: {scene}"
    );
    let uri = format!(
        "/dramas/film/episodes/{}/scenes/{}",
        episode["id"].as_str().unwrap(),
        scene["id"].as_str().unwrap()
    );
    let patch = |body: Value| patch_json(&uri, &h.alice_key, body);
    let (status, _, body) = send(
        &svc,
        patch(json!({"description": "rewritten", "image_url": image, "video_url": video})),
    )
    .await;
    assert_eq!(status, 200, "{backend}: {body}");
    let mut copy = drama.clone();
    copy["id"] = json!("copy");
    let (status, _, body) = send(
        &svc,
        post_json("/dramas", &h.alice_key, json!({"drama": copy})),
    )
    .await;
    assert_eq!(status, 201, "{backend}: {body}");
    for id in ["film", "copy"] {
        let text = stored(&h, id).await;
        assert!(
            !text.contains("expires=") && !text.contains("X-Amz-"),
            "{backend} {id}: an expiring URL was stored: {text}"
        );
    }
    assert_eq!(
        stored(&h, "film").await.replace("rewritten", ""),
        lasting.replace(scene["description"].as_str().unwrap(), ""),
        "{backend}: the scene's URLs are the lasting ones again"
    );

    // A URL that only looks like ours (another host, or another user's object) is kept as
    // sent: it is not this server's signature of one of Alice's objects.
    let path = image.split_once("://").unwrap().1;
    let path = &path[path.find('/').unwrap()..];
    let elsewhere = format!("https://elsewhere.example{path}");
    let bobs = image.replace(&h.alice.to_string(), &h.bob.to_string());
    for url in [elsewhere, bobs] {
        let (status, _, body) = send(&svc, patch(json!({"image_url": url}))).await;
        assert_eq!(status, 200, "{backend}: {body}");
        assert!(stored(&h, "film").await.contains(&url), "{backend}: {url}");
    }
    worker.shutdown().await;
}

#[actix_web::test]
async fn signed_urls_sent_back_are_stored_lasting_in_memory() {
    signed_urls_sent_back_are_stored_lasting(Arc::new(MemoryStore::default()), "memory").await;
}

#[actix_web::test]
async fn presigned_urls_sent_back_are_stored_lasting_from_a_bucket() {
    let server = S3Server::start("round-trip").await;
    signed_urls_sent_back_are_stored_lasting(Arc::new(server.store(None)), "s3").await;
}
