//! The asset library and object routes.

use actix_web::test::TestRequest;
use serde_json::{Value, json};

use crate::support::{
    Harness, PNG, delete, get, image_upload_form, multipart, send, upload, uploaded,
};

#[actix_web::test]
async fn uploads_are_stored_listed_read_and_deleted() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let fields = [
        ("project_name", "My Project"),
        ("asset_type", "image"),
        ("tag", "character"),
        ("user_id", "10000"),
        (
            "metadata",
            r#"{"drama_id": "d1", "asset_id": "forged", "source": "reference_image"}"#,
        ),
    ];
    for file_first in [true, false] {
        let body = uploaded(
            &svc,
            &h.alice_key,
            multipart(&fields, Some(("Boy.PNG", "image/png", PNG)), file_first),
        )
        .await;
        assert!(
            body["r2_key"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/~my_project/uploads/", h.alice))
        );
        // Stored as the stable /media/ address, answered as a URL that loads as it is.
        let url = body["public_url"].as_str().unwrap();
        assert!(url.contains("/files/") && url.contains("&sig="), "{url}");
    }
    let list = |key: &str, query: &str| get(&format!("/asset-library/list?{query}"), key);
    let (status, _, body) = send(
        &svc,
        list(&h.alice_key, "project_name=My%20Project&tag=character"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 2);
    let record = &body["assets"][0];
    assert_eq!(record["content_type"], "image/png");
    assert_eq!(record["file_size"], PNG.len());
    assert_eq!(record["drama_id"], "d1", "caller metadata is kept");
    assert_ne!(
        record["asset_id"], "forged",
        "but cannot overwrite core fields"
    );
    assert_eq!(record["filename"], "boy.png");
    let id = record["asset_id"].as_str().unwrap().to_owned();

    let (_, _, other) = send(&svc, list(&h.bob_key, "project_name=My%20Project")).await;
    assert_eq!(other["total"], 0, "Bob sees none of Alice's uploads");
    let (status, _, body) = send(&svc, list(&h.alice_key, "tag=character")).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (400, Some("project_name is required"))
    );
    let (status, _, body) = send(&svc, list(&h.alice_key, "project_name=p&asset_type=sound")).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["detail"],
        "Invalid asset_type 'sound'. Must be one of: image, video, text"
    );

    let item = format!("/asset-library/{id}?project_name=My%20Project&asset_type=image");
    let response = actix_web::test::call_service(&svc, get(&item, &h.alice_key).to_request()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers().get("content-type").unwrap(), "image/png");
    assert_eq!(&actix_web::test::read_body(response).await[..], PNG);
    let (status, _, meta) = send(
        &svc,
        get(
            &format!("/asset-library/{id}/metadata?project_name=My%20Project&asset_type=image"),
            &h.alice_key,
        ),
    )
    .await;
    assert_eq!(
        (status, meta["asset_id"].as_str()),
        (200, Some(id.as_str()))
    );
    let (status, _, _) = send(&svc, get(&item, &h.bob_key)).await;
    assert_eq!(status, 404);

    let (status, _, body) = send(&svc, delete(&item, &h.alice_key)).await;
    assert_eq!(
        (status, body),
        (
            200,
            json!({"success": true, "message": "Asset deleted successfully"})
        )
    );
    let (status, _, _) = send(&svc, delete(&item, &h.alice_key)).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn bad_uploads_are_refused_and_nothing_is_kept() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    // Missing tag → 422 naming it.
    let (status, _, body) = send(
        &svc,
        upload(
            &h.alice_key,
            multipart(
                &[("project_name", "p"), ("asset_type", "image")],
                Some(("a.png", "image/png", PNG)),
                false,
            ),
        ),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["field"], "tag");
    // Bytes that are not what they claim.
    let (status, _, body) = send(
        &svc,
        upload(
            &h.alice_key,
            image_upload_form(
                "p",
                "clip",
                ("a.png", "image/png", b"GIF89a not really a png"),
            ),
        ),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    // A video file as an image.
    let mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2mp41";
    let (status, _, _) = send(
        &svc,
        upload(
            &h.alice_key,
            image_upload_form("p", "clip", ("a.mp4", "video/mp4", mp4)),
        ),
    )
    .await;
    assert_eq!(status, 422);
    let (_, _, listed) = send(
        &svc,
        get("/asset-library/list?project_name=p", &h.alice_key),
    )
    .await;
    assert_eq!(listed["total"], 0);
    assert_eq!(listed["assets"], Value::Array(vec![]));
}

