//! Result files named in a provider's answer are fetched only from public https addresses,
//! through at most three redirects (each checked again), and up to a size cap.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use drama_ai::{AiError, AiProviders, AiSettings, ImageKind, ImageRequest};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PATH: &str = "/v1/chat/completions";

/// The nano banana answer pointing at `link`.
async fn answer_with_link(server: &MockServer, link: &str) {
    common::reply(
        server,
        PATH,
        ResponseTemplate::new(200).set_body_json(common::openai_answer(
            Some(&format!("![image]({link})")),
            None,
            "stop",
        )),
        None,
    )
    .await;
}

async fn image(settings: &AiSettings) -> Result<Vec<u8>, AiError> {
    let providers = AiProviders::from_settings(settings).unwrap();
    providers
        .image_model()
        .generate_image(&ImageRequest {
            kind: ImageKind::Storyboard,
            prompt: "a launch pad at dawn".into(),
            label: "s1".into(),
            references: vec![],
        })
        .await
        .map(|g| g.output.bytes.to_vec())
}

async fn png_at(server: &MockServer, at: &str) {
    Mock::given(method("GET"))
        .and(path(at))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "image/png")
                .set_body_bytes(common::png("file")),
        )
        .mount(server)
        .await;
}

async fn redirect(server: &MockServer, from: &str, to: &str) {
    Mock::given(method("GET"))
        .and(path(from))
        .respond_with(ResponseTemplate::new(302).insert_header("location", to))
        .mount(server)
        .await;
}

fn refused(result: Result<Vec<u8>, AiError>, words: &str) {
    match result {
        Err(AiError::FileRefused { message, .. }) => {
            assert!(
                message.contains(words),
                "{message:?} should mention {words:?}"
            );
        }
        other => panic!("expected a refused file, got {other:?}"),
    }
}

#[tokio::test]
async fn plain_http_and_private_addresses_are_not_fetched() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/files/out.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(common::png("x")))
        .expect(0)
        .mount(&server)
        .await;
    let mut settings = common::settings(&server);
    settings.download_allow_local = false;

    answer_with_link(&server, &format!("{}/files/out.png", server.uri())).await;
    refused(image(&settings).await, "not a public address");

    // The answer is asked for once: a refused file is not worth another paid call.
    let posts = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1);

    for link in [
        "https://169.254.169.254/latest/meta-data/x.png",
        "https://10.0.0.7/x.png",
        "https://[::1]/x.png",
        "http://93.184.216.34/x.png",
    ] {
        server.reset().await;
        answer_with_link(&server, link).await;
        let words = if link.starts_with("http:") {
            "only https"
        } else {
            "not a public address"
        };
        refused(image(&settings).await, words);
    }
    // A name is checked after it is resolved: localhost is loopback.
    server.reset().await;
    let port = server.address().port();
    answer_with_link(&server, &format!("https://localhost:{port}/x.png")).await;
    refused(image(&settings).await, "no public address");
}

#[tokio::test]
async fn three_redirects_are_followed_and_each_is_checked_again() {
    let server = MockServer::start().await;
    let settings = common::settings(&server);
    png_at(&server, "/files/out.png").await;
    redirect(&server, "/a1", "/a2").await;
    redirect(&server, "/a2", "/a3").await;
    redirect(&server, "/a3", "/files/out.png").await;
    answer_with_link(&server, &format!("{}/a1", server.uri())).await;
    assert_eq!(image(&settings).await.unwrap(), common::png("file"));

    server.reset().await;
    png_at(&server, "/files/out.png").await;
    for (from, to) in [
        ("/b1", "/b2"),
        ("/b2", "/b3"),
        ("/b3", "/b4"),
        ("/b4", "/files/out.png"),
    ] {
        redirect(&server, from, to).await;
    }
    answer_with_link(&server, &format!("{}/b1", server.uri())).await;
    refused(image(&settings).await, "redirects");

    // Allowing local addresses for tests allows loopback only: a redirect to the metadata
    // service is refused before any connection.
    server.reset().await;
    redirect(&server, "/c1", "http://169.254.169.254/latest/meta-data/").await;
    answer_with_link(&server, &format!("{}/c1", server.uri())).await;
    refused(image(&settings).await, "not a public address");
}

#[tokio::test]
async fn a_file_above_its_cap_is_refused() {
    let server = MockServer::start().await;
    let mut settings = common::settings(&server);
    settings.max_image_bytes = 100;
    png_at(&server, "/files/out.png").await;
    answer_with_link(&server, &format!("{}/files/out.png", server.uri())).await;
    refused(image(&settings).await, "MAX_IMAGE_BYTES");
}
