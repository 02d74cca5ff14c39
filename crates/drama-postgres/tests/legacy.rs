//! The legacy-import bookkeeping on a real PostgreSQL: one transaction per imported drama, the
//! same tree as `save_complete` writes, stale versions refused, records that outlive their
//! drama.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drama_dal::legacy::{DramaState, ImportWrite, LegacyImport, LegacyImportRepository};
use drama_dal::{AssetObject, DramaRepository, NewUser, RepoError, UserRepository};
use drama_domain::{AssetId, Drama, DramaId, UserId};
use drama_postgres::PgStore;
use drama_testkit::builders::{drama, fixture_drama};
use sqlx::PgPool;

async fn owner(store: &PgStore) -> UserId {
    let id = UserId::random();
    store.create_user(&NewUser::new(id)).await.unwrap();
    id
}

fn object(key: &str) -> AssetObject {
    AssetObject {
        storage_key: key.to_owned(),
        content_type: "image/png".to_owned(),
        size_bytes: 1234,
        checksum: None,
        input_hash: None,
        usage: None,
    }
}

fn import(owner: UserId, drama: &Drama, write: ImportWrite) -> LegacyImport {
    LegacyImport {
        source_key: format!("dramas/{}/drama.json", drama.id),
        source_hash: "0f".repeat(32),
        owner,
        drama: drama.clone(),
        write,
        objects: Vec::new(),
        references: Vec::new(),
    }
}

