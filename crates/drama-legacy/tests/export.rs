//! `export-r2` against an S3 server in this process and a real PostgreSQL: the old layout is
//! written, and importing it again changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::BTreeSet;

use common::{
    TestS3, database_snapshot, drama_key, export, export_of, fixture_as, id, import, index_of,
    options, png, repos, stored_drama,
};
use drama_dal::NewUser;
use drama_domain::{Drama, DramaPatch, EntityPatch, UserId};
use drama_legacy::format::{LegacyIndex, old_timestamp};
use drama_legacy::{ExportOwners, LegacyDrama, Outcome, ReasonCode};
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

    // Every owner's dramas (the newcomer's too), to check the whole format.
    let report = export_of(&s3, &repos, false, ExportOwners::All).await;
    assert!(!report.is_failure(), "{report:#?}");
    assert_eq!((report.total, report.exported, report.failed), (7, 7, 0));
    assert!(report.all_owners);
    assert_eq!(report.left_out, 0);
    assert!(report.index_written);
    assert_eq!(report.index_entries, 7);
    assert_eq!(report.stale_files, [drama_key("old-2")]);
    // The deleted drama's file left the old layout, which the old server reads by id.
    assert_eq!(report.moved_aside.len(), 1, "{:#?}", report.moved_aside);
    assert_eq!(report.moved_aside[0].to, "dramas-deleted/old-2/drama.json");
    assert!(s3.get(&drama_key("old-2")).await.is_none());

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
    // Its file moved aside and its drama deleted here: nothing to say about it.
    assert_eq!(again.counts.skipped, 0);
    assert_eq!(again.counts.source_deleted, 0);
    assert!(again.dramas.iter().all(|d| d.drama_id != "old-2"));
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
    let report = export_of(&s3, &repos, false, ExportOwners::All).await;
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

/// The old server reads `dramas/{id}/drama.json` by id, whatever the index says: the file of
/// a drama deleted in the new system since its import must leave the old layout, or the old
/// server serves the deleted drama again after a rollback. A file no import brought in (the
/// old server's own) stays where it is.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn an_export_moves_aside_the_files_of_dramas_deleted_since_their_import(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    for d in ["kept", "deleted"] {
        s3.put_json(&drama_key(d), &fixture_as(d)).await;
    }
    assert_eq!(
        import(&s3, &repos, options(&s3, owner))
            .await
            .counts
            .imported,
        2
    );
    let original = s3.get(&drama_key("deleted")).await.unwrap();
    repos.dramas.delete(owner, &id("deleted")).await.unwrap();
    s3.put_json(&drama_key("theirs"), &fixture_as("theirs"))
        .await;

    // A dry run says what it would move, and moves nothing.
    let dry = export(&s3, &repos, true).await;
    assert_eq!(dry.moved_aside.len(), 1, "{dry:#?}");
    assert_eq!(dry.moved_aside[0].outcome, "moved");
    assert!(s3.get(&drama_key("deleted")).await.is_some());

    let report = export(&s3, &repos, false).await;
    assert!(!report.is_failure(), "{report:#?}");
    assert_eq!(
        report.stale_files,
        [drama_key("deleted"), drama_key("theirs")]
    );
    let moved = &report.moved_aside;
    assert_eq!(moved.len(), 1, "{moved:#?}");
    assert_eq!(
        (
            moved[0].drama_id.as_str(),
            moved[0].key.as_str(),
            moved[0].to.as_str()
        ),
        (
            "deleted",
            "dramas/deleted/drama.json",
            "dramas-deleted/deleted/drama.json"
        )
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["moved_aside"][0]["outcome"], "moved");
    // The old server no longer finds it by id; the file is kept out of its way.
    assert!(s3.get(&drama_key("deleted")).await.is_none());
    assert_eq!(
        s3.get("dramas-deleted/deleted/drama.json").await,
        Some(original)
    );
    assert!(s3.get(&drama_key("theirs")).await.is_some());

    // Going forward again: the moved file is neither imported nor reported.
    let forward = import(&s3, &repos, options(&s3, owner)).await;
    assert!(forward.dramas.iter().all(|d| d.drama_id != "deleted"));
    assert_eq!(forward.counts.imported, 1, "{forward:#?}");
    assert_eq!(forward.counts.source_deleted, 0);
}

