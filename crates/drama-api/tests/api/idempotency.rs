//! Idempotency keys: a paid request repeated with its key answers with the first run and is
//! charged once — over REST and GraphQL, on the memory store, and on PostgreSQL when the
//! repeats arrive at the same moment; a repeat is answered before the drama is read, so a
//! part deleted or changed since does not change the answer.

use actix_web::middleware::from_fn;
use actix_web::test::{self, TestRequest};
use drama_api::ApiState;
use drama_dal::{
    ApiKeyRepository as _, CreditLedger, CreditMove, CreditReason, DramaRepository as _, NewUser,
    UserRepository,
};
use drama_domain::UserId;
use drama_testkit::pg::ScratchDb;
use serde_json::{Value, json};

use crate::support::{Harness, create_drama, graphql, post, post_json, send};

fn keyed(request: TestRequest, key: &str) -> TestRequest {
    request.insert_header(("Idempotency-Key", key))
}

async fn set_balance<S: UserRepository + CreditLedger + ?Sized>(
    store: &S,
    owner: UserId,
    tokens: i64,
) {
    let now = store.get_user(owner).await.unwrap().tokens;
    if now != tokens {
        let reason = if tokens > now {
            CreditReason::Grant
        } else {
            CreditReason::Adjustment
        };
        store
            .move_credits(&CreditMove::new(owner, tokens - now, reason))
            .await
            .unwrap();
    }
}

/// The run charges of `owner`'s ledger, newest first.
async fn run_charges<S: CreditLedger + ?Sized>(store: &S, owner: UserId) -> Vec<i64> {
    store
        .ledger(owner, 100, 0)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.reason == CreditReason::RunCharge)
        .map(|e| e.amount)
        .collect()
}

