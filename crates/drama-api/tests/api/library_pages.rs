//! `GET /asset-library/list` answers one bounded page at a time: the listing stops after the
//! page, only the page's records are read, and a `cursor` leads through the rest in upload
//! order; old clients, who send neither `limit` nor `cursor`, get the first page.

use std::sync::{Arc, Mutex};

use drama_testkit::s3::{S3Server, require_signature};
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{GetObjectInput, ListObjectsV2Input};
use s3s::{S3Request, S3Result};
use serde_json::Value;

use crate::support::{Api, Harness, PNG, get, multipart, send, uploaded};

/// What the bucket was asked: objects read, and the page size of each listing.
#[derive(Default)]
struct Asked {
    reads: usize,
    listings: Vec<Option<i32>>,
}

#[derive(Clone, Default)]
struct Counting(Arc<Mutex<Asked>>);

#[async_trait::async_trait]
impl S3Access for Counting {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        require_signature(cx)
    }

    async fn get_object(&self, _req: &mut S3Request<GetObjectInput>) -> S3Result<()> {
        self.0.lock().unwrap().reads += 1;
        Ok(())
    }

    async fn list_objects_v2(&self, req: &mut S3Request<ListObjectsV2Input>) -> S3Result<()> {
        self.0.lock().unwrap().listings.push(req.input.max_keys);
        Ok(())
    }
}

impl Counting {
    fn take(&self) -> Asked {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// Uploads `n` images to project `p` (every third, from the first, tagged `character`, the
/// rest `clip`), each with caller `metadata`; their ids in upload order.
async fn upload_images(svc: &impl Api, key: &str, n: usize, metadata: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let tag = if i % 3 == 0 { "character" } else { "clip" };
        let fields = [
            ("project_name", "p"),
            ("asset_type", "image"),
            ("tag", tag),
            ("metadata", metadata),
        ];
        let body = uploaded(
            svc,
            key,
            multipart(&fields, Some(("a.png", "image/png", PNG)), false),
        )
        .await;
        ids.push(body["asset_id"].as_str().unwrap().to_owned());
    }
    ids
}

fn ids_of(page: &Value) -> Vec<String> {
    page["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["asset_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Follows `cursor` from the first page of `query`; every page's ids, in order.
async fn every_page(svc: &impl Api, key: &str, query: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            None => format!("/asset-library/list?project_name=p&{query}"),
            Some(c) => format!("/asset-library/list?project_name=p&{query}&cursor={c}"),
        };
        let (status, _, body) = send(svc, get(&uri, key)).await;
        assert_eq!(status, 200, "{body}");
        let ids = ids_of(&body);
        assert_eq!(body["total"], ids.len(), "total counts the page: {body}");
        assert_eq!(body["project_name"], "p");
        pages.push(ids);
        match body["cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                assert!(body["cursor"].is_null(), "{body}");
                return pages;
            }
        }
        assert!(pages.len() < 100, "the cursor leads somewhere");
    }
}

#[actix_web::test]
async fn a_page_lists_and_reads_only_its_own_records_from_a_bucket() {
    let counting = Counting::default();
    let server = S3Server::start_with("library-pages", None, counting.clone()).await;
    let h = Harness::with_assets(
        Arc::new(server.store(None)),
        drama_ai::AiProviders::offline(0),
    )
    .await;
    let svc = h.service(Harness::settings()).await;
    let uploaded = upload_images(&svc, &h.alice_key, 7, "{}").await;

    counting.take();
    let (status, _, body) = send(
        &svc,
        get("/asset-library/list?project_name=p&limit=3", &h.alice_key),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids_of(&body),
        uploaded[..3],
        "the first page, in upload order"
    );
    assert_eq!(body["total"], 3);
    assert!(body["cursor"].is_string(), "{body}");
    let asked = counting.take();
    assert_eq!(asked.reads, 3, "only the page's records are read");
    assert!(
        !asked.listings.is_empty() && asked.listings.iter().all(|m| *m == Some(3)),
        "the listing asks for the page and no more: {:?}",
        asked.listings
    );

    // The cursor leads through the rest in the same order, each record once.
    let pages = every_page(&svc, &h.alice_key, "limit=3").await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 1]);
    assert_eq!(pages.concat(), uploaded);
    assert_eq!(counting.take().reads, 7);

    // An old client's request (no limit, no cursor): everything fits the default page.
    let pages = every_page(&svc, &h.alice_key, "asset_type=image").await;
    assert_eq!(pages, std::slice::from_ref(&uploaded));
    // A filter keeps the order and drops the rest, page by page.
    let pages = every_page(&svc, &h.alice_key, "tag=character&limit=2").await;
    let characters: Vec<String> = uploaded.iter().step_by(3).cloned().collect();
    assert_eq!(pages.concat(), characters);
}

#[actix_web::test]
async fn a_page_ends_before_its_records_outgrow_the_answer() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    // Records of about 60 KB each: a page of 1,000 of them would be 60 MB.
    let metadata = format!(r#"{{"notes": "{}"}}"#, "n".repeat(60 * 1024));
    let uploaded = upload_images(&svc, &h.alice_key, 150, &metadata).await;
    let pages = every_page(&svc, &h.alice_key, "limit=1000").await;
    assert!(pages.len() >= 2, "one page held every record");
    assert_eq!(pages.concat(), uploaded);
}

#[actix_web::test]
async fn a_bad_limit_or_cursor_is_refused_naming_it() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    upload_images(&svc, &h.alice_key, 2, "{}").await;
    let bad = [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=", "limit"),
        ("limit=99999999999999999999999", "limit"),
        ("cursor=not-a-cursor", "cursor"),
        // Hex of `l1:` and an id that is not a key segment.
        ("cursor=6c313a612f62", "cursor"),
        // Hex of an unversioned id.
        ("cursor=6162", "cursor"),
    ];
    let list = |query: &str| {
        get(
            &format!("/asset-library/list?project_name=p&{query}"),
            &h.alice_key,
        )
    };
    for (query, field) in bad {
        let (status, _, body) = send(&svc, list(query)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (422, Some("validation_failed")),
            "{query}: {body}"
        );
        assert_eq!(body["detail"][0]["field"], field, "{query}: {body}");
        assert_eq!(body["detail"][0]["loc"][0], "query", "{query}: {body}");
    }
    // The bounds themselves are accepted.
    for query in ["limit=1", "limit=1000"] {
        let (status, _, body) = send(&svc, list(query)).await;
        assert_eq!(status, 200, "{query}: {body}");
    }
}

/// An old client reads one answer as the whole library: without `limit` a page holds as many
/// items as a page may, so a library of more than a hundred items still comes whole.
#[actix_web::test]
async fn an_old_clients_request_gets_the_largest_page() {
    let h = Harness::new().await;
    let svc = h.service(Harness::settings()).await;
    let uploaded = upload_images(&svc, &h.alice_key, 120, "{}").await;
    let (status, _, body) = send(
        &svc,
        get("/asset-library/list?project_name=p", &h.alice_key),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids_of(&body), uploaded);
    assert!(body["cursor"].is_null(), "{body}");
}
