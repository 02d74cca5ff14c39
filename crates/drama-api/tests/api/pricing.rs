//! The price list, the model allow-list and the bounds on client text: a model the catalogue
//! does not list is refused before anything is charged, a listed one is charged its own price,
//! and text (or a URL) over its bound is refused naming the field — the same over REST and
//! GraphQL.

use actix_web::test::TestRequest;
use drama_app::TextLimits;
use drama_dal::UserRepository;
use serde_json::{Value, json};

use crate::support::{
    Harness, assert_graphql_error, create_drama, field_of_each, get, graphql, patch_json, post,
    post_json, send,
};

/// Scripts written offline but priced as real calls, with a cheap model listed first.
async fn priced_harness(models: &str) -> Harness {
    let settings = drama_ai::AiSettings {
        ai_offline: true,
        script_models: models.to_owned(),
        ..drama_ai::AiSettings::default()
    };
    let ai = drama_ai::AiProviders::from_settings(&settings).unwrap();
    let mut h = Harness::with_ai(ai).await;
    h.app = h.app.clone().with_offline_pricing(true);
    h
}

async fn balance(h: &Harness, user: drama_domain::UserId) -> i64 {
    h.store.get_user(user).await.unwrap().tokens
}

#[actix_web::test]
async fn the_price_list_is_public_and_the_same_over_rest_and_graphql() {
    let h = priced_harness("cheap=offline@2/3/1/1,gemini-3-pro-preview=gemini").await;
    let svc = h.service(Harness::settings()).await;
    let (status, _, body) = send(&svc, TestRequest::get().uri("/models")).await;
    assert_eq!(status, 200, "{body}");
    let names = field_of_each(&body["models"], "name");
    // The built-in default comes first even when listed later; offline is always there.
    assert_eq!(
        names,
        ["gemini-3-pro-preview", "cheap", "offline"],
        "{body}"
    );
    assert_eq!(body["models"][0]["default"], true);
    assert_eq!(body["models"][1]["prices"]["generate_drama"], 2);
    assert_eq!(body["models"][1]["prices"]["improve_drama"], 3);
    assert_eq!(body["models"][1]["provider"], "offline");
    assert_eq!(body["media"]["image"], 4);
    assert_eq!(body["offline_calls_priced"], true);

    let (_, gql) = graphql(
        &svc,
        &h.alice_key,
        "{ models { models { name default generateDrama } image videoPerSecond } }",
    )
    .await;
    let listed = &gql["data"]["models"];
    assert_eq!(listed["models"][1]["name"], "cheap", "{gql}");
    assert_eq!(listed["models"][1]["generateDrama"], 2, "{gql}");
    assert_eq!(listed["image"], body["media"]["image"]);
    assert_eq!(listed["videoPerSecond"], body["media"]["video_per_second"]);
}

