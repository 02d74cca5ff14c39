#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use base64::Engine as _;
use drama_ai::{
    AiError, AiSettings, Generated, GeneratedImage, ImageKind, ImageRequest, Provider,
    ReferenceImage,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PATH: &str = "/v1/chat/completions";

fn answer(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(common::openai_answer(Some(content), None, "stop"))
}

fn storyboard(references: Vec<ReferenceImage>) -> ImageRequest {
    ImageRequest {
        kind: ImageKind::Storyboard,
        prompt: "Mara and Leo on the launch pad at dawn.".into(),
        label: "ep1-s1".into(),
        references,
    }
}

/// A storyboard with `references` from the image model, with every provider at `server`.
async fn storyboard_image(
    server: &MockServer,
    references: Vec<ReferenceImage>,
) -> Result<Generated<GeneratedImage>, AiError> {
    storyboard_image_with(&common::settings(server), references).await
}

/// A storyboard with `references` from the image model of the providers `settings` make.
async fn storyboard_image_with(
    settings: &AiSettings,
    references: Vec<ReferenceImage>,
) -> Result<Generated<GeneratedImage>, AiError> {
    common::providers(settings)
        .image_model()
        .generate_image(&storyboard(references))
        .await
}

#[tokio::test]
async fn downloads_the_markdown_link_and_sends_references_as_data_urls() {
    let server = MockServer::start().await;
    let png = common::png("result");
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("authorization", "Bearer nb-key"))
        .respond_with(answer(&format!(
            "Here is your image:\n\n![image]({}/files/out.png)\n",
            server.uri()
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/out.png"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "image/png")
                .set_body_bytes(png.clone()),
        )
        .expect(1)
        .mount(&server)
        .await;
    let providers = common::providers_at(&server);
    assert_eq!(providers.image_provider(), Provider::NanoBanana);
    let refs = vec![
        ReferenceImage::new(common::png("mara"), "image/png"),
        ReferenceImage::new(common::png("leo"), "image/png"),
        ReferenceImage::new(vec![0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3], "image/jpeg"),
    ];
    let image = providers
        .image_model()
        .generate_image(&storyboard(refs.clone()))
        .await
        .unwrap();
    assert_eq!(image.output.bytes.as_ref(), png.as_slice());
    assert_eq!(image.output.mime_type, "image/png");
    assert_eq!(image.usage.images, 1);
    assert_eq!(image.model.model, "gemini-2.5-flash-image");

    let requests = server.received_requests().await.unwrap();
    let body: Value = requests[0].body_json().unwrap();
    assert_eq!(body["model"], "gemini-2.5-flash-image");
    assert_eq!(body["stream"], false);
    let content = body["messages"][0]["content"].as_array().unwrap();
    assert_eq!(content.len(), 4);
    let text = content[0]["text"].as_str().unwrap();
    assert_eq!(
        text.matches("9:16").count(),
        1,
        "the frame is said once: {text}"
    );
    assert!(text.contains("The 3 attached image(s) are reference sheets"));
    assert!(text.contains("Mara and Leo on the launch pad at dawn."));
    for (part, reference) in content[1..].iter().zip(&refs) {
        assert_eq!(part["type"], "image_url");
        assert_eq!(part["image_url"]["url"], reference.data_url());
    }
    assert!(
        content[3]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/jpeg;base64,")
    );
}

#[tokio::test]
async fn reads_a_data_url_answer() {
    let server = MockServer::start().await;
    let png = common::png("inline");
    let data = base64::engine::general_purpose::STANDARD.encode(&png);
    common::reply(
        &server,
        PATH,
        answer(&format!("![generated](data:image/png;base64,{data})")),
        None,
    )
    .await;
    let image = storyboard_image(&server, vec![]).await.unwrap();
    assert_eq!(image.output.bytes.as_ref(), png.as_slice());
    let body = &common::bodies(&server).await[0];
    let text = body["messages"][0]["content"][0]["text"].as_str().unwrap();
    assert!(
        !text.contains("attached"),
        "no references, no reference sentence: {text}"
    );
}

#[tokio::test]
async fn an_answer_without_an_image_is_no_image_after_the_retries() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        answer("I'd love to draw that! Imagine a sunrise over a launch pad..."),
        None,
    )
    .await;
    let err = storyboard_image(&server, vec![]).await.unwrap_err();
    assert!(
        matches!(&err, AiError::NoImage { provider: Provider::NanoBanana, detail } if detail.contains("sunrise")),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(common::request_count(&server).await, 3);
}

#[tokio::test]
async fn a_content_filter_stop_is_a_refusal() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        ResponseTemplate::new(200).set_body_json(common::openai_answer(
            Some(""),
            None,
            "content_filter",
        )),
        None,
    )
    .await;
    let err = storyboard_image(&server, vec![]).await.unwrap_err();
    assert!(
        matches!(
            err,
            AiError::Refused {
                provider: Provider::NanoBanana,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(common::request_count(&server).await, 1);
}

#[tokio::test]
async fn a_refusal_in_words_is_a_refusal() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        answer("Sorry, this request violates our content policy."),
        None,
    )
    .await;
    let err = storyboard_image(&server, vec![]).await.unwrap_err();
    assert!(matches!(err, AiError::Refused { .. }), "{err:?}");
}

