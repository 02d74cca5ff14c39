//! An old drama that shows another drama's object by URL (the old server let a copy keep its
//! original's storyboards): the object outlives the drama of its folder for as long as the
//! copy exists, on an S3 server in this process and a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{PUBLIC_BASE, TestS3, drama_key, fixture_as, id, import, options, png, repos};
use drama_assets::ObjectKey;
use drama_dal::OrphanRepository as _;
use drama_domain::UserId;
use drama_legacy::Outcome;
use drama_postgres::PgStore;
use serde_json::{Value, json};
use sqlx::PgPool;

/// One pass of the sweeper over orphans recorded at least an hour ago: what the store lets
/// it claim is deleted from the bucket. Answers the claimed keys.
async fn sweep(pool: &PgPool, s3: &TestS3) -> Vec<String> {
    // The sweeper waits an hour before it touches a recorded orphan.
    sqlx::query("update public.orphaned_objects set recorded_at = now() - interval '2 hours'")
        .execute(pool)
        .await
        .unwrap();
    let claimed = PgStore::new(pool.clone())
        .claim_orphans(100, Duration::from_secs(3600))
        .await
        .unwrap();
    let mut keys = Vec::new();
    for orphan in claimed {
        assert!(orphan.is_deletable(), "{orphan:?}");
        s3.store
            .delete(&ObjectKey::parse(orphan.storage_key.clone()).unwrap())
            .await
            .unwrap();
        keys.push(orphan.storage_key);
    }
    keys.sort();
    keys
}

async fn references(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        "select drama_id, storage_key from public.legacy_object_references order by 1, 2",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn an_object_a_copy_shows_outlives_the_drama_of_its_folder(pool: PgPool) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    let shared = "dramas/original/shared.png";
    let own = "dramas/original/own.png";
    let mut original = fixture_as("original");
    original["assets"] = json!([
        {"id": "shared", "kind": "image", "prompt": "p", "url": format!("{PUBLIC_BASE}/{shared}")},
        {"id": "own", "kind": "image", "prompt": "p", "url": format!("{PUBLIC_BASE}/{own}")},
    ]);
    s3.put_json(&drama_key("original"), &original).await;
    s3.put(shared, png(100), "image/png").await;
    s3.put(own, png(200), "image/png").await;
    let first = import(&s3, &repos, options(&s3, owner)).await;
    assert_eq!(first.counts.imported, 1);

    // The copy, imported later, shows the original's object by its URL.
    let mut copy = fixture_as("copy");
    copy["assets"] = json!([
        {"id": "borrowed", "kind": "image", "prompt": "p", "url": format!("{PUBLIC_BASE}/{shared}")},
    ]);
    s3.put_json(&drama_key("copy"), &copy).await;
    let second = import(&s3, &repos, options(&s3, owner)).await;
    assert_eq!((second.counts.imported, second.counts.unchanged), (1, 1));
    assert_eq!(
        references(&pool).await,
        [("copy".to_owned(), shared.to_owned())]
    );

    // An import by an earlier version recorded no reference: a rerun of the unchanged files
    // records it, and still calls them unchanged.
    sqlx::query("delete from public.legacy_object_references")
        .execute(&pool)
        .await
        .unwrap();
    let rerun = import(&s3, &repos, options(&s3, owner)).await;
    assert_eq!(rerun.counts.unchanged, 2, "{rerun:?}");
    assert!(rerun.dramas.iter().all(|d| d.outcome == Outcome::Unchanged));
    assert_eq!(
        references(&pool).await,
        [("copy".to_owned(), shared.to_owned())]
    );

    // The original goes: its own object is swept, the one the copy shows stays.
    repos.dramas.delete(owner, &id("original")).await.unwrap();
    assert_eq!(sweep(&pool, &s3).await, [own]);
    assert!(s3.get(own).await.is_none());
    assert!(s3.get(shared).await.is_some(), "the copy still shows it");
    assert_eq!(sweep(&pool, &s3).await, Vec::<String>::new());
    assert!(s3.get(shared).await.is_some());

    // Once the copy goes too, nothing refers to it and the next sweep takes it.
    repos.dramas.delete(owner, &id("copy")).await.unwrap();
    assert!(references(&pool).await.is_empty());
    assert_eq!(sweep(&pool, &s3).await, [shared]);
    assert!(s3.get(shared).await.is_none());
}

/// The copy shows the original's objects through its cover, portrait, premise image, episode
/// video, storyboard and clip fields, not through assets: each is a reference all the same.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn objects_a_copy_shows_through_any_url_field_outlive_the_drama_of_their_folder(
    pool: PgPool,
) {
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    let shown = [
        ("cover", "dramas/original/cover.png"),
        ("portrait", "dramas/original/characters/hero.png"),
        ("premise", "dramas/original/characters/hero_premise.png"),
        ("episode", "dramas/original/episodes/ep1.mp4"),
        ("board", "dramas/original/scenes/ep1-sc1.png"),
        ("clip", "dramas/original/scenes/ep1-sc1.mp4"),
    ];
    let own = "dramas/original/own.png";
    let url = |key: &str| format!("{PUBLIC_BASE}/{key}");
    let mut original = fixture_as("original");
    let mut assets = vec![json!({"id": "own", "kind": "image", "prompt": "p", "url": url(own)})];
    for (id, key) in shown {
        let (kind, content_type, bytes) = if key.ends_with(".mp4") {
            ("video", "video/mp4", b"\0\0\0\x18ftypmp42".repeat(30))
        } else {
            ("image", "image/png", png(300))
        };
        let mut asset = json!({"id": id, "kind": kind, "prompt": "p", "url": url(key)});
        if kind == "video" {
            asset["duration"] = json!(10);
        }
        assets.push(asset);
        s3.put(key, bytes, content_type).await;
    }
    original["assets"] = Value::Array(assets);
    s3.put(own, png(200), "image/png").await;
    s3.put_json(&drama_key("original"), &original).await;

    let mut copy = fixture_as("copy");
    copy["url"] = json!(url(shown[0].1));
    copy["characters"][0]["url"] = json!(url(shown[1].1));
    copy["characters"][0]["premise_url"] = json!(url(shown[2].1));
    copy["episodes"][0]["url"] = json!(url(shown[3].1));
    copy["episodes"][0]["scenes"][0]["image_url"] = json!(url(shown[4].1));
    copy["episodes"][0]["scenes"][0]["video_url"] = json!(url(shown[5].1));
    s3.put_json(&drama_key("copy"), &copy).await;

    let report = import(&s3, &repos, options(&s3, owner)).await;
    assert_eq!(report.counts.imported, 2, "{report:?}");
    let mut expected: Vec<(String, String)> = shown
        .iter()
        .map(|(_, key)| ("copy".to_owned(), (*key).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(references(&pool).await, expected);

    // The original goes: only its own object is swept.
    repos.dramas.delete(owner, &id("original")).await.unwrap();
    assert_eq!(sweep(&pool, &s3).await, [own]);
    for (_, key) in shown {
        assert!(
            s3.get(key).await.is_some(),
            "{key}: the copy still shows it"
        );
    }

    // The last drama that shows them goes: the next sweep takes them all.
    repos.dramas.delete(owner, &id("copy")).await.unwrap();
    let mut keys: Vec<&str> = shown.iter().map(|(_, key)| *key).collect();
    keys.sort_unstable();
    assert_eq!(sweep(&pool, &s3).await, keys);
    for key in keys {
        assert!(s3.get(key).await.is_none(), "{key}");
    }
}
