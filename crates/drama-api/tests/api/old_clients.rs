//! The old clients' calls replayed against the server on PostgreSQL: the GraphQL documents of
//! the old server's test suite and of its documented client queries (variables with and
//! without values, fragments, aliases, `__typename`, directives, introspection as GraphiQL and
//! code generators send it), and its REST calls, with the old response shapes.

use actix_web::test;
use drama_app::App;
use drama_dal::{ApiKeyRepository as _, NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_testkit::pg::ScratchDb;
use serde_json::{Value, json};

use crate::support::{
    Api, FULL_INTROSPECTION, Harness, get, graphql_body, plain_service_of, post_json, send,
};

/// The drama of the old `tests/test_generation.py` fixture.
fn old_fixture(id: &str) -> Value {
    json!({
        "id": id, "title": "Neon Detective", "description": "A detective and an AI.",
        "premise": "A detective partners with an AI.",
        "characters": [
            {"id": "char_detective", "name": "Mara", "description": "A tired detective",
             "gender": "female", "voice_description": "low and dry", "main": true},
            {"id": "char_ai", "name": "Iris", "description": "An AI partner",
             "gender": "other", "voice_description": "bright, precise", "main": true}],
        "episodes": [{"id": "ep01", "title": "Pilot", "description": "They meet.",
            "scenes": [
                {"id": "ep01_s01", "description": "Rain on the precinct window.",
                 "assets": [
                    {"id": "ep01_s01_storyboard", "kind": "image",
                     "depends_on": ["char_detective"], "prompt": "a detective in the rain"},
                    {"id": "ep01_s01_clip", "kind": "video",
                     "depends_on": ["ep01_s01_storyboard"], "prompt": "slow push in",
                     "duration": 10}]},
                {"id": "ep01_s02", "description": "The AI speaks.",
                 "assets": [
                    {"id": "ep01_s02_storyboard", "kind": "image",
                     "depends_on": ["char_detective", "char_ai"], "prompt": "both at a desk"},
                    {"id": "ep01_s02_clip", "kind": "video",
                     "depends_on": ["ep01_s02_storyboard"], "prompt": "the screen glows",
                     "duration": 10}]}]}],
        "metadata": {"test": true, "source": "old suite"}
    })
}

/// The LST suite's `GetDramas`, exactly: nullable variables into `Int! = …` arguments.
const GET_DRAMAS: &str = "query GetDramas($limit: Int, $offset: Int) {
  dramas(limit: $limit, offset: $offset) {
    id title description premise url coverPhoto
    characters { id name description gender voiceDescription main url }
    episodes { id title description url scenes { id description imageUrl videoUrl } }
  }
}";

/// What a client of the documented schema sends for a drama page: fragments, aliases,
/// `__typename` (added by Apollo-style clients), a directive with a variable default.
const DRAMA_PAGE: &str = "
fragment CharacterCard on Character { __typename id name gender voiceDescription main portrait: url }
fragment SceneCard on Scene { __typename id description imageUrl videoUrl }
query DramaPage($id: String!, $withJobs: Boolean = false) {
  drama(id: $id) {
    __typename id title cover: coverPhoto url
    characters { ...CharacterCard }
    episodes { id title url scenes { ...SceneCard jobs @include(if: $withJobs) { jobId status } } }
  }
}";

struct OldWorld {
    db: ScratchDb,
    pool: sqlx::PgPool,
    app: App,
    key: String,
    other: UserId,
}

impl OldWorld {
    async fn start() -> Self {
        let db = ScratchDb::create("api_old_clients").await;
        let pool = db.pool().await;
        let (store, app) = crate::support::pg_app(&pool).await;
        let user = UserId::random();
        store.create_user(&NewUser::new(user)).await.unwrap();
        let key = store
            .create_api_key(user, "old", &[], None)
            .await
            .unwrap()
            .key;
        let other = UserId::random();
        Self {
            db,
            pool,
            app,
            key,
            other,
        }
    }

    async fn service(&self) -> impl Api + use<> {
        plain_service_of(self.app.clone()).await
    }
}

async fn gql(svc: &impl Api, key: &str, body: Value) -> Value {
    let (status, body) = graphql_body(svc, key, body).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The keys of a JSON object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    k.sort_unstable();
    k
}