#[tokio::test]
async fn server_error_then_success_and_429_with_retry_after() {
    let server = MockServer::start().await;
    let png = common::png("x");
    let data = base64::engine::general_purpose::STANDARD.encode(&png);
    common::reply(
        &server,
        PATH,
        ResponseTemplate::new(503).set_body_json(
            json!({"error": {"message": "The model is overloaded", "code": 503, "status": "UNAVAILABLE"}}),
        ),
        Some(1),
    )
    .await;
    common::reply(
        &server,
        PATH,
        ResponseTemplate::new(429).insert_header("retry-after", "1"),
        Some(1),
    )
    .await;
    common::reply(
        &server,
        PATH,
        answer(&format!("data:image/png;base64,{data}")),
        None,
    )
    .await;
    let image = storyboard_image(&server, vec![]).await.unwrap();
    assert_eq!(image.output.bytes.as_ref(), png.as_slice());
    assert_eq!(image.usage.requests, 3);
}

/// An image request that went out and got no answer in time may be drawn and billed: it is
/// not sent again, even with retries allowed.
#[tokio::test]
async fn a_slow_image_is_not_sent_again() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        answer("x").set_delay(std::time::Duration::from_secs(3)),
        None,
    )
    .await;
    let mut settings = common::settings(&server);
    settings.image_timeout_secs = 1;
    let err = storyboard_image_with(&settings, vec![]).await.unwrap_err();
    assert!(
        matches!(
            &err,
            AiError::SubmitUncertain {
                provider: Provider::NanoBanana,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(common::request_count(&server).await, 1);
}

/// The image was drawn (and billed) and its link answered; only the download failed. The
/// download is retried on its own; the drawing is not asked for again.
#[tokio::test]
async fn an_image_whose_download_fails_is_not_drawn_again() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        answer(&format!("![x]({}/files/gone.png)", server.uri())),
        None,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/files/gone.png"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    let err = storyboard_image(&server, vec![]).await.unwrap_err();
    assert!(
        matches!(&err, AiError::SubmitUncertain { cause, .. } if cause.contains("503")),
        "{err:?}"
    );
    let requests = server.received_requests().await.unwrap();
    let posts = requests
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    let gets = requests
        .iter()
        .filter(|r| r.method.as_str() == "GET")
        .count();
    assert_eq!(posts, 1, "the drawing is asked for once");
    assert_eq!(gets, 3, "the download is tried 1 + MAX_RETRIES times");
}

#[tokio::test]
async fn too_many_references_are_refused_before_any_request() {
    let server = MockServer::start().await;
    let refs = vec![ReferenceImage::new(common::png("a"), "image/png"); 5];
    let err = storyboard_image(&server, refs).await.unwrap_err();
    assert!(
        matches!(&err, AiError::InvalidRequest(m) if m.contains("at most 4")),
        "{err:?}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_link_to_something_that_is_not_an_image_is_rejected() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        answer(&format!("![x]({}/files/page.html)", server.uri())),
        None,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/files/page.html"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>expired</html>"))
        .mount(&server)
        .await;
    let err = storyboard_image(&server, vec![]).await.unwrap_err();
    // The link was the product of a billed drawing; it is not asked for again.
    assert!(
        matches!(&err, AiError::SubmitUncertain { cause, .. } if cause.contains("not an image")),
        "{err:?}"
    );
    assert_eq!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.method.as_str() == "POST")
            .count(),
        1
    );
}
