//! REST routes: success paths and their 400/401/404/409/413/422 paths.

use actix_web::test::TestRequest;
use drama_testkit::builders::{LEGACY_FIXTURE, drama_json};
use serde_json::{Value, json};

use crate::support::{
    Harness, bearer, delete, field_of_each, get, patch, patch_json, post, post_json, send,
};

fn create_body(id: &str) -> Value {
    json!({ "drama": drama_json(id, 2, 2, 2) })
}

#[actix_web::test]
async fn health_and_readiness_need_no_credentials() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let (status, headers, body) = send(&svc, TestRequest::get().uri("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(body["version"].is_string());
    assert!(headers.contains_key("x-request-id"));
    let (status, _, body) = send(&svc, TestRequest::get().uri("/ready")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
}

#[actix_web::test]
async fn readiness_names_a_failing_dependency_without_describing_it() {
    // A store whose endpoint refuses connections: its error names the endpoint and the
    // bucket, which an unauthenticated probe must not learn.
    let s3 = drama_testkit::s3::S3Server::start("ready-probe").await;
    let mut options = s3.options(None, drama_assets::SizeLimits::default());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    options.endpoint_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    options.bucket = "secret-bucket-name".to_owned();
    let store = drama_assets::S3Store::new(options).unwrap();
    let h = Harness::with_assets(
        std::sync::Arc::new(store),
        drama_ai::AiProviders::offline(0),
    )
    .await;
    let svc = h.service(Harness::settings()).await;
    let (status, headers, body) = send(&svc, TestRequest::get().uri("/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(headers.get("retry-after").unwrap(), "5");
    assert_eq!(
        body,
        json!({"status": "not ready", "database": "ok", "storage": "unavailable"})
    );
    let text = body.to_string();
    assert!(!text.contains("secret-bucket-name"), "{text}");
    assert!(!text.contains("127.0.0.1"), "{text}");
}

#[actix_web::test]
async fn readiness_answers_promptly_when_the_bucket_never_answers() {
    // A store whose endpoint accepts connections and never answers (a blackholed bucket):
    // every probe answers within the per-check timeout, naming the check, and probes that come
    // while one check runs wait for it without holding a lock that others queue behind.
    let s3 = drama_testkit::s3::S3Server::start("ready-blackhole").await;
    let mut options = s3.options(None, drama_assets::SizeLimits::default());
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    options.endpoint_url = format!("http://{}", blackhole.local_addr().unwrap());
    let store = drama_assets::S3Store::new(options).unwrap();
    let h = Harness::with_assets(
        std::sync::Arc::new(store),
        drama_ai::AiProviders::offline(0),
    )
    .await;
    let svc = h.service(Harness::settings()).await;
    let started = std::time::Instant::now();
    let probes = (0..3).map(|_| send(&svc, TestRequest::get().uri("/ready")));
    let answers = tokio::time::timeout(
        drama_app::READINESS_CHECK_TIMEOUT + std::time::Duration::from_secs(3),
        futures::future::join_all(probes),
    )
    .await
    .expect("/ready waited for a bucket that never answers");
    for (status, _, body) in answers {
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            body,
            json!({"status": "not ready", "database": "ok", "storage": "unavailable"})
        );
    }
    println!("3 probes answered in {:?}", started.elapsed());
    drop(blackhole);
}

#[actix_web::test]
async fn every_drama_route_requires_credentials() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    for (method, uri) in [
        ("GET", "/dramas"),
        ("POST", "/dramas"),
        ("GET", "/dramas/d1"),
        ("PATCH", "/dramas/d1"),
        ("DELETE", "/dramas/d1"),
        ("GET", "/dramas/d1/characters"),
        ("GET", "/dramas/d1/episodes/e1/scenes/s1/assets/a1"),
        ("POST", "/graphql"),
    ] {
        let req = TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri);
        let (status, _, body) = send(&svc, req).await;
        assert_eq!(status, 401, "{method} {uri}");
        assert_eq!(body["code"], "unauthenticated");
        assert!(body["detail"].as_str().unwrap().contains("Missing API key"));
    }
    let (status, _, body) = send(
        &svc,
        get(
            "/dramas",
            "dk_AAAAAAAAAAAA_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB",
        ),
    )
    .await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (401, Some("Invalid API key"))
    );
    let (status, _, _) = send(
        &svc,
        TestRequest::get()
            .uri("/dramas")
            .insert_header(("Authorization", format!("Basic {}", h.alice_key))),
    )
    .await;
    assert_eq!(status, 401);
    let (status, _, _) = send(
        &svc,
        TestRequest::get()
            .uri("/dramas")
            .insert_header(("X-API-Key", h.alice_key.clone())),
    )
    .await;
    assert_eq!(status, 200, "X-API-Key is accepted");
}

