//! Generation and jobs over REST: premise to drama, generate, job records, cancel, resume,
//! Server-Sent Events.

use serde_json::{Value, json};

use crate::support::{
    Api, Harness, create_drama, create_drama_mentioning, delete, field_of_each, get, graphql,
    patch_json, post, post_json, send, start_premise,
};

async fn follow(svc: &impl Api, key: &str, drama: &str, job: &str) -> Value {
    for _ in 0..1000 {
        let (status, _, body) = send(svc, get(&format!("/dramas/{drama}/jobs/{job}"), key)).await;
        assert_eq!(status, 200, "{body}");
        if ["completed", "failed", "cancelled"].contains(&body["status"].as_str().unwrap()) {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("job {job} did not finish");
}

#[actix_web::test]
async fn a_premise_becomes_a_drama_and_a_generated_one() {
    let h = Harness::new().await;
    let worker = h.worker().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    let body = start_premise(
        &svc,
        k,
        "A young detective solves a case in 1 episode.",
        "det",
    )
    .await;
    assert_eq!(body["status"], "pending");
    assert_eq!(body["dramaId"], "det");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/dramas/det/jobs/")
    );
    let job = body["jobId"].as_str().unwrap().to_owned();
    let record = follow(&svc, k, "det", &job).await;
    assert_eq!(record["status"], "completed", "{record}");
    assert_eq!(record["type"], "generate_drama");
    assert!(record["createdAt"].as_i64().unwrap() > 1_700_000_000_000);
    assert!(record["completedAt"].is_i64());
    let (_, _, drama) = send(&svc, get("/dramas/det", k)).await;
    assert_eq!(drama["episodes"].as_array().unwrap().len(), 1);
    assert!(drama["characters"][0]["url"].is_string());

    let (status, _, body) = send(&svc, post("/dramas/det/generate", k)).await;
    assert_eq!(status, 202, "{body}");
    let job = body["jobId"].as_str().unwrap().to_owned();
    assert_eq!(follow(&svc, k, "det", &job).await["status"], "completed");
    let (_, _, drama) = send(&svc, get("/dramas/det", k)).await;
    let scene = &drama["episodes"][0]["scenes"][0];
    assert!(
        scene["image_url"].is_string() && scene["video_url"].is_string(),
        "{scene}"
    );
    assert!(drama["episodes"][0]["url"].is_string());

    let (status, _, run) = send(&svc, get(&format!("/jobs/{job}"), k)).await;
    assert_eq!(status, 200);
    let counts = &run["counts"];
    assert_eq!(counts["completed"], counts["total"], "{run}");
    assert!(!run["children"].as_array().unwrap().is_empty());

    let (_, _, list) = send(&svc, get("/dramas/det/jobs", k)).await;
    let types = field_of_each(&list["jobs"], "type");
    assert_eq!(types, ["generate_drama", "generate_drama"]);

    // The job belongs to that drama only, and to its owner only.
    let (status, _, _) = send(&svc, get(&format!("/dramas/other/jobs/{job}"), k)).await;
    assert_eq!(status, 404);
    let (status, _, body) = send(&svc, get(&format!("/jobs/{job}"), &h.bob_key)).await;
    assert_eq!(
        (status, body["detail"]["error"].as_str()),
        (404, Some("Job not found"))
    );
    for path in [format!("/jobs/{job}/cancel"), format!("/jobs/{job}/resume")] {
        let (status, _, _) = send(&svc, post(&path, &h.bob_key)).await;
        assert_eq!(status, 404, "{path}");
    }
    worker.shutdown().await;
}

#[actix_web::test]
async fn critique_improve_cover_and_audition_follow_the_old_contract() {
    let h = Harness::new().await;
    let worker = h.worker().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    create_drama(&svc, k, "old", (2, 1, 1)).await;

    let (status, _, body) = send(&svc, post_json("/dramas/old/critic", k, json!({}))).await;
    assert_eq!(status, 202, "{body}");
    let done = follow(&svc, k, "old", body["jobId"].as_str().unwrap()).await;
    assert!(
        done["result"]["feedback"].as_str().unwrap().len() > 20,
        "{done}"
    );
    let (status, _, _) = send(&svc, post_json("/dramas/old/critique", k, json!({}))).await;
    assert_eq!(status, 202, "critique is an alias of critic");

    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas/old/improve",
            k,
            json!({"feedback": "More suspense", "newDramaId": "old-v2"}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (body["originalId"].as_str(), body["improvedId"].as_str()),
        (Some("old"), Some("old-v2"))
    );
    assert_eq!(
        follow(&svc, k, "old-v2", body["jobId"].as_str().unwrap()).await["status"],
        "completed"
    );
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas/old/improve",
            k,
            json!({"feedback": "Again", "newDramaId": "old-v2"}),
        ),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_exists"))
    );
    let (status, _, body) = send(&svc, post_json("/dramas/old/improve", k, json!({}))).await;
    assert_eq!(
        (status, body["detail"][0]["field"].as_str()),
        (422, Some("feedback"))
    );
    let (status, _, body) = send(
        &svc,
        post_json("/dramas/old/critic", k, json!({"model": "llama-9000"})),
    )
    .await;
    assert_eq!(
        (status, body["detail"][0]["field"].as_str()),
        (422, Some("model"))
    );

    // Cover before the portraits: the old server's 400.
    let (status, _, body) = send(&svc, post("/dramas/old/cover_photo", k)).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "All main characters must have images generated first. Missing images for: Character 0, Character 1"
    );
    let (status, _, body) = send(&svc, get("/dramas/old/cover_photo", k)).await;
    assert_eq!(status, 404);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Cover photo not generated yet")
    );
    for c in ["c0", "c1"] {
        let (status, _, body) = send(
            &svc,
            post(&format!("/dramas/old/characters/{c}/generate"), k),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(body["url"].is_string());
    }
    let (status, _, body) = send(&svc, post("/dramas/old/cover_photo", k)).await;
    assert_eq!(status, 200, "{body}");
    let cover = body["url"].as_str().unwrap().to_owned();
    let (_, _, body) = send(&svc, get("/dramas/old/cover_photo", k)).await;
    assert_eq!(body["url"], cover);

    let (status, _, body) = send(&svc, get("/dramas/old/characters/c0/audition", k)).await;
    assert_eq!(
        (status, body["detail"]["message"].as_str()),
        (404, Some("Audition video for character c0 not found"))
    );
    let (status, _, body) = send(&svc, post("/dramas/old/characters/c0/audition", k)).await;
    assert_eq!(status, 202);
    let job = follow(&svc, k, "old", body["jobId"].as_str().unwrap()).await;
    assert_eq!(
        (&job["status"], &job["type"]),
        (&json!("completed"), &json!("generate_video"))
    );
    let (status, _, body) = send(&svc, get("/dramas/old/characters/c0/audition", k)).await;
    assert_eq!((status, body["kind"].as_str()), (200, Some("video")));
    // The settled job names what it made, as the old server's audition job did.
    assert_eq!(
        job["result"],
        json!({"dramaId": "old", "characterId": "c0", "videoUrl": body["url"]}),
        "{job}"
    );
    worker.shutdown().await;
}

