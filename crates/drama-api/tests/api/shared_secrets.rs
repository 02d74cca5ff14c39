//! What the deployment's shared credentials and service callers may not do: a legacy key or
//! the service key cannot make an API key that would outlive it, and a service caller acting
//! for a user gets signed URLs of that user's objects only, whatever the user's text names.

use serde_json::{Value, json};

use crate::support::{Harness, PNG, get, graphql, multipart, post_json, send, uploaded};

/// `POST /api-keys` with a legacy key or the bare service key is refused with 403
/// `forbidden`, naming the operator's command; nothing is made. A person and one of our
/// keys (a service key among them) still make keys.
#[actix_web::test]
async fn legacy_and_service_keys_cannot_make_api_keys() {
    let h = Harness::new().await;
    let mut s = Harness::settings();
    s.auth.legacy_api_keys = Some("old-key-1".to_owned());
    s.auth.service_key = Some("sb_secret_0123456789abcdef".to_owned());
    s.auth.legacy_user = Some(h.alice.to_string());
    let svc = h.service(s).await;
    for credential in ["old-key-1", "sb_secret_0123456789abcdef"] {
        let (status, _, body) = send(
            &svc,
            post_json("/api-keys", credential, json!({"name": "forever"})),
        )
        .await;
        assert_eq!(status, 403, "{credential}: {body}");
        assert_eq!(body["code"], "forbidden", "{body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("drama-server keys create"),
            "{body}"
        );
    }
    let (_, _, keys) = send(&svc, get("/api-keys", &h.alice_key)).await;
    let names: Vec<&str> = keys
        .as_array()
        .or_else(|| keys["keys"].as_array())
        .map(|list| list.iter().filter_map(|k| k["name"].as_str()).collect())
        .unwrap_or_default();
    assert!(!names.contains(&"forever"), "nothing made: {keys}");
    for key in [&h.alice_key, &h.service_key] {
        let (status, _, body) =
            send(&svc, post_json("/api-keys", key, json!({"name": "mine"}))).await;
        assert_eq!(status, 201, "{body}");
    }
}

/// Bob's upload, and Alice's whose metadata names Bob's object: a service caller listing
/// Alice's library (`user_id`) gets her object's URL signed and Bob's left as written.
#[actix_web::test]
async fn a_service_caller_acting_for_a_user_signs_only_that_users_objects() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let form = |metadata: &str| {
        multipart(
            &[
                ("project_name", "p"),
                ("asset_type", "image"),
                ("tag", "character"),
                ("metadata", metadata),
            ],
            Some(("a.png", "image/png", PNG)),
            false,
        )
    };
    let bobs = uploaded(&svc, &h.bob_key, form("{}")).await;
    let planted = format!(
        "{}/media/{}",
        h.app.public_base_url(),
        bobs["r2_key"].as_str().unwrap()
    );
    uploaded(
        &svc,
        &h.alice_key,
        form(&json!({ "see": planted }).to_string()),
    )
    .await;
    let list = format!("/asset-library/list?user_id={}&project_name=p", h.alice);
    let (status, _, body) = send(&svc, get(&list, &h.service_key)).await;
    assert_eq!(status, 200, "{body}");
    let record = &body["assets"][0];
    let own = record["public_url"].as_str().unwrap_or_default();
    assert!(own.contains("/files/") && own.contains("&sig="), "{body}");
    assert_eq!(record["see"], Value::String(planted.clone()), "{body}");

    // The same through GraphQL: Alice's summary names Bob's object.
    let mut drama = drama_testkit::builders::drama_json("planted", 1, 1, 1);
    drama["description"] = json!(format!("See {planted}"));
    let (status, _, body) = send(
        &svc,
        post_json("/dramas", &h.alice_key, json!({ "drama": drama })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = graphql(
        &svc,
        &h.service_key,
        &format!(
            r#"{{ dramaSummaries(userId: "{}") {{ description }} }}"#,
            h.alice
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["dramaSummaries"][0]["description"],
        json!(format!("See {planted}")),
        "{body}"
    );
}
