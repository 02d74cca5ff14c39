#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use drama_ai::{
    AiError, Generated, GeneratedVideo, Provider, ReferenceImage, VideoDuration, VideoRequest,
    VideoStatus, generate_video, wait_for_video,
};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SUBMIT: &str = "/v2/videos/generations";

fn clip(reference: Option<ReferenceImage>, duration: VideoDuration) -> VideoRequest {
    VideoRequest {
        prompt: "Slow push-in as Mara turns.".into(),
        label: "ep1-s1".into(),
        reference,
        duration,
    }
}

async fn submit_ok(server: &MockServer, task: &str) {
    Mock::given(method("POST"))
        .and(path(SUBMIT))
        .and(header("authorization", "Bearer sora-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"task_id": task})))
        .mount(server)
        .await;
}

/// Answers polls of `task` with `body`: the first `times` of them, or all.
async fn task_status(server: &MockServer, task: &str, body: Value, times: Option<u64>) {
    let mock = Mock::given(method("GET"))
        .and(path(format!("{SUBMIT}/{task}")))
        .respond_with(ResponseTemplate::new(200).set_body_json(body));
    match times {
        Some(n) => mock.up_to_n_times(n),
        None => mock,
    }
    .mount(server)
    .await;
}

/// A ten-second clip without a reference, from the video model at `server`.
async fn plain_clip(server: &MockServer) -> Result<Generated<GeneratedVideo>, AiError> {
    let model = common::providers_at(server).video_model();
    generate_video(model.as_ref(), &clip(None, VideoDuration::Ten)).await
}

/// A real MP4 (offline clip) to download.
fn mp4() -> Vec<u8> {
    drama_ai::OfflineProvider::new(3)
        .render_video(&clip(None, VideoDuration::Ten))
        .bytes
        .to_vec()
}

#[tokio::test]
async fn submits_polls_through_the_status_words_and_downloads() {
    let server = MockServer::start().await;
    submit_ok(&server, "task_abc").await;
    let (task, output) = ("task_abc", format!("{}/files/v.mp4", server.uri()));
    let poll = format!("{SUBMIT}/{task}");
    let not_started = json!({"task_id": task, "status": "NOT_START", "progress": "0%"});
    task_status(&server, task, not_started, Some(1)).await;
    let running = json!({"task_id": task, "status": "IN_PROGRESS", "progress": "40%"});
    task_status(&server, task, running, Some(1)).await;
    let data = json!({"output": output});
    let done = json!({"task_id": task, "status": "SUCCESS", "progress": "100%", "data": data});
    task_status(&server, task, done, None).await;
    let video_bytes = mp4();
    Mock::given(method("GET"))
        .and(path("/files/v.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(video_bytes.clone()))
        .mount(&server)
        .await;

    let providers = common::providers_at(&server);
    let model = providers.video_model();
    assert_eq!(model.model().provider, Provider::Sora);
    let reference = ReferenceImage::new(common::png("board"), "image/png");
    let video = generate_video(
        model.as_ref(),
        &clip(Some(reference.clone()), VideoDuration::Fifteen),
    )
    .await
    .unwrap();
    assert_eq!(video.output.bytes.as_ref(), video_bytes.as_slice());
    assert_eq!(video.output.mime_type, "video/mp4");
    assert_eq!(video.usage.video_seconds, 15);
    assert_eq!(video.model.model, "sora-2");

    let requests = server.received_requests().await.unwrap();
    let body: Value = requests[0].body_json().unwrap();
    assert_eq!(body["model"], "sora-2");
    assert_eq!(body["aspect_ratio"], "9:16");
    assert_eq!(
        body["duration"], "15",
        "the API takes the duration as a string"
    );
    assert_eq!(body["hd"], false);
    assert_eq!(body["images"], json!([reference.data_url()]));
    let prompt = body["prompt"].as_str().unwrap();
    assert_eq!(prompt.matches("9:16").count(), 1);
    assert!(
        prompt.contains("Animate the attached frame")
            && prompt.contains("Slow push-in as Mara turns.")
    );
    let polls: Vec<_> = requests
        .iter()
        .filter(|r| r.method == wiremock::http::Method::GET && r.url.path() == poll)
        .collect();
    assert_eq!(polls.len(), 3);
    assert!(
        polls
            .iter()
            .all(|r| r.headers.get("authorization").unwrap() == "Bearer sora-key")
    );
}

#[tokio::test]
async fn a_reference_url_is_preferred_to_inline_bytes() {
    let server = MockServer::start().await;
    submit_ok(&server, "t1").await;
    let providers = common::providers_at(&server);
    let reference = ReferenceImage::new(common::png("board"), "image/png")
        .with_url("https://bucket.example/board.png?sig=1");
    let task = providers
        .video_model()
        .submit(&clip(Some(reference), VideoDuration::Ten))
        .await
        .unwrap();
    assert_eq!(task.output.task_id, "t1");
    let body = &common::bodies(&server).await[0];
    assert_eq!(
        body["images"],
        json!(["https://bucket.example/board.png?sig=1"])
    );
    assert_eq!(body["duration"], "10");
}

#[tokio::test]
async fn no_reference_sends_no_images_field() {
    let server = MockServer::start().await;
    submit_ok(&server, "t2").await;
    let providers = common::providers_at(&server);
    providers
        .video_model()
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap();
    let body = &common::bodies(&server).await[0];
    assert!(body.get("images").is_none());
    assert!(!body["prompt"].as_str().unwrap().contains("attached"));
}

#[tokio::test]
async fn a_failed_task_reports_its_reason() {
    let server = MockServer::start().await;
    submit_ok(&server, "t3").await;
    task_status(&server, "t3", json!({"task_id": "t3", "status": "FAILURE", "fail_reason": "upstream render node crashed"}), None).await;
    let err = plain_clip(&server).await.unwrap_err();
    assert_eq!(
        err,
        AiError::VideoFailed {
            provider: Provider::Sora,
            task_id: "t3".into(),
            reason: "upstream render node crashed".into()
        }
    );
    assert!(err.is_retryable());
}

#[tokio::test]
async fn a_task_failed_by_moderation_is_a_refusal() {
    let server = MockServer::start().await;
    submit_ok(&server, "t4").await;
    task_status(&server, "t4", json!({"task_id": "t4", "status": "FAILED", "fail_reason": "This content may violate our content policies."}), None).await;
    let err = plain_clip(&server).await.unwrap_err();
    assert!(
        matches!(&err, AiError::Refused { provider: Provider::Sora, reason } if reason.contains("content policies")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_task_pending_past_the_deadline_keeps_its_id() {
    let server = MockServer::start().await;
    submit_ok(&server, "t5").await;
    task_status(
        &server,
        "t5",
        json!({"task_id": "t5", "status": "QUEUED"}),
        None,
    )
    .await;
    let providers = common::providers_at(&server);
    let model = providers.video_model();
    let task = model.submit(&clip(None, VideoDuration::Ten)).await.unwrap();
    let polling = drama_ai::VideoPolling {
        interval: Duration::from_millis(20),
        deadline: Duration::from_millis(150),
    };
    let err = wait_for_video(model.as_ref(), &task.output, polling)
        .await
        .unwrap_err();
    let AiError::VideoDeadline {
        task_id,
        last_status,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(task_id, "t5");
    assert_eq!(last_status, "pending");
    assert!(err.is_retryable());
    let polls = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method == wiremock::http::Method::GET)
        .count();
    assert!(polls >= 2, "polled {polls} times");
}

#[tokio::test]
async fn submit_rate_limit_timeout_and_missing_task_id() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(429)
            .insert_header("retry-after", "9")
            .set_body_json(json!({"error": {"message": "too many tasks"}})),
        Some(1),
    )
    .await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(200)
            .set_body_json(json!({"task_id": "slow"}))
            .set_delay(Duration::from_secs(3)),
        Some(1),
    )
    .await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(200).set_body_json(json!({"status": "ok"})),
        None,
    )
    .await;
    let mut settings = common::settings_without_retries(&server);
    settings.video_request_timeout_secs = 1;
    let providers = common::providers(&settings);
    let model = providers.video_model();
    let err = model
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        AiError::RateLimited {
            provider: Provider::Sora,
            retry_after: Some(Duration::from_secs(9))
        }
    );
    // The two answers below follow requests the provider may have taken (and billed).
    let err = model
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AiError::SubmitUncertain { provider: Provider::Sora, cause } if cause.contains("no answer within 1s")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let err = model
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AiError::SubmitUncertain { cause, .. } if cause.contains("no task_id")),
        "{err:?}"
    );
}