/// A drama's list of jobs (REST and GraphQL) shows each settled run with the result its own
/// route shows: a critique's feedback, an audition's video.
#[actix_web::test]
async fn a_dramas_job_lists_show_the_results_of_its_settled_jobs() {
    let h = Harness::new().await;
    let worker = h.worker().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    create_drama(&svc, k, "listed", (1, 1, 1)).await;
    let (status, _, body) = send(&svc, post_json("/dramas/listed/critic", k, json!({}))).await;
    assert_eq!(status, 202, "{body}");
    let critique = follow(&svc, k, "listed", body["jobId"].as_str().unwrap()).await;
    let (status, _, body) = send(&svc, post("/dramas/listed/characters/c0/audition", k)).await;
    assert_eq!(status, 202, "{body}");
    let audition = follow(&svc, k, "listed", body["jobId"].as_str().unwrap()).await;
    assert!(audition["result"]["videoUrl"].is_string(), "{audition}");

    let (status, _, body) = send(&svc, get("/dramas/listed/jobs", k)).await;
    assert_eq!(status, 200, "{body}");
    let listed = body["jobs"].as_array().unwrap();
    let find = |job: &Value| {
        listed
            .iter()
            .find(|j| j["jobId"] == job["jobId"])
            .unwrap_or_else(|| panic!("{job} is not listed: {body}"))
            .clone()
    };
    let listed_critique = find(&critique);
    assert!(
        listed_critique["result"]["feedback"].is_string(),
        "{listed_critique}"
    );
    assert_eq!(listed_critique["result"], critique["result"]);
    assert_eq!(find(&audition)["result"], audition["result"]);

    let (status, body) = graphql(
        &svc,
        k,
        r#"{ jobs(dramaId: "listed") { jobId parentJobId result } }"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let jobs = body["data"]["jobs"].as_array().unwrap();
    for job in [&critique, &audition] {
        let found = jobs
            .iter()
            .find(|j| j["jobId"] == job["jobId"])
            .unwrap_or_else(|| panic!("{job} is not in {body}"));
        let result: Value = serde_json::from_str(found["result"].as_str().unwrap()).unwrap();
        assert_eq!(result, job["result"], "{found}");
    }
    worker.shutdown().await;
}

#[actix_web::test]
async fn cancel_and_resume_a_run() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    create_drama(&svc, k, "c", (1, 1, 2)).await;
    // A budget must be a positive number of tokens.
    for (budget, expected) in [(json!(0), "at least 1"), (json!("lots"), "budget")] {
        let (status, _, body) = send(
            &svc,
            post_json("/dramas/c/generate", k, json!({ "budget": budget })),
        )
        .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains(expected), "{body}");
    }
    // No worker yet: the run waits.
    let (_, _, body) = send(&svc, post("/dramas/c/generate", k)).await;
    let job = body["jobId"].as_str().unwrap().to_owned();
    let (status, _, body) = send(&svc, post(&format!("/jobs/{job}/cancel"), k)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("cancelled")),
        "{body}"
    );
    let (status, _, body) = send(&svc, post(&format!("/jobs/{job}/resume"), k)).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["status"], "cancelled");
    let worker = h.worker().await;
    assert_eq!(follow(&svc, k, "c", &job).await["status"], "completed");
    worker.shutdown().await;
}

