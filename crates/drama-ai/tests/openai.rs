#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use drama_ai::{AiError, AiSettings, Provider, ReferenceImage};
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const PATH: &str = "/v1/chat/completions";

fn ok(content: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(common::openai_answer(Some(content), None, "stop"))
}

/// A finished answer carrying a valid drama of two episodes.
fn ok_drama() -> ResponseTemplate {
    ok(&common::drama_json(2).to_string())
}

#[tokio::test]
async fn gpt_5_1_sends_gpt_model_with_a_strict_json_schema() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(PATH))
        .and(header("authorization", "Bearer oa-key"))
        .respond_with(ok_drama())
        .expect(1)
        .mount(&server)
        .await;
    let mut settings = common::settings(&server);
    settings.gpt_model = "gpt-5.1-2025-11-13".into();
    let providers = common::providers(&settings);
    let mut req = common::request("A corgi runs a rocket company.");
    req.references
        .push(ReferenceImage::new(common::png("ref"), "image/png"));
    let drama = providers
        .script_model(Some("gpt-5.1"))
        .unwrap()
        .generate_drama(&req)
        .await
        .unwrap();
    assert_eq!(drama.model.provider, Provider::OpenAi);
    assert_eq!(drama.model.model, "gpt-5.1-2025-11-13");
    assert_eq!(drama.usage.input_tokens, 100);
    assert_eq!(drama.usage.output_tokens, 50);
    assert_eq!(drama.output.characters.len(), 2);

    let body = &common::bodies(&server).await[0];
    assert_eq!(body["model"], "gpt-5.1-2025-11-13");
    assert_eq!(body["max_completion_tokens"], 32000);
    let format = &body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(format["json_schema"]["name"], "drama_script");
    assert_eq!(format["json_schema"]["strict"], true);
    let character = &format["json_schema"]["schema"]["properties"]["characters"]["items"];
    assert_eq!(character["additionalProperties"], false);
    assert_eq!(
        character["required"].as_array().unwrap().len(),
        character["properties"].as_object().unwrap().len(),
        "strict: every property required"
    );
    assert_eq!(
        character["properties"]["premise_url"]["type"],
        json!(["string", "null"])
    );
    assert_eq!(body["messages"][0]["role"], "system");
    let user = &body["messages"][1];
    assert_eq!(user["role"], "user");
    assert!(
        user["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("A corgi runs a rocket company.")
    );
    assert!(
        user["content"][1]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,iVBOR")
    );
}

#[tokio::test]
async fn a_listed_model_is_sent_as_its_upstream_name() {
    let server = MockServer::start().await;
    common::reply(&server, PATH, ok_drama(), None).await;
    let settings = AiSettings {
        script_models: "mini=openai:gpt-4o-mini".into(),
        ..common::settings(&server)
    };
    let providers = common::providers(&settings);
    let drama = providers
        .script_model(Some("mini"))
        .unwrap()
        .generate_drama(&common::request("x"))
        .await
        .unwrap();
    assert_eq!(drama.model.model, "gpt-4o-mini");
    let body = &common::bodies(&server).await[0];
    assert_eq!(body["model"], "gpt-4o-mini");
    assert!(
        body["messages"][1]["content"].is_string(),
        "no images: plain string content"
    );
    // A name the list does not hold never reaches the provider.
    assert!(matches!(
        providers.script_model(Some("gpt-4o")),
        Err(AiError::UnknownModel { .. })
    ));
    assert_eq!(common::bodies(&server).await.len(), 1);
}

