//! The multipart form of `POST /dramas` (a premise with a reference image) is bounded part by
//! part and as a whole: text parts to a few hundred KB, parts the server ignores counted but
//! not kept, and the number of parts; a well-formed form is still accepted.

use actix_web::test::TestRequest;
use serde_json::Value;

use crate::library::{BOUNDARY, PNG, multipart};
use crate::support::{Harness, bearer, send};

fn form(key: &str, body: Vec<u8>) -> TestRequest {
    TestRequest::post()
        .uri("/dramas")
        .insert_header(bearer(key))
        .insert_header((
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        ))
        .set_payload(body)
}

fn assert_too_large(status: u16, body: &Value, names: &str) {
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("too_large")),
        "{body}"
    );
    let text = body.to_string();
    assert!(text.contains(names), "the refusal names {names}: {body}");
}

#[actix_web::test]
async fn a_premise_form_is_bounded_part_by_part_and_as_a_whole() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;

    // A text part far past any premise is refused while it streams, naming the part.
    let huge = "x".repeat(300 * 1024);
    let (status, _, body) = send(
        &svc,
        form(
            &h.alice_key,
            multipart(&[("premise", &huge), ("id", "big")], None, false),
        ),
    )
    .await;
    assert_too_large(status, &body, "premise");

    // A part the server does not read is not kept, but counts towards the whole form.
    let filler = "y".repeat(2 * 1024 * 1024);
    let many: Vec<(&str, &str)> = (0..11).map(|_| ("padding", filler.as_str())).collect();
    let (status, _, body) = send(&svc, form(&h.alice_key, multipart(&many, None, false))).await;
    assert_too_large(status, &body, "form");

    // More parts than a form of four needs.
    let parts: Vec<(&str, &str)> = (0..17).map(|_| ("premise", "p")).collect();
    let (status, _, body) = send(&svc, form(&h.alice_key, multipart(&parts, None, false))).await;
    assert_too_large(status, &body, "parts");

    // Nothing was stored by the refusals; a well-formed form with an image is accepted.
    let (status, _, body) = send(&svc, crate::support::get("/dramas", &h.alice_key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dramas"].as_array().map(Vec::len), Some(0), "{body}");
    let mut body = multipart(
        &[
            ("premise", "A lighthouse keeper finds a map."),
            ("id", "form_ok"),
        ],
        None,
        false,
    );
    // The image part, named as the form names it.
    let image = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"reference_image\"; \
         filename=\"ref.png\"\r\nContent-Type: image/png\r\n\r\n"
    );
    let end = format!("--{BOUNDARY}--\r\n");
    body.truncate(body.len() - end.len());
    body.extend_from_slice(image.as_bytes());
    body.extend_from_slice(PNG);
    body.extend_from_slice(b"\r\n");
    body.extend_from_slice(end.as_bytes());
    let (status, _, body) = send(&svc, form(&h.alice_key, body)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["dramaId"], "form_ok", "{body}");
}