const CREATE: ImportWrite = ImportWrite::Create {
    created_at: None,
    updated_at: None,
};

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn an_imported_drama_reads_back_exactly_and_keeps_the_old_timestamps(pool: PgPool) {
    let store = PgStore::new(pool);
    let owner = owner(&store).await;
    let fixture = fixture_drama();
    let at = chrono::DateTime::parse_from_rfc3339("2025-11-20T07:58:35.123456Z")
        .unwrap()
        .to_utc();
    let record = store
        .apply_import(&import(
            owner,
            &fixture,
            ImportWrite::Create {
                created_at: Some(at),
                updated_at: Some(at),
            },
        ))
        .await
        .unwrap();
    assert_eq!(record.version, 1);
    let stored = store.get_complete(owner, &fixture.id).await.unwrap();
    assert_eq!(stored.drama, fixture);
    assert_eq!((stored.created_at, stored.updated_at), (at, at));
    assert_eq!(
        store.drama_state(&fixture.id).await.unwrap(),
        Some(DramaState { owner, version: 1 })
    );
    let recorded = store.recorded_imports("dramas/").await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].record, record);
    assert_eq!(recorded[0].current, Some(DramaState { owner, version: 1 }));
    assert!(
        store
            .recorded_imports("elsewhere/")
            .await
            .unwrap()
            .is_empty()
    );
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn replace_writes_what_save_complete_writes(pool: PgPool) {
    let store = PgStore::new(pool);
    let owner = owner(&store).await;
    let big = drama("twin", 4, 3, 4);
    // Fewer episodes and scenes, renamed characters: children are upserted and deleted.
    let mut smaller = drama("twin", 3, 2, 2);
    smaller.characters[0].name = "Renamed".to_owned();

    store.create(owner, &big).await.unwrap();
    store.save_complete(owner, &smaller, Some(1)).await.unwrap();
    let by_save = store.get_complete(owner, &smaller.id).await.unwrap().drama;

    let other = DramaId::parse("twin2").unwrap();
    let mut big2 = big.clone();
    big2.id = other.clone();
    let mut smaller2 = smaller.clone();
    smaller2.id = other.clone();
    store
        .apply_import(&import(owner, &big2, CREATE))
        .await
        .unwrap();
    let record = store
        .apply_import(&import(
            owner,
            &smaller2,
            ImportWrite::Replace { expected: 1 },
        ))
        .await
        .unwrap();
    assert_eq!(record.version, 2);
    let mut by_import = store.get_complete(owner, &other).await.unwrap().drama;
    by_import.id = smaller.id.clone();
    assert_eq!(by_import, by_save);
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_failing_record_rolls_the_drama_back(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let owner = owner(&store).await;
    let d = drama("atomic", 2, 1, 2);
    let mut bad = import(owner, &d, CREATE);
    bad.source_hash = "not a sha-256".to_owned();
    let e = store.apply_import(&bad).await.unwrap_err();
    assert!(matches!(e, RepoError::Invalid(_)), "{e}");
    assert!(store.drama_state(&d.id).await.unwrap().is_none());
    assert_eq!(
        count(&pool, "select count(*) from public.characters").await,
        0
    );
    assert_eq!(
        count(&pool, "select count(*) from public.legacy_imports").await,
        0
    );

    // An object for an asset the drama lacks also undoes everything.
    let mut orphan_object = import(owner, &d, CREATE);
    orphan_object.objects = vec![(AssetId::parse("no-such-asset").unwrap(), object("k.png"))];
    let e = store.apply_import(&orphan_object).await.unwrap_err();
    assert!(
        matches!(e, RepoError::NotFound { ref id, .. } if id == "no-such-asset"),
        "{e}"
    );
    assert!(store.drama_state(&d.id).await.unwrap().is_none());
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn stale_versions_and_taken_ids_change_nothing(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let owner = owner(&store).await;
    let stranger = self::owner(&store).await;
    let d = drama("guarded", 2, 1, 1);
    store
        .apply_import(&import(owner, &d, CREATE))
        .await
        .unwrap();
    let mut changed = d.clone();
    changed.title = "Changed".to_owned();

    for write in [
        ImportWrite::Replace { expected: 7 },
        ImportWrite::Keep { expected: 7 },
    ] {
        let e = store
            .apply_import(&import(owner, &changed, write))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e,
                RepoError::VersionConflict {
                    expected: 7,
                    actual: 1
                }
            ),
            "{e}"
        );
    }
    let e = store
        .apply_import(&import(stranger, &changed, CREATE))
        .await
        .unwrap_err();
    assert!(matches!(e, RepoError::AlreadyExists { .. }), "{e}");
    let e = store
        .apply_import(&import(
            stranger,
            &changed,
            ImportWrite::Replace { expected: 1 },
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, RepoError::NotFound { .. }), "{e}");
    assert_eq!(store.get_complete(owner, &d.id).await.unwrap().drama, d);
    assert_eq!(store.get_complete(owner, &d.id).await.unwrap().version, 1);
    let unknown = UserId::random();
    let e = store
        .apply_import(&import(unknown, &drama("nobody", 1, 1, 1), CREATE))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            RepoError::NotFound {
                entity: drama_dal::Entity::User,
                ..
            }
        ),
        "{e}"
    );
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn keep_attaches_objects_once_and_records_outlive_their_drama(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let owner = owner(&store).await;
    let d = drama("objects", 1, 1, 1);
    let asset = d.episodes[0].scenes[0].assets[0].id.clone();
    store
        .apply_import(&import(owner, &d, CREATE))
        .await
        .unwrap();

    let mut keep = import(owner, &d, ImportWrite::Keep { expected: 1 });
    keep.objects = vec![(asset.clone(), object("dramas/objects/sb.png"))];
    let first = store.apply_import(&keep).await.unwrap();
    assert_eq!(first.version, 2, "attaching an object is a change");
    let objects = store.asset_objects(owner, &d.id).await.unwrap();
    assert_eq!(objects[&asset], object("dramas/objects/sb.png"));

    keep.write = ImportWrite::Keep { expected: 2 };
    let again = store.apply_import(&keep).await.unwrap();
    assert_eq!(again.version, 2, "the same object again changes nothing");
    assert_eq!(store.get_complete(owner, &d.id).await.unwrap().drama, d);

    store.delete(owner, &d.id).await.unwrap();
    let recorded = store.recorded_imports("").await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].record.version, 2);
    assert_eq!(recorded[0].current, None);
    assert!(store.drama_owners().await.unwrap().is_empty());
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn owners_are_listed_once(pool: PgPool) {
    let store = PgStore::new(pool);
    let a = owner(&store).await;
    let b = owner(&store).await;
    let _idle = owner(&store).await;
    for (who, id) in [(a, "a1"), (a, "a2"), (b, "b1")] {
        store.create(who, &drama(id, 1, 1, 1)).await.unwrap();
    }
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(store.drama_owners().await.unwrap(), expected);
}
