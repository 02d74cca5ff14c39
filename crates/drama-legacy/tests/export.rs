//! `export-r2` against an S3 server in this process and a real PostgreSQL: the old layout is
//! written, and importing it again changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{
    TestS3, database_snapshot, drama_key, export, fixture_as, id, import, options, png, repos,
    stored_drama,
};
use drama_dal::NewUser;
use drama_domain::{Drama, DramaPatch, EntityPatch, UserId};
use drama_legacy::format::{LegacyIndex, old_timestamp};
use drama_legacy::{LegacyDrama, Outcome, ReasonCode};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The old model's view of a file: the peer's Pydantic model accepts exactly the REST shape,
/// which the domain's strict parser checks (unknown keys ignored).
fn old_server_reads(bytes: &[u8]) -> Drama {
    Drama::from_json(bytes).unwrap()
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn export_writes_the_old_layout_and_importing_it_changes_nothing(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let legacy_owner = UserId::random();

    // Legacy dramas, one with an object in the bucket and an unknown key.
    for i in 0..6 {
        let key_id = format!("old-{i}");
        s3.put_json(&drama_key(&key_id), &fixture_as(&key_id)).await;
    }
    let mut covered = fixture_as("covered");
    covered["mood"] = json!("wistful é");
    covered["assets"] = json!([{"id": "covered_cover", "kind": "image", "prompt": "cover",
        "url": format!("{}/dramas/covered/cover.png", common::PUBLIC_BASE)}]);
    s3.put_json(&drama_key("covered"), &covered).await;
    s3.put("dramas/covered/cover.png", png(999), "image/png")
        .await;
    let first = import(&s3, &repos, options(&s3, legacy_owner)).await;
    assert_eq!(first.counts.imported, 7);

    // Life goes on in the new system: an edit, a deletion, a drama of another user.
    let patch = EntityPatch::Drama(
        DramaPatch::from_json("{\"title\": \"Edited \u{2014} online\"}".as_bytes()).unwrap(),
    );
    repos
        .dramas
        .patch(legacy_owner, &id("old-1"), &patch, None)
        .await
        .unwrap();
    repos
        .dramas
        .delete(legacy_owner, &id("old-2"))
        .await
        .unwrap();
    let newcomer = UserId::random();
    repos
        .users
        .create_user(&NewUser::new(newcomer))
        .await
        .unwrap();
    let mut native = LegacyDrama::parse(common::FIXTURE.as_bytes())
        .unwrap()
        .drama;
    native.id = id("native");
    native.characters[0].voice_description = "bright".to_owned();
    repos.dramas.create(newcomer, &native).await.unwrap();

    let report = export(&s3, &repos, false).await;
    assert!(!report.is_failure(), "{report:#?}");
    assert_eq!((report.total, report.exported, report.failed), (7, 7, 0));
    assert!(report.index_written);
    assert_eq!(report.index_entries, 7);
    assert_eq!(report.stale_files, [drama_key("old-2")]);

    // Each file: the old shape, readable by the old model, with its owner.
    for d in &report.dramas {
        let bytes = s3.get(&d.key).await.unwrap();
        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(text.is_ascii());
        assert!(text.starts_with("{\n  \"id\": "), "{}", &text[..40]);
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["user_id"], json!(d.owner.to_string()));
        for key in ["url", "characters", "episodes", "assets", "metadata"] {
            assert!(value.get(key).is_some(), "{key} missing in {}", d.key);
        }
        for c in value["characters"].as_array().unwrap() {
            assert!(c.get("voice_description").is_some());
            assert!(c.get("premise_url").is_some());
        }
        let stored = stored_drama(&repos, d.owner, &d.drama_id).await;
        assert_eq!(old_server_reads(&bytes), stored.drama);
        assert_eq!(Some(stored.version), d.version);
    }
    let edited = s3.get(&drama_key("old-1")).await.unwrap();
    assert!(
        std::str::from_utf8(&edited)
            .unwrap()
            .contains("\"title\": \"Edited \\u2014 online\"")
    );

    // The index: every drama of the database with its timestamps, in the old format.
    let index_bytes = s3.get("dramas/index.json").await.unwrap();
    let raw: Value = serde_json::from_slice(&index_bytes).unwrap();
    assert_eq!(
        (raw["version"].clone(), raw["count"].clone()),
        (json!(1), json!(7))
    );
    let index = LegacyIndex::parse(&index_bytes).unwrap();
    assert!(!index.dramas.contains_key("old-2"));
    let native_stored = stored_drama(&repos, newcomer, "native").await;
    assert_eq!(
        raw["dramas"]["native"]["updated_at"],
        json!(old_timestamp(native_stored.updated_at))
    );
    assert_eq!(
        index.dramas["native"].created_at,
        Some(native_stored.created_at)
    );

    // Importing the export changes nothing.
    let before = database_snapshot(&pool).await;
    let objects_before = repos
        .dramas
        .asset_objects(legacy_owner, &id("covered"))
        .await
        .unwrap();
    let again = import(&s3, &repos, options(&s3, legacy_owner)).await;
    assert_eq!(
        (
            again.counts.imported,
            again.counts.updated,
            again.counts.failed
        ),
        (0, 0, 0),
        "{:#?}",
        again
            .dramas
            .iter()
            .filter(|d| d.outcome != Outcome::Unchanged)
            .collect::<Vec<_>>()
    );
    assert_eq!(again.counts.unchanged, 7);
    assert_eq!(again.counts.skipped, 1);
    assert_eq!(
        again
            .dramas
            .iter()
            .find(|d| d.drama_id == "old-2")
            .and_then(|d| d.reason.as_ref())
            .map(|r| r.code),
        Some(ReasonCode::DeletedSinceImport)
    );
    let after = database_snapshot(&pool).await;
    for table in [
        "users",
        "dramas",
        "characters",
        "episodes",
        "scenes",
        "assets",
    ] {
        assert_eq!(after[table], before[table], "{table} changed");
    }
    assert_eq!(
        repos
            .dramas
            .asset_objects(legacy_owner, &id("covered"))
            .await
            .unwrap(),
        objects_before
    );

    // And a second export writes the same files.
    let files_before = s3.snapshot().await;
    let report = export(&s3, &repos, false).await;
    assert_eq!(report.exported, 7);
    let files_after = s3.snapshot().await;
    for (key, file) in &files_before {
        if key != "dramas/index.json" {
            assert_eq!(files_after.get(key), Some(file), "{key} changed");
        }
    }
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn an_export_dry_run_writes_nothing(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    for i in 0..3 {
        let key_id = format!("d{i}");
        s3.put_json(&drama_key(&key_id), &fixture_as(&key_id)).await;
    }
    import(&s3, &repos, options(&s3, owner)).await;
    let patch = EntityPatch::Drama(DramaPatch::from_json(br#"{"title": "Changed"}"#).unwrap());
    repos
        .dramas
        .patch(owner, &id("d0"), &patch, None)
        .await
        .unwrap();
    let bucket_before = s3.snapshot().await;
    let report = export(&s3, &repos, true).await;
    assert!(report.dry_run);
    assert_eq!(report.exported, 3);
    assert!(!report.index_written);
    assert_eq!(s3.snapshot().await, bucket_before);
}

/// The old server saves its own model, which has no `user_id`: a drama exported to it at a
/// rollback and edited there comes back naming no owner. One imported from that file stays
/// with the user it was imported for, instead of going to the old default owner (where it
/// would be refused as another user's).
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_file_the_old_server_rewrote_without_its_owner_stays_with_its_owner(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let (default_owner, user) = (UserId::random(), UserId::random());
    repos.users.create_user(&NewUser::new(user)).await.unwrap();
    let mut theirs = fixture_as("theirs");
    theirs["user_id"] = json!(user.to_string());
    s3.put_json(&drama_key("theirs"), &theirs).await;
    let first = import(&s3, &repos, options(&s3, default_owner)).await;
    assert_eq!(common::drama_report(&first, "theirs").owner, Some(user));
    let report = export(&s3, &repos, false).await;
    assert_eq!(report.exported, 1);

    // The old server's save during the rollback: its model, an edited title, no owner.
    let bytes = s3.get(&drama_key("theirs")).await.unwrap();
    let mut file: Value = serde_json::from_slice(&bytes).unwrap();
    file.as_object_mut().unwrap().remove("user_id");
    file["title"] = json!("Edited during the rollback");
    s3.put_json(&drama_key("theirs"), &file).await;

    let back = import(&s3, &repos, options(&s3, default_owner)).await;
    let entry = common::drama_report(&back, "theirs");
    assert_eq!(entry.outcome, Outcome::Updated, "{entry:#?}");
    assert_eq!(entry.owner, Some(user));
    assert!(
        entry.repairs.iter().any(|r| r.contains("names no owner")),
        "{:?}",
        entry.repairs
    );
    assert_eq!(
        stored_drama(&repos, user, "theirs").await.drama.title,
        "Edited during the rollback"
    );

    // A file naming no owner that no import brought in goes to the default owner, and one
    // whose id another user holds is still refused as taken (it is not that user's file).
    s3.put_json(&drama_key("fresh"), &fixture_as("fresh")).await;
    let mut native = LegacyDrama::parse(common::FIXTURE.as_bytes())
        .unwrap()
        .drama;
    native.id = id("native");
    repos.dramas.create(user, &native).await.unwrap();
    s3.put_json(&drama_key("native"), &fixture_as("native"))
        .await;
    let more = import(&s3, &repos, options(&s3, default_owner)).await;
    assert_eq!(
        common::drama_report(&more, "fresh").owner,
        Some(default_owner)
    );
    let clash = common::drama_report(&more, "native");
    assert_eq!(
        clash.reason.as_ref().map(|r| r.code),
        Some(ReasonCode::IdTaken),
        "{clash:#?}"
    );
}