/// A submission is a paid render whose answer is its only handle: one that timed out after it
/// was sent, or met a 5xx, is not sent again (the provider may be rendering, and billing, it);
/// a 429 or a connection that was never made is.
#[tokio::test]
async fn a_submission_that_may_have_been_accepted_is_not_sent_again() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(200)
            .set_body_json(json!({"task_id": "late"}))
            .set_delay(Duration::from_millis(1500)),
        None,
    )
    .await;
    let mut settings = common::settings(&server);
    settings.video_request_timeout_secs = 1;
    let model = common::providers(&settings).video_model();
    let err = model
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap_err();
    assert!(matches!(&err, AiError::SubmitUncertain { .. }), "{err:?}");
    assert_eq!(common::request_count(&server).await, 1, "one paid render");

    let server = MockServer::start().await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(502).set_body_string("bad gateway"),
        None,
    )
    .await;
    let err = common::providers_at(&server)
        .video_model()
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AiError::SubmitUncertain { cause, .. } if cause.contains("502")),
        "{err:?}"
    );
    assert_eq!(
        common::request_count(&server).await,
        1,
        "a 5xx is not retried"
    );

    // Refused before it was taken: retried.
    let server = MockServer::start().await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(429).set_body_json(json!({"error": {"message": "busy"}})),
        Some(1),
    )
    .await;
    submit_ok(&server, "t7").await;
    let task = common::providers_at(&server)
        .video_model()
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap();
    assert_eq!(task.output.task_id, "t7");
    assert_eq!(task.usage.requests, 2);

    // Nothing listens: the connection is never made, so the request is sent again.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    let mut settings = common::settings(&server);
    settings.sora_api_base = format!("http://{address}");
    let err = common::providers(&settings)
        .video_model()
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AiError::Network { .. }),
        "a connection refused is a plain network error: {err:?}"
    );
}