#[actix_web::test]
async fn create_read_patch_and_delete_a_drama() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;

    let (status, headers, body) = send(
        &svc,
        post("/dramas", k).set_payload(format!("{{\"drama\": {LEGACY_FIXTURE}}}")),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], "corgi_musk_v5");
    assert_eq!(body["characters"][0]["voice_description"], "");
    assert_eq!(headers.get("etag").unwrap(), "\"1\"");

    let (status, headers, body) = send(&svc, get("/dramas/corgi_musk_v5", k)).await;
    assert_eq!(status, 200);
    let mut expected: Value = serde_json::from_str(LEGACY_FIXTURE).unwrap();
    for c in expected["characters"].as_array_mut().unwrap() {
        c["voice_description"] = json!("");
    }
    assert_eq!(body, expected, "the stored drama reads back as sent");
    assert_eq!(headers.get("etag").unwrap(), "\"1\"");

    // A stale version is refused and changes nothing.
    let (status, _, body) = send(
        &svc,
        patch("/dramas/corgi_musk_v5", k)
            .insert_header(("If-Match", "\"7\""))
            .set_payload(r#"{"title": "Lost"}"#),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("version_conflict"))
    );
    let (status, headers, body) = send(
        &svc,
        patch("/dramas/corgi_musk_v5", k)
            .set_payload(r#"{"title": "Corgi II", "version": 1, "unknown": true}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["title"], "Corgi II");
    assert_eq!(headers.get("etag").unwrap(), "\"2\"");

    let (status, _, body) = send(
        &svc,
        patch("/dramas/corgi_musk_v5", k).set_payload(r#"{"title": null}"#),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "title"]));
    assert_eq!(body["detail"][0]["msg"], "must not be null");

    let (status, _, body) = send(&svc, delete("/dramas/corgi_musk_v5", k)).await;
    assert_eq!((status, body), (200, json!({"success": true})));
    for req in [
        delete("/dramas/corgi_musk_v5", k),
        get("/dramas/corgi_musk_v5", k),
    ] {
        let (status, _, body) = send(&svc, req).await;
        assert_eq!(status, 404);
        assert_eq!(
            body["detail"],
            json!({"error": "Drama not found", "message": "Drama corgi_musk_v5 not found",
                   "code": "not_found"})
        );
    }
}

#[actix_web::test]
async fn invalid_creations_name_the_problem_and_write_nothing() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    let mut bad = create_body("bad");
    bad["drama"]["characters"][1]["id"] = json!("has space");
    let (status, _, body) = send(&svc, post_json("/dramas", k, &bad)).await;
    assert_eq!(status, 422);
    assert_eq!(body["code"], "validation_failed");
    assert_eq!(body["detail"][0]["field"], "drama.characters[1].id");
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "drama", "characters", 1, "id"])
    );

    let mut bad = create_body("bad");
    bad["drama"]["episodes"][0]["scenes"][0]["assets"][0]["kind"] = json!("hologram");
    let (status, _, body) = send(&svc, post_json("/dramas", k, &bad)).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["detail"][0]["field"],
        "drama.episodes[0].scenes[0].assets[0].kind"
    );

    let mut bad = create_body("bad");
    bad["drama"].as_object_mut().unwrap().remove("title");
    let (status, _, body) = send(&svc, post_json("/dramas", k, &bad)).await;
    assert_eq!(
        (status, body["detail"][0]["field"].as_str()),
        (422, Some("drama.title"))
    );

    let (status, _, body) = send(&svc, post("/dramas", k).set_payload("{not json")).await;
    assert_eq!(status, 400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON body")
    );

    let (status, _, body) = send(&svc, post_json("/dramas", k, json!({"title": "neither"}))).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "Must provide either 'premise' (async mode) or 'drama' (sync mode)"
    );

    let (status, _, body) = send(&svc, get("/dramas", k)).await;
    assert_eq!(status, 200);
    assert_eq!(body["dramas"], json!([]), "nothing was written");

    // An existing id is a conflict, also for another user.
    send(&svc, post_json("/dramas", k, create_body("taken"))).await;
    let (status, _, body) =
        send(&svc, post_json("/dramas", &h.bob_key, create_body("taken"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_exists"))
    );
}

#[actix_web::test]
async fn nested_reads_and_patches_follow_the_path() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    send(&svc, post_json("/dramas", k, create_body("nest"))).await;

    let (s, _, b) = send(&svc, get("/dramas/nest/characters", k)).await;
    assert_eq!((s, b["characters"].as_array().unwrap().len()), (200, 2));
    let (s, _, b) = send(&svc, get("/dramas/nest/characters/c1", k)).await;
    assert_eq!((s, b["name"].as_str()), (200, Some("Character 1")));
    let (s, _, b) = send(&svc, get("/dramas/nest/episodes", k)).await;
    assert_eq!((s, b["episodes"].as_array().unwrap().len()), (200, 2));
    let (s, _, b) = send(&svc, get("/dramas/nest/episodes/e1", k)).await;
    assert_eq!((s, b["title"].as_str()), (200, Some("Episode 1")));
    let (s, _, b) = send(&svc, get("/dramas/nest/episodes/e1/scenes", k)).await;
    assert_eq!((s, b["scenes"].as_array().unwrap().len()), (200, 2));
    let (s, _, b) = send(&svc, get("/dramas/nest/episodes/e1/scenes/e1-s0", k)).await;
    assert_eq!((s, b["id"].as_str()), (200, Some("e1-s0")));
    let (s, _, b) = send(&svc, get("/dramas/nest/episodes/e1/scenes/e1-s0/assets", k)).await;
    assert_eq!((s, b["assets"].as_array().unwrap().len()), (200, 2));
    let (s, _, b) = send(
        &svc,
        get("/dramas/nest/episodes/e1/scenes/e1-s0/assets/e1-s0-vid", k),
    )
    .await;
    assert_eq!((s, b["duration"].as_i64()), (200, Some(10)));

    for (uri, kind) in [
        ("/dramas/nest/characters/nobody", "Character"),
        ("/dramas/nest/episodes/e9", "Episode"),
        ("/dramas/nest/episodes/e9/scenes", "Episode"),
        ("/dramas/nest/episodes/e0/scenes/e1-s0", "Scene"),
        ("/dramas/nest/episodes/e1/scenes/e1-s0/assets/zzz", "Asset"),
        ("/dramas/other/episodes", "Drama"),
    ] {
        let (s, _, b) = send(&svc, get(uri, k)).await;
        assert_eq!(s, 404, "{uri}");
        assert_eq!(b["detail"]["error"], format!("{kind} not found"), "{uri}");
    }

    let (s, _, b) = send(
        &svc,
        patch_json(
            "/dramas/nest/characters/c0",
            k,
            json!({"name": "Ana", "gender": "ignored"}),
        ),
    )
    .await;
    assert_eq!(
        (s, b["name"].as_str(), b["gender"].as_str()),
        (200, Some("Ana"), Some("female"))
    );
    let (s, _, b) = send(
        &svc,
        patch_json(
            "/dramas/nest/episodes/e0",
            k,
            json!({"premise": "more", "metadata": {"k": 1}}),
        ),
    )
    .await;
    assert_eq!(
        (s, b["premise"].as_str(), &b["metadata"]),
        (200, Some("more"), &json!({"k": 1}))
    );
    let (s, _, b) = send(
        &svc,
        patch_json(
            "/dramas/nest/episodes/e0/scenes/e0-s1",
            k,
            json!({"image_url": "https://cdn/x.png"}),
        ),
    )
    .await;
    assert_eq!(
        (s, b["image_url"].as_str()),
        (200, Some("https://cdn/x.png"))
    );
    let (s, _, b) = send(
        &svc,
        patch_json(
            "/dramas/nest/episodes/e0/scenes/e0-s1/assets/e0-s1-img",
            k,
            json!({"prompt": "wide shot", "url": null}),
        ),
    )
    .await;
    assert_eq!((s, b["prompt"].as_str()), (200, Some("wide shot")));
    // The scene exists, but not in that episode.
    let (s, _, _) = send(
        &svc,
        patch_json(
            "/dramas/nest/episodes/e1/scenes/e0-s1/assets/e0-s1-img",
            k,
            json!({"prompt": "x"}),
        ),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _, b) = send(
        &svc,
        patch_json("/dramas/nest/characters/c0", k, json!({"description": ""})),
    )
    .await;
    assert_eq!(
        (s, b["detail"][0]["field"].as_str()),
        (422, Some("description"))
    );
    let (s, h_, _) = send(&svc, get("/dramas/nest", k)).await;
    assert_eq!(s, 200);
    assert_eq!(h_.get("etag").unwrap(), "\"5\"", "four successful patches");
}

