//! Per-user quotas: dramas, stored bytes and runs at once, refused with the same code over
//! REST (403 `quota_exceeded`) and GraphQL (`QUOTA_EXCEEDED`), naming the quota; other users
//! are not affected, and freeing room lets the user go on.

use actix_web::test::TestRequest;
use drama_app::Quotas;
use drama_dal::UserRepository as _;
use serde_json::{Value, json};

use crate::support::{
    Harness, PNG, create_drama, delete, get, graphql, image_upload_form, post, post_form,
    post_json, premise_form_with_image, send,
};

async fn harness(quotas: Quotas) -> Harness {
    let mut h = Harness::new().await;
    h.app = h.app.clone().with_quotas(quotas);
    h
}

fn quota(dramas: u64, stored_bytes: u64, active_runs: u64) -> Quotas {
    Quotas {
        dramas,
        stored_bytes,
        active_runs,
        max_objects: 0,
    }
}

fn assert_rest_refusal(status: u16, body: &Value, which: &str) {
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("quota_exceeded")),
        "{body}"
    );
    assert_eq!(body["detail"]["quota"], which, "{body}");
    assert!(body["detail"]["limit"].as_u64().unwrap() > 0, "{body}");
}

fn assert_graphql_refusal(body: &Value, which: &str) {
    let error = &body["errors"][0];
    assert_eq!(error["extensions"]["code"], "QUOTA_EXCEEDED", "{body}");
    assert_eq!(error["extensions"]["quota"], which, "{body}");
}

fn upload(key: &str, project: &str) -> TestRequest {
    let form = image_upload_form(project, "character", ("a.png", "image/png", PNG));
    crate::support::upload(key, form)
}

#[actix_web::test]
async fn a_user_holds_at_most_the_configured_number_of_dramas() {
    let h = harness(quota(2, 0, 0)).await;
    let svc = h.service(Harness::settings()).await;
    create_drama(&svc, &h.alice_key, "one", (1, 1, 1)).await;
    create_drama(&svc, &h.alice_key, "two", (1, 1, 1)).await;
    let third = json!({"drama": drama_testkit::builders::drama_json("three", 1, 1, 1)});
    let (status, _, body) = send(&svc, post_json("/dramas", &h.alice_key, &third)).await;
    assert_rest_refusal(status, &body, "dramas");
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas",
            &h.alice_key,
            json!({"premise": "more", "id": "p"}),
        ),
    )
    .await;
    assert_rest_refusal(status, &body, "dramas");
    let (_, body) = graphql(
        &svc,
        &h.alice_key,
        r#"mutation { createDrama(premise: "more", id: "g") { dramaId } }"#,
    )
    .await;
    assert_graphql_refusal(&body, "dramas");
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas/one/improve",
            &h.alice_key,
            json!({"feedback": "again"}),
        ),
    )
    .await;
    assert_rest_refusal(status, &body, "dramas");

    // Bob is not held to Alice's count; Alice makes room by deleting one.
    create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;
    let (status, _, _) = send(&svc, delete("/dramas/two", &h.alice_key)).await;
    assert_eq!(status, 200);
    let (status, _, body) = send(&svc, post_json("/dramas", &h.alice_key, &third)).await;
    assert_eq!(status, 201, "{body}");
}

