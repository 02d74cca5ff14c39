//! What the deployment's shared credentials and service callers may not do: a legacy key or
//! the service key cannot make an API key that would outlive it, and a service caller acting
//! for a user gets signed URLs of that user's objects only, whatever the user's text names.

use serde_json::json;

use crate::support::{Harness, get, post_json, send};

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