#[tokio::test]
async fn finish_reason_length_is_truncation() {
    let server = MockServer::start().await;
    let full = common::drama_json(2).to_string();
    let err = common::drama_error_when_every_answer_is(
        &server,
        PATH,
        Some("gpt-5.1"),
        ResponseTemplate::new(200).set_body_json(common::openai_answer(
            Some(&full[..30]),
            None,
            "length",
        )),
    )
    .await;
    assert_eq!(
        err,
        AiError::Truncated {
            provider: Provider::OpenAi,
            reason: "length".into()
        }
    );
    let bodies = common::bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    let last = bodies[1]["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "user");
    assert!(last["content"].as_str().unwrap().contains("cut off"));
}

#[tokio::test]
async fn a_refusal_is_permanent() {
    let server = MockServer::start().await;
    let err = common::drama_error_when_every_answer_is(
        &server,
        PATH,
        Some("gpt-5.1"),
        ResponseTemplate::new(200).set_body_json(common::openai_answer(
            None,
            Some("I can't help with that request."),
            "stop",
        )),
    )
    .await;
    assert_eq!(
        err,
        AiError::Refused {
            provider: Provider::OpenAi,
            reason: "I can't help with that request.".into()
        }
    );
    common::assert_permanent_and_not_retried(&server, &err).await;
}

#[tokio::test]
async fn a_moderation_400_is_a_refusal() {
    let server = MockServer::start().await;
    let answer = ResponseTemplate::new(400).set_body_json(
        json!({"error": {"message": "Your request was rejected as a result of our safety system.", "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}}),
    );
    let err =
        common::drama_error_when_every_answer_is(&server, PATH, Some("gpt-5.1"), answer).await;
    assert!(
        matches!(&err, AiError::Refused { reason, .. } if reason.contains("content_policy_violation")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_plain_400_is_a_bad_request() {
    let server = MockServer::start().await;
    let answer = ResponseTemplate::new(400).set_body_json(
        json!({"error": {"message": "Unsupported parameter: 'max_tokens'", "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}}),
    );
    let err =
        common::drama_error_when_every_answer_is(&server, PATH, Some("gpt-5.1"), answer).await;
    assert!(
        matches!(&err, AiError::BadRequest { status: 400, message, .. } if message.contains("unsupported_parameter")),
        "{err:?}"
    );
    common::assert_permanent_and_not_retried(&server, &err).await;
}

#[tokio::test]
async fn rate_limit_then_server_error_then_success() {
    let server = MockServer::start().await;
    let answer = ResponseTemplate::new(429).insert_header("retry-after", "0.05").set_body_json(
        json!({"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}),
    );
    common::reply(&server, PATH, answer, Some(1)).await;
    // OpenAI's own answer to a failure on its side, which it does not bill.
    common::reply(
        &server,
        PATH,
        ResponseTemplate::new(500).set_body_json(json!({"error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error", "param": null, "code": null}})),
        Some(1),
    )
    .await;
    common::reply(&server, PATH, ok_drama(), None).await;
    let drama = common::generate_drama(&server, Some("gpt-5.1"), "x")
        .await
        .unwrap();
    assert_eq!(drama.usage.requests, 3);
    assert_eq!(common::request_count(&server).await, 3);
}

#[tokio::test]
async fn a_retry_after_longer_than_the_cap_is_returned_at_once() {
    let server = MockServer::start().await;
    let err = common::drama_error_when_every_answer_is(
        &server,
        PATH,
        Some("gpt-5.1"),
        ResponseTemplate::new(429).insert_header("retry-after", "3600"),
    )
    .await;
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3600)));
    assert_eq!(
        common::request_count(&server).await,
        1,
        "the scheduler waits, not the worker"
    );
}

/// A try that went out and got no answer in time may have been billed: it is not sent again.
#[tokio::test]
async fn a_slow_answer_is_not_sent_again() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        PATH,
        ok("{}").set_delay(Duration::from_secs(3)),
        None,
    )
    .await;
    let mut settings = common::settings(&server);
    settings.text_timeout_secs = 1;
    settings.max_retries = 1;
    let err = common::generate_drama_with(&settings, Some("gpt-5.1"), "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AiError::SubmitUncertain { provider: Provider::OpenAi, cause } if cause.contains("no answer within 1s")),
        "{err:?}"
    );
    assert_eq!(common::request_count(&server).await, 1);
}

/// A 5xx that is not the provider's own error answer (a gateway's page, a 502 or 504 in any
/// format) may follow a request the provider took: it is not sent again. One in the
/// provider's format from any other 5xx is the provider saying that it failed, and is.
#[tokio::test]
async fn a_gateways_error_is_not_sent_again_and_the_providers_own_is() {
    for (answer, sent) in [
        (ResponseTemplate::new(502).set_body_string("<html>Bad gateway</html>"), 1),
        (
            ResponseTemplate::new(504).set_body_json(
                json!({"error": {"message": "Gateway timeout.", "type": "cf_gateway_timeout"}}),
            ),
            1,
        ),
        (ResponseTemplate::new(500).set_body_string("upstream error"), 1),
        (
            ResponseTemplate::new(503).set_body_json(
                json!({"error": {"message": "The engine is currently overloaded", "type": "server_error"}}),
            ),
            3,
        ),
    ] {
        let server = MockServer::start().await;
        common::reply(&server, PATH, answer, None).await;
        let err = common::generate_drama(&server, Some("gpt-5.1"), "x")
            .await
            .unwrap_err();
        assert_eq!(common::request_count(&server).await, sent, "{err:?}");
        if sent == 1 {
            assert!(matches!(err, AiError::SubmitUncertain { .. }), "{err:?}");
        } else {
            assert!(matches!(err, AiError::Server { status: 503, .. }), "{err:?}");
        }
    }
}

#[tokio::test]
async fn duplicate_ids_after_the_repair_fail_with_the_problem() {
    let server = MockServer::start().await;
    let mut duplicates = common::drama_json(2);
    duplicates["episodes"] = json!([common::episode("ep1"), common::episode("ep1")]);
    let err = common::drama_error_when_every_answer_is(
        &server,
        PATH,
        Some("gpt-5.1"),
        ok(&duplicates.to_string()),
    )
    .await;
    let AiError::SchemaViolation { problems, .. } = &err else {
        panic!("{err:?}")
    };
    common::assert_some_problem_says(problems, "episodes[1].id: duplicate episode id \"ep1\"");
    let bodies = common::bodies(&server).await;
    assert_eq!(bodies.len(), 2);
    let messages = bodies[1]["messages"].as_array().unwrap();
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["content"], duplicates.to_string());
    assert!(
        messages[3]["content"]
            .as_str()
            .unwrap()
            .contains("duplicate episode id")
    );
}

#[tokio::test]
async fn three_main_characters_and_bad_ids_are_violations() {
    let server = MockServer::start().await;
    let mut bad = common::drama_json(2);
    bad["characters"] = json!([
        common::character("char-a", "A", true),
        common::character("char-b", "B", true),
        common::character("char c", "C", true)
    ]);
    let err = common::drama_error_when_every_answer_is(
        &server,
        PATH,
        Some("gpt-5.1"),
        ok(&bad.to_string()),
    )
    .await;
    let AiError::SchemaViolation { problems, .. } = &err else {
        panic!("{err:?}")
    };
    common::assert_some_problem_says(problems, "3 characters have main=true");
    common::assert_some_problem_says(problems, "characters[2].id \"char c\" is not a valid id");
}