#[actix_web::test]
async fn a_user_runs_at_most_the_configured_number_of_runs_at_once() {
    let h = harness(quota(0, 0, 1)).await;
    let svc = h.service(Harness::settings()).await;
    create_drama(&svc, &h.alice_key, "one", (1, 1, 1)).await;
    create_drama(&svc, &h.alice_key, "two", (1, 1, 1)).await;
    create_drama(&svc, &h.bob_key, "bobs", (1, 1, 1)).await;
    // No worker runs: the first run stays pending.
    let (status, _, first) = send(
        &svc,
        post_json("/dramas/one/generate", &h.alice_key, json!({})),
    )
    .await;
    assert_eq!(status, 202, "{first}");
    let (status, _, body) = send(
        &svc,
        post_json("/dramas/two/generate", &h.alice_key, json!({})),
    )
    .await;
    assert_rest_refusal(status, &body, "active_runs");
    let (_, body) = graphql(
        &svc,
        &h.alice_key,
        r#"mutation { generateDrama(id: "two") { jobId } }"#,
    )
    .await;
    assert_graphql_refusal(&body, "active_runs");
    let (status, _, body) = send(
        &svc,
        post_json("/dramas/bobs/generate", &h.bob_key, json!({})),
    )
    .await;
    assert_eq!(status, 202, "Bob's runs are his own: {body}");

    // Once the first run is cancelled, the next may start.
    let job = first["jobId"].as_str().unwrap();
    let (status, _, body) = send(
        &svc,
        post_json(&format!("/jobs/{job}/cancel"), &h.alice_key, json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(
        &svc,
        post_json("/dramas/two/generate", &h.alice_key, json!({})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

/// Requests of one user that arrive together are admitted one at a time: the run quota and
/// the drama quota hold under a burst (in one process; docs/API.md), and every refusal names
/// its quota. On PostgreSQL, where a check and its write are separate statements that other
/// requests can come between.
#[actix_web::test]
async fn on_postgres_a_burst_of_requests_does_not_pass_a_quota() {
    let db = drama_testkit::pg::ScratchDb::create("api_quota_burst").await;
    let pool = db.pool().await;
    let (store, app) = crate::support::pg_app(&pool).await;
    let app = app.with_quotas(quota(4, 0, 3));
    let (_, key) = crate::support::pg_user(&store, 1_000_000).await;
    let svc = crate::support::service_of(app, Harness::settings()).await;
    for id in ["b0", "b1", "b2"] {
        create_drama(&svc, &key, id, (1, 1, 1)).await;
    }
    // Twelve generations at once, four per drama; no worker runs, so every run stays active.
    let generations = (0..12).map(|i| {
        let path = format!("/dramas/b{}/generate", i % 3);
        send(&svc, post_json(&path, &key, json!({"force": true})))
    });
    let answers = futures::future::join_all(generations).await;
    let started = answers
        .iter()
        .filter(|(status, _, _)| *status == 202)
        .count();
    assert_eq!(started, 3, "{answers:?}");
    for (status, _, body) in answers.iter().filter(|(status, _, _)| *status != 202) {
        assert_rest_refusal(*status, body, "active_runs");
    }
    // Eight stored dramas at once against the one place left.
    let stores = (0..8).map(|i| {
        let drama = drama_testkit::builders::drama_json(&format!("s{i}"), 1, 1, 1);
        send(&svc, post_json("/dramas", &key, json!({ "drama": drama })))
    });
    let answers = futures::future::join_all(stores).await;
    let stored = answers
        .iter()
        .filter(|(status, _, _)| *status == 201)
        .count();
    assert_eq!(stored, 1, "{answers:?}");
    for (status, _, body) in answers.iter().filter(|(status, _, _)| *status != 201) {
        assert_rest_refusal(*status, body, "dramas");
    }
    pool.close().await;
    db.drop_it().await;
}

#[actix_web::test]
async fn a_user_stores_at_most_the_configured_number_of_bytes() {
    // Room for one upload's file, not for its metadata sidecar as well.
    let limit = PNG.len() as u64 + 10;
    let h = harness(quota(0, limit, 0)).await;
    let svc = h.service(Harness::settings()).await;
    let (status, _, uploaded) = send(&svc, upload(&h.alice_key, "p")).await;
    assert_eq!(status, 200, "{uploaded}");
    let (status, _, body) = send(&svc, upload(&h.alice_key, "p")).await;
    assert_rest_refusal(status, &body, "stored_bytes");
    let stored: u64 = h
        .app
        .assets()
        .list(&drama_assets::keys::user_prefix(h.alice))
        .await
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum();
    // Refused before the file is read (Alice is over the quota already): the request counts
    // as the smallest file its length allows, one byte here.
    assert_eq!(body["detail"]["used"], stored + 1, "{body}");
    let (status, _, body) = send(&svc, upload(&h.bob_key, "p")).await;
    assert_eq!(status, 200, "Bob's bytes are his own: {body}");

    // Full: no generation starts (it would store media).
    create_drama(&svc, &h.alice_key, "one", (1, 1, 1)).await;
    let (status, _, body) = send(
        &svc,
        post_json("/dramas/one/generate", &h.alice_key, json!({})),
    )
    .await;
    assert_rest_refusal(status, &body, "stored_bytes");
    let (_, body) = graphql(
        &svc,
        &h.alice_key,
        r#"mutation { generateDrama(id: "one") { jobId } }"#,
    )
    .await;
    assert_graphql_refusal(&body, "stored_bytes");

    // Deleting the upload frees the space.
    let id = uploaded["asset_id"].as_str().unwrap();
    let (status, _, body) = send(
        &svc,
        delete(
            &format!("/asset-library/{id}?project_name=p&asset_type=image"),
            &h.alice_key,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(
        &svc,
        post_json("/dramas/one/generate", &h.alice_key, json!({})),
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

/// Resuming a run that settled starts it again as far as the quotas go: cancelling runs and
/// resuming them after starting others does not pass `active_runs`. Refused over REST and
/// GraphQL with the quota named, nothing re-queued and nothing charged. On PostgreSQL.
#[actix_web::test]
async fn on_postgres_a_resumed_run_counts_against_the_run_quota() {
    let db = drama_testkit::pg::ScratchDb::create("api_quota_resume").await;
    let pool = db.pool().await;
    let (store, app) = crate::support::pg_app(&pool).await;
    let app = app.with_offline_pricing(true).with_quotas(quota(0, 0, 2));
    let (user, key) = crate::support::pg_user(&store, 1_000_000).await;
    let svc = crate::support::service_of(app, Harness::settings()).await;
    let mut jobs = Vec::new();
    for id in ["r0", "r1", "r2", "r3"] {
        create_drama(&svc, &key, id, (1, 1, 1)).await;
        // No worker runs: a run stays active until it is cancelled.
        let path = format!("/dramas/{id}/generate");
        let (status, _, body) = send(&svc, post_json(&path, &key, json!({}))).await;
        assert_eq!(status, 202, "{body}");
        let job = body["jobId"].as_str().unwrap().to_owned();
        if jobs.len() < 2 {
            let (status, _, body) = send(&svc, post(&format!("/jobs/{job}/cancel"), &key)).await;
            assert_eq!(status, 200, "{body}");
        }
        jobs.push(job);
    }
    let balance = || async { store.get_user(user).await.unwrap().tokens };
    let before = balance().await;
    for job in &jobs[..2] {
        let (status, _, body) = send(&svc, post(&format!("/jobs/{job}/resume"), &key)).await;
        assert_rest_refusal(status, &body, "active_runs");
        let (_, _, view) = send(&svc, get(&format!("/jobs/{job}"), &key)).await;
        assert_eq!(view["status"], "cancelled", "nothing was re-queued: {view}");
    }
    let query = format!(r#"mutation {{ resumeJob(id: "{}") {{ jobId }} }}"#, jobs[0]);
    let (_, body) = graphql(&svc, &key, &query).await;
    assert_graphql_refusal(&body, "active_runs");
    assert_eq!(balance().await, before, "nothing was charged");

    // Cancelling one of the active runs makes room for one resume, not two.
    let (status, _, body) = send(&svc, post(&format!("/jobs/{}/cancel", jobs[2]), &key)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(&svc, post(&format!("/jobs/{}/resume", jobs[0]), &key)).await;
    assert_eq!(status, 200, "{body}");
    assert!(balance().await < before, "the resume was paid");
    let (status, _, body) = send(&svc, post(&format!("/jobs/{}/resume", jobs[1]), &key)).await;
    assert_rest_refusal(status, &body, "active_runs");
    pool.close().await;
    db.drop_it().await;
}

/// A premise run cancelled before it wrote its drama would store one more drama once resumed:
/// the resume is refused when the user holds as many dramas as the quota allows, and let
/// through once one is deleted. On PostgreSQL.
#[actix_web::test]
async fn on_postgres_a_resumed_premise_counts_against_the_drama_quota() {
    let db = drama_testkit::pg::ScratchDb::create("api_quota_resume_drama").await;
    let pool = db.pool().await;
    let (store, app) = crate::support::pg_app(&pool).await;
    let app = app.with_offline_pricing(true).with_quotas(quota(1, 0, 0));
    let (user, key) = crate::support::pg_user(&store, 1_000_000).await;
    let svc = crate::support::service_of(app, Harness::settings()).await;
    // No worker runs: the premise's run stays queued until it is cancelled.
    let premise = json!({"premise": "A lighthouse keeper.", "id": "later"});
    let (status, _, body) = send(&svc, post_json("/dramas", &key, premise)).await;
    assert_eq!(status, 202, "{body}");
    let job = body["jobId"].as_str().unwrap().to_owned();
    let (status, _, body) = send(&svc, post(&format!("/jobs/{job}/cancel"), &key)).await;
    assert_eq!(status, 200, "{body}");
    create_drama(&svc, &key, "held", (1, 1, 1)).await;

    let balance = || async { store.get_user(user).await.unwrap().tokens };
    let before = balance().await;
    let (status, _, body) = send(&svc, post(&format!("/jobs/{job}/resume"), &key)).await;
    assert_rest_refusal(status, &body, "dramas");
    let query = format!(r#"mutation {{ resumeJob(id: "{job}") {{ jobId }} }}"#);
    let (_, body) = graphql(&svc, &key, &query).await;
    assert_graphql_refusal(&body, "dramas");
    let (_, _, view) = send(&svc, get(&format!("/jobs/{job}"), &key)).await;
    assert_eq!(view["status"], "cancelled", "nothing was re-queued: {view}");
    assert_eq!(balance().await, before, "nothing was charged");

    let remove = delete("/dramas/held", &key);
    let (status, _, body) = send(&svc, remove).await;
    assert!(status < 300, "{status} {body}");
    let (status, _, body) = send(&svc, post(&format!("/jobs/{job}/resume"), &key)).await;
    assert_eq!(status, 200, "{body}");
    pool.close().await;
    db.drop_it().await;
}

/// `POST /dramas` as a form: a premise and a reference image.
fn premise_form(key: &str, id: &str) -> TestRequest {
    post_form(
        "/dramas",
        key,
        premise_form_with_image("A lighthouse keeper.", id),
    )
}

/// A premise with a reference image that is refused, for want of credits or of room once the
/// image is counted, leaves no object in the bucket. On PostgreSQL.
#[actix_web::test]
async fn on_postgres_a_refused_premise_leaves_no_reference_image() {
    let db = drama_testkit::pg::ScratchDb::create("api_quota_reference").await;
    let pool = db.pool().await;
    let (store, app) = crate::support::pg_app(&pool).await;
    let app = app.with_offline_pricing(true);
    let (poor, poor_key) = crate::support::pg_user(&store, 0).await;
    let (full, full_key) = crate::support::pg_user(&store, 1_000_000).await;
    let stored = |user| {
        let assets = app.assets().clone();
        async move {
            assets
                .list(&drama_assets::keys::user_prefix(user))
                .await
                .unwrap()
        }
    };

    let svc = crate::support::service_of(app.clone(), Harness::settings()).await;
    let (status, _, body) = send(&svc, premise_form(&poor_key, "unpaid")).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (402, Some("insufficient_tokens")),
        "{body}"
    );
    assert_eq!(stored(poor).await, vec![]);

    // Room for the image and not a byte more: the run, which stores media, does not fit.
    let limit = PNG.len() as u64;
    let svc = crate::support::service_of(
        app.clone().with_quotas(quota(0, limit, 0)),
        Harness::settings(),
    )
    .await;
    let (status, _, body) = send(&svc, premise_form(&full_key, "no_room")).await;
    assert_rest_refusal(status, &body, "stored_bytes");
    assert_eq!(stored(full).await, vec![]);
    // With room, the image is stored with the run that refers to it.
    let svc = crate::support::service_of(app.clone(), Harness::settings()).await;
    let (status, _, body) = send(&svc, premise_form(&full_key, "room")).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(stored(full).await.len(), 1);
    pool.close().await;
    db.drop_it().await;
}