#[actix_web::test]
async fn a_repeated_paid_request_answers_with_its_first_run_and_is_charged_once() {
    let mut h = Harness::new().await;
    h.app = h.app.clone().with_offline_pricing(true);
    let svc = h.service(Harness::settings()).await;
    let (store, alice, key) = (h.store.clone(), h.alice, h.alice_key.clone());
    set_balance(&*store, alice, 10_000).await;
    create_drama(&svc, &key, "k", (1, 1, 2)).await;

    let (status, headers, first) =
        send(&svc, keyed(post("/dramas/k/generate", &key), "gen-1")).await;
    assert_eq!(status, 202, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let paid = store.get_user(alice).await.unwrap().tokens;
    assert!(paid < 10_000);

    let (status, headers, again) =
        send(&svc, keyed(post("/dramas/k/generate", &key), "gen-1")).await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["jobId"], first["jobId"], "{again}");
    assert_eq!(
        headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(store.get_user(alice).await.unwrap().tokens, paid);
    assert_eq!(run_charges(&*store, alice).await.len(), 1);

    // The same request through GraphQL under the same key is the same request.
    let (_, gql) = graphql(
        &svc,
        &key,
        r#"mutation { generateDrama(id: "k", idempotencyKey: "gen-1") { jobId } }"#,
    )
    .await;
    assert_eq!(
        gql["data"]["generateDrama"]["jobId"], first["jobId"],
        "{gql}"
    );
    assert_eq!(store.get_user(alice).await.unwrap().tokens, paid);

    // A different request under a used key is refused, naming the key; nothing is charged.
    let (status, _, body) = send(
        &svc,
        keyed(
            post_json("/dramas/k/generate", &key, json!({"force": true})),
            "gen-1",
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("Idempotency-Key"), "{body}");
    let (_, gql) = graphql(
        &svc,
        &key,
        r#"mutation { critiqueDrama(id: "k", idempotencyKey: "gen-1") { jobId } }"#,
    )
    .await;
    assert_eq!(
        gql["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{gql}"
    );
    assert_eq!(store.get_user(alice).await.unwrap().tokens, paid);

    // Another user's equal key names their own request.
    create_drama(&svc, &h.bob_key, "kb", (1, 1, 1)).await;
    set_balance(&*store, h.bob, 10_000).await;
    let (status, _, bobs) = send(
        &svc,
        keyed(post("/dramas/kb/generate", &h.bob_key), "gen-1"),
    )
    .await;
    assert_eq!(status, 202, "{bobs}");
    assert_ne!(bobs["jobId"], first["jobId"]);

    // Keys that are not visible ASCII, or too long, are refused before anything runs.
    for bad in ["", "has space", "caf\u{e9}", &"x".repeat(256)] {
        let request = post("/dramas/k/generate", &key).insert_header((
            "Idempotency-Key",
            actix_web::http::header::HeaderValue::from_bytes(bad.as_bytes()).unwrap(),
        ));
        let (status, _, body) = send(&svc, request).await;
        assert_eq!(status, 422, "{bad:?}: {body}");
        assert!(body.to_string().contains("Idempotency-Key"), "{body}");
    }
    assert_eq!(store.get_user(alice).await.unwrap().tokens, paid);
    assert_eq!(run_charges(&*store, alice).await.len(), 1);
}

#[actix_web::test]
async fn a_repeated_premise_answers_with_the_same_drama_even_after_the_balance_is_spent() {
    let mut h = Harness::new().await;
    h.app = h.app.clone().with_offline_pricing(true);
    let svc = h.service(Harness::settings()).await;
    let (store, alice, key) = (h.store.clone(), h.alice, h.alice_key.clone());
    set_balance(&*store, alice, 1_000).await;
    let premise = json!({"premise": "A corgi inherits a lighthouse."});

    let (status, _, first) = send(
        &svc,
        keyed(post_json("/dramas", &key, &premise), "premise-1"),
    )
    .await;
    assert_eq!(status, 202, "{first}");
    // The id was generated: a repeat without the key would write a second drama.
    set_balance(&*store, alice, 0).await;
    let (status, headers, again) = send(
        &svc,
        keyed(post_json("/dramas", &key, &premise), "premise-1"),
    )
    .await;
    assert_eq!(status, 202, "{again}");
    assert_eq!(
        (&again["dramaId"], &again["jobId"]),
        (&first["dramaId"], &first["jobId"])
    );
    assert!(headers.get("idempotent-replayed").is_some());
    assert_eq!(store.get_user(alice).await.unwrap().tokens, 0);
    // Without a key the same premise is new work, refused for credits.
    let (status, _, body) = send(&svc, post_json("/dramas", &key, &premise)).await;
    assert_eq!(status, 402, "{body}");

    // GraphQL's argument works the same way.
    set_balance(&*store, alice, 1_000).await;
    let create = json!({"query": r#"mutation { createDrama(premise: "A heron runs a ferry.", idempotencyKey: "g-1") { dramaId jobId } }"#});
    let (_, _, one) = send(&svc, post_json("/graphql", &key, &create)).await;
    let (_, _, two) = send(&svc, post_json("/graphql", &key, &create)).await;
    assert!(one["data"]["createDrama"]["jobId"].is_string(), "{one}");
    assert_eq!(one["data"], two["data"], "{two}");
    assert_eq!(run_charges(&*store, alice).await.len(), 2);
}

#[actix_web::test]
async fn on_postgres_simultaneous_repeats_start_one_run_and_debit_once() {
    let db = ScratchDb::create("api_idempotency").await;
    let pool = db.pool().await;
    let (store, app) = crate::support::pg_app(&pool).await;
    let app = app.with_offline_pricing(true);
    let user = UserId::random();
    store.create_user(&NewUser::new(user)).await.unwrap();
    set_balance(&*store, user, 10_000).await;
    let key = store
        .create_api_key(user, "pg", &[], None)
        .await
        .unwrap()
        .key;
    let svc = test::init_service(
        actix_web::App::new()
            .wrap(from_fn(drama_api::middleware::request_context))
            .configure(drama_api::configure(ApiState::new(
                app,
                Harness::settings(),
            ))),
    )
    .await;
    create_drama(&svc, &key, "race", (1, 1, 2)).await;

    // Eight repeats at once: they interleave on the pool's connections.
    let answers: Vec<(u16, _, Value)> = futures::future::join_all(
        (0..8).map(|_| send(&svc, keyed(post("/dramas/race/generate", &key), "race-1"))),
    )
    .await;
    let job = answers[0].2["jobId"].clone();
    assert!(job.is_string(), "{}", answers[0].2);
    for (status, _, body) in &answers {
        assert_eq!(*status, 202, "{body}");
        assert_eq!(body["jobId"], job, "{body}");
    }
    let charges = run_charges(&*store, user).await;
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(
        store.get_user(user).await.unwrap().tokens,
        10_000 + charges[0]
    );
    let runs: i64 = sqlx::query_scalar(
        "select count(*) from public.jobs where node_type = 'run' and subject = 'race'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(runs, 1);
    // The key is stored hashed.
    let stored: Option<String> = sqlx::query_scalar(
        "select idempotency_key from public.jobs where node_type = 'run' and subject = 'race'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_ne!(stored.as_deref(), Some("race-1"));
    assert_eq!(stored.map(|s| s.len()), Some(64));

    // Older than the window, the key starts new work again (the first run is cancelled: an
    // active run making the same work would be answered instead, keyed or not).
    let (status, _, _) = send(
        &svc,
        post(&format!("/jobs/{}/cancel", job.as_str().unwrap()), &key),
    )
    .await;
    assert_eq!(status, 200);
    sqlx::query(
        "update public.jobs set created_at = now() - interval '25 hours' \
         where node_type = 'run' and subject = 'race'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (status, _, later) = send(&svc, keyed(post("/dramas/race/generate", &key), "race-1")).await;
    assert_eq!(status, 202, "{later}");
    assert_ne!(later["jobId"], job);
    assert_eq!(run_charges(&*store, user).await.len(), 2);

    pool.close().await;
    db.drop_it().await;
}

/// What happens to a drama between a request and its repeat.
type Edit = fn(&mut drama_domain::Drama);

/// A keyed repeat of a request for one part replays its first run even when the part was
/// deleted or changed since: nothing of the drama is read or written for it (its version
/// stays) and nothing is charged again — for every route that names a part.
#[actix_web::test]
async fn a_keyed_repeat_replays_its_run_whatever_became_of_the_part() {
    let mut h = Harness::new().await;
    h.app = h.app.clone().with_offline_pricing(true);
    // No worker: every run stays queued, and the synchronous routes answer 202 after their
    // shortest wait (a second).
    let settings = drama_api::HttpSettings {
        request_timeout: std::time::Duration::from_secs(3),
        ..Harness::settings()
    };
    let svc = h.service(settings).await;
    let (store, alice, key) = (h.store.clone(), h.alice, h.alice_key.clone());
    set_balance(&*store, alice, 100_000).await;
    create_drama(&svc, &key, "p", (4, 2, 2)).await;
    let id = drama_domain::DramaId::parse("p").unwrap();
    let edit = |change: Edit| {
        let store = store.clone();
        let id = id.clone();
        async move {
            let stored = store.get_complete(alice, &id).await.unwrap();
            let mut drama = stored.drama;
            change(&mut drama);
            store
                .save_complete(alice, &drama, Some(stored.version))
                .await
                .unwrap()
        }
    };
    // The cover needs portraits of the main characters (c0, c1).
    edit(|d| {
        for c in &mut d.characters[..2] {
            c.url = Some(format!("https://img.example/{}.png", c.id));
        }
    })
    .await;

    let cases: [(&str, Edit); 6] = [
        ("/dramas/p/cover_photo", |d| d.characters[1].url = None),
        ("/dramas/p/characters/c2/audition", |d| {
            d.characters.retain(|c| c.id.as_str() != "c2");
        }),
        ("/dramas/p/characters/c3/generate", |d| {
            d.characters.retain(|c| c.id.as_str() != "c3");
        }),
        ("/dramas/p/episodes/e1/stitch", |d| {
            d.episodes.retain(|e| e.id.as_str() != "e1");
        }),
        ("/dramas/p/episodes/e0/scenes/e0-s1/generate", |d| {
            d.episodes[0].scenes.retain(|s| s.id.as_str() != "e0-s1");
        }),
        (
            "/dramas/p/episodes/e0/scenes/e0-s0/assets/e0-s0-vid/generate",
            |d| {
                d.episodes[0].scenes[0]
                    .assets
                    .retain(|a| a.id.as_str() != "e0-s0-vid");
            },
        ),
    ];
    // Every route is tried; what went wrong is listed for all of them at the end.
    let mut wrong = Vec::new();
    for (n, (uri, change)) in cases.into_iter().enumerate() {
        let request_key = format!("part-{n}");
        let (status, _, first) = send(&svc, keyed(post(uri, &key), &request_key)).await;
        assert_eq!(status, 202, "{uri}: {first}");
        let paid = store.get_user(alice).await.unwrap().tokens;
        let version = edit(change).await;

        let (status, headers, again) = send(&svc, keyed(post(uri, &key), &request_key)).await;
        let replayed = headers
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok())
            == Some("true");
        if status != 202 || again["jobId"] != first["jobId"] || !replayed {
            wrong.push(format!("{uri}: {status} {again} (replayed: {replayed})"));
        }
        let now = store.get_complete(alice, &id).await.unwrap().version;
        if now != version {
            wrong.push(format!(
                "{uri}: the repeat wrote the drama ({version} → {now})"
            ));
        }
        assert_eq!(store.get_user(alice).await.unwrap().tokens, paid, "{uri}");
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    assert_eq!(run_charges(&*store, alice).await.len(), 6);
}