#[actix_web::test]
async fn another_users_drama_is_invisible_through_every_route() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    send(
        &svc,
        post_json("/dramas", &h.alice_key, create_body("private")),
    )
    .await;
    let bob = bearer(&h.bob_key);
    for (method, uri, body) in [
        ("GET", "/dramas/private", None),
        ("PATCH", "/dramas/private", Some(json!({"title": "x"}))),
        ("DELETE", "/dramas/private", None),
        ("GET", "/dramas/private/characters", None),
        ("GET", "/dramas/private/characters/c0", None),
        (
            "PATCH",
            "/dramas/private/characters/c0",
            Some(json!({"name": "x"})),
        ),
        ("GET", "/dramas/private/episodes", None),
        ("GET", "/dramas/private/episodes/e0", None),
        (
            "PATCH",
            "/dramas/private/episodes/e0",
            Some(json!({"title": "x"})),
        ),
        ("GET", "/dramas/private/episodes/e0/scenes", None),
        ("GET", "/dramas/private/episodes/e0/scenes/e0-s0", None),
        (
            "PATCH",
            "/dramas/private/episodes/e0/scenes/e0-s0",
            Some(json!({"description": "x"})),
        ),
        (
            "GET",
            "/dramas/private/episodes/e0/scenes/e0-s0/assets",
            None,
        ),
        (
            "PATCH",
            "/dramas/private/episodes/e0/scenes/e0-s0/assets/e0-s0-img",
            Some(json!({"prompt": "x"})),
        ),
    ] {
        let mut req = TestRequest::default()
            .method(method.parse().unwrap())
            .uri(uri)
            .insert_header(bob.clone());
        if let Some(body) = body {
            req = req.set_json(body);
        }
        let (status, _, body) = send(&svc, req).await;
        assert_eq!(status, 404, "{method} {uri}");
        assert_eq!(body["detail"]["error"], "Drama not found", "{method} {uri}");
    }
    let (_, _, list) = send(&svc, TestRequest::get().uri("/dramas").insert_header(bob)).await;
    assert_eq!(list["dramas"], json!([]));
    let (status, _, body) = send(&svc, get("/dramas/private", &h.alice_key)).await;
    assert_eq!(
        (status, body["title"].as_str()),
        (200, Some("Drama private"))
    );
}

