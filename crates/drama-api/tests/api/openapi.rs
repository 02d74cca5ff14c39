//! The OpenAPI document and the route table agree, and the committed document is the one the
//! server generates.

use std::collections::BTreeSet;

use actix_web::test::TestRequest;
use serde_json::Value;

use crate::support::{Harness, assert_committed, bearer, send};

const DOC: &str = include_str!("../../openapi.json");

#[test]
fn the_committed_document_is_the_generated_one() {
    assert_committed(
        "openapi.json",
        drama_api::openapi_json(),
        "UPDATE_OPENAPI",
        "the_committed_document_is_the_generated_one",
    );
}

/// Every route path registered in the source (`endpoint("…"`, `.route("…"` and `web::resource("…"`).
fn routes_in_source() -> BTreeSet<String> {
    let sources = [
        include_str!("../../src/rest/health.rs"),
        include_str!("../../src/rest/dramas.rs"),
        include_str!("../../src/rest/nested.rs"),
        include_str!("../../src/rest/library.rs"),
        include_str!("../../src/rest/media.rs"),
        include_str!("../../src/rest/models.rs"),
        include_str!("../../src/rest/generate.rs"),
        include_str!("../../src/rest/jobs.rs"),
        include_str!("../../src/rest/runs.rs"),
        include_str!("../../src/rest/keys.rs"),
        include_str!("../../src/rest/me.rs"),
        include_str!("../../src/console/mod.rs"),
        include_str!("../../src/graphql/mod.rs"),
    ];
    let mut found = BTreeSet::new();
    for source in sources {
        for marker in [".route(", "web::resource(", "endpoint("] {
            for (i, _) in source.match_indices(marker) {
                // rustfmt may put the path on the next line.
                let rest = source[i + marker.len()..].trim_start();
                if let Some(quoted) = rest.strip_prefix('"')
                    && let Some(end) = quoted.find('"')
                {
                    found.insert(normalize(&quoted[..end]));
                }
            }
        }
    }
    found
}

/// `{d}`, `{drama_id}`, `{key:.+}` … all become `{}`.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for ch in path.chars() {
        match ch {
            '{' => {
                depth += 1;
                if depth == 1 {
                    out.push_str("{}");
                }
            }
            '}' => depth -= 1,
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    out
}

fn documented() -> Value {
    serde_json::from_str(DOC).unwrap()
}

#[test]
fn every_route_is_documented_and_every_documented_path_exists() {
    let doc = documented();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths: BTreeSet<String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| normalize(k))
        .collect();
    let routes = routes_in_source();
    let undocumented: Vec<_> = routes.difference(&paths).collect();
    let unrouted: Vec<_> = paths.difference(&routes).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.json: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented paths that are not routed: {unrouted:?}"
    );
}

/// Every error status the document promises is one the server answers: a status of a row of
/// the error table (a client written from the document must not wait for, say, a 502 that
/// never comes while the server answers 500 `generation_failed`).
#[test]
fn every_documented_error_status_is_one_of_the_error_table() {
    let answered: BTreeSet<u16> = drama_api::ErrorCode::ALL
        .iter()
        .map(|code| code.status().as_u16())
        .collect();
    let doc = documented();
    let mut strays = Vec::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            let Some(responses) = operation["responses"].as_object() else {
                continue;
            };
            for status in responses.keys() {
                if let Ok(status) = status.parse::<u16>()
                    && status >= 400
                    && !answered.contains(&status)
                {
                    strays.push(format!("{method} {path}: {status}"));
                }
            }
        }
    }
    assert!(strays.is_empty(), "statuses no error answers: {strays:#?}");
}

/// A documented path with every parameter filled in.
fn concrete(path: &str) -> String {
    path.replace("{drama_id}", "d")
        .replace("{character_id}", "c")
        .replace("{episode_id}", "e")
        .replace("{scene_id}", "s")
        .replace("{asset_id}", "a")
        .replace("{job_id}", "00000000-0000-0000-0000-000000000000")
        .replace("{key}", "k/x")
        .replace("{key_id}", "00000000-0000-0000-0000-000000000000")
        .replace("{file}", "js/main.js")
}

#[actix_web::test]
async fn every_documented_operation_is_answered_by_its_route() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let doc = documented();
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let concrete = concrete(path);
        for method in methods.as_object().unwrap().keys() {
            if path == "/subscriptions" {
                continue;
            }
            let req = TestRequest::default()
                .method(method.to_uppercase().parse().unwrap())
                .uri(&concrete)
                .insert_header(bearer(&h.alice_key));
            let (status, _, body) = send(&svc, req).await;
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !(status == 404 && body["detail"] == "Not Found"),
                "{method} {path} is not routed"
            );
        }
    }
    let (status, _, body) = send(&svc, TestRequest::get().uri("/openapi.json")).await;
    assert_eq!(
        (status, body["info"]["title"].as_str()),
        (200, Some("drama-server"))
    );
    assert_eq!(body, doc, "the served document is the generated one");
    let response =
        actix_web::test::call_service(&svc, TestRequest::get().uri("/docs").to_request()).await;
    assert_eq!(response.status(), 200);
}

#[actix_web::test]
async fn a_method_a_documented_path_lacks_is_answered_405_with_allow() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let doc = documented();
    let all = ["get", "put", "post", "delete", "patch", "trace", "options"];
    for (path, methods) in doc["paths"].as_object().unwrap() {
        let concrete = concrete(path);
        let documented: BTreeSet<String> = methods
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        for method in all {
            if documented.contains(&method.to_uppercase()) {
                continue;
            }
            let req = TestRequest::default()
                .method(method.to_uppercase().parse().unwrap())
                .uri(&concrete)
                .insert_header(bearer(&h.alice_key));
            let (status, headers, body) = send(&svc, req).await;
            assert_eq!(status, 405, "{method} {path}: {body}");
            assert_eq!(body["code"], "method_not_allowed", "{method} {path}");
            let allow: BTreeSet<String> = headers
                .get("allow")
                .unwrap_or_else(|| panic!("{method} {path} without Allow"))
                .to_str()
                .unwrap()
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            // HEAD may be served beside GET without being documented as its own operation.
            let undocumented: Vec<_> = allow.difference(&documented).collect();
            assert!(
                undocumented.iter().all(|m| *m == "HEAD"),
                "{method} {path}: Allow names {undocumented:?}"
            );
            assert!(documented.is_subset(&allow), "{method} {path}: {allow:?}");
        }
    }

    // An unknown path stays a 404, whatever the method.
    for method in ["GET", "TRACE", "PUT"] {
        let req = TestRequest::default()
            .method(method.parse().unwrap())
            .uri("/no-such-route")
            .insert_header(bearer(&h.alice_key));
        let (status, headers, body) = send(&svc, req).await;
        assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
        assert!(headers.get("allow").is_none());
    }
}
