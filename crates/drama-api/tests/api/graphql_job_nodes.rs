//! The job nodes one GraphQL request reads: the top-level `jobs(dramaId)` and the nested
//! `jobs` of pages of dramas share one allowance per request, so aliases and several pages
//! cannot multiply it.

use serde_json::Value;

use crate::support::{Api, Harness, create_drama, graphql, post, send, service_of};

/// The drama `id` (one character, one episode of one scene) with a generation run waiting
/// for a worker: every node of the run is stored.
async fn generated(svc: &impl Api, key: &str, id: &str) {
    create_drama(svc, key, id, (1, 1, 1)).await;
    let (status, _, body) = send(svc, post(&format!("/dramas/{id}/generate"), key)).await;
    assert_eq!(status, 202, "{body}");
}

fn codes(answer: &Value) -> Vec<&str> {
    answer["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["extensions"]["code"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// Four dramas with a run each, and the nodes of one drama's jobs.
async fn four_dramas(h: &Harness) -> usize {
    let svc = h.service(Harness::settings()).await;
    for id in ["j0", "j1", "j2", "j3"] {
        generated(&svc, &h.alice_key, id).await;
    }
    let (status, answer) =
        graphql(&svc, &h.alice_key, r#"{ jobs(dramaId: "j0") { jobId } }"#).await;
    assert_eq!(status, 200, "{answer}");
    let nodes = answer["data"]["jobs"].as_array().unwrap().len();
    assert!(nodes > 1, "{answer}");
    nodes
}

#[actix_web::test]
async fn aliased_top_level_jobs_share_the_requests_job_nodes() {
    let h = Harness::new().await;
    let nodes = four_dramas(&h).await;
    let svc = service_of(
        h.app.clone().with_max_tree_nodes(2 * nodes),
        Harness::settings(),
    )
    .await;
    let k = &h.alice_key;

    let (status, one) = graphql(&svc, k, r#"{ jobs(dramaId: "j0") { jobId } }"#).await;
    assert_eq!(status, 200, "{one}");
    assert!(codes(&one).is_empty(), "{one}");
    assert_eq!(one["data"]["jobs"].as_array().unwrap().len(), nodes);

    // The same drama under two names is read once, and served twice within the allowance.
    let (status, answer) = graphql(
        &svc,
        k,
        r#"{ a0: jobs(dramaId: "j0") { jobId } a1: jobs(dramaId: "j0") { jobId } }"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(codes(&answer).is_empty(), "{answer}");
    assert_eq!(answer["data"]["a1"], one["data"]["jobs"]);

    // Three dramas hold more than the request may read together.
    let (status, answer) = graphql(
        &svc,
        k,
        r#"{ a: jobs(dramaId: "j0") { jobId } b: jobs(dramaId: "j1") { jobId }
             c: jobs(dramaId: "j2") { jobId } }"#,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(codes(&answer).contains(&"TOO_LARGE"), "{answer}");

    // So do they over the operations of a batch.
    let batch: Vec<Value> = ["j0", "j1", "j2"]
        .iter()
        .map(|d| serde_json::json!({"query": format!(r#"{{ jobs(dramaId: "{d}") {{ jobId }} }}"#)}))
        .collect();
    let (status, _, answer) = send(&svc, crate::support::post_json("/graphql", k, &batch)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(codes(&answer[0]), Vec::<&str>::new(), "{answer}");
    assert!(codes(&answer[2]).contains(&"TOO_LARGE"), "{answer}");
}

#[actix_web::test]
async fn two_pages_of_dramas_read_their_jobs_within_one_allowance() {
    let h = Harness::new().await;
    let nodes = four_dramas(&h).await;
    let svc = service_of(
        h.app.clone().with_max_tree_nodes(3 * nodes),
        Harness::settings(),
    )
    .await;
    let k = &h.alice_key;

    let (status, answer) = graphql(
        &svc,
        k,
        "{ a: dramas(limit: 2, offset: 0) { id jobs { jobId } } }",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(codes(&answer).is_empty(), "{answer}");
    let a = answer["data"]["a"].as_array().unwrap();
    assert_eq!(a.len(), 2, "{answer}");
    assert!(
        a.iter()
            .all(|d| d["jobs"].as_array().unwrap().len() == nodes),
        "{answer}"
    );

    let (status, answer) = graphql(
        &svc,
        k,
        "{ a: dramas(limit: 2, offset: 0) { id jobs { jobId } }
           b: dramas(limit: 2, offset: 2) { id jobs { jobId } } }",
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(codes(&answer).contains(&"TOO_LARGE"), "{answer}");
}

/// Job objects in an answer, wherever they are.
fn job_objects(v: &Value) -> usize {
    match v {
        Value::Object(o) => {
            usize::from(o.contains_key("jobId")) + o.values().map(job_objects).sum::<usize>()
        }
        Value::Array(a) => a.iter().map(job_objects).sum(),
        _ => 0,
    }
}

#[actix_web::test]
async fn aliased_jobs_of_one_drama_serve_within_the_requests_job_nodes() {
    let h = Harness::new().await;
    let nodes = four_dramas(&h).await;
    let svc = service_of(
        h.app.clone().with_max_tree_nodes(2 * nodes),
        Harness::settings(),
    )
    .await;
    let k = &h.alice_key;

    // Read once, the drama's jobs would otherwise be copied into the answer 30 times.
    let aliases: Vec<String> = (0..30).map(|i| format!("a{i}: jobs {{ jobId }}")).collect();
    let query = format!(r#"{{ drama(id: "j0") {{ {} }} }}"#, aliases.join(" "));
    let (status, answer) = graphql(&svc, k, &query).await;
    assert_eq!(status, 200, "{answer}");
    assert!(codes(&answer).contains(&"TOO_LARGE"), "{answer}");
    assert!(job_objects(&answer) <= 2 * nodes, "{answer}");

    // The operations of a batch share what may be served, as they share what may be read.
    let batch: Vec<Value> = (0..3)
        .map(|_| serde_json::json!({"query": r#"{ jobs(dramaId: "j0") { jobId } }"#}))
        .collect();
    let (status, _, answer) = send(&svc, crate::support::post_json("/graphql", k, &batch)).await;
    assert_eq!(status, 200, "{answer}");
    let refused = (0..3)
        .filter(|&i| codes(&answer[i]).contains(&"TOO_LARGE"))
        .count();
    assert_eq!(refused, 1, "{answer}");
    assert_eq!(job_objects(&answer), 2 * nodes, "{answer}");
}