#[actix_web::test]
async fn media_serves_only_the_callers_objects() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let (_, _, body) = send(
        &svc,
        upload(
            &h.alice_key,
            image_upload_form("p", "clip", ("a.png", "image/png", PNG)),
        ),
    )
    .await;
    let key = body["r2_key"].as_str().unwrap().to_owned();
    let response = actix_web::test::call_service(
        &svc,
        get(&format!("/media/{key}"), &h.alice_key)
            .insert_header(("range", "bytes=0-7"))
            .to_request(),
    )
    .await;
    assert_eq!(response.status(), 206);
    assert_eq!(&actix_web::test::read_body(response).await[..], &PNG[..8]);
    let (status, _, _) = send(&svc, get(&format!("/media/{key}"), &h.bob_key)).await;
    assert_eq!(status, 404);
    let (status, _, _) = send(
        &svc,
        TestRequest::get().uri(&format!("/files/{key}?expires=1&sig=forged")),
    )
    .await;
    assert_eq!(status, 403);
}

/// The old clients' default `user_id=10000` from a service caller names the user the old
/// default owner became (`LEGACY_USER_ID`), and is ignored when none is set: never a 422.
#[actix_web::test]
async fn a_service_callers_old_default_user_is_the_legacy_user() {
    let h = Harness::new().await;
    let mut settings = Harness::settings();
    settings.auth.legacy_user = Some(h.alice.to_string());
    let svc = h.service(settings).await;
    let fields = [
        ("project_name", "x"),
        ("asset_type", "image"),
        ("tag", "character"),
    ];
    uploaded(
        &svc,
        &h.alice_key,
        multipart(&fields, Some(("a.png", "image/png", PNG)), true),
    )
    .await;
    let list = "/asset-library/list?user_id=10000&project_name=x";
    let (status, _, body) = send(&svc, get(list, &h.service_key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 1, "Alice's upload: {body}");
    // The service caller uploads for the legacy user the same way.
    let mut as_old = fields.to_vec();
    as_old.push(("user_id", "10000"));
    let body = uploaded(
        &svc,
        &h.service_key,
        multipart(&as_old, Some(("b.png", "image/png", PNG)), true),
    )
    .await;
    assert!(
        body["r2_key"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/", h.alice)),
        "{body}"
    );
    let (_, _, body) = send(&svc, get(list, &h.alice_key)).await;
    assert_eq!(body["total"], 2, "{body}");
    // Without a legacy user the argument is ignored: the service caller's own library.
    let svc = h.service(Harness::settings()).await;
    let (status, _, body) = send(&svc, get(list, &h.service_key)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["total"], 0, "{body}");
}

/// A JSON file of the library is the user's content: downloaded byte for byte, even when it
/// holds an address this API would sign in its own answers.
#[actix_web::test]
async fn a_json_upload_is_downloaded_as_stored() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let form = |asset_type, file| {
        multipart(
            &[
                ("project_name", "p"),
                ("asset_type", asset_type),
                ("tag", "character"),
            ],
            Some(file),
            false,
        )
    };
    let (_, _, picture) = send(
        &svc,
        upload(
            &h.alice_key,
            form("image", ("picture.png", "image/png", PNG)),
        ),
    )
    .await;
    let own = format!(
        "{}/media/{}",
        h.app.public_base_url(),
        picture["r2_key"].as_str().unwrap()
    );
    let stored = format!("{{\"see\": \"{own}\", \"n\": 1}}");
    let body = uploaded(
        &svc,
        &h.alice_key,
        form(
            "text",
            ("notes.json", "application/json", stored.as_bytes()),
        ),
    )
    .await;
    let id = body["asset_id"].as_str().unwrap().to_owned();
    let item = format!("/asset-library/{id}?project_name=p&asset_type=text");
    let request = get(&item, &h.alice_key);
    let response = actix_web::test::call_service(&svc, request.to_request()).await;
    assert_eq!(response.status(), 200);
    let bytes = actix_web::test::read_body(response).await;
    assert_eq!(String::from_utf8_lossy(&bytes), stored, "as stored");
}