#[actix_web::test]
async fn the_list_pages_with_an_opaque_cursor() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    for i in 0..5 {
        send(&svc, post_json("/dramas", k, create_body(&format!("p{i}")))).await;
    }
    let (s, _, first) = send(&svc, get("/dramas?limit=2", k)).await;
    assert_eq!(s, 200);
    let ids = field_of_each(&first["dramas"], "id");
    assert_eq!(ids, ["p4", "p3"]);
    assert_eq!(
        first["dramas"][0]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["description", "id", "metadata", "premise", "title", "url"]
    );
    let cursor = first["cursor"].as_str().unwrap();
    let (_, _, second) = send(&svc, get(&format!("/dramas?limit=10&cursor={cursor}"), k)).await;
    assert_eq!(second["dramas"].as_array().unwrap().len(), 3);
    assert_eq!(second["cursor"], Value::Null);
    for (bad, field) in [
        ("/dramas?limit=0", "limit"),
        ("/dramas?limit=1001", "limit"),
        // Digits alone are an old offset cursor (`old_clients`); anything else must be ours.
        ("/dramas?cursor=10a", "cursor"),
        // A value of the wrong type is named as well, not only a value out of bounds.
        ("/dramas?limit=x", "limit"),
        ("/dramas?limit=-1", "limit"),
    ] {
        let (s, _, b) = send(&svc, get(bad, k)).await;
        assert_eq!(s, 422, "{bad}: {b}");
        assert!(
            b["detail"]
                .as_array()
                .is_some_and(|d| d.iter().any(|e| e["field"] == field)),
            "{bad} names {field}: {b}"
        );
    }
}

