//! The old asset library into the new one, inside an S3 server in this process.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{TestS3, png};
use drama_assets::{KeyPrefix, ObjectKey};
use drama_domain::UserId;
use drama_legacy::{
    CancellationToken, LibraryImporter, LibraryOptions, LibraryReport, Outcome, OwnerMap,
    ReasonCode, Silent,
};
use serde_json::{Value, json};

const A: &str = "0a7f7d0e-57f4-4d8e-9a4e-6a1b2f7c0a01";
const B: &str = "0b7f7d0e-57f4-4d8e-9a4e-6a1b2f7c0a02";
const C: &str = "0c7f7d0e-57f4-4d8e-9a4e-6a1b2f7c0a03";
const D: &str = "0d7f7d0e-57f4-4d8e-9a4e-6a1b2f7c0a04";
const E: &str = "0e7f7d0e-57f4-4d8e-9a4e-6a1b2f7c0a05";

fn old_record(user: &str, project: &str, id: &str, kind: &str, ext: &str, tag: &str) -> Value {
    let folder = format!("{kind}s");
    json!({
        "asset_id": id, "user_id": user, "project_name": project, "asset_type": kind,
        "tag": tag, "filename": format!("Original Name.{ext}"),
        "created_at": "2025-11-02T10:00:00.000000Z", "updated_at": "2025-11-02T10:00:00.000000Z",
        "file_size": 300, "r2_key": format!("{user}/{project}/{folder}/{id}.{ext}"),
        "public_url": format!("https://pub-old.r2.dev/{user}/{project}/{folder}/{id}.{ext}"),
        "content_type": if kind == "video" { "video/mp4" } else if ext == "png" { "image/png" } else { "application/json" },
        "drama_id": "corgi", "source": "ai_generation"
    })
}

async fn seed(s3: &TestS3) {
    for (user, project, id, kind, ext, tag) in [
        ("10000", "my-project", A, "image", "png", "character"),
        ("10000", "my-project", B, "video", "mp4", "clip"),
        // A `.json` text upload: the old server wrote its record over the file.
        ("10000", "my-project", C, "text", "json", "storyboard"),
        ("10000", "other", D, "image", "png", "poster"),
        ("alice", "p", E, "image", "png", "storyboard"),
    ] {
        let record = old_record(user, project, id, kind, ext, tag);
        let folder = format!("{kind}s");
        if ext != "json" {
            let bytes = if kind == "video" {
                b"\0\0\0\x18ftypmp42".repeat(30)
            } else {
                png(300)
            };
            s3.put(
                &format!("{user}/{project}/{folder}/{id}.{ext}"),
                bytes,
                record["content_type"].as_str().unwrap(),
            )
            .await;
        }
        s3.put_json(&format!("{user}/{project}/{folder}/{id}.json"), &record)
            .await;
    }
    s3.put_json(
        "10000/my-project/meta/project.json",
        &json!({"user_id": "10000", "project_name": "my-project"}),
    )
    .await;
}

async fn run(s3: &TestS3, owners: OwnerMap, dry_run: bool) -> LibraryReport {
    LibraryImporter::new(
        s3.store.clone(),
        LibraryOptions {
            layout: drama_legacy::Layout::default(),
            owners,
            api_origin: "https://api.example.com".to_owned(),
            dry_run,
            jobs: 3,
        },
    )
    .unwrap()
    .run(&Silent, &CancellationToken::new())
    .await
    .unwrap()
}

async fn keys_under(s3: &TestS3, prefix: &str) -> Vec<String> {
    s3.store
        .list(&KeyPrefix::parse(prefix).unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.to_string())
        .collect()
}

fn item<'r>(report: &'r LibraryReport, id: &str) -> &'r drama_legacy::LibraryItemReport {
    report
        .items
        .iter()
        .find(|i| i.source_key.contains(id))
        .unwrap()
}

