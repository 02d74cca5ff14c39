//! Supabase JWTs (HS256 secret, ES256 through the JWKS) and API keys.

use chrono::Utc;
use drama_api::{AuthSettings, HttpSettings};
use drama_dal::{ApiKeyRepository, UserRepository};
use drama_domain::UserId;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{Harness, get, send};

const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters";
const ISSUER_BASE: &str = "https://project.supabase.co";

fn claims(sub: UserId, overrides: Value) -> Value {
    let now = Utc::now().timestamp();
    let mut c = json!({
        "sub": sub.to_string(), "aud": "authenticated", "role": "authenticated",
        "iss": format!("{ISSUER_BASE}/auth/v1"), "exp": now + 3600, "iat": now,
        "email": "ana@example.com",
    });
    for (k, v) in overrides.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn settings(supabase_url: &str) -> HttpSettings {
    HttpSettings {
        auth: AuthSettings {
            jwt_secret: Some(SECRET.to_owned()),
            supabase_url: Some(supabase_url.to_owned()),
        },
        ..Harness::settings()
    }
}

#[actix_web::test]
async fn a_valid_supabase_token_authenticates_and_creates_the_user() {
    let h = Harness::new().await;
    let svc = h.service(settings(ISSUER_BASE)).await;
    let subject = UserId::random();
    assert!(h.store.get_user(subject).await.is_err());
    let (status, _, body) = send(&svc, get("/dramas", &hs256(&claims(subject, json!({}))))).await;
    assert_eq!(status, 200, "{body}");
    let user = h.store.get_user(subject).await.unwrap();
    assert_eq!(user.email.as_deref(), Some("ana@example.com"));
    assert_eq!(user.tokens, drama_dal::DEFAULT_TOKENS);
}

#[actix_web::test]
async fn bad_tokens_are_refused_with_the_reason() {
    let h = Harness::new().await;
    let svc = h.service(settings(ISSUER_BASE)).await;
    let sub = UserId::random();
    let past = Utc::now().timestamp() - 7200;
    for (token, reason) in [
        (hs256(&claims(sub, json!({"exp": past}))), "expired"),
        (
            hs256(&claims(sub, json!({"aud": "anon-clients"}))),
            "wrong audience",
        ),
        (
            hs256(&claims(sub, json!({"iss": "https://evil.example/auth/v1"}))),
            "wrong issuer",
        ),
        (hs256(&claims(sub, json!({"role": "anon"}))), "role"),
        (hs256(&claims(sub, json!({"sub": "not-a-uuid"}))), "subject"),
        (
            encode(
                &Header::new(Algorithm::HS256),
                &claims(sub, json!({})),
                &EncodingKey::from_secret(b"another-secret-of-enough-length-123456"),
            )
            .unwrap(),
            "bad signature",
        ),
        ("not.a.jwt".to_owned(), "Invalid"),
    ] {
        let (status, _, body) = send(&svc, get("/dramas", &token)).await;
        assert_eq!(status, 401, "{reason}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(reason), "{reason}: {detail}");
    }
    assert!(
        h.store.get_user(sub).await.is_err(),
        "no user for refused tokens"
    );
}

#[actix_web::test]
async fn es256_tokens_are_verified_with_the_project_jwks_and_rotation_is_picked_up() {
    let server = MockServer::start().await;
    let jwks: Value =
        serde_json::from_str(include_str!("../fixtures/es256-test-jwks.json")).unwrap();
    Mock::given(method("GET"))
        .and(path("/auth/v1/.well-known/jwks.json"))
        .respond_with(ResponseTemplate::new(200).set_body_json(&jwks))
        .mount(&server)
        .await;
    let h = Harness::new().await;
    let svc = h.service(settings(&server.uri())).await;
    let key = EncodingKey::from_ec_der(include_bytes!("../fixtures/es256-test-key.der"));
    let sign = |kid: &str, sub: UserId| {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        let mut c = claims(sub, json!({}));
        c["iss"] = json!(format!("{}/auth/v1", server.uri()));
        encode(&header, &c, &key).unwrap()
    };
    for _ in 0..3 {
        let (status, _, body) =
            send(&svc, get("/dramas", &sign("test-key-1", UserId::random()))).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        1,
        "the JWKS is cached"
    );
    // A kid the JWKS does not have triggers one refetch, then a refusal.
    let (status, _, body) =
        send(&svc, get("/dramas", &sign("rotated-key", UserId::random()))).await;
    assert_eq!(status, 401);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("unknown signing key")
    );
}

#[actix_web::test]
async fn revoked_and_expired_keys_are_refused() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let owner = UserId::random();
    h.store
        .create_user(&drama_dal::NewUser::new(owner))
        .await
        .unwrap();
    let key = h
        .store
        .create_api_key(
            owner,
            "short",
            &[],
            Some(Utc::now() - chrono::Duration::seconds(1)),
        )
        .await
        .unwrap();
    let (status, _, body) = send(&svc, get("/dramas", &key.key)).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (401, Some("API key expired"))
    );

    let live = h
        .store
        .create_api_key(owner, "live", &[], None)
        .await
        .unwrap();
    h.store.revoke_api_key(owner, live.meta.id).await.unwrap();
    let (status, _, body) = send(&svc, get("/dramas", &live.key)).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (401, Some("API key revoked"))
    );
}

#[actix_web::test]
async fn a_key_records_its_last_use() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    send(&svc, get("/dramas", &h.alice_key)).await;
    let mut used = None;
    for _ in 0..50 {
        let keys = h.store.list_api_keys(h.alice).await.unwrap();
        used = keys[0].last_used_at;
        if used.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(used.is_some(), "last use recorded");
}