#[actix_web::test]
async fn oversized_bodies_are_refused_before_they_are_read() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    // Content-Length announces 10 MB; the body itself is never sent.
    let (status, _, body) = send(
        &svc,
        post("/dramas", &h.alice_key)
            .insert_header(("Content-Length", "10485760"))
            .insert_header(("Content-Type", "application/json")),
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["code"], "too_large");
}

#[actix_web::test]
async fn callers_over_their_rate_get_429_with_retry_after() {
    let h = Harness::new().await;
    let settings = drama_api::HttpSettings {
        rate_per_second: 1,
        rate_burst: 2,
        ..Harness::settings()
    };
    let svc = h.service(settings).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let (status, headers, _) = send(&svc, get("/dramas", &h.alice_key)).await;
        statuses.push(status);
        if status == 429 {
            retry_after = headers.get("retry-after").cloned();
        }
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert!(retry_after.is_some());
    // Another caller has its own budget.
    let (status, _, _) = send(&svc, get("/dramas", &h.bob_key)).await;
    assert_eq!(status, 200);
}

#[actix_web::test]
async fn browsers_may_call_from_any_origin_unless_configured_otherwise() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    // A preflight is answered before authentication.
    let (status, headers, _) = send(
        &svc,
        TestRequest::default()
            .method(actix_web::http::Method::OPTIONS)
            .uri("/dramas")
            .insert_header(("Origin", "https://viewer.example.com"))
            .insert_header(("Access-Control-Request-Method", "POST"))
            .insert_header((
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        headers.get("access-control-allow-origin").unwrap(),
        "https://viewer.example.com"
    );
    // Answers, errors included, carry the headers; the request id is readable.
    let (status, headers, _) = send(
        &svc,
        TestRequest::get()
            .uri("/dramas")
            .insert_header(("Origin", "https://viewer.example.com")),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        headers.get("access-control-allow-origin").unwrap(),
        "https://viewer.example.com"
    );
    let exposed = headers
        .get("access-control-expose-headers")
        .unwrap()
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("etag"),
        "{exposed}"
    );

    // Restricted to a list: another origin gets no permission.
    let mut settings = Harness::settings();
    settings.cors_origins = "https://app.example.com".to_owned();
    let svc = h.service(settings).await;
    let (_, headers, _) = send(
        &svc,
        TestRequest::get()
            .uri("/health")
            .insert_header(("Origin", "https://app.example.com")),
    )
    .await;
    assert_eq!(
        headers.get("access-control-allow-origin").unwrap(),
        "https://app.example.com"
    );
    let (_, headers, _) = send(
        &svc,
        TestRequest::get()
            .uri("/health")
            .insert_header(("Origin", "https://elsewhere.example.com")),
    )
    .await;
    assert!(headers.get("access-control-allow-origin").is_none());
}

