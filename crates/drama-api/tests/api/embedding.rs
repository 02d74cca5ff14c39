//! drama_api mounted under a prefix inside another service's `App`: the API answers under the
//! prefix, the host keeps its own routes, 404s and extractor error handlers.

use actix_web::test::{self, TestRequest};
use actix_web::{HttpResponse, web};
use drama_api::ApiState;
use serde_json::Value;

use crate::support::{Harness, get};

#[derive(serde::Deserialize)]
struct Host {
    #[allow(dead_code)]
    n: u32,
}

async fn host_json(_: web::Json<Host>) -> HttpResponse {
    HttpResponse::Ok().body("host")
}

/// `TRACE uri`, without credentials.
fn trace(uri: &str) -> TestRequest {
    TestRequest::default()
        .method(actix_web::http::Method::TRACE)
        .uri(uri)
}

/// `res` is the host's own 404 (actix's empty default), not the API's.
async fn assert_hosts_404<B: actix_web::body::MessageBody>(
    res: actix_web::dev::ServiceResponse<B>,
) {
    assert_eq!(res.status(), 404);
    assert!(
        test::read_body(res).await.is_empty(),
        "the host's 404 was taken over"
    );
}

#[actix_web::test]
async fn the_api_mounts_under_a_prefix_next_to_foreign_routes() {
    let h = Harness::new().await;
    let state = ApiState::new(h.app.clone(), Harness::settings());
    let svc = test::init_service(
        actix_web::App::new()
            .service(drama_api::scope("/drama", state))
            .route(
                "/hello",
                web::get().to(|| async { HttpResponse::Ok().body("hi") }),
            )
            .route("/host-json", web::post().to(host_json)),
    )
    .await;

    // The API under its prefix, authenticated as usual.
    let req = get("/drama/dramas", &h.alice_key).to_request();
    let res = test::call_service(&svc, req).await;
    assert_eq!(res.status(), 200);
    let body: Value = test::read_body_json(res).await;
    assert!(body.is_array() || body.get("dramas").is_some(), "{body}");

    // An unknown path under the prefix gets the API's JSON 404.
    let res = test::call_service(
        &svc,
        TestRequest::get().uri("/drama/no-such-route").to_request(),
    )
    .await;
    assert_eq!(res.status(), 404);
    let body: Value = test::read_body_json(res).await;
    assert_eq!(body["code"], "not_found");

    // A method an API path lacks is the API's JSON 405 naming the methods it has.
    let res = test::call_service(&svc, trace("/drama/dramas").to_request()).await;
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers().get("allow").unwrap(), "GET, POST");
    let body: Value = test::read_body_json(res).await;
    assert_eq!(body["code"], "method_not_allowed");

    // The host's own route works and its 404 stays the host's (actix's empty default).
    let res = test::call_service(&svc, TestRequest::get().uri("/hello").to_request()).await;
    assert_eq!(res.status(), 200);
    assert_eq!(test::read_body(res).await, "hi");
    let res = test::call_service(&svc, TestRequest::get().uri("/elsewhere").to_request()).await;
    assert_hosts_404(res).await;
    let res = test::call_service(&svc, trace("/elsewhere").to_request()).await;
    assert_hosts_404(res).await;

    // The host's JSON extractor keeps actix's default error handling (plain 400, not the
    // API's envelope), so the API's extractor configuration did not leak out of its scope.
    let res = test::call_service(
        &svc,
        TestRequest::post()
            .uri("/host-json")
            .insert_header(("content-type", "application/json"))
            .set_payload("{\"n\": \"not a number\"}")
            .to_request(),
    )
    .await;
    assert_eq!(res.status(), 400);
    let body = test::read_body(res).await;
    assert!(
        serde_json::from_slice::<Value>(&body).map_or(true, |v| v.get("code").is_none()),
        "the host's JSON errors use the API's envelope: {body:?}"
    );
}
