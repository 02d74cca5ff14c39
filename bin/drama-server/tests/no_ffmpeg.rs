//! The acceptance path on a machine without ffmpeg: `serve` (with its workers) on PostgreSQL
//! and an S3 bucket without a public URL, offline AI, and a `PATH` with no ffmpeg on it.
//! Premise → drama → generate everything → every episode is stitched, its URL loads without
//! any header, and our MP4 reader finds the joined file as long as its scenes' clips together.
//! `check` says ffmpeg is absent and what that means.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::time::Duration;

use drama_app::pipeline::stitch::probe;
use serde_json::json;
use support::deployment::Deployment;

/// The bytes behind a URL from a response, fetched with no header at all.
async fn fetch(d: &Deployment, url: &str) -> Vec<u8> {
    let response = d.http.get(url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{url}");
    response.bytes().await.unwrap().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn premise_to_stitched_episodes_without_ffmpeg() {
    // An empty directory: the whole `PATH` of the server.
    let bare_path = tempfile::tempdir().unwrap();
    let mut m =
        Deployment::start("no_ffmpeg", &[("PATH", bare_path.path().to_str().unwrap())]).await;
    let public_url = m.url("");
    m.set_env("PUBLIC_URL", &public_url);
    let out = m.run(&["check"]).await;
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("ffmpeg: absent") && said.contains("are still stitched"),
        "{said}"
    );
    let (_, key) = m.create_key("no-ffmpeg").await;
    let mut server = m.spawn("serve", &["serve"]);
    server.wait_for("/health").await;

    let (status, created) = m
        .call(
            reqwest::Method::POST,
            "/dramas",
            &key,
            Some(
                json!({"premise": "A lighthouse keeper and a lost whale, in 2 episodes.",
                        "id": "lighthouse"}),
            ),
        )
        .await;
    assert_eq!(status, 202, "{created}");
    let written = m
        .settle(
            &key,
            &format!(
                "/dramas/lighthouse/jobs/{}",
                created["jobId"].as_str().unwrap()
            ),
            Duration::from_secs(180),
            &[&server],
        )
        .await;
    assert_eq!(written["status"], "completed", "{written}");
    let (status, started) = m
        .call(
            reqwest::Method::POST,
            "/dramas/lighthouse/generate",
            &key,
            None,
        )
        .await;
    assert_eq!(status, 202, "{started}");
    let done = m
        .settle(
            &key,
            &format!(
                "/dramas/lighthouse/jobs/{}",
                started["jobId"].as_str().unwrap()
            ),
            Duration::from_secs(180),
            &[&server],
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");

    let (_, drama) = m
        .call(reqwest::Method::GET, "/dramas/lighthouse", &key, None)
        .await;
    let episodes = drama["episodes"].as_array().unwrap();
    assert!(episodes.len() >= 2, "{drama}");
    for episode in episodes {
        let url = episode["url"]
            .as_str()
            .unwrap_or_else(|| panic!("not stitched: {episode}"));
        let joined = probe(&fetch(&m, url).await).unwrap();
        let mut sum = 0.0;
        for scene in episode["scenes"].as_array().unwrap() {
            let clip = fetch(&m, scene["video_url"].as_str().unwrap()).await;
            sum += probe(&clip).unwrap().duration;
        }
        assert!(sum >= 10.0, "{episode}");
        assert!(
            (joined.duration - sum).abs() < 0.01,
            "episode {}: {} s joined, {sum} s of clips",
            episode["id"],
            joined.duration
        );
        assert_eq!(joined.tracks[0].handler, "vide");
    }
    drop(server);
    m.finish().await;
}