#[tokio::test]
async fn poll_retries_a_server_error_then_reads_running_progress() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{SUBMIT}/t6")))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let running = json!({"task_id": "t6", "status": "RUNNING", "progress": 55});
    task_status(&server, "t6", running, None).await;
    let providers = common::providers_at(&server);
    let state = providers.video_model().poll("t6").await.unwrap();
    assert_eq!(state, VideoStatus::Running { progress: Some(55) });
    assert_eq!(common::request_count(&server).await, 2);
    let err = providers.video_model().poll("../etc").await.unwrap_err();
    assert!(matches!(err, AiError::InvalidRequest(_)));
}

#[tokio::test]
async fn a_download_that_is_not_a_video_is_rejected() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/files/empty.mp4"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/page.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>expired link</html>"))
        .mount(&server)
        .await;
    let model = common::providers(&common::settings_without_retries(&server)).video_model();
    let download_error = async |file: &str| {
        let url = format!("{}/files/{file}", server.uri());
        model
            .download(&drama_ai::VideoOutput::Url(url))
            .await
            .unwrap_err()
    };
    let err = download_error("empty.mp4").await;
    assert!(
        matches!(&err, AiError::InvalidResponse { message, .. } if message.contains("empty")),
        "{err:?}"
    );
    let err = download_error("page.mp4").await;
    assert!(
        matches!(&err, AiError::InvalidResponse { message, .. } if message.contains("not a video")),
        "{err:?}"
    );
}

/// A 2xx answer that carries the provider's error envelope and no task id is the provider
/// turning the submission down: an ordinary error (retried when it is a passing one), not a
/// render that may be running.
#[tokio::test]
async fn a_success_carrying_the_providers_error_is_a_refusal_not_an_uncertain_submission() {
    // A passing failure: tried again, and the second submission is taken.
    let server = MockServer::start().await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(200).set_body_json(json!({"error": {
            "message": "upstream service overloaded, please try again later",
            "type": "server_error", "code": null}})),
        Some(1),
    )
    .await;
    submit_ok(&server, "t8").await;
    let task = common::providers_at(&server)
        .video_model()
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap();
    assert_eq!(task.output.task_id, "t8");
    assert_eq!(task.usage.requests, 2);

    // A refusal of the request itself: permanent, sent once, and not taken.
    let server = MockServer::start().await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(200).set_body_json(json!({"error": {
            "message": "duration must be one of 10, 15",
            "type": "invalid_request_error", "code": "invalid_duration"}})),
        None,
    )
    .await;
    let err = common::providers_at(&server)
        .video_model()
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AiError::BadRequest { provider: Provider::Sora, message, .. } if message.contains("duration must be")),
        "{err:?}"
    );
    common::assert_permanent_and_not_retried(&server, &err).await;

    // The status the envelope names decides; a moderation refusal is one.
    for (envelope, expected) in [
        (
            json!({"error": {"code": 429, "message": "too many tasks in flight"}}),
            "provider_rate_limited",
        ),
        (
            json!({"error": "the prompt violates our content policy"}),
            "moderation_refusal",
        ),
    ] {
        let server = MockServer::start().await;
        common::reply(
            &server,
            SUBMIT,
            ResponseTemplate::new(200).set_body_json(envelope.clone()),
            None,
        )
        .await;
        let err = common::providers(&common::settings_without_retries(&server))
            .video_model()
            .submit(&clip(None, VideoDuration::Ten))
            .await
            .unwrap_err();
        assert_eq!(err.code(), expected, "{envelope}: {err:?}");
    }
}

