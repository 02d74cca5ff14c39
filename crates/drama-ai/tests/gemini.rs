#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use drama_ai::{
    AiError, AiProviders, AiSettings, ImageKind, ImageRequest, PROMPT_VERSION, Provider,
    ReferenceImage,
};
use drama_domain::{AssetKind, DramaId, EpisodeId};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PATH: &str = "/v1beta/models/gemini-3-pro-preview:generateContent";

fn ok(text: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(common::gemini_answer(text, "STOP"))
}

/// A finished answer carrying a valid drama of `episodes` episodes.
fn ok_drama(episodes: usize) -> ResponseTemplate {
    ok(&common::drama_json(episodes).to_string())
}

/// Gemini's error answer: HTTP `code` with its error body.
fn gemini_error(code: u16, message: &str, status: &str) -> ResponseTemplate {
    ResponseTemplate::new(code)
        .set_body_json(json!({"error": {"code": code, "message": message, "status": status}}))
}

/// The providers at `server` with Gemini drawing the images.
fn gemini_image_providers(server: &MockServer) -> AiProviders {
    common::providers(&AiSettings {
        image_provider: drama_ai::ImageProviderChoice::Gemini,
        ..common::settings(server)
    })
}

#[tokio::test]
async fn generates_a_drama_with_a_json_schema_and_the_premise_images() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("x-goog-api-key", "gem-key"))
        .respond_with(ok_drama(3))
        .expect(1)
        .mount(&server)
        .await;
    let model = common::script_model_at(&server, None);
    let mut req = common::request("A corgi runs a rocket company.");
    req.references
        .push(ReferenceImage::new(common::png("ref"), "image/png"));
    let drama = model.generate_drama(&req).await.unwrap();

    assert_eq!(drama.output.id.as_str(), "d1");
    assert_eq!(drama.output.premise, "A corgi runs a rocket company.");
    assert_eq!(drama.output.characters.len(), 2);
    assert_eq!(drama.output.episodes.len(), 3);
    assert!(drama.output.episodes.iter().all(|e| e.scenes.is_empty()));
    assert_eq!(drama.model.provider, Provider::Gemini);
    assert_eq!(drama.model.model, "gemini-3-pro-preview");
    assert_eq!(drama.prompt_version, PROMPT_VERSION);
    assert_eq!(drama.usage.input_tokens, 120);
    assert_eq!(
        drama.usage.output_tokens, 100,
        "thinking tokens are billed output"
    );
    assert_eq!(drama.usage.requests, 1);

    let body = &common::bodies(&server).await[0];
    let config = &body["generationConfig"];
    assert_eq!(config["responseMimeType"], "application/json");
    assert_eq!(config["responseJsonSchema"]["additionalProperties"], false);
    let mut required: Vec<&str> = config["responseJsonSchema"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    required.sort_unstable();
    assert_eq!(required, ["characters", "description", "episodes", "title"]);
    assert!(
        config.get("responseSchema").is_none(),
        "one schema field only"
    );
    assert_eq!(config["thinkingConfig"]["thinkingLevel"], "low");
    assert_eq!(config["maxOutputTokens"], 32000);
    let system = body["systemInstruction"]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(system.contains("2-3 episodes"), "{system}");
    let parts = body["contents"][0]["parts"].as_array().unwrap();
    assert_eq!(body["contents"][0]["role"], "user");
    assert!(
        parts[0]["text"]
            .as_str()
            .unwrap()
            .contains("A corgi runs a rocket company.")
    );
    assert_eq!(parts[1]["inlineData"]["mimeType"], "image/png");
    assert!(!parts[1]["inlineData"]["data"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn rate_limit_is_retried_after_the_advertised_pause() {
    let server = MockServer::start().await;
    let answer = gemini_error(429, "Resource exhausted", "RESOURCE_EXHAUSTED")
        .insert_header("retry-after", "1");
    common::reply(&server, PATH, answer, Some(1)).await;
    common::reply(&server, PATH, ok_drama(2), None).await;
    let drama = common::generate_drama(&server, None, "A heist.")
        .await
        .unwrap();
    assert_eq!(drama.usage.requests, 2);
    assert_eq!(common::request_count(&server).await, 2);
}

#[tokio::test]
async fn rate_limit_without_retries_reports_retry_after() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        ResponseTemplate::new(429).insert_header("retry-after", "7"),
        None,
    )
    .await;
    let settings = common::settings_without_retries(&server);
    let err = common::generate_drama_with(&settings, None, "A heist.")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AiError::RateLimited {
            provider: Provider::Gemini,
            retry_after: Some(Duration::from_secs(7))
        }
    );
    assert!(err.is_retryable());
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
}