#[actix_web::test]
async fn events_stream_in_order_and_resume_after_a_reconnect() {
    let h = Harness::new().await;
    let worker = h.worker().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    create_drama(&svc, k, "ev", (1, 1, 1)).await;
    let (_, _, body) = send(&svc, post("/dramas/ev/generate", k)).await;
    let job = body["jobId"].as_str().unwrap().to_owned();

    let read = |last: Option<i64>| {
        let mut req = get(&format!("/jobs/{job}/events"), k);
        if let Some(last) = last {
            req = req.insert_header(("Last-Event-ID", last.to_string()));
        }
        req.to_request()
    };
    let response = actix_web::test::call_service(&svc, read(None)).await;
    assert_eq!(
        response.headers().get("content-type").unwrap(),
        "text/event-stream"
    );
    let text = String::from_utf8(actix_web::test::read_body(response).await.to_vec()).unwrap();
    let ids: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(ids.len() > 5, "{text}");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
    assert!(
        text.trim_end().ends_with(r#""status":"completed"}"#),
        "ends with the outcome: {text}"
    );
    assert!(text.contains("event: submitted"), "{text}");

    // Reconnecting with the id of the fourth event replays only what came after it.
    let response = actix_web::test::call_service(&svc, read(Some(ids[3]))).await;
    let text = String::from_utf8(actix_web::test::read_body(response).await.to_vec()).unwrap();
    let replayed: Vec<i64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(replayed, ids[4..].to_vec());
    worker.shutdown().await;
}

#[actix_web::test]
async fn a_refused_synchronous_generation_says_why_in_the_old_shapes() {
    let h = Harness::refusing_images_of("forbidden").await;
    let worker = h.worker().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    let character = create_drama_mentioning(&svc, k, "refused", "forbidden").await;
    let (status, _, body) = send(
        &svc,
        post(
            &format!("/dramas/refused/characters/{character}/generate"),
            k,
        ),
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["code"], "generation_failed");
    assert_eq!(body["detail"]["error"], "Image generation failed");
    assert!(
        body["detail"]["message"]
            .as_str()
            .unwrap()
            .contains("the prompt mentions forbidden"),
        "{body}"
    );
    worker.shutdown().await;
}

#[actix_web::test]
async fn a_drama_can_be_followed_until_it_is_deleted() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    create_drama(&svc, k, "live", (1, 1, 1)).await;
    // Someone else's drama cannot be followed.
    let (status, _, _) = send(&svc, get("/dramas/live/events", &h.bob_key)).await;
    assert_eq!(status, 404);

    let response =
        actix_web::test::call_service(&svc, get("/dramas/live/events", k).to_request()).await;
    assert_eq!(response.status(), 200);
    // Two edits (one of them on a scene) and the deletion, made after the stream opened.
    for (uri, body) in [
        ("/dramas/live", json!({"title": "Live v2"})),
        (
            "/dramas/live/episodes/e0/scenes/e0-s0",
            json!({"description": "Rewritten"}),
        ),
    ] {
        let (status, _, body) = send(&svc, patch_json(uri, k, body)).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _, _) = send(&svc, delete("/dramas/live", k)).await;
    assert_eq!(status, 200);
    let text = String::from_utf8(actix_web::test::read_body(response).await.to_vec()).unwrap();
    let events: Vec<(&str, serde_json::Value)> = text
        .split("\n\n")
        .filter(|f| f.contains("event: "))
        .map(|f| {
            let kind = f.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = f.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            (kind, serde_json::from_str(data).unwrap())
        })
        .collect();
    let kinds: Vec<(&str, i64)> = events
        .iter()
        .map(|(k, d)| (*k, d["version"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("current", 1),
            ("changed", 2),
            ("changed", 3),
            ("deleted", 3)
        ],
        "{text}"
    );
    assert_eq!(events[0].1["dramaId"], "live");
}

/// The synchronous portrait and cover routes answer 202 with the run when it cannot finish
/// inside the request deadline, instead of failing after the charge; the run finishes, is
/// charged once, and a GraphQL caller gets the run's id to follow.
#[actix_web::test]
async fn a_synchronous_route_hands_over_its_run_at_the_deadline_and_charges_once() {
    let slow = drama_ai::AiSettings {
        ai_offline: true,
        offline_image_delay_ms: 4_000,
        ..drama_ai::AiSettings::default()
    };
    let mut h = Harness::with_ai(drama_ai::AiProviders::from_settings(&slow).unwrap()).await;
    h.app = h.app.clone().with_offline_pricing(true);
    let worker = h.worker().await;
    let settings = drama_api::HttpSettings {
        // The routes wait two seconds less than the deadline, and at least one second.
        request_timeout: std::time::Duration::from_secs(2),
        ..Harness::settings()
    };
    let svc = h.service(settings).await;
    let k = &h.alice_key;
    create_drama(&svc, k, "slow", (1, 1, 1)).await;
    let tokens = |h: &Harness| {
        let (store, user) = (h.store.clone(), h.alice);
        async move {
            drama_dal::UserRepository::get_user(store.as_ref(), user)
                .await
                .unwrap()
                .tokens
        }
    };
    let before = tokens(&h).await;

    let (status, _, body) = send(&svc, post("/dramas/slow/characters/c0/generate", k)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["dramaId"], "slow");
    let job = body["jobId"].as_str().unwrap().to_owned();
    assert!(body["message"].as_str().unwrap().contains(&job), "{body}");
    let charged = before - tokens(&h).await;
    assert!(charged > 0, "the portrait is priced");
    assert_eq!(follow(&svc, k, "slow", &job).await["status"], "completed");
    assert_eq!(before - tokens(&h).await, charged, "charged once");
    let (_, _, drama) = send(&svc, get("/dramas/slow", k)).await;
    assert!(drama["characters"][0]["url"].is_string(), "{drama}");

    let (_, gql) = graphql(
        &svc,
        k,
        r#"mutation { generateCoverPhoto(dramaId: "slow") { url } }"#,
    )
    .await;
    let error = &gql["errors"][0];
    assert_eq!(error["extensions"]["code"], "STILL_RUNNING", "{gql}");
    let run = error["extensions"]["jobId"].as_str().unwrap();
    assert_eq!(follow(&svc, k, "slow", run).await["status"], "completed");
    worker.shutdown().await;
}

/// Premises that ask for one id at the same moment: one is accepted, the others are answered
/// as for a taken id (in one server process; docs/API.md). On PostgreSQL, where the id's check
/// and the run that reserves it are separate statements.
#[actix_web::test]
async fn on_postgres_premises_racing_for_one_id_start_one_run() {
    let db = drama_testkit::pg::ScratchDb::create("api_id_race").await;
    let pool = db.pool().await;
    let (store, app) = crate::support::pg_app(&pool).await;
    let (_, key) = crate::support::pg_user(&store, 1_000_000).await;
    let svc = crate::support::service_of(app, Harness::settings()).await;
    let premises = (0..6).map(|i| {
        let body = json!({"premise": format!("Rivals number {i} meet at a lighthouse."), "id": "contested"});
        send(&svc, post_json("/dramas", &key, body))
    });
    let answers = futures::future::join_all(premises).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        5,
        "{answers:?}"
    );
    pool.close().await;
    db.drop_it().await;
}

