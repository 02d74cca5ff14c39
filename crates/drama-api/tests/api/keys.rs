//! `/api-keys`: what a key may revoke, how many keys a day makes, what a listing holds, and
//! the sweeper's deletion of keys that stopped working long ago.

use std::time::Duration;

use chrono::Utc;
use drama_api::{AuthSettings, HttpSettings};
use drama_dal::ApiKeyRepository;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};

use crate::support::{Api, Harness, delete, get, post_json, send};

const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters";

/// A Supabase session token of `user`.
fn session(user: drama_domain::UserId) -> String {
    let now = Utc::now().timestamp();
    let claims = json!({
        "sub": user.to_string(), "aud": "authenticated", "role": "authenticated",
        "exp": now + 3600, "iat": now,
    });
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn settings() -> HttpSettings {
    HttpSettings {
        auth: AuthSettings {
            jwt_secret: Some(SECRET.to_owned()),
            ..AuthSettings::default()
        },
        ..Harness::settings()
    }
}

/// A key made by the holder of `credential`: its id and secret.
async fn made(svc: &impl Api, credential: &str, name: &str) -> (String, String) {
    let (status, _, body) = send(
        svc,
        post_json("/api-keys", credential, json!({ "name": name })),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

async fn revoke(svc: &impl Api, credential: &str, id: &str) -> (u16, Value) {
    let (status, _, body) = send(svc, delete(&format!("/api-keys/{id}"), credential)).await;
    (status, body)
}

/// Key A makes B; a session makes C. B revokes neither C nor its maker A (404, as an absent
/// key); it revokes itself, and A the keys it made; a session revokes any of the user's.
#[actix_web::test]
async fn a_key_revokes_only_itself_and_the_keys_made_with_it() {
    let h = Harness::new().await;
    let svc = h.service(settings()).await;
    let a = h.alice_key.clone();
    let a_id = h.store.list_api_keys(h.alice).await.unwrap()[0]
        .id
        .to_string();
    let token = session(h.alice);
    let (c, _) = made(&svc, &token, "session's").await;
    let (b, b_key) = made(&svc, &a, "b").await;
    let (b2, _) = made(&svc, &a, "b2").await;

    for outside in [&c, &a_id, &b2] {
        let (status, body) = revoke(&svc, &b_key, outside).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{body}"
        );
    }
    let (status, _, _) = send(&svc, get("/dramas", &a)).await;
    assert_eq!(status, 200, "A still works");

    let (status, body) = revoke(&svc, &a, &b2).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = revoke(&svc, &b_key, &b).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["revokedAt"].is_number(), "{body}");
    let (status, _, _) = send(&svc, get("/dramas", &b_key)).await;
    assert_eq!(status, 401);

    let (status, body) = revoke(&svc, &token, &c).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = revoke(&svc, &token, &a_id).await;
    assert_eq!(status, 200, "{body}");
}

/// Revoking makes room for a usable key, not for more keys a day: the 101st key of a day is
/// refused with 403 `quota_exceeded`, however many were revoked.
#[actix_web::test]
async fn keys_made_in_a_day_are_capped_even_when_revoked() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    // The harness made Alice's first key today.
    for i in 1..drama_app::MAX_KEYS_PER_DAY {
        let (id, _) = made(&svc, &h.alice_key, &format!("k{i}")).await;
        let (status, body) = revoke(&svc, &h.alice_key, &id).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, body) = send(
        &svc,
        post_json("/api-keys", &h.alice_key, json!({"name": "one more"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{body}"
    );
    // Bob's day is his own.
    made(&svc, &h.bob_key, "bob's").await;
}

/// A listing holds the usable keys and those revoked or expired in the last 30 days: not a
/// key that expired before that.
#[actix_web::test]
async fn the_key_listing_leaves_out_keys_lapsed_long_ago() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let old = h
        .store
        .create_api_key(
            h.alice,
            "old",
            &[],
            Some(Utc::now() - chrono::Duration::days(40)),
        )
        .await
        .unwrap();
    let (revoked, _) = made(&svc, &h.alice_key, "revoked").await;
    revoke(&svc, &h.alice_key, &revoked).await;
    let (status, _, body) = send(&svc, get("/api-keys", &h.alice_key)).await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["revoked", "test"], "{body}");
    assert!(!body.to_string().contains(&old.meta.id.to_string()));
}

/// The sweeper deletes keys that stopped working more than 30 days ago, and no other.
#[actix_web::test]
async fn the_sweeper_deletes_keys_lapsed_long_ago() {
    let h = Harness::new().await;
    let old = h
        .store
        .create_api_key(
            h.alice,
            "old",
            &[],
            Some(Utc::now() - chrono::Duration::days(40)),
        )
        .await
        .unwrap();
    let sweeper = tokio::spawn(h.app.clone().run_sweeper(Duration::from_millis(20)));
    let mut left = Vec::new();
    for _ in 0..200 {
        left = h.store.list_api_keys(h.alice).await.unwrap();
        if left.iter().all(|k| k.id != old.meta.id) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sweeper.abort();
    let names: Vec<&str> = left.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["test"]);
}