/// The old model knows image and video assets only and refuses a whole drama holding an
/// audio one (the old server then answers 404 for it): the export leaves audio assets out and
/// says so, the database keeps them, and importing the file again does not drop them.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn audio_assets_stay_out_of_the_old_file_and_in_the_database(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    s3.put_json(&drama_key("voiced"), &fixture_as("voiced"))
        .await;
    assert_eq!(
        import(&s3, &repos, options(&s3, owner))
            .await
            .counts
            .imported,
        1
    );
    // Voice lines generated in the new system, on a character and on the drama.
    let stored = stored_drama(&repos, owner, "voiced").await;
    let mut drama = stored.drama.clone();
    let voice = |id: &str| -> drama_domain::Asset {
        serde_json::from_value(json!({"id": id, "kind": "audio", "prompt": "a line",
            "duration": 3, "url": "https://cdn.example.com/voice.mp3"}))
        .unwrap()
    };
    drama.characters[0].assets.insert(0, voice("line_1"));
    drama.assets.push(voice("line_2"));
    repos
        .dramas
        .save_complete(owner, &drama, Some(stored.version))
        .await
        .unwrap();

    let report = export(&s3, &repos, false).await;
    assert!(!report.is_failure(), "{report:#?}");
    assert_eq!((report.exported, report.repaired), (1, 1));
    let entry = &report.dramas[0];
    assert_eq!(entry.repairs.len(), 2, "{entry:#?}");
    assert!(
        entry
            .repairs
            .iter()
            .any(|r| r.contains("characters[0].assets: audio asset \"line_1\" left out")),
        "{:?}",
        entry.repairs
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["repaired"], 1);
    assert_eq!(json["dramas"][0]["repairs"].as_array().unwrap().len(), 2);

    // Every asset of the file is one the old model accepts.
    let file: Value = serde_json::from_slice(&s3.get(&drama_key("voiced")).await.unwrap()).unwrap();
    let mut kinds = Vec::new();
    let mut collect = |assets: &Value| {
        for a in assets.as_array().unwrap() {
            kinds.push(a["kind"].as_str().unwrap().to_owned());
        }
    };
    collect(&file["assets"]);
    for c in file["characters"].as_array().unwrap() {
        collect(&c["assets"]);
    }
    for e in file["episodes"].as_array().unwrap() {
        collect(&e["assets"]);
        for s in e["scenes"].as_array().unwrap() {
            collect(&s["assets"]);
        }
    }
    assert!(!kinds.is_empty());
    assert!(
        kinds.iter().all(|k| k == "image" || k == "video"),
        "{kinds:?}"
    );

    // The database keeps them, and reading the file back (a roll-forward) does not drop them.
    let back = import(&s3, &repos, options(&s3, owner)).await;
    let entry = common::drama_report(&back, "voiced");
    assert_eq!(entry.outcome, Outcome::Unchanged, "{entry:#?}");
    assert_eq!(stored_drama(&repos, owner, "voiced").await.drama, drama);

    // The old server edits the drama during the rollback: the edit comes over, the voices stay.
    let mut edited = file.clone();
    edited["title"] = json!("Edited during the rollback");
    s3.put_json(&drama_key("voiced"), &edited).await;
    let forward = import(&s3, &repos, options(&s3, owner)).await;
    let entry = common::drama_report(&forward, "voiced");
    assert_eq!(entry.outcome, Outcome::Updated, "{entry:#?}");
    let now = stored_drama(&repos, owner, "voiced").await.drama;
    assert_eq!(now.title, "Edited during the rollback");
    assert_eq!(now.characters[0].assets[0].id.as_str(), "line_1");
    assert_eq!(now.assets.last().unwrap().id.as_str(), "line_2");
}