#[tokio::test]
async fn server_error_then_success() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        gemini_error(500, "internal", "INTERNAL"),
        Some(1),
    )
    .await;
    common::reply(&server, PATH, ok_drama(2), None).await;
    let drama = common::generate_drama(&server, None, "x").await.unwrap();
    assert_eq!(drama.output.episodes.len(), 2);
    assert_eq!(common::request_count(&server).await, 2);
}

#[tokio::test]
async fn persistent_server_errors_give_up_after_the_retries() {
    let server = MockServer::start().await;
    let err = common::drama_error_when_every_answer_is(
        &server,
        PATH,
        None,
        gemini_error(503, "overloaded", "UNAVAILABLE"),
    )
    .await;
    assert!(
        matches!(err, AiError::Server { status: 503, ref message, .. } if message.contains("overloaded")),
        "{err:?}"
    );
    assert_eq!(
        common::request_count(&server).await,
        3,
        "1 attempt + MAX_RETRIES=2"
    );
}

/// A script call is paid whether or not its answer arrives: one that went out and got no
/// answer in time is not sent again, even with retries allowed.
#[tokio::test]
async fn a_slow_answer_is_not_sent_again() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        ok_drama(2).set_delay(Duration::from_secs(3)),
        None,
    )
    .await;
    let mut settings = common::settings(&server);
    settings.text_timeout_secs = 1;
    let err = common::generate_drama_with(&settings, None, "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AiError::SubmitUncertain { provider: Provider::Gemini, cause } if cause.contains("no answer within 1s")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(common::request_count(&server).await, 1);
}

#[tokio::test]
async fn an_invalid_key_is_permanent_and_not_retried() {
    let server = MockServer::start().await;
    let answer = gemini_error(
        403,
        "API key not valid. Please pass a valid API key.",
        "PERMISSION_DENIED",
    );
    let err = common::drama_error_when_every_answer_is(&server, PATH, None, answer).await;
    assert!(
        matches!(err, AiError::Unauthorized { status: 403, .. }),
        "{err:?}"
    );
    common::assert_permanent_and_not_retried(&server, &err).await;
}

#[tokio::test]
async fn truncated_answers_are_never_half_parsed() {
    let server = MockServer::start().await;
    let full = common::drama_json(2).to_string();
    let cut = &full[..full.len() / 2];
    let err = common::drama_error_when_every_answer_is(
        &server,
        PATH,
        None,
        ResponseTemplate::new(200).set_body_json(common::gemini_answer(cut, "MAX_TOKENS")),
    )
    .await;
    assert_eq!(
        err,
        AiError::Truncated {
            provider: Provider::Gemini,
            reason: "MAX_TOKENS".into()
        }
    );
    assert!(!err.is_retryable());
    let bodies = common::bodies(&server).await;
    assert_eq!(bodies.len(), 2, "one repair attempt");
    let repair = bodies[1]["contents"].as_array().unwrap().last().unwrap();
    assert_eq!(repair["role"], "user");
    assert!(
        repair["parts"][0]["text"]
            .as_str()
            .unwrap()
            .contains("cut off")
    );
}

#[tokio::test]
async fn unbalanced_json_without_a_finish_reason_is_repaired() {
    let server = MockServer::start().await;
    let full = common::drama_json(2).to_string();
    common::reply(
        &server,
        PATH,
        ResponseTemplate::new(200)
            .set_body_json(common::gemini_answer(&full[..full.len() - 40], "STOP")),
        Some(1),
    )
    .await;
    common::reply(&server, PATH, ok(&full), None).await;
    let drama = common::generate_drama(&server, None, "x").await.unwrap();
    assert_eq!(drama.output.title, "The Corgi CEO");
    assert_eq!(drama.usage.requests, 2);
    assert_eq!(drama.usage.input_tokens, 240, "usage sums both calls");
}

#[tokio::test]
async fn schema_violations_get_one_repair_that_names_them_then_fail() {
    let server = MockServer::start().await;
    let mut no_characters = common::drama_json(2);
    no_characters["characters"] = json!([]);
    let mut duplicates = common::drama_json(2);
    duplicates["characters"] = json!([
        common::character("char-mara", "Mara", true),
        common::character("char-mara", "Mara Two", false)
    ]);
    common::reply(&server, PATH, ok(&no_characters.to_string()), Some(1)).await;
    let err =
        common::drama_error_when_every_answer_is(&server, PATH, None, ok(&duplicates.to_string()))
            .await;
    let AiError::SchemaViolation { provider, problems } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*provider, Provider::Gemini);
    common::assert_some_problem_says(problems, "duplicate character id \"char-mara\"");
    assert!(!err.is_retryable());

    let bodies = common::bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    let turns = bodies[1]["contents"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    assert_eq!(turns[1]["role"], "model");
    assert_eq!(turns[1]["parts"][0]["text"], no_characters.to_string());
    let repair = turns[2]["parts"][0]["text"].as_str().unwrap();
    assert!(repair.contains("characters is empty"), "{repair}");
}

