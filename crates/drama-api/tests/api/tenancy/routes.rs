//! The REST part of the cross-tenant table: every documented operation, as Bob calls it.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::{Alice, Expect};

const DOC: &str = include_str!("../../../openapi.json");

/// Every REST route, as Bob calls it with Alice's ids: method, documented path, URI, JSON body
/// (None: no body), expectation.
pub(super) fn rest_calls(
    a: &Alice,
) -> Vec<(&'static str, &'static str, String, Option<Value>, Expect)> {
    use Expect::{GraphQl, Own, Refused};
    let d = "/dramas/alices";
    let s = format!("{d}/episodes/e0/scenes/e0-s0");
    let lib = format!(
        "/asset-library/{}?project_name=alices-project&asset_type=image&user_id={}",
        a.library_id, a.user
    );
    let j = format!("/jobs/{}", a.job);
    let none = None;
    let empty = Some(json!({}));
    vec![
        ("get", "/health", "/health".into(), none.clone(), Own),
        ("get", "/ready", "/ready".into(), none.clone(), Own),
        ("get", "/models", "/models".into(), none.clone(), Own),
        // The caller's own balance and ledger, whatever ids they send.
        ("get", "/me", "/me".into(), none.clone(), Own),
        ("get", "/", "/".into(), none.clone(), Own),
        (
            "get",
            "/openapi.json",
            "/openapi.json".into(),
            none.clone(),
            Own,
        ),
        ("get", "/docs", "/docs".into(), none.clone(), Own),
        ("get", "/redoc", "/redoc".into(), none.clone(), Own),
        ("get", "/ui", "/ui".into(), none.clone(), Own),
        ("get", "/ui/", "/ui/".into(), none.clone(), Own),
        ("get", "/ui/{file}", "/ui/app.js".into(), none.clone(), Own),
        (
            "post",
            "/ui/sign-in",
            "/ui/sign-in".into(),
            Some(json!({"code": "x"})),
            Refused,
        ),
        (
            "get",
            "/dramas",
            format!("/dramas?user_id={}", a.user),
            none.clone(),
            Own,
        ),
        (
            "post",
            "/dramas",
            "/dramas".into(),
            Some(json!({"drama": drama_testkit::builders::drama_json("alices", 1, 1, 1)})),
            Refused,
        ),
        ("get", "/dramas/{drama_id}", d.into(), none.clone(), Refused),
        (
            "patch",
            "/dramas/{drama_id}",
            d.into(),
            Some(json!({"title": "Bob's"})),
            Refused,
        ),
        (
            "delete",
            "/dramas/{drama_id}",
            d.into(),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/characters",
            format!("{d}/characters"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/characters/{character_id}",
            format!("{d}/characters/c0"),
            none.clone(),
            Refused,
        ),
        (
            "patch",
            "/dramas/{drama_id}/characters/{character_id}",
            format!("{d}/characters/c0"),
            Some(json!({"name": "Bob's"})),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes",
            format!("{d}/episodes"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}",
            format!("{d}/episodes/e0"),
            none.clone(),
            Refused,
        ),
        (
            "patch",
            "/dramas/{drama_id}/episodes/{episode_id}",
            format!("{d}/episodes/e0"),
            Some(json!({"title": "Bob's"})),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes",
            format!("{d}/episodes/e0/scenes"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}",
            s.clone(),
            none.clone(),
            Refused,
        ),
        (
            "patch",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}",
            s.clone(),
            Some(json!({"description": "Bob's"})),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets",
            format!("{s}/assets"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}",
            format!("{s}/assets/e0-s0-img"),
            none.clone(),
            Refused,
        ),
        (
            "patch",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}",
            format!("{s}/assets/e0-s0-img"),
            Some(json!({"prompt": "Bob's"})),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/improve",
            format!("{d}/improve"),
            Some(json!({"feedback": "more", "newDramaId": "bobs-copy"})),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/critic",
            format!("{d}/critic"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/critique",
            format!("{d}/critique"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/generate",
            format!("{d}/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/episodes/{episode_id}/generate",
            format!("{d}/episodes/e0/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/generate",
            format!("{s}/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}/generate",
            format!("{s}/assets/e0-s0-img/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/episodes/{episode_id}/stitch",
            format!("{d}/episodes/e0/stitch"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/characters/{character_id}/audition",
            format!("{d}/characters/c0/audition"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/characters/{character_id}/audition",
            format!("{d}/characters/c0/audition"),
            none.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/characters/{character_id}/generate",
            format!("{d}/characters/c0/generate"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/cover_photo",
            format!("{d}/cover_photo"),
            none.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/cover_photo",
            format!("{d}/cover_photo"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            // Bob's own runs about that id: none, the same answer as for a missing drama.
            "/dramas/{drama_id}/jobs",
            format!("{d}/jobs"),
            none.clone(),
            Own,
        ),
        (
            "get",
            "/dramas/{drama_id}/jobs/{job_id}",
            format!("{d}/jobs/{}", a.job),
            none.clone(),
            Refused,
        ),
        ("get", "/jobs/{job_id}", j.clone(), none.clone(), Refused),
        (
            "post",
            "/jobs/{job_id}/cancel",
            format!("{j}/cancel"),
            empty.clone(),
            Refused,
        ),
        (
            "post",
            "/jobs/{job_id}/resume",
            format!("{j}/resume"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            "/jobs/{job_id}/events",
            format!("{j}/events"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/jobs/{job_id}/graph",
            format!("{j}/graph"),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/dramas/{drama_id}/events",
            format!("{d}/events"),
            none.clone(),
            Refused,
        ),
        (
            "post",
            "/dramas/{drama_id}/estimate",
            format!("{d}/estimate"),
            empty.clone(),
            Refused,
        ),
        (
            "get",
            "/asset-library/list",
            format!(
                "/asset-library/list?project_name=alices-project&user_id={}",
                a.user
            ),
            none.clone(),
            Own,
        ),
        // Multipart: called separately (below); an upload naming Alice lands in Bob's library.
        (
            "post",
            "/asset-library/upload",
            String::new(),
            none.clone(),
            Own,
        ),
        (
            "get",
            "/asset-library/{asset_id}",
            lib.clone(),
            none.clone(),
            Refused,
        ),
        (
            "delete",
            "/asset-library/{asset_id}",
            lib.clone(),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/asset-library/{asset_id}/metadata",
            lib.replacen('?', "/metadata?", 1),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/media/{key}",
            format!("/media/{}", a.object_key),
            none.clone(),
            Refused,
        ),
        (
            "head",
            "/media/{key}",
            format!("/media/{}", a.object_key),
            none.clone(),
            Refused,
        ),
        (
            "get",
            "/files/{key}",
            format!("/files/{}", a.object_key),
            none.clone(),
            Refused,
        ),
        (
            "head",
            "/files/{key}",
            format!("/files/{}", a.object_key),
            none.clone(),
            Refused,
        ),
        (
            "put",
            "/files/{key}",
            format!("/files/{}", a.object_key),
            empty.clone(),
            Refused,
        ),
        ("get", "/graphql", String::new(), none.clone(), GraphQl),
        ("post", "/graphql", String::new(), none.clone(), GraphQl),
        (
            "get",
            "/subscriptions",
            String::new(),
            none.clone(),
            GraphQl,
        ),
        ("get", "/api-keys", "/api-keys".into(), none.clone(), Own),
        (
            "post",
            "/api-keys",
            "/api-keys".into(),
            Some(json!({"name": "bob's"})),
            Own,
        ),
        (
            "delete",
            "/api-keys/{key_id}",
            format!("/api-keys/{}", a.key_id),
            none.clone(),
            Refused,
        ),
    ]
}

/// The (method, path) pairs of the OpenAPI document.
pub(super) fn documented_operations() -> BTreeSet<(String, String)> {
    let doc: Value = serde_json::from_str(DOC).unwrap();
    let mut found = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in ["get", "head", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                found.insert((method.to_owned(), path.clone()));
            }
        }
    }
    found
}
