//! `import-r2` against an S3 server in this process and a real PostgreSQL (a fresh migrated
//! database per test).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{
    TestS3, count, database_snapshot, drama_key, drama_report, fixture, fixture_as, id, import,
    index_of, options, png, repos, stored_drama,
};
use drama_assets::ObjectKey;
use drama_dal::{NewUser, RepoError};
use drama_domain::{DramaId, DramaPatch, EntityPatch, UserId};
use drama_legacy::{
    CancellationToken, DramaRemover, Importer, LegacyDrama, LegacyError, Outcome, OwnerMap,
    Progress, Reason, ReasonCode, Silent,
};
use serde_json::{Value, json};
use sqlx::PgPool;

fn reason_of(report: &drama_legacy::ImportReport, key: &str) -> (Outcome, Option<ReasonCode>) {
    let d = report
        .dramas
        .iter()
        .find(|d| d.source_key == key)
        .unwrap_or_else(|| panic!("{key} is not in the report"));
    (d.outcome, d.reason.as_ref().map(|r| r.code))
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_seeded_bucket_imports_with_defaults_extras_links_and_reasons(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    let stranger = UserId::random();
    repos
        .users
        .create_user(&NewUser::new(stranger))
        .await
        .unwrap();
    let mut theirs = LegacyDrama::parse(common::FIXTURE.as_bytes())
        .unwrap()
        .drama;
    theirs.id = id("taken");
    theirs.title = "Somebody else's".to_owned();
    repos.dramas.create(stranger, &theirs).await.unwrap();

    // The fixture as it is (no voice_description).
    s3.put(
        &drama_key("corgi_musk_v5"),
        common::FIXTURE.as_bytes().to_vec(),
        "application/json",
    )
    .await;
    // A current-shape variant with an unknown key and three kinds of asset URL.
    let mut voiced = fixture_as("corgi_voiced");
    for c in voiced["characters"].as_array_mut().unwrap() {
        c["voice_description"] = json!("gravelly, warm, fast");
    }
    voiced["rating"] = json!("PG");
    let cover_url = format!("{}/dramas/corgi_voiced/cover.png", common::PUBLIC_BASE);
    voiced["url"] = json!(cover_url);
    voiced["assets"] = json!([
        {"id": "corgi_voiced_cover", "kind": "image", "prompt": "cover", "url": cover_url},
        {"id": "elsewhere", "kind": "image", "prompt": "p", "url": "https://images.example.org/x.png"},
        {"id": "lost", "kind": "image", "prompt": "p",
         "url": format!("{}/{}/dramas/corgi_voiced/lost.png", s3.endpoint, common::BUCKET)}
    ]);
    s3.put_json(&drama_key("corgi_voiced"), &voiced).await;
    s3.put("dramas/corgi_voiced/cover.png", png(2048), "image/png")
        .await;
    // A variant where only the first two characters have a voice_description.
    let mut partial = fixture_as("corgi_partial");
    for c in partial["characters"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .take(2)
    {
        c["voice_description"] = json!("soft");
    }
    s3.put_json(&drama_key("corgi_partial"), &partial).await;
    // Not JSON at all.
    s3.put(
        &drama_key("broken"),
        b"<html>502 Bad Gateway</html>".to_vec(),
        "text/plain",
    )
    .await;
    // The id of another user's drama.
    s3.put_json(&drama_key("taken"), &fixture_as("taken")).await;
    // The index lists a drama whose file is gone, and misses "broken".
    s3.put_json(
        "dramas/index.json",
        &index_of(&["corgi_musk_v5", "corgi_voiced", "taken", "ghost"]),
    )
    .await;

    // The owner the import creates opens with the configured credits (`INITIAL_CREDITS`),
    // as a user signing in for the first time would: the legacy dramas' owner must be able
    // to generate.
    let mut opts = options(&s3, owner);
    opts.initial_credits = 5_000;
    let report = import(&s3, &repos, opts).await;

    assert_eq!(report.users_created, vec![owner]);
    assert_eq!(repos.users.get_user(owner).await.unwrap().tokens, 5_000);
    assert_eq!(report.source.index, "read");
    assert_eq!(
        (
            report.source.index_entries,
            report.source.files_listed,
            report.source.not_in_index
        ),
        (4, 5, 2)
    );
    let c = &report.counts;
    assert_eq!(
        (c.total, c.imported, c.failed, c.skipped, c.not_started),
        (6, 3, 2, 1, 0),
        "{report:#?}"
    );
    assert!(report.is_failure());
    assert_eq!(
        reason_of(&report, &drama_key("broken")),
        (Outcome::Failed, Some(ReasonCode::NotJson))
    );
    assert_eq!(
        reason_of(&report, &drama_key("taken")),
        (Outcome::Failed, Some(ReasonCode::IdTaken))
    );
    assert_eq!(
        reason_of(&report, &drama_key("ghost")),
        (Outcome::Skipped, Some(ReasonCode::MissingFile))
    );

    // The fixture: every voice_description defaulted and reported.
    let parsed = LegacyDrama::parse(common::FIXTURE.as_bytes()).unwrap();
    let characters = parsed.drama.characters.len();
    // Counted over every file that parsed: the fixture, the colliding copy of it and the
    // partial variant.
    assert_eq!(
        report
            .defaulted_fields
            .get("characters[].voice_description"),
        Some(&(3 * characters - 2))
    );
    let partial_report = drama_report(&report, "corgi_partial");
    let expected: Vec<String> = (2..characters)
        .map(|i| format!("characters[{i}].voice_description"))
        .collect();
    assert_eq!(partial_report.defaulted, expected);
    let stored = stored_drama(&repos, owner, "corgi_partial").await;
    assert_eq!(stored.drama.characters[1].voice_description, "soft");
    assert_eq!(stored.drama.characters[2].voice_description, "");
    let fixture_report = drama_report(&report, "corgi_musk_v5");
    assert_eq!(fixture_report.defaulted.len(), characters);
    assert!(fixture_report.in_index);
    let stored = stored_drama(&repos, owner, "corgi_musk_v5").await;
    assert_eq!(stored.drama, parsed.drama);
    assert!(
        stored
            .drama
            .characters
            .iter()
            .all(|c| c.voice_description.is_empty())
    );
    let (created, updated) = (
        drama_legacy::format::parse_timestamp("2025-11-01T10:00:00.000001Z").unwrap(),
        drama_legacy::format::parse_timestamp("2025-11-20T07:58:35.123456Z").unwrap(),
    );
    assert_eq!(
        (stored.created_at, stored.updated_at),
        (created, updated),
        "the old index's timestamps are kept"
    );

    // The variant: nothing defaulted on characters, the unknown key kept, URLs sorted out.
    let v = drama_report(&report, "corgi_voiced");
    assert!(
        !v.defaulted.iter().any(|p| p.ends_with("voice_description")),
        "{:?}",
        v.defaulted
    );
    assert_eq!(v.kept_extra, ["rating"]);
    assert_eq!(
        (v.assets.in_bucket, v.assets.recorded, v.assets.foreign),
        (2, 1, 1)
    );
    assert_eq!(
        v.assets.missing_objects,
        [format!(
            "{}/{}/dramas/corgi_voiced/lost.png",
            s3.endpoint,
            common::BUCKET
        )]
    );
    let stored = stored_drama(&repos, owner, "corgi_voiced").await;
    assert_eq!(
        stored.drama.metadata,
        Some(json!({"legacy_extra": {"rating": "PG"}}))
    );
    assert_eq!(
        stored.drama.characters[0].voice_description,
        "gravelly, warm, fast"
    );
    assert_eq!(stored.drama.url.as_deref(), Some(cover_url.as_str()));
    assert_eq!(
        stored.drama.assets[1].url.as_deref(),
        Some("https://images.example.org/x.png")
    );
    let objects = repos
        .dramas
        .asset_objects(owner, &id("corgi_voiced"))
        .await
        .unwrap();
    assert_eq!(objects.len(), 1);
    let cover = &objects[&drama_domain::AssetId::parse("corgi_voiced_cover").unwrap()];
    assert_eq!(cover.storage_key, "dramas/corgi_voiced/cover.png");
    assert_eq!(
        (cover.size_bytes, cover.content_type.as_str()),
        (2048, "image/png")
    );

    // The other user's drama is untouched.
    let still = stored_drama(&repos, stranger, "taken").await;
    assert_eq!(still.drama, theirs);
    assert_eq!(still.version, 1);
    assert_eq!(count(&pool, "legacy_imports").await, 3);
}

/// A generated drama of the fixture's size.
fn generated(i: usize) -> (String, Vec<u8>) {
    let id = format!("gen-{i:03}");
    (
        drama_key(&id),
        serde_json::to_vec(&fixture_as(&id)).unwrap(),
    )
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn five_hundred_dramas_and_an_index_that_misses_some_then_a_rerun_changes_nothing(
    pool: PgPool,
) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    s3.put_many((0..500).map(generated).collect()).await;
    // The index misses every tenth drama.
    let listed: Vec<String> = (0..500)
        .filter(|i| i % 10 != 3)
        .map(|i| format!("gen-{i:03}"))
        .collect();
    let listed: Vec<&str> = listed.iter().map(String::as_str).collect();
    s3.put_json("dramas/index.json", &index_of(&listed)).await;
    let owner = UserId::random();

    let mut o = options(&s3, owner);
    o.jobs = 8;
    let first = import(&s3, &repos, o.clone()).await;
    assert_eq!(
        (
            first.counts.total,
            first.counts.imported,
            first.counts.failed
        ),
        (500, 500, 0),
        "{:?}",
        first.dramas.iter().find(|d| d.outcome != Outcome::Imported)
    );
    assert_eq!(first.source.not_in_index, 50);
    assert_eq!(
        first.dramas.iter().filter(|d| !d.in_index).count(),
        50,
        "each drama says whether the index lists it"
    );
    assert!(!first.is_failure());
    assert_eq!(count(&pool, "dramas").await, 500);
    assert_eq!(count(&pool, "legacy_imports").await, 500);

    let before = database_snapshot(&pool).await;
    let again = import(&s3, &repos, o).await;
    assert_eq!(
        (
            again.counts.unchanged,
            again.counts.imported,
            again.counts.updated
        ),
        (500, 0, 0)
    );
    assert!(again.users_created.is_empty());
    assert_eq!(
        database_snapshot(&pool).await,
        before,
        "a rerun writes nothing at all"
    );
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn changed_files_update_and_database_edits_win_unless_overwritten(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    let key = drama_key("d1");
    let mut file = fixture_as("d1");
    s3.put_json(&key, &file).await;
    let o = options(&s3, owner);
    let title = |t: &str| Value::String(t.to_owned());
    let stored_title = || async { stored_drama(&repos, owner, "d1").await.drama.title };

    assert_eq!(import(&s3, &repos, o.clone()).await.counts.imported, 1);

    // The file changed: the drama follows.
    file["title"] = title("Second cut");
    s3.put_json(&key, &file).await;
    let r = import(&s3, &repos, o.clone()).await;
    assert_eq!(reason_of(&r, &key), (Outcome::Updated, None));
    assert_eq!(r.dramas[0].version, Some(2));
    assert_eq!(stored_title().await, "Second cut");

    // Edited in the database, file unchanged: unchanged, with a note.
    let patch =
        EntityPatch::Drama(DramaPatch::from_json(br#"{"title": "Edited online"}"#).unwrap());
    repos
        .dramas
        .patch(owner, &id("d1"), &patch, None)
        .await
        .unwrap();
    let r = import(&s3, &repos, o.clone()).await;
    assert_eq!(
        reason_of(&r, &key),
        (Outcome::Unchanged, Some(ReasonCode::EditedSinceImport))
    );
    assert_eq!(stored_title().await, "Edited online");

    // Edited in the database and the file changed: the edit is kept and reported.
    file["title"] = title("Third cut");
    s3.put_json(&key, &file).await;
    let r = import(&s3, &repos, o.clone()).await;
    assert_eq!(
        reason_of(&r, &key),
        (Outcome::Skipped, Some(ReasonCode::EditedSinceImport))
    );
    assert!(!r.is_failure());
    assert_eq!(stored_title().await, "Edited online");

    // --overwrite: the file wins.
    let mut forced = o.clone();
    forced.overwrite = true;
    let r = import(&s3, &repos, forced.clone()).await;
    assert_eq!(reason_of(&r, &key), (Outcome::Updated, None));
    assert_eq!(stored_title().await, "Third cut");
    assert_eq!(import(&s3, &repos, o.clone()).await.counts.unchanged, 1);

    // Deleted in the database: left deleted, unless --overwrite.
    repos.dramas.delete(owner, &id("d1")).await.unwrap();
    let r = import(&s3, &repos, o.clone()).await;
    assert_eq!(
        reason_of(&r, &key),
        (Outcome::Skipped, Some(ReasonCode::DeletedSinceImport))
    );
    assert_eq!(count(&pool, "dramas").await, 0);
    let r = import(&s3, &repos, forced).await;
    assert_eq!(reason_of(&r, &key), (Outcome::Imported, None));
    assert_eq!(stored_title().await, "Third cut");
}

/// Cancels the run after `after` files.
struct StopAfter {
    after: usize,
    seen: AtomicUsize,
    stop: CancellationToken,
}

impl Progress for StopAfter {
    fn step(&self, _item: &str, _outcome: &str, _reason: Option<&Reason>) {
        if self.seen.fetch_add(1, Ordering::SeqCst) + 1 >= self.after {
            self.stop.cancel();
        }
    }
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn an_interrupted_import_continues_where_it_stopped(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    s3.put_many((0..120).map(generated).collect()).await;
    let owner = UserId::random();
    let o = options(&s3, owner);

    let stop = CancellationToken::new();
    let progress = StopAfter {
        after: 30,
        seen: AtomicUsize::new(0),
        stop: stop.clone(),
    };
    let first = Importer::new(s3.store.clone(), repos.clone(), o.clone())
        .unwrap()
        .run(&progress, &stop)
        .await
        .unwrap();
    assert!(first.interrupted);
    assert!(first.is_failure());
    let done = first.counts.imported;
    assert!(
        (30..120).contains(&done),
        "files in progress finish, no new one starts: {done}"
    );
    assert_eq!(first.counts.not_started, 120 - done);
    assert_eq!(count(&pool, "dramas").await, i64::try_from(done).unwrap());
    assert_eq!(
        count(&pool, "legacy_imports").await,
        i64::try_from(done).unwrap()
    );

    let second = import(&s3, &repos, o).await;
    assert!(!second.interrupted);
    assert_eq!(
        (second.counts.unchanged, second.counts.imported),
        (done, 120 - done)
    );
    assert_eq!(count(&pool, "dramas").await, 120);
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_dry_run_reads_everything_and_writes_nothing(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let mut with_cover = fixture_as("covered");
    with_cover["assets"] = json!([{"id": "covered_cover", "kind": "image", "prompt": "cover",
        "url": format!("{}/dramas/covered/cover.png", common::PUBLIC_BASE)}]);
    s3.put_json(&drama_key("covered"), &with_cover).await;
    s3.put("dramas/covered/cover.png", png(512), "image/png")
        .await;
    s3.put_many((0..5).map(generated).collect()).await;
    s3.put(&drama_key("broken"), b"{\"id\": ".to_vec(), "text/plain")
        .await;
    let owner = UserId::random();
    let mut dry = options(&s3, owner);
    dry.dry_run = true;

    let bucket_before = s3.snapshot().await;
    let database_before = database_snapshot(&pool).await;
    let report = import(&s3, &repos, dry.clone()).await;
    assert!(report.dry_run);
    assert_eq!(
        (report.counts.imported, report.counts.failed),
        (6, 1),
        "a dry run says what a real run would do"
    );
    assert_eq!(report.users_created, vec![owner]);
    let covered = drama_report(&report, "covered");
    assert_eq!((covered.assets.in_bucket, covered.assets.recorded), (1, 1));
    assert_eq!(database_snapshot(&pool).await, database_before);
    assert_eq!(s3.snapshot().await, bucket_before);

    // After a real run, a dry run sees nothing to do and still writes nothing.
    assert_eq!(
        import(&s3, &repos, options(&s3, owner))
            .await
            .counts
            .imported,
        6
    );
    let database_after = database_snapshot(&pool).await;
    let report = import(&s3, &repos, dry).await;
    assert_eq!(report.counts.unchanged, 6);
    assert_eq!(database_snapshot(&pool).await, database_after);
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn owners_ids_and_repairs(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let alice = UserId::random();
    let existing = UserId::random();
    repos
        .users
        .create_user(&NewUser::new(existing))
        .await
        .unwrap();
    let with_owner = |id: &str, owner: &str| {
        let mut v = fixture_as(id);
        v["user_id"] = json!(owner);
        v
    };
    s3.put_json(&drama_key("of-alice"), &with_owner("of-alice", "alice"))
        .await;
    s3.put_json(&drama_key("of-bob"), &with_owner("of-bob", "bob"))
        .await;
    s3.put_json(
        &drama_key("of-existing"),
        &with_owner("of-existing", &existing.to_string()),
    )
    .await;
    s3.put_json(
        &drama_key("of-nobody"),
        &with_owner("of-nobody", &UserId::random().to_string()),
    )
    .await;
    s3.put_json(&drama_key("moved"), &fixture_as("original-id"))
        .await;
    let mut doubled = fixture_as("doubled");
    let portrait = json!({"id": "char-corgi_portrait_front_halfbody", "kind": "image",
                          "prompt": "portrait", "url": "https://old.example/1.png"});
    let mut newer = portrait.clone();
    newer["url"] = json!("https://old.example/2.png");
    doubled["characters"][0]["assets"] = json!([portrait, newer]);
    s3.put_json(&drama_key("doubled"), &doubled).await;

    let owners = OwnerMap::parse(format!(r#"{{"alice": "{alice}"}}"#).as_bytes()).unwrap();
    let mut o = options(&s3, UserId::random());
    o.owners = owners;
    let report = import(&s3, &repos, o).await;

    assert_eq!(
        reason_of(&report, &drama_key("of-alice")),
        (Outcome::Imported, None)
    );
    assert_eq!(report.users_created, vec![alice]);
    stored_drama(&repos, alice, "of-alice").await;
    assert_eq!(
        reason_of(&report, &drama_key("of-bob")),
        (Outcome::Failed, Some(ReasonCode::OwnerUnmapped))
    );
    assert_eq!(
        reason_of(&report, &drama_key("of-existing")),
        (Outcome::Imported, None)
    );
    stored_drama(&repos, existing, "of-existing").await;
    assert_eq!(
        reason_of(&report, &drama_key("of-nobody")),
        (Outcome::Failed, Some(ReasonCode::OwnerMissing))
    );
    assert_eq!(
        reason_of(&report, &drama_key("moved")),
        (Outcome::Failed, Some(ReasonCode::IdMismatch))
    );
    // The default owner 10000 has no mapping here.
    assert_eq!(
        reason_of(&report, &drama_key("doubled")),
        (Outcome::Failed, Some(ReasonCode::OwnerUnmapped))
    );
    let doubled_report = drama_report(&report, "doubled");
    assert_eq!(
        doubled_report.repairs.len(),
        1,
        "{:?}",
        doubled_report.repairs
    );

    let mut o = options(&s3, alice);
    o.owners = OwnerMap::default().with_default_owner(alice);
    let report = import(&s3, &repos, o).await;
    assert_eq!(
        reason_of(&report, &drama_key("doubled")),
        (Outcome::Imported, None)
    );
    let stored = stored_drama(&repos, alice, "doubled").await;
    assert_eq!(stored.drama.characters[0].assets.len(), 1);
    assert_eq!(
        stored.drama.characters[0].assets[0].url.as_deref(),
        Some("https://old.example/2.png")
    );
}

#[tokio::test]
async fn the_in_memory_twin_runs_the_same_import() {
    let s3 = TestS3::start().await;
    let repos = common::memory_repos();
    s3.put_many((0..20).map(generated).collect()).await;
    s3.put_json(&drama_key("extra"), &fixture()).await;
    let owner = UserId::random();
    let first = import(&s3, &repos, options(&s3, owner)).await;
    assert_eq!(
        (first.counts.imported, first.counts.failed),
        (20, 1),
        "the fixture's id differs from its key"
    );
    let again = import(&s3, &repos, options(&s3, owner)).await;
    assert_eq!(again.counts.unchanged, 20);
    let d = stored_drama(&repos, owner, "gen-007").await;
    assert_eq!(d.drama.title, "Corgi Musk gen-007");
}

/// Deletes through the drama repository, as the API's delete does with the rows.
struct RepositoryDelete(drama_legacy::Repositories);

#[async_trait::async_trait]
impl DramaRemover for RepositoryDelete {
    async fn delete_drama(&self, owner: UserId, id: &DramaId) -> Result<(), RepoError> {
        self.0.dramas.delete(owner, id).await.map(|_| ())
    }
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_drama_deleted_on_the_old_side_is_reported_and_deleted_only_on_request(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    for d in ["gone", "edited", "kept"] {
        s3.put_json(&drama_key(d), &fixture_as(d)).await;
    }
    s3.put_json("dramas/index.json", &index_of(&["gone", "edited", "kept"]))
        .await;
    let o = options(&s3, owner);
    assert_eq!(import(&s3, &repos, o.clone()).await.counts.imported, 3);

    // The old server deletes two of them (file and index entry) while the import's results
    // are already in use; one of them was edited here since.
    for d in ["gone", "edited"] {
        s3.store
            .delete(&ObjectKey::parse(drama_key(d)).unwrap())
            .await
            .unwrap();
    }
    s3.put_json("dramas/index.json", &index_of(&["kept"])).await;
    let patch = EntityPatch::Drama(DramaPatch::from_json(br#"{"title": "Edited here"}"#).unwrap());
    repos
        .dramas
        .patch(owner, &id("edited"), &patch, None)
        .await
        .unwrap();

    // The final import reports both (not "unchanged"), counted apart from the files, and
    // keeps them.
    let r = import(&s3, &repos, o.clone()).await;
    assert_eq!((r.counts.total, r.counts.unchanged), (1, 1), "{r:#?}");
    assert_eq!((r.counts.source_deleted, r.counts.deleted), (2, 0));
    assert_eq!(
        reason_of(&r, &drama_key("gone")),
        (Outcome::SourceDeleted, Some(ReasonCode::SourceDeleted))
    );
    assert_eq!(
        reason_of(&r, &drama_key("edited")),
        (Outcome::SourceDeleted, Some(ReasonCode::EditedSinceImport))
    );
    assert!(!r.is_failure());
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["counts"]["source_deleted"], 2);
    assert_eq!(json["delete_gone"], false);
    assert!(
        json["dramas"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["drama_id"] == "gone" && d["outcome"] == "source_deleted"),
        "{json:#}"
    );
    assert_eq!(count(&pool, "dramas").await, 3);

    // A dry run with --delete-gone says what it would delete, and deletes nothing.
    let mut dry = o.clone();
    dry.delete_gone = true;
    dry.dry_run = true;
    let r = import(&s3, &repos, dry).await;
    assert_eq!(reason_of(&r, &drama_key("gone")), (Outcome::Deleted, None));
    assert_eq!((r.counts.source_deleted, r.counts.deleted), (1, 1));
    assert_eq!(count(&pool, "dramas").await, 3);

    // A run that writes refuses --delete-gone without a way to delete.
    let mut delete = o.clone();
    delete.delete_gone = true;
    let refused = Importer::new(s3.store.clone(), repos.clone(), delete.clone())
        .unwrap()
        .run(&Silent, &CancellationToken::new())
        .await;
    assert!(
        matches!(
            refused,
            Err(LegacyError::InvalidOption {
                option: "--delete-gone",
                ..
            })
        ),
        "{refused:?}"
    );

    // --delete-gone: the drama unchanged since its import goes, the edited one stays.
    let run_deleting = || async {
        Importer::new(s3.store.clone(), repos.clone(), delete.clone())
            .unwrap()
            .delete_gone_with(Arc::new(RepositoryDelete(repos.clone())))
            .run(&Silent, &CancellationToken::new())
            .await
            .unwrap()
    };
    let r = run_deleting().await;
    assert_eq!(reason_of(&r, &drama_key("gone")), (Outcome::Deleted, None));
    assert_eq!(
        reason_of(&r, &drama_key("edited")),
        (Outcome::SourceDeleted, Some(ReasonCode::EditedSinceImport))
    );
    assert_eq!((r.counts.source_deleted, r.counts.deleted), (1, 1));
    assert!(matches!(
        repos.dramas.get_complete(owner, &id("gone")).await,
        Err(RepoError::NotFound { .. })
    ));
    assert_eq!(
        stored_drama(&repos, owner, "edited").await.drama.title,
        "Edited here"
    );
    assert_eq!(count(&pool, "dramas").await, 2);

    // Nothing left to delete on the next run; the deleted drama is not reported again.
    let r = run_deleting().await;
    assert_eq!((r.counts.source_deleted, r.counts.deleted), (1, 0));
    assert!(r.dramas.iter().all(|d| d.drama_id != "gone"), "{r:#?}");
}
