//! Supabase JWTs (HS256 secret, ES256 through the JWKS) and API keys.

use chrono::Utc;
use drama_api::{AuthSettings, HttpSettings};
use drama_dal::{ApiKeyRepository, UserRepository};
use drama_domain::UserId;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{Api, Captured, Harness, field_of_each, get, send};

const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters";
pub(crate) const ISSUER_BASE: &str = "https://project.supabase.co";

pub(crate) fn claims(sub: UserId, overrides: Value) -> Value {
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

pub(crate) fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

pub(crate) fn settings(supabase_url: &str) -> HttpSettings {
    HttpSettings {
        auth: AuthSettings {
            jwt_secret: Some(SECRET.to_owned()),
            supabase_url: Some(supabase_url.to_owned()),
            ..AuthSettings::default()
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

/// Supabase's anonymous sign-ins hand anyone a new `authenticated` session for the asking:
/// such a user is let in but opens with no credits, or each sign-in would be free generation.
#[actix_web::test]
async fn an_anonymous_session_opens_with_no_credits() {
    let h = Harness::new().await;
    let svc = h.service(settings(ISSUER_BASE)).await;
    let subject = UserId::random();
    let token = hs256(&claims(
        subject,
        json!({"is_anonymous": true, "email": null}),
    ));
    let (status, _, body) = send(&svc, get("/dramas", &token)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(h.store.get_user(subject).await.unwrap().tokens, 0);
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
            hs256(&claims(sub, json!({"nbf": Utc::now().timestamp() + 3600}))),
            "not valid yet",
        ),
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

/// A key of the Supabase project as the dashboard shows it: no subject, no audience, issuer
/// `supabase`, the project's ref.
pub(crate) fn project_key(role: &str, project: &str) -> Value {
    let now = Utc::now().timestamp();
    json!({"iss": "supabase", "ref": project, "role": role, "iat": now, "exp": now + 3600})
}

async fn summaries_of(svc: &impl Api, token: &str, user: Option<UserId>) -> (u16, Vec<String>) {
    let (status, _, body) = send(
        svc,
        crate::support::post_json(
            "/graphql",
            token,
            json!({
                "query": "query($userId: String) { dramaSummaries(userId: $userId) { id } }",
                "variables": {"userId": user.map(|u| u.to_string())},
            }),
        ),
    )
    .await;
    let ids = body["data"]["dramaSummaries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| d["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (status, ids)
}

#[actix_web::test]
async fn the_projects_service_role_key_is_a_service_caller_and_anon_stays_refused() {
    let h = Harness::new().await;
    let svc = h.service(settings(ISSUER_BASE)).await;
    crate::support::create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;

    let service = hs256(&project_key("service_role", "project"));
    let (status, ids) = summaries_of(&svc, &service, Some(h.bob)).await;
    assert_eq!(
        (status, ids),
        (200, vec!["bobs".to_owned()]),
        "acts for Bob"
    );
    let (status, _, body) = send(&svc, get("/dramas", &service)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        h.store
            .get_user(drama_api::auth::SERVICE_USER)
            .await
            .is_ok(),
        "naming nobody, it acts as the service user, which now exists"
    );

    for (token, reason) in [
        (hs256(&project_key("anon", "project")), "anon"),
        (
            hs256(&project_key("service_role", "another")),
            "project \"another\"",
        ),
        (
            hs256(
                &json!({"iss": "supabase", "ref": "project", "role": "service_role",
                          "exp": Utc::now().timestamp() - 7200}),
            ),
            "expired",
        ),
        (
            hs256(
                &json!({"iss": "supabase", "ref": "project", "role": "service_role",
                          "exp": Utc::now().timestamp() + 7200,
                          "nbf": Utc::now().timestamp() + 3600}),
            ),
            "not valid yet",
        ),
        (
            encode(
                &Header::new(Algorithm::HS256),
                &project_key("service_role", "project"),
                &EncodingKey::from_secret(b"another-secret-of-enough-length-123456"),
            )
            .unwrap(),
            "bad signature",
        ),
    ] {
        let (status, _, body) = send(&svc, get("/dramas", &token)).await;
        assert_eq!(status, 401, "{reason}: {body}");
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(reason), "{reason}: {detail}");
    }
}

#[actix_web::test]
async fn a_service_role_token_acts_for_a_named_user_on_rest_and_in_a_mutation() {
    let h = Harness::new().await;
    let worker = h.worker().await;
    let svc = h.service(settings(ISSUER_BASE)).await;
    crate::support::create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;
    let service = hs256(&project_key("service_role", "project"));
    let bob = h.bob.to_string();

    // REST: an upload into Bob's library, as the old server-side callers made them.
    let fields = [
        ("project_name", "shared"),
        ("asset_type", "image"),
        ("tag", "character"),
        ("user_id", bob.as_str()),
    ];
    let body = crate::support::multipart(
        &fields,
        Some(("a.png", "image/png", crate::support::PNG)),
        false,
    );
    let (status, _, record) = send(&svc, crate::support::upload(&service, body)).await;
    assert_eq!(status, 200, "{record}");
    let (_, _, bobs) = send(
        &svc,
        get("/asset-library/list?project_name=shared", &h.bob_key),
    )
    .await;
    // Bob named nobody: the old server's default is echoed, as it answered.
    assert_eq!(bobs["user_id"], "10000");
    assert_eq!(bobs["total"], 1, "the upload is Bob's: {bobs}");
    // The same `user_id` from an ordinary caller is ignored: Alice uploads into her own.
    let body = crate::support::multipart(
        &fields,
        Some(("a.png", "image/png", crate::support::PNG)),
        false,
    );
    let (status, _, _) = send(&svc, crate::support::upload(&h.alice_key, body)).await;
    assert_eq!(status, 200);
    let (_, _, still) = send(
        &svc,
        get("/asset-library/list?project_name=shared", &h.bob_key),
    )
    .await;
    assert_eq!(still["total"], 1, "{still}");

    // GraphQL: mutations on Bob's drama, naming him: his main character's portrait, then
    // the cover (which needs it).
    let (_, _, before) = send(&svc, get("/dramas/bobs", &h.bob_key)).await;
    let character = before["characters"][0]["id"].as_str().unwrap().to_owned();
    let portrait = json!({
        "query": "mutation($d: String!, $c: String!, $u: String) { generateCharacterImage(dramaId: $d, characterId: $c, userId: $u) { id url } }",
        "variables": {"d": "bobs", "c": character, "u": bob},
    });
    let (_, _, answer) = send(
        &svc,
        crate::support::post_json("/graphql", &service, portrait),
    )
    .await;
    let url = answer["data"]["generateCharacterImage"]["url"]
        .as_str()
        .unwrap_or_default();
    assert!(url.contains(&format!("/{bob}/bobs/")), "{answer}");
    let mutation = json!({
        "query": "mutation($d: String!, $u: String) { generateCoverPhoto(dramaId: $d, userId: $u) { id url } }",
        "variables": {"d": "bobs", "u": bob},
    });
    let (status, _, answer) = send(
        &svc,
        crate::support::post_json("/graphql", &service, mutation.clone()),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let cover = answer["data"]["generateCoverPhoto"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no cover: {answer}"))
        .to_owned();
    assert!(cover.contains(&format!("/{bob}/bobs/")), "{cover}");
    let (_, _, seen) = send(&svc, get("/dramas/bobs", &h.bob_key)).await;
    let url = seen["url"].as_str().unwrap_or_default();
    assert!(
        url.contains(&format!("/{bob}/bobs/")),
        "Bob sees his new cover: {seen}"
    );
    // Alice naming Bob reaches nothing of his.
    let (_, _, refused) = send(
        &svc,
        crate::support::post_json("/graphql", &h.alice_key, mutation),
    )
    .await;
    assert_eq!(
        refused["data"]["generateCoverPhoto"],
        Value::Null,
        "{refused}"
    );
    // The old clients' default `userId` from an ordinary caller is ignored, not an error.
    let old_default = json!({
        "query": "mutation { generateCoverPhoto(dramaId: \"missing\", userId: \"10000\") { id } }",
    });
    let (_, _, ignored) = send(
        &svc,
        crate::support::post_json("/graphql", &h.alice_key, old_default),
    )
    .await;
    assert_eq!(ignored, json!({"data": {"generateCoverPhoto": null}}));
    worker.shutdown().await;
}

#[actix_web::test]
async fn each_old_key_is_warned_about_once_not_on_every_request() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    // actix tests run on one thread, where the requests are authenticated too.
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = Harness::new().await;
    let mut s = Harness::settings();
    s.auth.legacy_api_keys = Some("old-key-1,old-key-2".to_owned());
    s.auth.legacy_user = Some(h.alice.to_string());
    let svc = h.service(s).await;
    for _ in 0..3 {
        for key in ["old-key-1", "old-key-2"] {
            let (status, _, _) = send(&svc, get("/dramas", key)).await;
            assert_eq!(status, 200);
        }
    }
    let text = logs.text();
    assert_eq!(
        text.matches("LEGACY_API_KEYS are accepted for the transition and deprecated")
            .count(),
        1,
        "one line when the keys are loaded:\n{text}"
    );
    let uses: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("a request used an old API key"))
        .collect();
    assert_eq!(uses.len(), 2, "one line per key, not per request:\n{text}");
    assert!(
        uses[0].contains("legacy_key=1") && uses[1].contains("legacy_key=2"),
        "{uses:?}"
    );
    assert!(
        !text.contains("old-key-"),
        "the keys themselves are never logged:\n{text}"
    );
}

#[actix_web::test]
async fn the_configured_service_key_counts_even_when_it_is_not_a_jwt() {
    let h = Harness::new().await;
    let mut s = settings(ISSUER_BASE);
    s.auth.service_key = Some("sb_secret_0123456789abcdef".to_owned());
    s.auth.legacy_user = Some(h.alice.to_string());
    let svc = h.service(s).await;
    crate::support::create_drama(&svc, &h.alice_key, "alices", (1, 1, 1)).await;
    crate::support::create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;
    for header in ["Authorization", "X-API-Key"] {
        let value = if header == "Authorization" {
            "Bearer sb_secret_0123456789abcdef".to_owned()
        } else {
            "sb_secret_0123456789abcdef".to_owned()
        };
        let (status, _, body) = send(
            &svc,
            actix_web::test::TestRequest::get()
                .uri("/dramas")
                .insert_header((header, value)),
        )
        .await;
        assert_eq!(status, 200, "{header}: {body}");
        let ids = field_of_each(&body["dramas"], "id");
        assert_eq!(ids, ["alices"], "naming nobody, it acts as LEGACY_USER_ID");
    }
    let (_, ids) = summaries_of(&svc, "sb_secret_0123456789abcdef", Some(h.bob)).await;
    assert_eq!(ids, ["bobs"]);
    let (status, _, _) = send(&svc, get("/dramas", "sb_secret_0123456789abcdeX")).await;
    assert_eq!(status, 401, "a near miss is refused");
}

#[actix_web::test]
async fn old_api_keys_act_as_the_legacy_user_and_nothing_more() {
    let h = Harness::new().await;
    let mut s = Harness::settings();
    s.auth.legacy_api_keys = Some(" old-key-1 ,, old-key-2 ".to_owned());
    s.auth.legacy_user = Some(h.alice.to_string());
    let svc = h.service(s).await;
    crate::support::create_drama(&svc, &h.alice_key, "alices", (1, 1, 1)).await;
    crate::support::create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;

    for key in ["old-key-1", "old-key-2"] {
        let (status, ids) = summaries_of(&svc, key, Some(h.bob)).await;
        assert_eq!(
            (status, ids),
            (200, vec!["alices".to_owned()]),
            "{key}: Alice's dramas; naming Bob is ignored (not a service caller)"
        );
    }
    // The old server took them as `Authorization: Bearer`; the asset library was what they
    // protected, with the old default user in the query.
    let (status, _, body) = send(
        &svc,
        get(
            "/asset-library/list?user_id=10000&project_name=alices",
            "old-key-1",
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // The argument as given, not the user it stands for.
    assert_eq!(body["user_id"], "10000");
    for bad in ["old-key-3", "old-key", ""] {
        let (status, _, _) = send(&svc, get("/dramas", bad)).await;
        assert_eq!(status, 401, "{bad:?}");
    }
}

#[test]
fn legacy_keys_without_a_user_to_act_as_are_a_configuration_error() {
    let keys_only = AuthSettings {
        legacy_api_keys: Some("k1".to_owned()),
        ..AuthSettings::default()
    };
    assert!(keys_only.validate().unwrap_err().contains("LEGACY_USER_ID"));
    let bad_user = AuthSettings {
        legacy_user: Some("10000".to_owned()),
        ..AuthSettings::default()
    };
    assert!(bad_user.validate().unwrap_err().contains("not a user id"));
    assert_eq!(AuthSettings::default().validate(), Ok(None));
}