/// A success whose envelope is a gateway's (a 502, 504 or 408 it names, or a timeout in its
/// words) says that someone on the way stopped waiting for a provider that may have taken
/// the request: like those statuses themselves, it is not sent again.
#[tokio::test]
async fn a_success_carrying_a_gateways_timeout_is_not_sent_again() {
    for envelope in [
        json!({"error": {"code": 504, "message": "upstream request timed out"}}),
        json!({"error": {"status": "502", "message": "bad gateway"}}),
        json!({"error": {"code": 408, "message": "request timeout"}}),
        json!({"error": "upstream timed out waiting for the provider"}),
    ] {
        let server = MockServer::start().await;
        common::reply(
            &server,
            SUBMIT,
            ResponseTemplate::new(200).set_body_json(envelope.clone()),
            None,
        )
        .await;
        let err = common::providers_at(&server)
            .video_model()
            .submit(&clip(None, VideoDuration::Ten))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            "provider_submit_uncertain",
            "{envelope}: {err:?}"
        );
        assert_eq!(common::request_count(&server).await, 1, "{envelope}");
    }
}

/// A cancellation that arrives while a submission waits to be tried again (a 429's
/// `Retry-After`) stops it there: the retry is not sent, and the call ends with the refusal.
#[tokio::test]
async fn a_cancel_during_the_pause_before_a_retry_sends_no_retry() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(429)
            .insert_header("retry-after", "2")
            .set_body_json(json!({"error": {"message": "too many tasks"}})),
        Some(1),
    )
    .await;
    submit_ok(&server, "paid").await;
    let model = common::providers_at(&server).video_model();
    let token = tokio_util::sync::CancellationToken::new();
    let cancel = {
        let (token, server) = (token.clone(), &server);
        async move {
            while common::request_count(server).await == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            token.cancel();
        }
    };
    let started = std::time::Instant::now();
    let request = clip(None, VideoDuration::Ten);
    let call = drama_ai::cancellable(token, model.submit(&request));
    let (result, ()) = tokio::join!(call, cancel);
    let err = result.unwrap_err();
    assert!(matches!(&err, AiError::RateLimited { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "the pause was cut short: {:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(common::request_count(&server).await, 1, "no retry was sent");
}

/// A 2xx submission answer that carries the provider's error envelope next to an `id` (the
/// error's, or the request's) created no task: it is the error, not a task id.
#[tokio::test]
async fn an_error_envelope_with_an_id_is_not_a_task() {
    let server = MockServer::start().await;
    common::reply(
        &server,
        SUBMIT,
        ResponseTemplate::new(200).set_body_json(json!({
            "id": "req_7f3a",
            "error": {"message": "insufficient account balance", "type": "invalid_request_error"}})),
        None,
    )
    .await;
    let err = common::providers_at(&server)
        .video_model()
        .submit(&clip(None, VideoDuration::Ten))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AiError::BadRequest { message, .. } if message.contains("insufficient account balance")),
        "{err:?}"
    );
    common::assert_permanent_and_not_retried(&server, &err).await;
}