/// The old server serves every drama of its bucket without authentication: a rollback writes
/// back the old server's world only (the owners an import brought dramas in for, and the user
/// old clients act as), not the private dramas users created in the new system, unless asked.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_rollback_leaves_the_dramas_of_new_users_private(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    for d in ["old-a", "old-b"] {
        s3.put_json(&drama_key(d), &fixture_as(d)).await;
    }
    assert_eq!(
        import(&s3, &repos, options(&s3, owner))
            .await
            .counts
            .imported,
        2
    );
    // After the cutover: an old client (acting as the legacy user) and a new user create one.
    let (legacy_user, newcomer) = (UserId::random(), UserId::random());
    let mut made = LegacyDrama::parse(common::FIXTURE.as_bytes())
        .unwrap()
        .drama;
    for (user, drama_id) in [(legacy_user, "by-old-client"), (newcomer, "private")] {
        repos.users.create_user(&NewUser::new(user)).await.unwrap();
        made.id = id(drama_id);
        repos.dramas.create(user, &made).await.unwrap();
    }
    let old_world = ExportOwners::Legacy(BTreeSet::from([legacy_user]));

    let report = export_of(&s3, &repos, false, old_world.clone()).await;
    assert!(!report.is_failure(), "{report:#?}");
    assert_eq!((report.total, report.exported), (3, 3));
    let mut expected = vec![owner, legacy_user];
    expected.sort();
    assert_eq!(report.owners, expected);
    assert_eq!((report.left_out, report.left_out_owners), (1, 1));
    assert!(!report.all_owners);
    assert!(report.dramas.iter().all(|d| d.owner != newcomer));
    assert!(s3.get(&drama_key("private")).await.is_none());
    assert!(s3.get(&drama_key("by-old-client")).await.is_some());
    let index = LegacyIndex::parse(&s3.get("dramas/index.json").await.unwrap()).unwrap();
    assert_eq!(
        index.dramas.keys().collect::<Vec<_>>(),
        ["by-old-client", "old-a", "old-b"]
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["left_out"], 1);

    // Asked for by name, the newcomer's drama goes too.
    let named = export_of(
        &s3,
        &repos,
        false,
        ExportOwners::Legacy(BTreeSet::from([legacy_user, newcomer])),
    )
    .await;
    assert_eq!((named.exported, named.left_out), (4, 0));
    let file: Value =
        serde_json::from_slice(&s3.get(&drama_key("private")).await.unwrap()).unwrap();
    assert_eq!(file["user_id"], json!(newcomer.to_string()));

    // A later export of the old world alone no longer lists the file that one wrote for it.
    let again = export_of(&s3, &repos, false, old_world).await;
    assert_eq!((again.exported, again.left_out), (3, 1));
    assert_eq!(again.stale_files, [drama_key("private")]);
    assert!(again.stale_indexed.is_empty(), "{again:#?}");
    let index = LegacyIndex::parse(&s3.get("dramas/index.json").await.unwrap()).unwrap();
    assert!(!index.dramas.contains_key("private"));

    let all = export_of(&s3, &repos, true, ExportOwners::All).await;
    assert!(all.all_owners);
    assert_eq!((all.exported, all.left_out), (4, 0));
}

/// The old server lists dramas from `dramas/index.json` alone: the files of dramas whose
/// import failed stay in place, and the rewritten index keeps listing them (their old entry,
/// or one read from the file when the old index missed it).
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_rollback_keeps_listing_the_old_files_that_were_not_imported(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    let refused = |drama_id: &str| {
        let mut v = fixture_as(drama_id);
        v["episodes"][0]["scenes"][0]["assets"][1]["duration"] = json!(8);
        v
    };
    s3.put_json("dramas/index.json", &index_of(&["good", "broken"]))
        .await;
    s3.put_json(&drama_key("good"), &fixture_as("good")).await;
    s3.put_json(&drama_key("broken"), &refused("broken")).await;
    // Not in the old index (its update was lost), refused too; and a file that is no drama.
    s3.put_json(&drama_key("lost"), &refused("lost")).await;
    s3.put(&drama_key("junk"), b"not json".to_vec(), "text/plain")
        .await;
    let imported = import(&s3, &repos, options(&s3, owner)).await;
    assert_eq!(
        (imported.counts.imported, imported.counts.failed),
        (1, 3),
        "{imported:#?}"
    );

    let report = export(&s3, &repos, false).await;
    assert!(!report.is_failure(), "{report:#?}");
    assert_eq!(report.exported, 1);
    assert!(report.moved_aside.is_empty());
    assert_eq!(
        report.stale_files,
        [drama_key("broken"), drama_key("junk"), drama_key("lost")]
    );
    assert_eq!(
        report.stale_indexed,
        [drama_key("broken"), drama_key("lost")]
    );
    assert_eq!(report.index_entries, 3);
    let index = LegacyIndex::parse(&s3.get("dramas/index.json").await.unwrap()).unwrap();
    assert_eq!(
        index.dramas.keys().collect::<Vec<_>>(),
        ["broken", "good", "lost"]
    );
    // The old entry as it was, times included; the unindexed file from its own fields.
    let old = LegacyIndex::parse(&serde_json::to_vec(&index_of(&["broken"])).unwrap()).unwrap();
    assert_eq!(index.dramas["broken"], old.dramas["broken"]);
    assert_eq!(index.dramas["lost"].title, "Corgi Musk lost");
    assert_eq!(index.dramas["good"].title, "Corgi Musk good");
    // The files stay as the old server wrote them.
    assert!(s3.get(&drama_key("broken")).await.is_some());
}