#[tokio::test]
async fn the_episode_count_of_the_premise_is_enforced() {
    let server = MockServer::start().await;
    common::reply(&server, PATH, ok_drama(3), Some(1)).await;
    common::reply(&server, PATH, ok_drama(5), None).await;
    let drama = common::generate_drama(&server, None, "A space opera in 5 episodes.")
        .await
        .unwrap();
    assert_eq!(drama.output.episodes.len(), 5);
    let bodies = common::bodies(&server).await;
    assert!(
        bodies[0]["systemInstruction"]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .contains("exactly 5 episodes")
    );
    let repair = bodies[1]["contents"][2]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        repair.contains("3 episodes were written; the premise asks for exactly 5 episodes"),
        "{repair}"
    );
}

#[tokio::test]
async fn a_blocked_prompt_is_a_permanent_refusal() {
    let server = MockServer::start().await;
    let answer = ResponseTemplate::new(200).set_body_json(
        json!({ "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"}, "usageMetadata": {"promptTokenCount": 12, "totalTokenCount": 12} }),
    );
    let err = common::drama_error_when_every_answer_is(&server, PATH, None, answer).await;
    assert!(
        matches!(&err, AiError::Refused { provider: Provider::Gemini, reason } if reason.contains("PROHIBITED_CONTENT")),
        "{err:?}"
    );
    common::assert_permanent_and_not_retried(&server, &err).await;
}

#[tokio::test]
async fn writes_episode_scenes_with_one_storyboard_and_one_clip_each() {
    let server = MockServer::start().await;
    common::reply(&server, PATH, ok_drama(2), Some(1)).await;
    let model = common::script_model_at(&server, Some("gemini-3-pro-preview"));
    let mut drama = common::drama_written_by(model.as_ref(), "x").await;
    let mut bad = common::scenes_json("ep2");
    bad["scenes"][0]["storyboard"]["character_ids"] = json!(["char-nobody"]);
    bad["scenes"][1]["clip"]["duration"] = json!(12);
    common::reply(&server, PATH, ok(&bad.to_string()), Some(1)).await;
    common::reply(
        &server,
        PATH,
        ok(&common::scenes_json("ep2").to_string()),
        None,
    )
    .await;

    drama.episodes[0].scenes = drama_domain::Drama::from_value(json!({
        "id": "x", "title": "t", "description": "d", "premise": "p",
        "episodes": [{"id": "ep1", "title": "t", "description": "d", "scenes": [{"id": "ep1-s1", "description": "Earlier scene in the rain"}]}]
    })).unwrap().episodes[0].scenes.clone();
    let scenes = model
        .write_episode_scenes(&drama, &EpisodeId::parse("ep2").unwrap())
        .await
        .unwrap();
    assert_eq!(scenes.output.len(), 3);
    for s in &scenes.output {
        assert_eq!(s.assets.len(), 2);
        assert_eq!(s.assets[0].kind, AssetKind::Image);
        assert_eq!(s.assets[0].depends_on, ["char-mara", "char-leo"]);
        assert_eq!(s.assets[1].kind, AssetKind::Video);
        assert_eq!(s.assets[1].depends_on, [s.assets[0].id.as_str()]);
        assert!(matches!(s.assets[1].duration, Some(10 | 15)));
    }
    let bodies = common::bodies(&server).await;
    let scene_call = &bodies[1];
    assert_eq!(
        scene_call["generationConfig"]["responseJsonSchema"]["required"],
        json!(["scenes"])
    );
    let user = scene_call["contents"][0]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        user.contains("Earlier episodes") && user.contains("Earlier scene in the rain"),
        "{user}"
    );
    assert!(user.contains("id char-mara"), "{user}");
    let repair = bodies[2]["contents"][2]["parts"][0]["text"]
        .as_str()
        .unwrap();
    assert!(
        repair.contains("\"char-nobody\", which is not a character id"),
        "{repair}"
    );
    assert!(repair.contains("duration is 12"), "{repair}");
}

#[tokio::test]
async fn critique_is_plain_text_without_a_schema() {
    let server = MockServer::start().await;
    common::reply(&server, PATH, ok_drama(2), Some(1)).await;
    common::reply(&server, PATH, ok("Strong hook; weak middle."), None).await;
    let model = common::script_model_at(&server, None);
    let drama = common::drama_written_by(model.as_ref(), "x").await;
    let critique = model.critique_drama(&drama).await.unwrap();
    assert_eq!(critique.output, "Strong hook; weak middle.");
    let body = &common::bodies(&server).await[1];
    assert!(body["generationConfig"].get("responseJsonSchema").is_none());
    assert!(
        body["contents"][0]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .contains("low, measured, dry")
    );
}

