//! The multipart forms of `POST /dramas` (a premise with a reference image) and of
//! `POST /asset-library/upload` are bounded part by part and as a whole: text parts to their
//! limits, parts the server ignores counted but not kept, and the number of parts; a
//! well-formed form is still accepted.

use actix_web::test::TestRequest;
use serde_json::Value;

use crate::support::{
    Harness, PNG, file_part, multipart, post_form, premise_form_with_image, send,
};

fn form(key: &str, body: Vec<u8>) -> TestRequest {
    post_form("/dramas", key, body)
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
    // The image part, named as the form names it.
    let body = premise_form_with_image("A lighthouse keeper finds a map.", "form_ok");
    let (status, _, body) = send(&svc, form(&h.alice_key, body)).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["dramaId"], "form_ok", "{body}");
}

/// A premise form whose `reference_image` part is declared as `content_type`.
fn premise_with_image(content_type: &str, bytes: &[u8]) -> Vec<u8> {
    let mut body = file_part("reference_image", "ref", content_type, bytes);
    body.extend_from_slice(&multipart(
        &[("premise", "A lighthouse keeper.")],
        None,
        false,
    ));
    body
}

/// A refused reference image is named as the form's field, `reference_image`, whichever check
/// refused it (the declared type, or bytes that are not what they are declared to be).
#[actix_web::test]
async fn a_refused_reference_image_names_its_field() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    for (content_type, bytes) in [
        ("application/pdf", &b"%PDF-1.7"[..]),
        // Declared as an image type the models do not read, but no image at all.
        ("image/tiff", &b"%PDF-1.7"[..]),
        ("image/png", &b"plain words, not a picture"[..]),
        ("", &b"plain words, not a picture"[..]),
    ] {
        let body = premise_with_image(content_type, bytes);
        let (status, _, body) = send(&svc, form(&h.alice_key, body)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("validation_failed")),
            "{content_type}: {body}"
        );
        assert_eq!(
            body["detail"][0]["field"], "reference_image",
            "{content_type}: {body}"
        );
    }
}

/// An iPhone's photo (HEIC), declared as such or as bytes of no particular type, is an image
/// the image models do not read: the premise is accepted and written without it (the drama's
/// `metadata.reference_image_dropped` says why), as the old server accepted any file.
#[actix_web::test]
async fn a_heic_reference_image_does_not_refuse_the_premise() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
    for content_type in ["image/heic", "image/heif", "application/octet-stream", ""] {
        let body = premise_with_image(content_type, heic);
        let (status, _, body) = send(&svc, form(&h.alice_key, body)).await;
        assert_eq!(status, 202, "{content_type}: {body}");
        assert_eq!(body["status"], "pending", "{content_type}: {body}");
    }
    // So is a TIFF, declared as one.
    let body = premise_with_image("image/tiff", b"II*\0\x08\0\0\0\0\0");
    let (status, _, body) = send(&svc, form(&h.alice_key, body)).await;
    assert_eq!(status, 202, "image/tiff: {body}");
}

/// A `file` part, to put before a form's own parts.
fn png_file_part(name: &str, bytes: &[u8]) -> Vec<u8> {
    file_part("file", name, "image/png", bytes)
}

#[actix_web::test]
async fn an_upload_form_is_bounded_as_a_premise_form_is() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let fields = [
        ("project_name", "p"),
        ("asset_type", "image"),
        ("tag", "clip"),
    ];
    let file = Some(("a.png", "image/png", PNG));
    let upload = |body: Vec<u8>| crate::support::upload(&h.alice_key, body);

    // A second file is refused, naming the part, rather than spooled to replace the first.
    let body = [png_file_part("b.png", PNG), multipart(&fields, file, true)].concat();
    let (status, _, body) = send(&svc, upload(body)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("validation_failed")),
        "{body}"
    );
    assert_eq!(body["detail"][0]["field"], "file", "{body}");

    // A text part past its limit is too large, naming the part.
    let notes = format!(r#"{{"notes": "{}"}}"#, "n".repeat(70 * 1024));
    let mut long = fields.to_vec();
    long.push(("metadata", &notes));
    let (status, _, body) = send(&svc, upload(multipart(&long, file, false))).await;
    assert_too_large(status, &body, "metadata");

    // Parts the server does not read count towards the form.
    let filler = "y".repeat(600 * 1024);
    let mut padded = fields.to_vec();
    padded.extend([("padding", filler.as_str()), ("padding", filler.as_str())]);
    let (status, _, body) = send(&svc, upload(multipart(&padded, file, false))).await;
    assert_too_large(status, &body, "form");

    // More parts than a form needs.
    let mut many = fields.to_vec();
    many.extend((0..14).map(|_| ("note", "x")));
    let (status, _, body) = send(&svc, upload(multipart(&many, file, false))).await;
    assert_too_large(status, &body, "parts");

    // Nothing was stored by the refusals; a form at the part limit is accepted.
    let (status, _, body) = send(
        &svc,
        crate::support::get("/asset-library/list?project_name=p", &h.alice_key),
    )
    .await;
    assert_eq!((status, body["total"].as_u64()), (200, Some(0)), "{body}");
    many.truncate(15);
    let (status, _, body) = send(&svc, upload(multipart(&many, file, false))).await;
    assert_eq!(status, 200, "{body}");
}
