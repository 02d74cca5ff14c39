//! The old clients' GraphQL lists on PostgreSQL: a client of the old main schema has no
//! `offset` and asks `dramas(limit: 500)` for all its dramas, which the old server served
//! whole. Up to 500 complete dramas (and 5,000 summaries) are served, read a page at a time;
//! a larger `limit` gets that many and `extensions.truncated` says so.

use drama_dal::DramaRepository as _;
use drama_testkit::pg::ScratchDb;
use serde_json::{Value, json};

use crate::support::{graphql_body, pg_user, plain_service_of};

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect()
}

#[actix_web::test]
async fn an_old_clients_limit_is_served_whole_up_to_500_and_a_cut_is_said() {
    let db = ScratchDb::create("api_old_client_lists").await;
    let pool = db.pool().await;
    let (store, app) = crate::support::pg_app(&pool).await;
    let (user, key) = pg_user(&store, 0).await;
    for i in 0..520 {
        let drama = drama_testkit::builders::drama(&format!("d{i:03}"), 0, 0, 0);
        store.create(user, &drama).await.unwrap();
    }
    let svc = plain_service_of(app).await;
    let ask = |query: &str| json!({ "query": query });

    // The old client's call: all 500 asked for, newest first, none twice.
    let answer = graphql_body(&svc, &key, ask("{ dramas(limit: 500) { id title } }")).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    let served = ids(&answer.1["data"]["dramas"]);
    assert_eq!(served.len(), 500);
    let mut unique = served.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 500, "a drama served twice");
    assert_eq!(served[0], "d519", "newest first");
    assert!(
        answer.1.get("extensions").is_none(),
        "served as asked: {}",
        answer.1["extensions"]
    );

    // With the selection the docs price (a page of complete dramas with their scenes' jobs):
    // priced at a page, as the old server did, so it is served, not `query_too_complex`.
    let answer = graphql_body(
        &svc,
        &key,
        ask("{ dramas(limit: 500) { episodes { scenes { jobs { jobId status createdAt } } } } }"),
    )
    .await;
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert!(answer.1.get("errors").is_none(), "{}", answer.1);
    assert_eq!(
        answer.1["data"]["dramas"].as_array().map(Vec::len),
        Some(500)
    );

    // Past the most one field serves: 500, and the answer says it was cut, under the alias.
    let answer = graphql_body(&svc, &key, ask("{ all: dramas(limit: 2000) { id } }")).await;
    assert_eq!(ids(&answer.1["data"]["all"]).len(), 500);
    assert_eq!(
        answer.1["extensions"]["truncated"],
        json!([{"path": ["all"], "limit": 2000, "served": 500}]),
        "{}",
        answer.1
    );

    // The LST client's offset pages across the statements the server reads.
    let answer = graphql_body(
        &svc,
        &key,
        ask("{ dramas(limit: 150, offset: 400) { id } }"),
    )
    .await;
    let page = ids(&answer.1["data"]["dramas"]);
    assert_eq!(page.len(), 120, "the 120 after the first 400");
    assert_eq!((page[0], page[119]), ("d119", "d000"));

    // Summaries: all 520 of a larger `limit`, nothing cut.
    let answer = graphql_body(
        &svc,
        &key,
        ask("{ dramaSummaries(limit: 6000) { id updatedAt } }"),
    )
    .await;
    assert_eq!(ids(&answer.1["data"]["dramaSummaries"]).len(), 520);
    assert!(answer.1.get("extensions").is_none(), "{}", answer.1);

    drop(svc);
    pool.close().await;
    db.drop_it().await;
}