#[tokio::test]
async fn improves_into_a_new_id_keeping_the_premise() {
    let server = MockServer::start().await;
    common::reply(&server, PATH, ok_drama(2), None).await;
    let model = common::script_model_at(&server, None);
    let drama = common::drama_written_by(model.as_ref(), "Original premise").await;
    let improved = model
        .improve_drama(
            &drama,
            "More tension in the middle.",
            &DramaId::parse("d1_improved_1").unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(improved.output.id.as_str(), "d1_improved_1");
    assert_eq!(improved.output.premise, "Original premise");
    let body = &common::bodies(&server).await[1];
    let user = body["contents"][0]["parts"][0]["text"].as_str().unwrap();
    assert!(
        user.contains("- char-mara: Mara (Main, female)")
            && user.contains("More tension in the middle."),
        "{user}"
    );
}

#[tokio::test]
async fn gemini_image_returns_inline_data_and_sends_references() {
    let server = MockServer::start().await;
    let png = common::png("answer");
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
    Mock::given(method("POST"))
        .and(path("/v1beta/models/gemini-2.5-flash-image:generateContent"))
        .and(header("x-goog-api-key", "gem-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"parts": [{"text": "Here it is"}, {"inlineData": {"mimeType": "image/png", "data": encoded}}]}, "finishReason": "STOP"}],
            "usageMetadata": {"promptTokenCount": 300, "candidatesTokenCount": 1290}
        })))
        .mount(&server)
        .await;
    let providers = gemini_image_providers(&server);
    let image_model = providers.image_model();
    assert_eq!(image_model.model().provider, Provider::Gemini);
    let refs = vec![
        ReferenceImage::new(common::png("a"), "image/png"),
        ReferenceImage::new(common::png("b"), "image/png"),
    ];
    let image = image_model
        .generate_image(&ImageRequest {
            kind: ImageKind::Storyboard,
            prompt: "Two friends at dawn.".into(),
            label: "ep1-s1".into(),
            references: refs.clone(),
        })
        .await
        .unwrap();
    assert_eq!(image.output.bytes.as_ref(), png.as_slice());
    assert_eq!(image.output.mime_type, "image/png");
    assert_eq!(image.usage.images, 1);
    let body = &common::bodies(&server).await[0];
    assert_eq!(
        body["generationConfig"]["responseModalities"],
        json!(["TEXT", "IMAGE"])
    );
    assert_eq!(
        body["generationConfig"]["imageConfig"]["aspectRatio"],
        "9:16"
    );
    let parts = body["contents"][0]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 3);
    let text = parts[0]["text"].as_str().unwrap();
    assert_eq!(text.matches("9:16").count(), 1, "{text}");
    assert!(text.contains("Two friends at dawn."));
    assert_eq!(
        parts[1]["inlineData"]["data"],
        base64::engine::general_purpose::STANDARD.encode(&refs[0].bytes)
    );
    assert_eq!(
        parts[2]["inlineData"]["data"],
        base64::engine::general_purpose::STANDARD.encode(&refs[1].bytes)
    );
}

#[tokio::test]
async fn gemini_image_safety_is_a_refusal_and_text_only_is_no_image() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(
            "/v1beta/models/gemini-2.5-flash-image:generateContent",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "candidates": [{"content": {"parts": []}, "finishReason": "IMAGE_SAFETY"}]
        })))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let answer = ResponseTemplate::new(200).set_body_json(
        json!({ "candidates": [{"content": {"parts": [{"text": "I can describe it instead."}]}, "finishReason": "STOP"}] }),
    );
    common::reply(
        &server,
        "/v1beta/models/gemini-2.5-flash-image:generateContent",
        answer,
        None,
    )
    .await;
    let providers = gemini_image_providers(&server);
    let req = ImageRequest {
        kind: ImageKind::Portrait,
        prompt: "Mara".into(),
        label: "Mara".into(),
        references: vec![],
    };
    let image_model = providers.image_model();
    let err = image_model.generate_image(&req).await.unwrap_err();
    assert!(
        matches!(&err, AiError::Refused { reason, .. } if reason.contains("IMAGE_SAFETY")),
        "{err:?}"
    );
    let err = image_model.generate_image(&req).await.unwrap_err();
    assert!(
        matches!(&err, AiError::NoImage { detail, .. } if detail.contains("describe it instead")),
        "{err:?}"
    );
    assert_eq!(
        common::request_count(&server).await,
        1 + 3,
        "no-image answers are retried"
    );
}