#[actix_web::test]
async fn an_unlisted_model_is_refused_before_any_charge_and_a_listed_one_costs_its_price() {
    let h = priced_harness("cheap=offline@2/3/1/1,gemini-3-pro-preview=gemini").await;
    let svc = h.service(Harness::settings()).await;
    let before = balance(&h, h.alice).await;

    // The old server sent any other name to OpenAI at one price; here it names the list.
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas",
            &h.alice_key,
            json!({"premise": "two bakers", "model": "gpt-4o", "id": "x"}),
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let text = body.to_string();
    assert!(text.contains("\"model\""), "{body}");
    assert!(
        text.contains("gemini-3-pro-preview, cheap, offline"),
        "{body}"
    );
    let (_, gql) = graphql(
        &svc,
        &h.alice_key,
        r#"mutation { createDrama(premise: "p", model: "gpt-4o") { dramaId } }"#,
    )
    .await;
    assert_graphql_error(&gql, "BAD_USER_INPUT", "cheap");
    assert_eq!(
        balance(&h, h.alice).await,
        before,
        "a refusal charges nothing"
    );

    // The chosen model's price is what the run costs up front.
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas",
            &h.alice_key,
            json!({"premise": "two bakers", "model": "cheap", "id": "c"}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let job: Value = send(
        &svc,
        get(
            &format!("/jobs/{}", body["jobId"].as_str().unwrap()),
            &h.alice_key,
        ),
    )
    .await
    .2;
    assert_eq!(job["cost"]["total"], 2, "{job}");
    assert_eq!(balance(&h, h.alice).await, before - 2);
}

#[actix_web::test]
async fn client_text_over_its_bound_is_refused_naming_the_field() {
    let mut h = Harness::new().await;
    h.app = h.app.clone().with_text_limits(TextLimits {
        premise: 50,
        feedback: 40,
        prompt: 30,
        title: 20,
        description: 60,
    });
    let svc = h.service(Harness::settings()).await;
    let long = |n: usize| "é".repeat(n);

    // Characters are counted, not bytes: 50 two-byte characters pass, 51 do not.
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas",
            &h.alice_key,
            json!({"premise": long(51), "id": "p1"}),
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("must be at most 50 characters"),
        "{body}"
    );
    assert!(body.to_string().contains("premise"), "{body}");
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas",
            &h.alice_key,
            json!({"premise": long(50), "id": "p2"}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let query = format!(
        r#"mutation {{ createDrama(premise: "{}", id: "g1") {{ dramaId }} }}"#,
        long(51)
    );
    let (_, gql) = graphql(&svc, &h.alice_key, &query).await;
    assert_graphql_error(&gql, "BAD_USER_INPUT", "premise");

    // A whole drama: every offending field is listed with its path.
    let mut drama = drama_testkit::builders::drama_json("whole", 1, 1, 1);
    drama["title"] = json!(long(21));
    drama["episodes"][0]["scenes"][0]["assets"][0]["prompt"] = json!(long(31));
    let (status, _, body) = send(
        &svc,
        post_json("/dramas", &h.alice_key, json!({ "drama": drama })),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    let fields = field_of_each(&body["detail"], "field");
    assert!(fields.contains(&"title"), "{body}");
    assert!(
        fields.contains(&"episodes[0].scenes[0].assets[0].prompt"),
        "{body}"
    );

    // PATCH and rewrite feedback.
    create_drama(&svc, &h.alice_key, "d", (1, 1, 1)).await;
    let (status, _, body) = send(
        &svc,
        patch_json("/dramas/d", &h.alice_key, json!({"description": long(61)})),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.to_string().contains("must be at most 60 characters"),
        "{body}"
    );
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas/d/improve",
            &h.alice_key,
            json!({"feedback": long(41)}),
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("feedback"), "{body}");
    let (status, _, body) = send(
        &svc,
        patch_json("/dramas/d", &h.alice_key, json!({"description": long(60)})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// URLs are held to the bound the OpenAPI document states, on a whole drama sent by a client
/// and on every PATCH that carries one, with the error of any other field over its bound.
#[actix_web::test]
async fn urls_over_their_bound_are_refused_naming_the_field() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let max = drama_domain::MAX_URL_CHARS;
    // "https://cdn.example/" is 20 characters: `url(n)` is n characters long.
    let url = |n: usize| format!("https://cdn.example/{}", "x".repeat(n - 20));

    let mut drama = drama_testkit::builders::drama_json("whole", 1, 1, 1);
    drama["episodes"][0]["scenes"][0]["video_url"] = json!(url(max + 1));
    let (status, _, body) = send(
        &svc,
        post_json("/dramas", &h.alice_key, json!({ "drama": drama })),
    )
    .await;
    assert_eq!(status, 422, "{}", &body.to_string()[..300]);
    assert_eq!(
        field_of_each(&body["detail"], "field"),
        ["episodes[0].scenes[0].video_url"]
    );
    let (status, _, _) = send(&svc, get("/dramas/whole", &h.alice_key)).await;
    assert_eq!(status, 404, "nothing stored");

    create_drama(&svc, &h.alice_key, "d", (1, 1, 1)).await;
    let (_, _, text) = send(
        &svc,
        patch_json("/dramas/d", &h.alice_key, json!({"title": "t".repeat(501)})),
    )
    .await;
    for (uri, field) in [
        ("/dramas/d/episodes/e0/scenes/e0-s0", "image_url"),
        ("/dramas/d/episodes/e0/scenes/e0-s0", "video_url"),
        ("/dramas/d/episodes/e0/scenes/e0-s0/assets/e0-s0-img", "url"),
    ] {
        let (status, _, body) = send(
            &svc,
            patch_json(uri, &h.alice_key, json!({ field: url(max + 1) })),
        )
        .await;
        assert_eq!(status, 422, "{uri} {field}");
        assert_eq!(
            body["code"], text["code"],
            "the code of any field over its bound"
        );
        assert_eq!(field_of_each(&body["detail"], "field"), [field]);
        assert!(
            body.to_string()
                .contains("must be at most 10000 characters"),
            "{field}"
        );
        let (status, _, body) = send(
            &svc,
            patch_json(uri, &h.alice_key, json!({ field: url(max) })),
        )
        .await;
        assert_eq!(status, 200, "{uri} {field}: {body}");
    }
}

#[actix_web::test]
async fn with_pricing_off_nothing_is_charged_and_the_ledger_still_records_each_run() {
    let settings = drama_ai::AiSettings {
        ai_offline: true,
        pricing: false,
        script_models: "cheap=offline@2/3/1/1,gemini-3-pro-preview=gemini".to_owned(),
        ..drama_ai::AiSettings::default()
    };
    let ai = drama_ai::AiProviders::from_settings(&settings).unwrap();
    let mut h = Harness::with_ai(ai).await;
    h.app = h.app.clone().with_offline_pricing(true);
    let svc = h.service(Harness::settings()).await;

    let (_, _, list) = send(&svc, TestRequest::get().uri("/models")).await;
    assert_eq!(list["billed"], false, "{list}");
    assert_eq!(list["offline_calls_priced"], false, "{list}");
    assert_eq!(list["media"]["image"], 0, "{list}");
    for m in list["models"].as_array().unwrap() {
        assert!(
            m["prices"].as_object().unwrap().values().all(|p| p == 0),
            "{m}"
        );
    }

    // Even with nothing in the balance, work starts; each run is a ledger row at price 0.
    let owner = h.alice;
    let before = balance(&h, owner).await;
    use drama_dal::CreditLedger as _;
    h.store
        .move_credits(&drama_dal::CreditMove::new(
            owner,
            -before,
            drama_dal::CreditReason::Adjustment,
        ))
        .await
        .unwrap();
    create_drama(&svc, &h.alice_key, "free", (1, 1, 2)).await;
    let (status, _, body) = send(&svc, post("/dramas/free/generate", &h.alice_key)).await;
    assert_eq!(status, 202, "{body}");
    let (status, _, body) = send(
        &svc,
        post_json(
            "/dramas",
            &h.alice_key,
            json!({"premise": "A free premise.", "model": "cheap"}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(balance(&h, owner).await, 0);
    let charges: Vec<i64> = h
        .store
        .ledger(owner, 10, 0)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.reason == drama_dal::CreditReason::RunCharge)
        .map(|e| e.amount)
        .collect();
    assert_eq!(charges, vec![0, 0]);
    let (_, gql) = graphql(&svc, &h.alice_key, "{ models { billed image } }").await;
    assert_eq!(
        gql["data"]["models"],
        json!({"billed": false, "image": 0}),
        "{gql}"
    );
}

#[actix_web::test]
async fn per_token_prices_are_listed_where_they_are_set() {
    let h =
        priced_harness("gemini-3-pro-preview=gemini,tok=openai:gpt-5.1@10/10/3/8+in125/out1000")
            .await;
    let svc = h.service(Harness::settings()).await;
    let (status, _, body) = send(&svc, TestRequest::get().uri("/models")).await;
    assert_eq!(status, 200, "{body}");
    let per_call = &body["models"][0];
    assert_eq!(per_call["name"], "gemini-3-pro-preview");
    assert!(per_call.get("token_prices").is_none(), "{body}");
    let per_token = &body["models"][1];
    assert_eq!(per_token["name"], "tok");
    assert_eq!(
        per_token["token_prices"],
        json!({"input_per_million": 125, "output_per_million": 1000})
    );
    // The per-call prices stay: they are what each call holds.
    assert_eq!(per_token["prices"]["generate_drama"], 10);

    let (_, gql) = graphql(
        &svc,
        &h.alice_key,
        "{ models { models { name tokenPrices { inputPerMillion outputPerMillion } } } }",
    )
    .await;
    let listed = &gql["data"]["models"]["models"];
    assert_eq!(listed[0]["tokenPrices"], Value::Null, "{gql}");
    assert_eq!(
        listed[1]["tokenPrices"],
        json!({"inputPerMillion": 125, "outputPerMillion": 1000}),
        "{gql}"
    );
}
