//! The cover's preconditions in each API's old words: the old server's REST route and its
//! GraphQL mutation refused the same drama in different sentences, and clients match on them.

use serde_json::{Value, json};

use crate::support::{Harness, create_drama, post, post_json, send};

#[actix_web::test]
async fn each_api_refuses_a_cover_in_its_old_words() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let k = &h.alice_key;
    // Two main characters without portraits.
    create_drama(&svc, k, "unpainted", (2, 1, 1)).await;
    let mut no_main = drama_testkit::builders::drama_json("no-main", 1, 1, 1);
    no_main["characters"][0]["main"] = json!(false);
    let (status, _, body) = send(&svc, post_json("/dramas", k, json!({"drama": no_main}))).await;
    assert_eq!(status, 201, "{body}");

    let refusals = [
        (
            "unpainted",
            "All main characters must have images generated first. Missing images for: \
             Character 0, Character 1",
            "All main characters must have images: Character 0, Character 1",
        ),
        (
            "no-main",
            "Drama must have at least one main character",
            "Drama must have at least one main character",
        ),
    ];
    for (drama, rest, graphql) in refusals {
        let (status, _, body) = send(&svc, post(&format!("/dramas/{drama}/cover_photo"), k)).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["detail"], rest, "REST, {drama}: {body}");
        assert_eq!(body["code"], "precondition_failed", "{body}");

        let query = format!(r#"mutation {{ generateCoverPhoto(dramaId: "{drama}") {{ id }} }}"#);
        let (status, _, body) =
            send(&svc, post_json("/graphql", k, json!({ "query": query }))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["errors"][0]["message"], graphql,
            "GraphQL, {drama}: {body}"
        );
        assert_eq!(body["data"]["generateCoverPhoto"], Value::Null, "{body}");
    }
}
