//! Credits on the wire: a paid resume, `GET /me` and GraphQL `me`.

use actix_web::test::TestRequest;
use drama_dal::{CreditLedger as _, CreditMove, CreditReason, UserRepository as _};
use serde_json::json;

use crate::support::{Harness, create_drama, field_of_each, get, graphql, post, send};

#[actix_web::test]
async fn a_resume_without_credits_answers_402_and_me_shows_every_movement() {
    // Offline calls priced as real ones, so runs cost credits.
    let mut h = Harness::new().await;
    h.app = h.app.clone().with_offline_pricing(true);
    let svc = h.service(Harness::settings()).await;
    let (app, store, owner, key) = (h.app.clone(), h.store.clone(), h.alice, h.alice_key.clone());
    let start = store.get_user(owner).await.unwrap().tokens;
    store
        .move_credits(&CreditMove::new(owner, 10_000 - start, CreditReason::Grant))
        .await
        .unwrap();

    create_drama(&svc, &key, "c", (1, 1, 2)).await;
    // No worker: the run waits, is cancelled whole, and refunded whole.
    let (_, _, body) = send(&svc, post("/dramas/c/generate", &key)).await;
    let job = body["jobId"].as_str().unwrap().to_owned();
    let (status, _, _) = send(&svc, post(&format!("/jobs/{job}/cancel"), &key)).await;
    assert_eq!(status, 200);
    app.settle_refunds().await;
    let (status, _, me) = send(&svc, get("/me", &key)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["tokens"], 10_000, "{me}");
    let reasons = field_of_each(&me["ledger"], "reason");
    assert_eq!(
        reasons,
        ["refund", "run_charge", "grant", "opening"],
        "{me}"
    );
    assert_eq!(me["ledger"][1]["run_id"], json!(job));
    let charged = -me["ledger"][1]["amount"].as_i64().unwrap();
    assert!(charged > 0);

    // Spend everything; the resume is refused and re-queues nothing.
    store
        .move_credits(&CreditMove::new(owner, -10_000, CreditReason::Adjustment))
        .await
        .unwrap();
    let (status, _, body) = send(&svc, post(&format!("/jobs/{job}/resume"), &key)).await;
    assert_eq!(status, 402, "{body}");
    assert_eq!(body["code"], "insufficient_tokens", "{body}");
    let (_, _, view) = send(&svc, get(&format!("/jobs/{job}"), &key)).await;
    assert_eq!(view["status"], "cancelled", "{view}");
    let (status, body) = graphql(
        &svc,
        &key,
        &format!(r#"mutation {{ resumeJob(id: "{job}") {{ jobId status }} }}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "INSUFFICIENT_TOKENS",
        "{body}"
    );

    // With credits again, the resume debits exactly what it re-queues.
    store
        .move_credits(&CreditMove::new(owner, 5_000, CreditReason::Grant))
        .await
        .unwrap();
    let (status, _, _) = send(&svc, post(&format!("/jobs/{job}/resume"), &key)).await;
    assert_eq!(status, 200);
    let (_, body) = graphql(
        &svc,
        &key,
        "{ me { id tokens ledger(limit: 2) { amount balanceAfter reason runId } } }",
    )
    .await;
    let me = &body["data"]["me"];
    assert_eq!(me["id"], json!(owner.to_string()), "{body}");
    assert_eq!(me["tokens"], json!(5_000 - charged), "{body}");
    assert_eq!(
        me["ledger"][0],
        json!({"amount": -charged, "balanceAfter": 5_000 - charged,
               "reason": "resume_charge", "runId": job}),
        "{body}"
    );
    assert_eq!(me["ledger"][1]["reason"], "grant");

    // Pages of the REST ledger.
    let (_, _, page) = send(&svc, get("/me?limit=2&offset=1", &key)).await;
    assert_eq!(page["ledger"].as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page["ledger"][0]["reason"], "grant");
    assert_eq!(page["next_offset"], 3, "{page}");
    let (status, _, body) = send(&svc, get("/me?limit=0", &key)).await;
    assert_eq!(status, 422, "{body}");
    let (status, _, _) = send(&svc, TestRequest::get().uri("/me")).await;
    assert_eq!(status, 401);
}

#[actix_web::test]
async fn an_estimate_shows_what_the_scenes_a_run_writes_will_add() {
    let mut h = Harness::new().await;
    h.app = h.app.clone().with_offline_pricing(true);
    let svc = h.service(Harness::settings()).await;
    let key = h.alice_key.clone();
    // Two episodes without scenes: the run writes them, then debits their storyboards and clips.
    create_drama(&svc, &key, "unwritten", (2, 2, 0)).await;
    let (status, _, rest) = send(&svc, post("/dramas/unwritten/estimate", &key)).await;
    assert_eq!(status, 200, "{rest}");
    let cost = rest["cost"].as_i64().unwrap();
    assert_eq!(rest["byKind"]["write_scenes"]["tasks"], 2, "{rest}");
    assert_eq!(
        (
            &rest["episodesToWrite"],
            &rest["scenesPerEpisode"],
            &rest["scenesToWrite"]
        ),
        (&json!(2), &json!(4), &json!(8)),
        "{rest}"
    );
    // Per episode: 4 storyboards at 4 and 50 s of clips at 10 a second; at most 8 scenes of 15 s.
    assert_eq!(rest["expectedCost"], cost + 2 * (4 * 4 + 50 * 10), "{rest}");
    assert_eq!(rest["maxCost"], cost + 2 * (8 * 4 + 8 * 15 * 10), "{rest}");

    let (status, gql) = graphql(&svc, &key, r#"{ estimate(dramaId: "unwritten") { tasks cost expectedCost maxCost episodesToWrite scenesToWrite scenesPerEpisode byKind { kind tasks cost } } }"#).await;
    assert_eq!(status, 200, "{gql}");
    let e = &gql["data"]["estimate"];
    for (graphql, wire) in [
        ("tasks", "tasks"),
        ("cost", "cost"),
        ("expectedCost", "expectedCost"),
        ("maxCost", "maxCost"),
        ("episodesToWrite", "episodesToWrite"),
        ("scenesToWrite", "scenesToWrite"),
        ("scenesPerEpisode", "scenesPerEpisode"),
    ] {
        assert_eq!(e[graphql], rest[wire], "{graphql}: {gql}");
    }
    let writers = e["byKind"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kind"] == "write_scenes")
        .cloned();
    assert_eq!(writers.map(|k| k["tasks"].clone()), Some(json!(2)), "{gql}");

    // A drama whose scenes exist adds nothing; a scope that does not exist is not found.
    create_drama(&svc, &key, "written", (2, 1, 2)).await;
    let (_, _, full) = send(&svc, post("/dramas/written/estimate", &key)).await;
    assert_eq!(full["expectedCost"], full["cost"], "{full}");
    assert_eq!(full["maxCost"], full["cost"], "{full}");
    let (_, missing) = graphql(
        &svc,
        &key,
        r#"{ estimate(dramaId: "written", episodeId: "e9") { cost } }"#,
    )
    .await;
    assert_eq!(
        missing["errors"][0]["extensions"]["code"], "NOT_FOUND",
        "{missing}"
    );
}