#[tokio::test]
async fn old_uploads_are_copied_into_the_owners_library_with_records() {
    let s3 = TestS3::start().await;
    seed(&s3).await;
    let owner = UserId::random();
    let owners = OwnerMap::default().with_default_owner(owner);

    let dry = run(&s3, owners.clone(), true).await;
    assert_eq!((dry.imported, dry.failed), (2, 2), "{dry:#?}");
    assert!(keys_under(&s3, &format!("{owner}/")).await.is_empty());

    let report = run(&s3, owners.clone(), false).await;
    assert_eq!(report.owners, ["10000"]);
    assert_eq!(
        report.total, 4,
        "alice is not mapped; project.json is no record"
    );
    assert_eq!((report.imported, report.failed), (2, 2), "{report:#?}");
    assert_eq!(
        item(&report, C).reason.as_ref().unwrap().code,
        ReasonCode::MissingFile
    );
    assert_eq!(
        item(&report, D).reason.as_ref().unwrap().code,
        ReasonCode::InvalidRecord
    );
    assert!(report.is_failure());

    let image = format!("{owner}/~my-project/uploads/{A}.png");
    let video = format!("{owner}/~my-project/uploads/{B}.mp4");
    assert_eq!(item(&report, A).target_key.as_deref(), Some(image.as_str()));
    assert_eq!(s3.get(&image).await.unwrap().to_vec(), png(300));
    assert!(s3.get(&video).await.is_some());
    let record: Value = serde_json::from_slice(
        &s3.get(&format!("{owner}/~my-project/metadata/{A}.json"))
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(record["asset_id"], A);
    assert_eq!(record["user_id"], owner.to_string());
    assert_eq!(record["project_name"], "my-project");
    assert_eq!(record["asset_type"], "image");
    assert_eq!(record["tag"], "character");
    assert_eq!(record["filename"], "original_name.png");
    assert_eq!(record["created_at"], "2025-11-02T10:00:00.000000Z");
    assert_eq!(record["file_size"], 300);
    assert_eq!(record["r2_key"], image);
    assert_eq!(record["content_type"], "image/png");
    assert_eq!(
        record["drama_id"], "corgi",
        "the old record's own keys stay"
    );
    assert_eq!(
        record["public_url"],
        format!("{}/{image}", common::PUBLIC_BASE),
        "the bucket's public URL when it has one"
    );
    assert_eq!(
        record["legacy_source_key"],
        format!("10000/my-project/images/{A}.json")
    );
    // The old objects stay for a rollback.
    assert!(
        s3.get(&format!("10000/my-project/images/{A}.png"))
            .await
            .is_some()
    );

    // Again: unchanged. A changed old record is copied again.
    let again = run(&s3, owners.clone(), false).await;
    assert_eq!((again.unchanged, again.imported), (2, 0));
    let mut changed = old_record("10000", "my-project", A, "image", "png", "storyboard");
    changed["note"] = json!("retagged");
    s3.put_json(&format!("10000/my-project/images/{A}.json"), &changed)
        .await;
    let third = run(&s3, owners, false).await;
    assert_eq!((third.updated, third.unchanged), (1, 1));
    assert_eq!(item(&third, A).outcome, Outcome::Updated);

    // alice's library comes with her mapping.
    let alice = UserId::random();
    let mapped = OwnerMap::parse(format!(r#"{{"alice": "{alice}"}}"#).as_bytes()).unwrap();
    let hers = run(&s3, mapped, false).await;
    assert_eq!((hers.total, hers.imported), (1, 1));
    assert!(
        s3.store
            .exists(&ObjectKey::parse(format!("{alice}/~p/uploads/{E}.png")).unwrap())
            .await
            .unwrap()
    );
}

/// Records the import cannot read are failed with a reason, never passed over: one under a
/// key that breaks the key rules (the old server's keys for a project named `短剧` had an
/// empty segment, `10000//images/…`, which no file system can hold, so a non-ASCII segment
/// stands in for it here) and one larger than the import reads.
#[tokio::test]
async fn records_the_import_cannot_read_are_reported_failed() {
    let s3 = TestS3::start().await;
    seed(&s3).await;
    let unreadable = format!("10000/短剧/images/{E}.json");
    s3.put_unchecked(
        &unreadable,
        &serde_json::to_vec(&old_record("10000", "短剧", E, "image", "png", "poster")).unwrap(),
    );
    let mut big = old_record("10000", "big", E, "image", "png", "poster");
    big["padding"] = json!("x".repeat(1024 * 1024));
    let oversize = format!("10000/big/images/{E}.json");
    s3.put_json(&oversize, &big).await;
    let owner = UserId::random();

    let report = run(&s3, OwnerMap::default().with_default_owner(owner), false).await;
    assert_eq!(report.total, 6, "{report:#?}");
    assert_eq!((report.imported, report.failed), (2, 4));
    let reason = |key: &str| {
        let found = report.items.iter().find(|i| i.source_key == key).unwrap();
        assert_eq!(found.outcome, Outcome::Failed);
        found.reason.as_ref().unwrap().code
    };
    assert_eq!(reason(&unreadable), ReasonCode::UnreadableKey);
    assert_eq!(reason(&oversize), ReasonCode::TooLarge);
    assert!(report.is_failure());
}

/// An upload deleted in the new library after its import stays deleted: the library's
/// `DELETE` removes the copy and its record, the importer's only memory of the copy, so a
/// rerun would otherwise bring it back.
#[tokio::test]
async fn an_upload_deleted_since_its_import_is_not_copied_again() {
    let s3 = TestS3::start().await;
    seed(&s3).await;
    let owner = UserId::random();
    let owners = OwnerMap::default().with_default_owner(owner);
    let first = run(&s3, owners.clone(), false).await;
    assert_eq!(first.imported, 2, "{first:#?}");

    // What `DELETE /asset-library/{project}/{id}` does.
    for key in [
        format!("{owner}/~my-project/uploads/{A}.png"),
        format!("{owner}/~my-project/metadata/{A}.json"),
    ] {
        s3.store
            .delete(&ObjectKey::parse(key).unwrap())
            .await
            .unwrap();
    }
    let again = run(&s3, owners, false).await;
    assert_eq!(
        (again.skipped, again.unchanged, again.imported),
        (1, 1, 0),
        "{again:#?}"
    );
    let deleted = item(&again, A);
    assert_eq!(deleted.outcome, Outcome::Skipped);
    assert_eq!(
        deleted.reason.as_ref().unwrap().code,
        ReasonCode::DeletedSinceImport
    );
    assert!(
        keys_under(&s3, &format!("{owner}/~my-project/uploads/"))
            .await
            .iter()
            .all(|k| !k.contains(A))
    );
}