/// A drama id a running generation is writing is taken: a body, another premise or an
/// improvement under it answer 409 exactly as for a stored drama (for its owner and anyone
/// else), so the paid write cannot be made to fail at its end; once the run settles without
/// writing, the id is free again.
#[actix_web::test]
async fn an_id_being_written_is_taken_until_its_run_settles() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    // No worker: the run stays pending, its script unwritten.
    let body = start_premise(&svc, k, "A lighthouse", "lamp").await;
    let job = body["jobId"].as_str().unwrap().to_owned();
    let stored = drama_testkit::builders::drama_json("lamp", 1, 1, 1);
    let (status, _, taken) = send(&svc, post_json("/dramas", k, json!({"drama": stored}))).await;
    assert_eq!(status, 409, "{taken}");
    let (status, _, body) = send(
        &svc,
        post_json("/dramas", k, json!({"premise": "Again", "id": "lamp"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    create_drama(&svc, k, "base", (1, 1, 1)).await;
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas/base/improve",
            k,
            json!({"feedback": "more", "newDramaId": "lamp"}),
        ),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    // Another user is answered exactly as for a drama that exists.
    let (status, _, theirs) = send(
        &svc,
        post_json("/dramas", &h.bob_key, json!({"drama": stored})),
    )
    .await;
    assert_eq!((status, &theirs), (409, &taken));

    let (status, _, body) = send(&svc, post(&format!("/jobs/{job}/cancel"), k)).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = send(&svc, post_json("/dramas", k, json!({"drama": stored}))).await;
    assert_eq!(status, 201, "{body}");
}