#[actix_web::test]
async fn the_old_graphql_documents_answer_in_the_old_shapes() {
    let world = OldWorld::start().await;
    let svc = world.service().await;
    let key = &world.key;
    for id in ["old_a", "old_b", "old_c"] {
        let (status, _, body) = send(
            &svc,
            post_json("/dramas", key, json!({"drama": old_fixture(id)})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }

    // GetDramas with values, with nothing (the arguments' defaults), with `null` for a
    // variable that is simply absent, and with a JSON encoder's `2.0`.
    for (variables, expected) in [
        (json!({"limit": 2, "offset": 1}), vec!["old_b", "old_a"]),
        (json!({}), vec!["old_c", "old_b", "old_a"]),
        (json!({"offset": 2}), vec!["old_a"]),
        (json!({"limit": 2.0}), vec!["old_c", "old_b"]),
    ] {
        let b = gql(
            &svc,
            key,
            json!({"query": GET_DRAMAS, "variables": variables,
                                      "operationName": "GetDramas"}),
        )
        .await;
        assert!(b["errors"].is_null(), "{variables}: {b}");
        let dramas = b["data"]["dramas"].as_array().unwrap();
        let ids: Vec<&str> = dramas.iter().map(|d| d["id"].as_str().unwrap()).collect();
        assert_eq!(ids, expected, "{variables}");
        let d = &dramas[0];
        assert_eq!(
            keys(d),
            [
                "characters",
                "coverPhoto",
                "description",
                "episodes",
                "id",
                "premise",
                "title",
                "url"
            ]
        );
        assert_eq!(
            keys(&d["characters"][0]),
            [
                "description",
                "gender",
                "id",
                "main",
                "name",
                "url",
                "voiceDescription"
            ]
        );
        assert_eq!(d["characters"][1]["voiceDescription"], "bright, precise");
        assert_eq!(
            keys(&d["episodes"][0]["scenes"][0]),
            ["description", "id", "imageUrl", "videoUrl"]
        );
        assert_eq!(d["episodes"][0]["scenes"][1]["id"], "ep01_s02");
    }
    // An explicit null for a non-null argument stays an error, as the specification says.
    let b = gql(
        &svc,
        key,
        json!({"query": GET_DRAMAS, "variables": {"limit": null}}),
    )
    .await;
    assert!(b["errors"][0]["message"].is_string(), "{b}");

    // The summaries, as the old suite asks for them (with and without `userId`).
    for (query, variables) in [
        (
            "query { dramaSummaries(limit: 10) { id title description premise url createdAt updatedAt } }",
            json!(null),
        ),
        (
            "query GetSummaries($userId: String) { dramaSummaries(limit: 10, userId: $userId) { id title description premise url createdAt updatedAt } }",
            json!({"userId": world.other.to_string()}),
        ),
        (
            "query GetSummaries($limit: Int) { dramaSummaries(limit: $limit) { id title description premise url createdAt updatedAt } }",
            json!({}),
        ),
    ] {
        let b = gql(&svc, key, json!({"query": query, "variables": variables})).await;
        assert!(b["errors"].is_null(), "{query}: {b}");
        let list = b["data"]["dramaSummaries"].as_array().unwrap();
        assert_eq!(
            list.len(),
            3,
            "an ordinary caller's userId is ignored: {query}"
        );
        assert_eq!(
            keys(&list[0]),
            [
                "createdAt",
                "description",
                "id",
                "premise",
                "title",
                "updatedAt",
                "url"
            ]
        );
        assert!(list[0]["createdAt"].as_str().unwrap().ends_with('Z'));
    }

    // A drama page with fragments, aliases, __typename and a directive.
    for (variables, job_key) in [
        (json!({"id": "old_b"}), false),
        (json!({"id": "old_b", "withJobs": true}), true),
    ] {
        let b = gql(
            &svc,
            key,
            json!({"query": DRAMA_PAGE, "variables": variables}),
        )
        .await;
        assert!(b["errors"].is_null(), "{b}");
        let d = &b["data"]["drama"];
        assert_eq!(d["__typename"], "Drama");
        assert_eq!(
            keys(d),
            [
                "__typename",
                "characters",
                "cover",
                "episodes",
                "id",
                "title",
                "url"
            ]
        );
        assert_eq!(d["characters"][0]["__typename"], "Character");
        assert!(d["characters"][0].get("portrait").is_some());
        let scene = &d["episodes"][0]["scenes"][0];
        assert_eq!(scene["__typename"], "Scene");
        assert_eq!(scene.get("jobs").is_some(), job_key);
    }

    // An explicit null where a directive needs a Boolean is an error, as in graphql-core.
    let b = gql(
        &svc,
        key,
        json!({"query": DRAMA_PAGE,
        "variables": {"id": "old_b", "withJobs": null}}),
    )
    .await;
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("withJobs"),
        "{b}"
    );
    assert_eq!(
        b["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{b}"
    );

    // Not found, and the old mutations on a drama that does not exist: null, no error.
    let b = gql(
        &svc,
        key,
        json!({"query": "query GetDrama($id: String!) { drama(id: $id) { id title } }",
        "variables": {"id": "non-existent-drama-id"}}),
    )
    .await;
    assert_eq!(b["data"]["drama"], Value::Null);
    let b = gql(&svc, key, json!({"query": "mutation GenerateCharacterImage($dramaId: String!, $characterId: String!, $userId: String) {
        generateCharacterImage(dramaId: $dramaId, characterId: $characterId, userId: $userId) { id name url } }",
        "variables": {"dramaId": "missing", "characterId": "c1"}})).await;
    assert_eq!(b["data"]["generateCharacterImage"], Value::Null, "{b}");
    let b = gql(
        &svc,
        key,
        json!({"query": "mutation { generateCoverPhoto(dramaId: \"missing\") { id coverPhoto } }"}),
    )
    .await;
    assert_eq!(b["data"]["generateCoverPhoto"], Value::Null, "{b}");
    let b = gql(&svc, key, json!({"query": "query Jobs($dramaId: String!, $status: String) { jobs(dramaId: $dramaId, status: $status) { jobId dramaId type status createdAt } }",
        "variables": {"dramaId": "old_a"}})).await;
    assert_eq!(b["data"]["jobs"], json!([]), "{b}");

    // Introspection: the old suite's checks, and the full query of graphql-js.
    let b = gql(
        &svc,
        key,
        json!({"query": "query { __schema { queryType { name } mutationType { name } } }"}),
    )
    .await;
    assert_eq!(b["data"]["__schema"]["queryType"]["name"], "Query");
    assert_eq!(b["data"]["__schema"]["mutationType"]["name"], "Mutation");
    let b = gql(
        &svc,
        key,
        json!({"query": FULL_INTROSPECTION, "operationName": "IntrospectionQuery"}),
    )
    .await;
    assert!(b["errors"].is_null(), "{b}");
    let types = b["data"]["__schema"]["types"].as_array().unwrap();
    let query = types.iter().find(|t| t["name"] == "Query").unwrap();
    let dramas = query["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "dramas")
        .unwrap();
    let limit = dramas["args"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "limit")
        .unwrap();
    assert_eq!(
        (
            &limit["type"]["kind"],
            &limit["type"]["ofType"]["name"],
            &limit["defaultValue"]
        ),
        (&json!("NON_NULL"), &json!("Int"), &json!("100")),
        "the old SDL: dramas(limit: Int! = 100)"
    );

    // Errors as the old server gave them: 200 with `errors`, or 400 for a body that is not JSON.
    let b = gql(
        &svc,
        key,
        json!({"query": "{ dramas { id nonExistentField } }"}),
    )
    .await;
    assert!(
        b["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nonExistentField")
    );
    let b = gql(&svc, key, json!({"query": "{ drama { id } }"})).await;
    assert!(b["errors"].is_array(), "{b}");
    let (status, _, _) = send(
        &svc,
        test::TestRequest::post()
            .uri("/graphql")
            .insert_header(crate::support::bearer(key))
            .insert_header(("content-type", "application/json"))
            .set_payload("invalid json"),
    )
    .await;
    assert_eq!(status, 400);
    // GET, as the old transport allowed for queries.
    let (status, _, b) = send(&svc, get("/graphql?query=query%20Q(%24limit%3A%20Int)%20%7B%20dramaSummaries(limit%3A%20%24limit)%20%7B%20id%20%7D%20%7D", key)).await;
    assert_eq!(status, 200);
    assert_eq!(
        b["data"]["dramaSummaries"].as_array().unwrap().len(),
        3,
        "{b}"
    );

    drop(svc);
    world.pool.close().await;
    world.db.drop_it().await;
}

#[actix_web::test]
async fn the_old_rest_calls_answer_in_the_old_shapes() {
    let world = OldWorld::start().await;
    let svc = world.service().await;
    let key = &world.key;

    let (status, _, b) = send(&svc, test::TestRequest::get().uri("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(b["status"], "ok");
    assert!(
        b["timestamp"].is_string() && b["version"].is_string(),
        "{b}"
    );

    // test_generation.py's fixture, in the old synchronous mode.
    let (status, _, d) = send(
        &svc,
        post_json("/dramas", key, json!({"drama": old_fixture("gen_fixture")})),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    for k in [
        "id",
        "title",
        "description",
        "premise",
        "url",
        "characters",
        "episodes",
        "assets",
        "metadata",
    ] {
        assert!(d.get(k).is_some(), "drama lacks {k}: {d}");
    }
    let c = &d["characters"][0];
    for k in [
        "id",
        "name",
        "description",
        "gender",
        "voice_description",
        "main",
        "url",
        "premise_url",
        "assets",
        "metadata",
    ] {
        assert!(c.get(k).is_some(), "character lacks {k}: {c}");
    }
    let a = &d["episodes"][0]["scenes"][0]["assets"][1];
    for k in [
        "id",
        "kind",
        "depends_on",
        "prompt",
        "duration",
        "url",
        "metadata",
    ] {
        assert!(a.get(k).is_some(), "asset lacks {k}: {a}");
    }
    assert_eq!(a["depends_on"], json!(["ep01_s01_storyboard"]));

    let (status, _, list) = send(&svc, get("/dramas", key)).await;
    assert_eq!(status, 200);
    assert_eq!(list["dramas"][0]["id"], "gen_fixture");
    assert!(list.get("cursor").is_some(), "{list}");
    for (path, wrapper) in [
        ("/dramas/gen_fixture/characters", "characters"),
        ("/dramas/gen_fixture/episodes", "episodes"),
        ("/dramas/gen_fixture/episodes/ep01/scenes", "scenes"),
        (
            "/dramas/gen_fixture/episodes/ep01/scenes/ep01_s02/assets",
            "assets",
        ),
        ("/dramas/gen_fixture/jobs", "jobs"),
    ] {
        let (status, _, b) = send(&svc, get(path, key)).await;
        assert_eq!(status, 200, "{path}: {b}");
        assert!(b[wrapper].is_array(), "{path}: {b}");
    }
    let (status, _, b) = send(&svc, get("/dramas/gen_fixture/characters/char_ai", key)).await;
    assert_eq!((status, &b["name"]), (200, &json!("Iris")));
    let (status, _, b) = send(&svc, get("/dramas/nope", key)).await;
    assert_eq!(status, 404);
    assert_eq!(b["detail"]["error"], "Drama not found", "{b}");

    // The premise mode, as test_api.py and test_drama_create.py send it.
    let (status, _, b) = send(
        &svc,
        post_json(
            "/dramas",
            key,
            json!({"premise": "A young detective solves a mystery. 1 episode and 1 character.",
               "id": "test_drama_single_char_1"}),
        ),
    )
    .await;
    assert_eq!(status, 202, "{b}");
    assert_eq!(keys(&b), ["dramaId", "jobId", "message", "status"]);
    assert_eq!(
        (&b["dramaId"], &b["status"]),
        (&json!("test_drama_single_char_1"), &json!("pending"))
    );
    let job_path = format!(
        "/dramas/test_drama_single_char_1/jobs/{}",
        b["jobId"].as_str().unwrap()
    );
    let (status, _, job) = send(&svc, get(&job_path, key)).await;
    assert_eq!(status, 200, "{job}");
    for k in [
        "jobId",
        "type",
        "status",
        "dramaId",
        "createdAt",
        "startedAt",
        "completedAt",
        "error",
        "result",
    ] {
        assert!(job.get(k).is_some(), "job record lacks {k}: {job}");
    }
    assert_eq!(job["type"], "generate_drama");

    // Generation routes of the old suite: 202, a pending job, and the job type the old
    // server gave each route. Each run is cancelled before the next route: a route whose work
    // an active run of the drama already makes answers that run (docs/API.md).
    for (path, job_type) in [
        ("/dramas/gen_fixture/generate", "generate_drama"),
        (
            "/dramas/gen_fixture/episodes/ep01/generate",
            "generate_image",
        ),
        (
            "/dramas/gen_fixture/characters/char_detective/audition",
            "generate_video",
        ),
    ] {
        let (status, _, b) = send(&svc, post_json(path, key, json!({}))).await;
        assert_eq!(status, 202, "{path}: {b}");
        assert_eq!(b["status"], "pending", "{path}");
        let job = b["jobId"].as_str().unwrap();
        let (status, _, record) =
            send(&svc, get(&format!("/dramas/gen_fixture/jobs/{job}"), key)).await;
        assert_eq!(
            (status, &record["type"]),
            (200, &json!(job_type)),
            "{path}: {record}"
        );
        let (status, _, b) = send(
            &svc,
            post_json(&format!("/jobs/{job}/cancel"), key, json!({})),
        )
        .await;
        assert_eq!(status, 200, "{path}: {b}");
    }
    let (status, _, b) = send(&svc, get("/dramas/gen_fixture/cover_photo", key)).await;
    assert_eq!(status, 404, "no cover yet: {b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("POST /dramas/gen_fixture/cover_photo")
    );

    let (status, _, b) = send(
        &svc,
        test::TestRequest::patch()
            .uri("/dramas/gen_fixture")
            .insert_header(crate::support::bearer(key))
            .set_json(json!({"title": "Renamed"})),
    )
    .await;
    assert_eq!((status, &b["title"]), (200, &json!("Renamed")), "{b}");
    let (status, _, b) = send(
        &svc,
        test::TestRequest::delete()
            .uri("/dramas/gen_fixture")
            .insert_header(crate::support::bearer(key)),
    )
    .await;
    assert_eq!((status, &b), (200, &json!({"success": true})));

    drop(svc);
    world.pool.close().await;
    world.db.drop_it().await;
}

/// The old server's `GET /dramas` cursor was the decimal offset of the next page; clients kept
/// it or computed it, and are served from that offset (the next cursor is then ours).
#[actix_web::test]
async fn an_old_offset_cursor_pages_from_that_offset() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    for id in ["o1", "o2", "o3"] {
        crate::support::create_drama(&svc, &h.alice_key, id, (1, 1, 1)).await;
    }
    let ids = |body: &Value| -> Vec<String> {
        body["dramas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, _, all) = send(&svc, get("/dramas?limit=3", &h.alice_key)).await;
    assert_eq!(status, 200, "{all}");
    let newest_first = ids(&all);
    assert_eq!(newest_first.len(), 3);
    let (status, _, first) = send(&svc, get("/dramas?limit=2&cursor=0", &h.alice_key)).await;
    assert_eq!(
        (status, ids(&first)),
        (200, newest_first[..2].to_vec()),
        "{first}"
    );
    assert!(first["cursor"].is_string(), "{first}");
    let (status, _, rest) = send(&svc, get("/dramas?limit=2&cursor=2", &h.alice_key)).await;
    assert_eq!(
        (status, ids(&rest)),
        (200, newest_first[2..].to_vec()),
        "{rest}"
    );
    assert_eq!(rest["cursor"], Value::Null, "{rest}");
    let (status, _, past) = send(&svc, get("/dramas?cursor=30", &h.alice_key)).await;
    assert_eq!((status, ids(&past)), (200, Vec::<String>::new()), "{past}");
    // An offset no list reaches, and text that is neither, name the cursor.
    for cursor in ["99999999999999999999", "not-a-cursor"] {
        let (status, _, body) =
            send(&svc, get(&format!("/dramas?cursor={cursor}"), &h.alice_key)).await;
        assert_eq!(status, 422, "{cursor}: {body}");
        assert!(body.to_string().contains("cursor"), "{cursor}: {body}");
    }
}

/// FastAPI answered a path with a trailing slash with a 307 to the path without it, and served
/// Redoc at `/redoc`; old clients still call both.
#[actix_web::test]
async fn trailing_slashes_redirect_as_the_old_server_did_and_redoc_is_served() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    for (path, location) in [
        ("/dramas/", "/dramas"),
        ("/dramas/?limit=5", "/dramas?limit=5"),
        (
            "/dramas/some_drama/characters/",
            "/dramas/some_drama/characters",
        ),
        ("/health/", "/health"),
    ] {
        let (status, headers, body) = send(&svc, get(path, &h.alice_key)).await;
        assert_eq!(status, 307, "{path}: {body}");
        assert_eq!(
            headers.get("location").and_then(|v| v.to_str().ok()),
            Some(location),
            "{path}"
        );
    }
    // Following it lands where the old client meant, method and body kept.
    let (status, headers, _) = send(
        &svc,
        post_json(
            "/dramas/",
            &h.alice_key,
            json!({"premise": "p", "id": "slash"}),
        ),
    )
    .await;
    assert_eq!(status, 307);
    assert_eq!(headers.get("location").unwrap(), "/dramas");
    // Never a redirect to another host, and a path without a slash is still a plain 404.
    for path in ["//evil.example/", "/no-such-route"] {
        let (status, headers, body) = send(&svc, get(path, &h.alice_key)).await;
        assert!(headers.get("location").is_none(), "{path}: {headers:?}");
        assert_eq!(status, 404, "{path}: {body}");
    }
    let response =
        test::call_service(&svc, test::TestRequest::get().uri("/redoc").to_request()).await;
    assert_eq!(response.status(), 200);
    let html = test::read_body(response).await;
    assert!(String::from_utf8_lossy(&html).contains("openapi.json"));
}