#[actix_web::test]
async fn requests_without_credentials_are_limited_per_address() {
    let h = Harness::new().await;
    let server = crate::support::listen_app(
        h.app.clone(),
        drama_api::HttpSettings {
            anonymous_per_second: 1,
            anonymous_burst: 2,
            ..Harness::settings()
        },
    );
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{}{path}", server.base);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(
            http.get(url("/openapi.json"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // Probes, the console's files and signed media are not counted: a drama page loads dozens
    // of images and clip ranges from one address.
    for path in ["/health", "/ui/", "/files/no-such-key?expires=1&sig=x"] {
        for _ in 0..4 {
            let status = http.get(url(path)).send().await.unwrap().status().as_u16();
            assert_ne!(status, 429, "{path}");
        }
    }
    // Wrong credentials count against the address too (guessing keys is rate-limited)...
    let mut refused = None;
    for _ in 0..6 {
        let guess = http
            .get(url("/dramas"))
            .bearer_auth("dsk_not-a-real-key")
            .send()
            .await
            .unwrap();
        if guess.status().as_u16() == 429 {
            refused = Some(guess);
            break;
        }
        assert_eq!(guess.status().as_u16(), 401);
    }
    let refused = refused.expect("some guesses are refused for their rate");
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
    // ...while a caller with a valid key is served from the same address.
    let served = http
        .get(url("/dramas"))
        .bearer_auth(&h.alice_key)
        .send()
        .await
        .unwrap();
    assert_eq!(served.status().as_u16(), 200);
}

#[actix_web::test]
async fn a_premise_that_is_not_text_is_refused_naming_it() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let drama = create_body("beside")["drama"].clone();
    for body in [
        json!({"premise": 123}),
        json!({"premise": true, "id": "p1"}),
        json!({"premise": {"text": "a heron"}}),
        json!({"premise": ["a heron"], "drama": drama}),
    ] {
        let (status, _, answer) = send(&svc, post_json("/dramas", &h.alice_key, &body)).await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (422, Some("validation_failed")),
            "{body}: {answer}"
        );
        assert_eq!(answer["detail"][0]["field"], "premise", "{body}: {answer}");
        assert_eq!(
            answer["detail"][0]["loc"],
            json!(["body", "premise"]),
            "{answer}"
        );
    }
    // GraphQL's twin answers the GraphQL name of the same code, as a literal and as a
    // variable.
    for (query, variables) in [
        (
            "mutation { createDrama(premise: 123) { jobId } }",
            json!({}),
        ),
        (
            "mutation($p: String!) { createDrama(premise: $p) { jobId } }",
            json!({"p": 123}),
        ),
    ] {
        let (status, _, answer) = send(
            &svc,
            post_json(
                "/graphql",
                &h.alice_key,
                json!({"query": query, "variables": variables}),
            ),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
            "{query}: {answer}"
        );
        assert!(answer["data"].is_null(), "{answer}");
    }
    let (_, _, listed) = send(&svc, get("/dramas", &h.alice_key)).await;
    assert_eq!(listed["dramas"], json!([]), "nothing was started or stored");
    // A null premise is no premise: the body is the drama form.
    let (status, _, answer) = send(
        &svc,
        post_json(
            "/dramas",
            &h.alice_key,
            json!({"premise": null, "drama": drama}),
        ),
    )
    .await;
    assert_eq!(
        (status, answer["id"].as_str()),
        (201, Some("beside")),
        "{answer}"
    );
}
