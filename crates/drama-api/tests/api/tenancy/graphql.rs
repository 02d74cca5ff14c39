//! The GraphQL part of the cross-tenant table: every query, mutation and subscription field
//! (from introspection), as Bob calls it with Alice's ids.

use std::collections::BTreeSet;
use std::time::Duration;

use actix_web::test::TestRequest;
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Alice, Expect, World, call, judge};
use crate::support::{Api, Harness, bearer, listen_app, percent_encoded, pg_app, post_json};

/// Every query and mutation field, as Bob calls it with Alice's ids.
fn graphql_calls(a: &Alice) -> Vec<(&'static str, &'static str, String, Expect)> {
    use Expect::{Own, Refused};
    let (job, user) = (&a.job, a.user);
    vec![
        ("query", "drama", r#"{ drama(id: "alices") { id title } }"#.into(), Refused),
        (
            "query",
            "dramaSummaries",
            format!(r#"{{ dramaSummaries(userId: "{user}") {{ id title }} }}"#),
            Own,
        ),
        ("query", "dramas", "{ dramas { id title characters { name } } }".into(), Own),
        // The price list is the same for everyone.
        ("query", "models", "{ models { models { name } image } }".into(), Own),
        ("query", "me", "{ me { id tokens } }".into(), Own),
        (
            "query",
            "estimate",
            r#"{ estimate(dramaId: "alices") { cost expectedCost } }"#.into(),
            Refused,
        ),
        ("query", "job", format!(r#"{{ job(id: "{job}") {{ id status }} }}"#), Refused),
        // Bob's own runs about that id: none, as for a missing drama.
        ("query", "jobs", r#"{ jobs(dramaId: "alices") { id status } }"#.into(), Own),
        (
            "mutation",
            "updateDrama",
            r#"mutation { updateDrama(id: "alices", input: {title: "Bob's"}) { id } }"#.into(),
            Refused,
        ),
        ("mutation", "deleteDrama", r#"mutation { deleteDrama(id: "alices") }"#.into(), Refused),
        (
            "mutation",
            "createDrama",
            r#"mutation { createDrama(premise: "mine", id: "alices") { dramaId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "improveDrama",
            r#"mutation { improveDrama(id: "alices", feedback: "more", newDramaId: "bobs-copy") { dramaId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "critiqueDrama",
            r#"mutation { critiqueDrama(id: "alices") { dramaId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "generateDrama",
            r#"mutation { generateDrama(id: "alices") { jobId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "generateEpisode",
            r#"mutation { generateEpisode(dramaId: "alices", episodeId: "e0") { jobId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "generateScene",
            r#"mutation { generateScene(dramaId: "alices", sceneId: "e0-s0") { jobId } }"#.into(),
            Refused,
        ),
        (
            "mutation",
            "generateAsset",
            r#"mutation { generateAsset(dramaId: "alices", assetId: "e0-s0-img") { jobId } }"#.into(),
            Refused,
        ),
        ("mutation", "cancelJob", format!(r#"mutation {{ cancelJob(id: "{job}") {{ id }} }}"#), Refused),
        ("mutation", "resumeJob", format!(r#"mutation {{ resumeJob(id: "{job}") {{ id }} }}"#), Refused),
        (
            "mutation",
            "generateCharacterImage",
            format!(
                r#"mutation {{ generateCharacterImage(dramaId: "alices", characterId: "c0", userId: "{user}") {{ id }} }}"#
            ),
            Refused,
        ),
        (
            "mutation",
            "generateCoverPhoto",
            format!(r#"mutation {{ generateCoverPhoto(dramaId: "alices", userId: "{user}") {{ id }} }}"#),
            Refused,
        ),
    ]
}

/// Every subscription field, as Bob subscribes with Alice's ids.
fn subscription_calls(a: &Alice) -> Vec<(&'static str, String)> {
    vec![
        (
            "dramaChanged",
            r#"subscription { dramaChanged(id: "alices") { version } }"#.into(),
        ),
        (
            "jobProgress",
            format!(
                r#"subscription {{ jobProgress(jobId: "{}") {{ eventId state }} }}"#,
                a.job
            ),
        ),
    ]
}

async fn introspect(svc: &impl Api, key: &str) -> Vec<(String, String)> {
    let query = "{ __schema { queryType { fields { name } } mutationType { fields { name } } \
                 subscriptionType { fields { name } } } }";
    let (status, text) = call(svc, post_json("/graphql", key, json!({ "query": query }))).await;
    assert_eq!(status, 200, "{text}");
    let body: Value = serde_json::from_str(&text).unwrap();
    let mut fields = Vec::new();
    for (root, kind) in [
        ("queryType", "query"),
        ("mutationType", "mutation"),
        ("subscriptionType", "subscription"),
    ] {
        for f in body["data"]["__schema"][root]["fields"].as_array().unwrap() {
            fields.push((kind.to_owned(), f["name"].as_str().unwrap().to_owned()));
        }
    }
    fields
}

pub(super) async fn graphql_fields(w: &World, svc: &impl Api) {
    let a = &w.alice;
    let calls = graphql_calls(a);
    let subscriptions = subscription_calls(a);
    let schema: BTreeSet<(String, String)> =
        introspect(svc, &w.bob_key).await.into_iter().collect();
    let listed: BTreeSet<(String, String)> = calls
        .iter()
        .map(|(k, f, ..)| ((*k).to_owned(), (*f).to_owned()))
        .chain(
            subscriptions
                .iter()
                .map(|(f, _)| ("subscription".to_owned(), (*f).to_owned())),
        )
        .collect();
    let missing: Vec<_> = schema.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&schema).collect();
    assert!(
        missing.is_empty(),
        "GraphQL fields without a cross-tenant entry: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "entries for fields that do not exist: {stale:?}"
    );

    for (kind, field, document, expect) in &calls {
        for method in ["POST", "GET"] {
            let request = if method == "POST" {
                TestRequest::post().set_json(json!({ "query": document }))
            } else {
                TestRequest::get().uri(&format!("/graphql?query={}", percent_encoded(document)))
            };
            let request = match method {
                "POST" => request.uri("/graphql"),
                _ => request,
            }
            .insert_header(bearer(&w.bob_key));
            let (status, text) = call(svc, request).await;
            let what = format!("{method} {kind} {field}");
            judge(a, &what, document, Expect::Own, status, &text);
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            // A mutation over GET runs nothing, whoever's ids it names.
            if method == "GET" && *kind == "mutation" {
                assert_eq!(status, 405, "{what}: {text}");
                assert_eq!(body["code"], "method_not_allowed", "{what}: {text}");
                continue;
            }
            if *expect == Expect::Refused {
                let refused = body["errors"].as_array().is_some_and(|e| !e.is_empty())
                    || body["data"][*field].is_null();
                assert!(refused, "{what} succeeded: {text}");
            }
        }
    }
}

pub(super) async fn subscriptions(w: &World) {
    // The server's worker thread runs a runtime of its own, and connections opened there die
    // with it: the server gets a pool of its own, so none of them is left in the world's pool
    // for the checks that follow.
    let pool = w.db.pool().await;
    let (_, app) = pg_app(&pool).await;
    let server = listen_app(app, Harness::settings());
    for (field, document) in subscription_calls(&w.alice) {
        let mut ws = crate::websocket::connect(&server).await;
        let init = json!({"type": "connection_init", "payload": {"x-api-key": w.bob_key}});
        ws.send(Message::Text(init.to_string().into()))
            .await
            .unwrap();
        let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": document}});
        ws.send(Message::Text(subscribe.to_string().into()))
            .await
            .unwrap();
        let mut answers = Vec::new();
        // Until the subscription ends (error or complete) or a second of silence.
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout(Duration::from_secs(1), ws.next()).await
        {
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "ping" || value["type"] == "pong" {
                continue;
            }
            answers.push(value.clone());
            if value["type"] == "error" || value["type"] == "complete" {
                break;
            }
        }
        let text = serde_json::to_string(&answers).unwrap();
        judge(&w.alice, field, &document, Expect::Own, 0, &text);
        let delivered = answers
            .iter()
            .any(|m| m["type"] == "next" && m["payload"]["errors"].is_null());
        assert!(!delivered, "subscription {field} delivered data: {text}");
        let refused = answers.iter().any(|m| {
            m["type"] == "error" || (m["type"] == "next" && !m["payload"]["errors"].is_null())
        });
        assert!(refused, "subscription {field} was not refused: {text}");
    }
    drop(server);
    pool.close().await;
}
