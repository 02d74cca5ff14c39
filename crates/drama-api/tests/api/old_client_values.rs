//! Values of a complete drama as the old clients write them, on PostgreSQL: the Flutter app
//! writes a `double` duration as `10.0`, and the old server's Pydantic read `1` and `0` as
//! booleans. Both are stored as the integer and the flag they stand for; what Pydantic
//! refused (`10.5`) and what the document does not admit (`2` for a flag, text) stays 422
//! naming the field.

use drama_dal::{ApiKeyRepository as _, NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_testkit::pg::ScratchDb;
use serde_json::{Value, json};

use crate::support::{get, plain_service_of, post_json, send};

/// A drama with one lead, one extra, and a scene of a storyboard and a clip, numbers written
/// as a Dart client writes them.
fn dart_drama(id: &str, duration: Value, lead: Value, extra: Value) -> Value {
    json!({
        "id": id, "title": "Harbour Lights", "description": "A ferry captain's last season.",
        "premise": "A ferry captain's last season.",
        "characters": [
            {"id": "c_lead", "name": "Ada", "description": "A ferry captain", "gender": "female",
             "voice_description": "weathered", "main": lead},
            {"id": "c_extra", "name": "Bo", "description": "A deckhand", "gender": "male",
             "voice_description": "quick", "main": extra}],
        "episodes": [{"id": "e1", "title": "Fog", "description": "The fog comes in.",
            "scenes": [{"id": "s1", "description": "The ferry leaves.",
                "assets": [
                    {"id": "s1_board", "kind": "image", "depends_on": ["c_lead"],
                     "prompt": "a ferry at dawn", "duration": null},
                    {"id": "s1_clip", "kind": "video", "depends_on": ["s1_board"],
                     "prompt": "the ferry pulls out", "duration": duration}]}]}]
    })
}

#[actix_web::test]
async fn integral_floats_and_numeric_flags_are_read_as_the_old_server_read_them() {
    let db = ScratchDb::create("api_old_client_values").await;
    let pool = db.pool().await;
    let (store, app) = crate::support::pg_app(&pool).await;
    let user = UserId::random();
    store.create_user(&NewUser::new(user)).await.unwrap();
    let key = store
        .create_api_key(user, "flutter", &[], None)
        .await
        .unwrap()
        .key;
    let svc = plain_service_of(app).await;

    let drama = dart_drama("dart_doubles", json!(10.0), json!(1), json!(0));
    let (status, _, body) = send(&svc, post_json("/dramas", &key, json!({ "drama": drama }))).await;
    assert_eq!(status, 201, "{body}");
    // Stored and answered as the integer and the flags they stand for.
    let (status, _, body) = send(&svc, get("/dramas/dart_doubles", &key)).await;
    assert_eq!(status, 200, "{body}");
    let clip = &body["episodes"][0]["scenes"][0]["assets"][1];
    assert_eq!(clip["duration"], json!(10), "{body}");
    assert!(clip["duration"].is_i64(), "an integer, not 10.0: {clip}");
    assert_eq!(body["characters"][0]["main"], json!(true), "{body}");
    assert_eq!(body["characters"][1]["main"], json!(false), "{body}");

    let drama = dart_drama("dart_fifteen", json!(15.0), json!(true), json!(false));
    let (status, _, body) = send(&svc, post_json("/dramas", &key, json!({ "drama": drama }))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["episodes"][0]["scenes"][0]["assets"][1]["duration"],
        json!(15)
    );

    // What Pydantic refused, and what the document's types do not admit, is refused naming
    // the field; nothing is stored.
    let clip = "drama.episodes[0].scenes[0].assets[1].duration";
    let lead = "drama.characters[0].main";
    for (id, duration, flag, field) in [
        ("half_second", json!(10.5), json!(true), clip),
        ("text_duration", json!("10"), json!(true), clip),
        ("flag_two", json!(10), json!(2), lead),
        ("flag_text", json!(10), json!("true"), lead),
        ("flag_half", json!(10), json!(0.5), lead),
    ] {
        let drama = dart_drama(id, duration, flag, json!(false));
        let (status, _, body) =
            send(&svc, post_json("/dramas", &key, json!({ "drama": drama }))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("validation_failed")),
            "{id}: {body}"
        );
        assert_eq!(body["detail"][0]["field"], field, "{id}: {body}");
        let (status, _, _) = send(&svc, get(&format!("/dramas/{id}"), &key)).await;
        assert_eq!(status, 404, "{id} was not stored");
    }
    pool.close().await;
    db.drop_it().await;
}