/// A drama no import brought in (created in the new system) that an earlier export wrote and
/// that was deleted since: its file is moved aside and the index no longer lists it, while an
/// old file the old server wrote (no owner in it) stays listed.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn an_export_moves_aside_the_files_it_wrote_for_dramas_deleted_since(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let user = UserId::random();
    repos.users.create_user(&NewUser::new(user)).await.unwrap();
    let mut made = LegacyDrama::parse(common::FIXTURE.as_bytes())
        .unwrap()
        .drama;
    made.id = id("made-here");
    repos.dramas.create(user, &made).await.unwrap();
    s3.put_json(&drama_key("theirs"), &fixture_as("theirs"))
        .await;
    let with_user = ExportOwners::Legacy(BTreeSet::from([user]));
    let first = export_of(&s3, &repos, false, with_user.clone()).await;
    assert_eq!(first.exported, 1, "{first:#?}");
    let written = s3.get(&drama_key("made-here")).await.unwrap();

    repos.dramas.delete(user, &id("made-here")).await.unwrap();
    let again = export_of(&s3, &repos, false, with_user).await;
    assert!(!again.is_failure(), "{again:#?}");
    assert_eq!(
        again.stale_files,
        [drama_key("made-here"), drama_key("theirs")]
    );
    assert_eq!(again.moved_aside.len(), 1, "{again:#?}");
    assert_eq!(again.moved_aside[0].drama_id, "made-here");
    assert!(s3.get(&drama_key("made-here")).await.is_none());
    assert_eq!(
        s3.get("dramas-deleted/made-here/drama.json").await,
        Some(written)
    );
    assert_eq!(again.stale_indexed, [drama_key("theirs")]);
    let index = LegacyIndex::parse(&s3.get("dramas/index.json").await.unwrap()).unwrap();
    assert_eq!(index.dramas.keys().collect::<Vec<_>>(), ["theirs"]);
}

/// A rollback never destroys an old file it cannot vouch for: the old file of `broken`
/// failed to import (no record), and its owner made a new drama `broken` after cutover; the
/// old file of `good` was changed by the old server after its import. Both are copied aside
/// before the export overwrites them; a file an import or an earlier export of this owner
/// explains is overwritten as before.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_rollback_sets_aside_old_files_no_import_explains(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    let mut refused = fixture_as("broken");
    refused["episodes"][0]["scenes"][0]["assets"][1]["duration"] = json!(8);
    s3.put_json(&drama_key("good"), &fixture_as("good")).await;
    s3.put_json(&drama_key("kept"), &fixture_as("kept")).await;
    s3.put_json(&drama_key("broken"), &refused).await;
    let imported = import(&s3, &repos, options(&s3, owner)).await;
    assert_eq!(
        (imported.counts.imported, imported.counts.failed),
        (2, 1),
        "{imported:#?}"
    );
    let mut remade = LegacyDrama::parse(common::FIXTURE.as_bytes())
        .unwrap()
        .drama;
    remade.id = id("broken");
    repos.dramas.create(owner, &remade).await.unwrap();
    let mut changed = fixture_as("good");
    changed["title"] = json!("changed by the old server after the import");
    s3.put_json(&drama_key("good"), &changed).await;
    let old_broken = s3.get(&drama_key("broken")).await.unwrap();
    let old_good = s3.get(&drama_key("good")).await.unwrap();

    let set_aside = |report: &drama_legacy::ExportReport| -> Vec<(String, String)> {
        report
            .dramas
            .iter()
            .filter_map(|d| Some((d.drama_id.clone(), d.set_aside.clone()?)))
            .collect()
    };
    let dry = export(&s3, &repos, true).await;
    assert_eq!(
        set_aside(&dry)
            .iter()
            .map(|(d, _)| d.as_str())
            .collect::<Vec<_>>(),
        ["broken", "good"],
        "{dry:#?}"
    );
    assert_eq!(
        s3.get(&set_aside(&dry)[0].1).await,
        None,
        "a dry run copies nothing"
    );

    let report = export(&s3, &repos, false).await;
    assert!(!report.is_failure(), "{report:#?}");
    assert_eq!(report.exported, 3);
    let aside = set_aside(&report);
    assert_eq!(aside, set_aside(&dry));
    for ((drama, to), old) in aside.iter().zip([&old_broken, &old_good]) {
        assert!(to.starts_with(&format!("dramas-conflict/{drama}/")), "{to}");
        assert_eq!(
            s3.get(to).await.as_ref(),
            Some(old),
            "{to} keeps the old file"
        );
        let now = s3.get(&drama_key(drama)).await.unwrap();
        assert_eq!(
            old_server_reads(&now),
            stored_drama(&repos, owner, drama).await.drama
        );
    }

    // The files are this owner's exports now: a second rollback overwrites them quietly.
    let again = export(&s3, &repos, false).await;
    assert!(!again.is_failure(), "{again:#?}");
    assert!(set_aside(&again).is_empty(), "{again:#?}");
}