/// Status words of a task that ended without a video (cancelled, expired, rejected, timed out)
/// end the wait at once as a failed task, and a 200 poll answer that carries the provider's
/// error and no status is that error, not a task still pending until the deadline.
#[tokio::test]
async fn ended_tasks_and_error_envelopes_in_polls_do_not_wait_for_the_deadline() {
    let polling = drama_ai::VideoPolling {
        interval: Duration::from_millis(20),
        deadline: Duration::from_secs(30),
    };
    for word in ["CANCELLED", "canceled", "EXPIRED", "REJECTED", "TIMEOUT"] {
        let server = MockServer::start().await;
        submit_ok(&server, "t9").await;
        task_status(
            &server,
            "t9",
            json!({"task_id": "t9", "status": word, "progress": "0%"}),
            None,
        )
        .await;
        let model = common::providers_at(&server).video_model();
        let task = model.submit(&clip(None, VideoDuration::Ten)).await.unwrap();
        let started = std::time::Instant::now();
        let err = wait_for_video(model.as_ref(), &task.output, polling)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, AiError::VideoFailed { reason, .. } if reason.contains(&word.to_uppercase())),
            "{word}: {err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{word}");
    }

    // The provider no longer knows the task: a 4xx in the envelope, the task ended.
    let server = MockServer::start().await;
    submit_ok(&server, "t10").await;
    task_status(
        &server,
        "t10",
        json!({"error": {"code": 404, "message": "task not found"}}),
        None,
    )
    .await;
    let model = common::providers_at(&server).video_model();
    let task = model.submit(&clip(None, VideoDuration::Ten)).await.unwrap();
    let err = wait_for_video(model.as_ref(), &task.output, polling)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AiError::BadRequest { status: 404, message, .. } if message.contains("task not found")),
        "{err:?}"
    );

    // A passing error in the envelope is tried again, as a 5xx is: the task then finishes.
    let server = MockServer::start().await;
    submit_ok(&server, "t11").await;
    task_status(
        &server,
        "t11",
        json!({"error": {"message": "internal server error, try again"}}),
        Some(2),
    )
    .await;
    let output = format!("{}/files/t11.mp4", server.uri());
    task_status(
        &server,
        "t11",
        json!({"task_id": "t11", "status": "SUCCESS", "data": {"output": output}}),
        None,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/files/t11.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(mp4()))
        .mount(&server)
        .await;
    let model = common::providers_at(&server).video_model();
    let task = model.submit(&clip(None, VideoDuration::Ten)).await.unwrap();
    let video = wait_for_video(model.as_ref(), &task.output, polling)
        .await
        .unwrap();
    assert_eq!(video.mime_type, "video/mp4");
}

/// The render is paid for once submitted: a status endpoint that fails for longer than one
/// call's retries, and a download link that expired (403) while the video waited, are waited
/// out within the deadline — the task is polled again, for its state and a fresh link — not
/// reported as the task's failure.
#[tokio::test]
async fn a_status_outage_and_an_expired_link_are_waited_out() {
    let server = MockServer::start().await;
    submit_ok(&server, "t12").await;
    // Five 503s: more than one poll's three tries.
    Mock::given(method("GET"))
        .and(path(format!("{SUBMIT}/t12")))
        .respond_with(ResponseTemplate::new(503).set_body_string("<html>bad gateway</html>"))
        .up_to_n_times(5)
        .mount(&server)
        .await;
    let stale = format!("{}/files/stale.mp4", server.uri());
    task_status(
        &server,
        "t12",
        json!({"task_id": "t12", "status": "SUCCESS", "data": {"output": stale}}),
        Some(1),
    )
    .await;
    let fresh = format!("{}/files/fresh.mp4", server.uri());
    task_status(
        &server,
        "t12",
        json!({"task_id": "t12", "status": "SUCCESS", "data": {"output": fresh}}),
        None,
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/files/stale.mp4"))
        .respond_with(ResponseTemplate::new(403).set_body_string(
            "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
        ))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/files/fresh.mp4"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(mp4()))
        .mount(&server)
        .await;
    let model = common::providers_at(&server).video_model();
    let task = model.submit(&clip(None, VideoDuration::Ten)).await.unwrap();
    let polling = drama_ai::VideoPolling {
        interval: Duration::from_millis(20),
        deadline: Duration::from_secs(30),
    };
    let video = wait_for_video(model.as_ref(), &task.output, polling)
        .await
        .unwrap();
    assert_eq!(video.mime_type, "video/mp4");
    let submissions = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method == wiremock::http::Method::POST)
        .count();
    assert_eq!(submissions, 1, "one paid render");

    // A status endpoint down past the deadline: the deadline's error, with the task id to
    // poll again, naming what failed.
    let server = MockServer::start().await;
    submit_ok(&server, "t13").await;
    Mock::given(method("GET"))
        .and(path(format!("{SUBMIT}/t13")))
        .respond_with(ResponseTemplate::new(503).set_body_string("unavailable"))
        .mount(&server)
        .await;
    let model = common::providers_at(&server).video_model();
    let task = model.submit(&clip(None, VideoDuration::Ten)).await.unwrap();
    let polling = drama_ai::VideoPolling {
        interval: Duration::from_millis(20),
        deadline: Duration::from_millis(300),
    };
    let err = wait_for_video(model.as_ref(), &task.output, polling)
        .await
        .unwrap_err();
    let AiError::VideoDeadline {
        task_id,
        last_status,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(task_id, "t13");
    assert!(last_status.contains("503"), "{last_status}");
}
