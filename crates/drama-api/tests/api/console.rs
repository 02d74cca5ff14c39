//! The console's routes and the API it needs: static files under a strict CSP, the one-time
//! sign-in code, the caller's API keys, run graphs, estimates and the drama overview.

use actix_web::test::TestRequest;
use drama_api::ApiState;
use drama_dal::{NewUser, UserRepository as _};
use drama_domain::UserId;
use serde_json::{Value, json};

use crate::support::{Harness, create_drama, delete, get, post, post_json, send};

const CONSOLE: &[&str] = &[
    "console.css",
    "icon.svg",
    "js/main.js",
    "js/api.js",
    "js/dom.js",
    "js/media.js",
    "js/sse.js",
    "js/graph.js",
    "js/signin.js",
    "js/dramas.js",
    "js/create.js",
    "js/drama.js",
    "js/edit.js",
    "js/run.js",
    "js/account.js",
];

#[actix_web::test]
async fn the_console_is_served_under_a_strict_policy() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let (status, headers, _) = send(&svc, TestRequest::get().uri("/ui")).await;
    assert_eq!(status, 200);
    let csp = headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(headers.get("x-content-type-options").unwrap(), "nosniff");
    assert_eq!(headers.get("referrer-policy").unwrap(), "no-referrer");
    assert!(
        headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    // Every file the page loads is there, with its type and a validator.
    for file in CONSOLE {
        let response = actix_web::test::call_service(
            &svc,
            TestRequest::get().uri(&format!("/ui/{file}")).to_request(),
        )
        .await;
        assert_eq!(response.status(), 200, "{file}");
        let kind = response
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        let expected = match file.rsplit('.').next().unwrap() {
            "js" => "text/javascript",
            "css" => "text/css",
            _ => "image/svg+xml",
        };
        assert!(kind.starts_with(expected), "{file}: {kind}");
        let etag = response.headers().get("etag").unwrap().clone();
        let again = actix_web::test::call_service(
            &svc,
            TestRequest::get()
                .uri(&format!("/ui/{file}"))
                .insert_header(("If-None-Match", etag))
                .to_request(),
        )
        .await;
        assert_eq!(again.status(), 304, "{file}");
    }
    let (status, headers, body) = send(&svc, TestRequest::get().uri("/ui/js/nope.js")).await;
    assert_eq!((status, &body["code"]), (404, &json!("not_found")));
    assert!(headers.contains_key("content-security-policy"));
    let (status, _, _) = send(&svc, TestRequest::get().uri("/ui/../Cargo.toml")).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn the_policy_lets_media_load_from_the_configured_origins() {
    let h = Harness::new().await;
    let mut settings = Harness::settings();
    settings.media_origins = vec![
        "http://localhost:9000/drama".to_owned(),
        "http://localhost:8000".to_owned(),
    ];
    let svc = h.service(settings).await;
    let (status, headers, _) = send(&svc, TestRequest::get().uri("/ui/js/main.js")).await;
    assert_eq!(status, 200);
    let csp = headers
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap();
    for directive in ["img-src", "media-src"] {
        assert!(
            csp.contains(&format!(
                "{directive} 'self' blob: https: http://localhost:9000 http://localhost:8000;"
            )),
            "{csp}"
        );
    }
    assert!(csp.contains("connect-src 'self';"), "{csp}");
}

/// The files themselves keep the policy's promises: no inline code or styles, nothing that
/// parses text as HTML or code, every file listed in the page's table and in this test.
#[test]
fn the_console_never_parses_text_as_markup_or_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    let index = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(!index.contains("style="), "inline style in index.html");
    for script in index.split("<script").skip(1) {
        let tag = &script[..script.find('>').unwrap()];
        assert!(tag.contains("src="), "inline script in index.html");
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(dir.join("js"))
        .unwrap()
        .map(|e| format!("js/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = CONSOLE
        .iter()
        .filter(|f| f.starts_with("js/"))
        .map(|f| (*f).to_owned())
        .collect();
    listed.sort();
    assert_eq!(on_disk, listed, "every script is embedded and tested");
    for file in &listed {
        let source = std::fs::read_to_string(dir.join(file)).unwrap();
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute(\"style\"",
            "localStorage",
        ] {
            assert!(!source.contains(banned), "{file} uses {banned}");
        }
    }
}

#[actix_web::test]
async fn a_browser_opening_the_root_finds_the_console() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let html = actix_web::test::call_service(
        &svc,
        TestRequest::get()
            .uri("/")
            .insert_header(("Accept", "text/html,application/xhtml+xml,*/*;q=0.8"))
            .to_request(),
    )
    .await;
    assert_eq!(html.status(), 200);
    assert!(html.headers().contains_key("content-security-policy"));
    let page = String::from_utf8(actix_web::test::read_body(html).await.to_vec()).unwrap();
    assert!(page.contains("href=\"/ui\""), "{page}");
    // API clients keep the old greeting, plus where the console is.
    let (status, _, body) = send(&svc, TestRequest::get().uri("/")).await;
    assert_eq!(status, 200);
    assert_eq!(body["message"], "Drama API Worker");
    assert_eq!(body["console"], "/ui");
}

#[actix_web::test]
async fn a_sign_in_link_works_once() {
    let h = Harness::new().await;
    let state = ApiState::new(h.app.clone(), Harness::settings());
    let link = state.console_sign_in_link("http://localhost:8000/", &h.alice_key);
    let code = link
        .strip_prefix("http://localhost:8000/ui#signin=")
        .unwrap()
        .to_owned();
    assert!(!link.contains(&h.alice_key));
    let svc =
        actix_web::test::init_service(actix_web::App::new().configure(drama_api::configure(state)))
            .await;
    let exchange = |code: &str| {
        TestRequest::post()
            .uri("/ui/sign-in")
            .set_json(json!({"code": code}))
    };
    let (status, headers, body) = send(&svc, exchange(&code)).await;
    assert_eq!(
        (status, body["token"].as_str()),
        (200, Some(h.alice_key.as_str())),
        "{body}"
    );
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    let (status, _, body) = send(&svc, exchange(&code)).await;
    assert_eq!(
        (status, &body["code"]),
        (401, &json!("unauthenticated")),
        "used once"
    );
    let (status, _, _) = send(&svc, exchange("0123")).await;
    assert_eq!(status, 401);
    let (status, _, _) = send(
        &svc,
        TestRequest::post().uri("/ui/sign-in").set_json(json!({})),
    )
    .await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn api_keys_belong_to_their_owner() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let (a, b) = (&h.alice_key, &h.bob_key);
    let (status, headers, made) = send(
        &svc,
        post_json(
            "/api-keys",
            a,
            json!({"name": "  laptop  ", "expiresInDays": 30, "unknown": true}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(made["name"], "laptop");
    assert_eq!(made["active"], true);
    assert_eq!(made["scopes"], json!([]));
    let secret = made["key"].as_str().unwrap().to_owned();
    let day = 86_400_000;
    let expires = made["expiresAt"].as_i64().unwrap() - made["createdAt"].as_i64().unwrap();
    assert!(
        (30 * day - 60_000..=30 * day + 60_000).contains(&expires),
        "{made}"
    );

    // The new key works, and lists without its secret; Bob sees none of Alice's keys.
    let (status, _, _) = send(&svc, get("/dramas", &secret)).await;
    assert_eq!(status, 200);
    let (_, _, list) = send(&svc, get("/api-keys", a)).await;
    let keys = list["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{list}");
    assert!(
        keys.iter()
            .all(|k| k.get("key").is_none() && k["prefix"].is_string())
    );
    assert!(!list.to_string().contains(&secret[10..]));
    let (_, _, list) = send(&svc, get("/api-keys", b)).await;
    assert!(!list.to_string().contains(made["id"].as_str().unwrap()));

    // Bob cannot revoke it (it does not exist for him); Alice can, and it stops at once.
    let id = made["id"].as_str().unwrap();
    let revoke = |key: &str, id: &str| delete(&format!("/api-keys/{id}"), key);
    let (status, _, body) = send(&svc, revoke(b, id)).await;
    assert_eq!(
        (status, &body["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    let (status, _, _) = send(&svc, get("/dramas", &secret)).await;
    assert_eq!(status, 200, "still Alice's working key");
    let (status, _, body) = send(&svc, revoke(a, id)).await;
    assert_eq!((status, &body["active"]), (200, &json!(false)), "{body}");
    assert!(body["revokedAt"].is_i64());
    let (status, _, _) = send(&svc, get("/dramas", &secret)).await;
    assert_eq!(status, 401, "a revoked key is refused at once");
    let (status, _, _) = send(&svc, revoke(a, "not-a-uuid")).await;
    assert_eq!(status, 404);

    // A service caller's keys are ordinary keys.
    let (_, _, made) = send(
        &svc,
        post_json("/api-keys", &h.service_key, json!({"name": "s"})),
    )
    .await;
    assert_eq!(made["scopes"], json!([]), "{made}");

    // Bad input names the field.
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "tab\there"}), "name"),
        (json!({"name": "k", "expiresInDays": 0}), "expires_in_days"),
        (
            json!({"name": "k", "expiresInDays": 5000}),
            "expires_in_days",
        ),
        (
            json!({"name": "k", "expiresInDays": "soon"}),
            "expiresInDays",
        ),
        (json!({"name": 7}), "name"),
    ] {
        let (status, _, answer) = send(&svc, post_json("/api-keys", a, &body)).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert!(answer.to_string().contains(field), "{body} → {answer}");
    }
    let (status, _, _) = send(
        &svc,
        post("/api-keys", a)
            .set_payload("{not json")
            .insert_header(("content-type", "application/json")),
    )
    .await;
    assert!(status == 400 || status == 422, "{status}");
    let (status, _, _) = send(&svc, TestRequest::get().uri("/api-keys")).await;
    assert_eq!(status, 401);

    // A user holds a bounded number of usable keys.
    for n in 0..drama_app::MAX_ACTIVE_KEYS {
        let (status, _, body) = send(
            &svc,
            post_json("/api-keys", b, json!({"name": format!("k{n}")})),
        )
        .await;
        if status != 201 {
            assert_eq!(status, 422, "{body}");
            assert!(body.to_string().contains("revoke one first"), "{body}");
            assert_eq!(
                n,
                drama_app::MAX_ACTIVE_KEYS - 1,
                "Bob's harness key counts too"
            );
            return;
        }
    }
    panic!("no limit on keys");
}

/// A key made with a key cannot outlive it: it expires no later (whatever it asks for) and
/// is revoked with it, at once, down the line; a key without expiry sets no time bound.
#[actix_web::test]
async fn keys_made_with_a_key_expire_and_are_revoked_with_it() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let made = |key: &str, body: Value| post_json("/api-keys", key, body);
    let (status, _, week) = send(
        &svc,
        made(&h.alice_key, json!({"name": "week", "expiresInDays": 7})),
    )
    .await;
    assert_eq!(status, 201, "{week}");
    let (week_secret, week_ends) = (week["key"].as_str().unwrap(), week["expiresAt"].as_i64());
    assert!(week_ends.is_some(), "{week}");

    for body in [
        json!({"name": "longer", "expiresInDays": 3650}),
        json!({"name": "forever"}),
    ] {
        let (status, _, child) = send(&svc, made(week_secret, body.clone())).await;
        assert_eq!(status, 201, "{body} → {child}");
        assert_eq!(child["expiresAt"].as_i64(), week_ends, "{body} → {child}");
    }
    let (_, _, shorter) = send(
        &svc,
        made(week_secret, json!({"name": "day", "expiresInDays": 1})),
    )
    .await;
    let day = shorter["expiresAt"].as_i64().unwrap();
    assert!(day < week_ends.unwrap() - 5 * 86_400_000, "{shorter}");

    // Alice's own key never expires, so what it makes is as asked.
    let (_, _, free) = send(&svc, made(&h.alice_key, json!({"name": "free"}))).await;
    assert_eq!(free["expiresAt"], Value::Null, "{free}");

    // Someone took the week's key and made another with it (and one with that); both work,
    // and are in the authentication cache, until Alice revokes the week's key.
    let (_, _, copy) = send(&svc, made(week_secret, json!({"name": "copy"}))).await;
    assert_eq!(
        copy["madeBy"], week["id"],
        "the listing names the maker: {copy}"
    );
    let copy = copy["key"].as_str().unwrap().to_owned();
    let (_, _, copy2) = send(&svc, made(&copy, json!({"name": "copy of copy"}))).await;
    let copy2 = copy2["key"].as_str().unwrap().to_owned();
    let free = free["key"].as_str().unwrap();
    for key in [copy.as_str(), copy2.as_str(), free] {
        assert_eq!(send(&svc, get("/dramas", key)).await.0, 200);
    }
    let (status, _, body) = send(
        &svc,
        delete(
            &format!("/api-keys/{}", week["id"].as_str().unwrap()),
            &h.alice_key,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for key in [week_secret, copy.as_str(), copy2.as_str()] {
        let (status, _, body) = send(&svc, get("/dramas", key)).await;
        assert_eq!(
            status, 401,
            "a key made with a revoked key is refused at once: {body}"
        );
    }
    for key in [free, h.alice_key.as_str()] {
        assert_eq!(
            send(&svc, get("/dramas", key)).await.0,
            200,
            "not of that line"
        );
    }
}

/// A harness whose offline calls are priced, with a user rich enough to generate.
async fn priced() -> (Harness, String) {
    let mut h = Harness::new().await;
    h.app = h.app.clone().with_offline_pricing(true);
    let rich = UserId::random();
    let mut user = NewUser::new(rich);
    user.tokens = 1_000_000;
    h.store.create_user(&user).await.unwrap();
    let key = drama_dal::ApiKeyRepository::create_api_key(&*h.store, rich, "rich", &[], None)
        .await
        .unwrap()
        .key;
    (h, key)
}

#[actix_web::test]
async fn an_estimate_is_what_the_generation_then_debits() {
    let (h, k) = priced().await;
    let svc = h.service(Harness::settings()).await;
    create_drama(&svc, &k, "est", (2, 2, 2)).await;
    let (status, _, estimate) = send(&svc, post("/dramas/est/estimate", &k)).await;
    assert_eq!(status, 200, "{estimate}");
    let by_kind = estimate["byKind"].as_object().unwrap();
    assert!(
        by_kind.contains_key("portrait") && by_kind.contains_key("clip"),
        "{estimate}"
    );
    let sum: i64 = by_kind.values().map(|k| k["cost"].as_i64().unwrap()).sum();
    let tasks: u64 = by_kind.values().map(|k| k["tasks"].as_u64().unwrap()).sum();
    assert_eq!(sum, estimate["cost"].as_i64().unwrap());
    assert_eq!(tasks, estimate["tasks"].as_u64().unwrap());
    assert!(sum > 0);
    // Estimating wrote nothing: the drama's version did not move.
    let (_, before, _) = send(&svc, get("/dramas/est", &k)).await;
    send(&svc, post("/dramas/est/estimate", &k)).await;
    let (_, after, _) = send(&svc, get("/dramas/est", &k)).await;
    assert_eq!(before.get("etag"), after.get("etag"));

    let (_, _, started) = send(&svc, post("/dramas/est/generate", &k)).await;
    let (_, _, run) = send(
        &svc,
        get(&format!("/jobs/{}", started["jobId"].as_str().unwrap()), &k),
    )
    .await;
    assert_eq!(run["cost"]["total"], estimate["cost"], "{run}");
    assert_eq!(run["counts"]["total"], estimate["tasks"], "{run}");

    // Narrower scopes, and what does not exist.
    let scene = |field: &str, id: &str| {
        post_json(
            "/dramas/est/estimate",
            &k,
            json!({field: id, "force": true}),
        )
    };
    // One clip, with the storyboard and portrait it needs (none was made yet).
    let (status, _, one) = send(&svc, scene("assetId", "e0-s0-vid")).await;
    assert_eq!(
        (status, one["byKind"]["clip"]["tasks"].as_u64()),
        (200, Some(1)),
        "{one}"
    );
    assert!(one["byKind"].get("stitch").is_none(), "{one}");
    let (status, _, body) = send(&svc, scene("sceneId", "nope")).await;
    assert_eq!(status, 404, "{body}");
    let (status, _, body) = send(
        &svc,
        post_json("/dramas/est/estimate", &k, json!({"force": "yes"})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let (status, _, _) = send(&svc, post("/dramas/est/estimate", &h.bob_key)).await;
    assert_eq!(status, 404, "another user's drama does not exist for Bob");
}

#[actix_web::test]
async fn a_run_graph_has_every_node_and_edge() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    // Characters only: every task completes without ffmpeg.
    create_drama(&svc, k, "g", (2, 0, 0)).await;
    let (_, _, started) = send(&svc, post("/dramas/g/generate", k)).await;
    let job = started["jobId"].as_str().unwrap();
    let worker = h.worker().await;
    let mut graph = Value::Null;
    for _ in 0..500 {
        graph = send(&svc, get(&format!("/jobs/{job}/graph"), k)).await.2;
        if graph["run"]["status"] == "completed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    worker.shutdown().await;
    assert_eq!(graph["run"]["status"], "completed", "{graph}");
    let nodes = graph["nodes"].as_array().unwrap();
    let tasks: Vec<&Value> = nodes.iter().filter(|n| n["nodeType"] == "task").collect();
    assert_eq!(
        tasks.len() as u64,
        graph["run"]["counts"]["total"].as_u64().unwrap()
    );
    assert!(
        nodes
            .iter()
            .any(|n| n["nodeType"] == "group" && n["key"] == "character:c0"),
        "{graph}"
    );
    let id_of = |key: &str| nodes.iter().find(|n| n["key"] == key).unwrap()["id"].clone();
    let mut from_deps = 0;
    for t in &tasks {
        assert_eq!(t["state"], "completed");
        assert!(t["startedAt"].is_i64() && t["finishedAt"].is_i64(), "{t}");
        assert!(t["attempts"].as_i64().unwrap() >= 1);
        for dep in t["dependencies"].as_array().unwrap() {
            from_deps += 1;
            let edge = json!({"from": id_of(dep.as_str().unwrap()), "to": t["id"]});
            assert!(graph["edges"].as_array().unwrap().contains(&edge), "{edge}");
        }
    }
    assert_eq!(from_deps, graph["edges"].as_array().unwrap().len());
    let audition = tasks.iter().find(|t| t["kind"] == "audition").unwrap();
    assert!(audition["providerTaskId"].is_string(), "{audition}");
    assert!(
        audition["url"].is_string() && audition["assetId"].is_string(),
        "{audition}"
    );
    // Any node of the run shows the whole run; another user sees nothing.
    let (status, _, same) = send(
        &svc,
        get(
            &format!("/jobs/{}/graph", audition["id"].as_str().unwrap()),
            k,
        ),
    )
    .await;
    assert_eq!(
        (status, same["nodes"].as_array().unwrap().len()),
        (200, nodes.len())
    );
    let (status, _, _) = send(&svc, get(&format!("/jobs/{job}/graph"), &h.bob_key)).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn the_overview_shows_counts_and_the_latest_run() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    create_drama(&svc, k, "quiet", (1, 1, 1)).await;
    create_drama(&svc, k, "busy", (2, 3, 2)).await;
    send(&svc, post("/dramas/busy/critique", k)).await;
    let (_, _, started) = send(&svc, post("/dramas/busy/generate", k)).await;
    let (status, _, page) = send(&svc, get("/dramas?view=overview&limit=10", k)).await;
    assert_eq!(status, 200, "{page}");
    let dramas = page["dramas"].as_array().unwrap();
    assert_eq!(dramas.len(), 2);
    let busy = dramas.iter().find(|d| d["id"] == "busy").unwrap();
    assert_eq!(
        (
            busy["episodes"].as_u64(),
            busy["scenes"].as_u64(),
            busy["characters"].as_u64()
        ),
        (Some(3), Some(6), Some(2)),
        "{busy}"
    );
    assert_eq!(
        busy["latestRun"]["jobId"], started["jobId"],
        "the newest run: {busy}"
    );
    assert_eq!(busy["latestRun"]["status"], "pending");
    assert!(busy["updatedAt"].as_i64().unwrap() >= busy["createdAt"].as_i64().unwrap());
    let quiet = dramas.iter().find(|d| d["id"] == "quiet").unwrap();
    assert!(quiet["latestRun"].is_null(), "{quiet}");

    // Pages follow the same cursor as the plain list.
    let (_, _, first) = send(&svc, get("/dramas?view=overview&limit=1", k)).await;
    let cursor = first["cursor"].as_str().unwrap();
    let (_, _, second) = send(
        &svc,
        get(&format!("/dramas?view=overview&limit=1&cursor={cursor}"), k),
    )
    .await;
    assert_eq!(second["dramas"].as_array().unwrap().len(), 1);
    assert_ne!(second["dramas"][0]["id"], first["dramas"][0]["id"]);
    let (_, _, bobs) = send(&svc, get("/dramas?view=overview", &h.bob_key)).await;
    assert_eq!(bobs["dramas"], json!([]));
    let (status, _, body) = send(&svc, get("/dramas?view=overview&limit=101", k)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("at most 100"), "{body}");
    let (status, _, body) = send(&svc, get("/dramas?view=everything", k)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("view"), "{body}");
}
