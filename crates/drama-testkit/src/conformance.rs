//! Scenarios every repository implementation must pass, identically.
//!
//! Instantiate them once per implementation:
//! ```ignore
//! macro_rules! case {
//!     ($name:ident) => {
//!         #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//!         async fn $name() {
//!             drama_testkit::conformance::$name(std::sync::Arc::new(MemoryStore::new())).await;
//!         }
//!     };
//! }
//! drama_testkit::for_each_scenario!(case);
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{Duration, Utc};
use drama_dal::api_key::{self, KeyRejected};
use drama_dal::{AssetObject, Cursor, DramaChange, Entity, NewUser, PageRequest, RepoError, Store};
use drama_domain::{
    AssetId, AssetOwner, AssetPatch, CharacterId, CharacterPatch, Drama, DramaId, DramaPatch,
    EpisodeId, EpisodePatch, SceneId, ScenePatch, UserId,
};
use futures::StreamExt as _;
use serde_json::json;

use crate::builders::{drama, drama_json, fixture_drama, small_drama};

mod ledger;
pub use ledger::{
    concurrent_movements_keep_the_ledger_whole, every_credit_movement_is_in_the_ledger,
};

/// Calls `$m!(scenario)` for every scenario of this module.
#[macro_export]
macro_rules! for_each_scenario {
    ($m:ident) => {
        $m!(crud_round_trips_every_part);
        $m!(create_rejects_taken_ids_and_invalid_dramas_without_writing);
        $m!(replacing_a_tree_removes_children_that_are_gone);
        $m!(concurrent_writers_with_one_version_exactly_one_wins);
        $m!(stale_patches_conflict_and_change_nothing);
        $m!(patches_find_only_their_own_entities);
        $m!(cursor_pages_are_stable_under_concurrent_inserts);
        $m!(offset_and_limits_are_honoured);
        $m!(delete_cascades_and_returns_storage_keys);
        $m!(owners_are_isolated);
        $m!(concurrent_debits_never_overdraw);
        $m!(users_are_created_upserted_and_credited);
        $m!(unicode_and_megabyte_text_round_trip);
        $m!(ids_at_the_edges_of_the_alphabet_round_trip);
        $m!(api_keys_store_only_hashes_and_refuse_revoked_and_expired);
        $m!(asset_objects_follow_their_assets);
        $m!(dropped_objects_become_orphans_claimed_once);
        $m!(orphans_are_claimed_only_for_their_owner);
        $m!(changes_are_announced_to_followers);
        $m!(every_credit_movement_is_in_the_ledger);
        $m!(concurrent_movements_keep_the_ledger_whole);
    };
}

async fn user(store: &dyn Store) -> UserId {
    let id = UserId::random();
    store.create_user(&NewUser::new(id)).await.unwrap();
    id
}

fn did(s: &str) -> DramaId {
    DramaId::parse(s).unwrap()
}

/// A key under `owner`'s prefix (where the stores accept it).
fn okey(owner: UserId, rest: &str) -> String {
    format!("{owner}/{rest}")
}

fn object(key: &str) -> AssetObject {
    AssetObject {
        storage_key: key.to_owned(),
        content_type: "image/png".to_owned(),
        size_bytes: 42,
        checksum: Some("sha256:00".to_owned()),
        input_hash: Some("h1".to_owned()),
        usage: Some(json!({"images": 1})),
    }
}

fn assert_not_found(result: Result<impl std::fmt::Debug, RepoError>, entity: Entity) {
    match result {
        Err(RepoError::NotFound { entity: e, .. }) if e == entity => {}
        other => panic!("expected {entity} not found, got {other:?}"),
    }
}

/// Create, read, replace and patch every kind of part; versions count writes.
pub async fn crud_round_trips_every_part(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let original = fixture_drama();
    let created = store.create(owner, &original).await.unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(created.owner, owner);
    let read = store.get_complete(owner, &original.id).await.unwrap();
    assert_eq!(read.drama, original);
    assert_eq!(read.version, 1);

    let mut changed = original.clone();
    changed.title = "Corgi Musk II".into();
    changed.characters[0].voice_description = "gravelly, fast".into();
    changed.episodes[1].scenes[2].assets[0].url = Some("https://cdn/x.png".into());
    changed.metadata = Some(json!({"tags": ["space"]}));
    let v2 = store.save_complete(owner, &changed, Some(1)).await.unwrap();
    assert_eq!(v2, 2);
    assert_eq!(
        store.get_complete(owner, &original.id).await.unwrap().drama,
        changed
    );

    let id = &original.id;
    let d = store
        .patch_drama(
            owner,
            id,
            &DramaPatch::from_json(br#"{"title":"T3","metadata":null}"#).unwrap(),
            Some(2),
        )
        .await
        .unwrap();
    assert_eq!((d.drama.title.as_str(), d.version), ("T3", 3));
    assert_eq!(d.drama.metadata, None);
    assert_eq!(d.drama.description, changed.description);

    let c = CharacterId::parse("char-ava").unwrap();
    let d = store
        .patch_character(
            owner,
            id,
            &c,
            &CharacterPatch::from_json(br#"{"name":"Ava B.","metadata":{"x":1}}"#).unwrap(),
            None,
        )
        .await
        .unwrap();
    let ava = d.drama.character("char-ava").unwrap();
    assert_eq!(ava.name, "Ava B.");
    assert_eq!(ava.metadata, Some(json!({"x": 1})));
    assert_eq!(d.version, 4);

    let e = EpisodeId::parse("ep2").unwrap();
    let d = store
        .patch_episode(
            owner,
            id,
            &e,
            &EpisodePatch::from_json(br#"{"premise":"more rockets"}"#).unwrap(),
            Some(4),
        )
        .await
        .unwrap();
    assert_eq!(
        d.drama.episode("ep2").unwrap().premise.as_deref(),
        Some("more rockets")
    );

    let first_scene = d.drama.episodes[1].scenes[0].clone();
    let d = store
        .patch_scene(
            owner,
            id,
            &e,
            &first_scene.id,
            &ScenePatch::from_json(br#"{"image_url":"https://cdn/s.png","video_url":null}"#)
                .unwrap(),
            None,
        )
        .await
        .unwrap();
    let (_, scene) = d.drama.scene(first_scene.id.as_str()).unwrap();
    assert_eq!(scene.image_url.as_deref(), Some("https://cdn/s.png"));
    assert_eq!(scene.description, first_scene.description);

    let asset = first_scene.assets[1].id.clone();
    let d = store
        .patch_asset(
            owner,
            id,
            &AssetOwner::Scene(first_scene.id.clone()),
            &asset,
            &AssetPatch::from_json(br#"{"prompt":"slow pan","url":"https://cdn/v.mp4"}"#).unwrap(),
            Some(6),
        )
        .await
        .unwrap();
    let (_, scene) = d.drama.scene(first_scene.id.as_str()).unwrap();
    assert_eq!(scene.assets[1].prompt, "slow pan");
    assert_eq!(scene.assets[1].url.as_deref(), Some("https://cdn/v.mp4"));
    assert_eq!(scene.assets[1].duration, first_scene.assets[1].duration);
    assert_eq!(d.version, 7);
    assert!(d.updated_at >= created.updated_at);
    assert_eq!(d.created_at, created.created_at);

    assert_not_found(
        store.get_complete(owner, &did("no-such-drama")).await,
        Entity::Drama,
    );
}

/// A taken id is a conflict; an invalid drama is refused; neither writes anything.
pub async fn create_rejects_taken_ids_and_invalid_dramas_without_writing(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let other = user(&*store).await;
    let d = small_drama("taken");
    store.create(owner, &d).await.unwrap();
    assert!(store.id_taken(&d.id).await.unwrap());
    assert!(!store.id_taken(&did("free")).await.unwrap());
    let mut again = small_drama("taken");
    again.title = "Another".into();
    for who in [owner, other] {
        match store.create(who, &again).await {
            Err(e @ RepoError::AlreadyExists { .. }) => assert!(e.is_conflict()),
            r => panic!("expected AlreadyExists, got {r:?}"),
        }
    }
    assert_eq!(
        store.get_complete(owner, &d.id).await.unwrap().drama.title,
        d.title
    );

    let mut invalid = small_drama("invalid");
    invalid.episodes[0].scenes[1].id = invalid.episodes[0].scenes[0].id.clone();
    match store.create(owner, &invalid).await {
        Err(RepoError::Invalid(e)) => assert_eq!(e.first_field(), "episodes[0].scenes[1].id"),
        r => panic!("expected Invalid, got {r:?}"),
    }
    assert_not_found(store.get_complete(owner, &invalid.id).await, Entity::Drama);

    match store.create(UserId::random(), &small_drama("orphan")).await {
        Err(RepoError::NotFound {
            entity: Entity::User,
            ..
        }) => {}
        r => panic!("expected the owner to be missing, got {r:?}"),
    }

    let mut valid = small_drama("invalid");
    store.create(owner, &valid).await.unwrap();
    valid.characters[0].name = String::new();
    assert!(matches!(
        store.save_complete(owner, &valid, None).await,
        Err(RepoError::Invalid(_))
    ));
    let stored = store.get_complete(owner, &valid.id).await.unwrap();
    assert_eq!(stored.version, 1);
    assert_eq!(stored.drama, small_drama("invalid"));
}

/// Children that are absent from the new tree are deleted; order follows the new tree.
pub async fn replacing_a_tree_removes_children_that_are_gone(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let big = drama("tree", 4, 3, 3);
    store.create(owner, &big).await.unwrap();
    let kept_asset = big.episodes[2].scenes[0].assets[0].id.clone();
    let gone_asset = big.episodes[0].scenes[0].assets[0].id.clone();
    store
        .attach_asset_object(
            owner,
            &big.id,
            &kept_asset,
            "https://cdn/k.png",
            &object(&okey(owner, "tree/k/1.png")),
        )
        .await
        .unwrap();
    store
        .attach_asset_object(
            owner,
            &big.id,
            &gone_asset,
            "https://cdn/g.png",
            &object(&okey(owner, "tree/g/1.png")),
        )
        .await
        .unwrap();

    let mut small = store.get_complete(owner, &big.id).await.unwrap().drama;
    small.characters.truncate(2);
    small.characters.reverse();
    small.episodes.remove(0);
    small.episodes[0].scenes.pop();
    small.episodes[1].scenes[1].assets.pop();
    // A scene moves to another episode, keeping its id.
    let moved = small.episodes[0].scenes.remove(0);
    small.episodes[1].scenes.insert(0, moved.clone());
    for s in small.episodes.iter_mut().flat_map(|e| e.scenes.iter_mut()) {
        for a in &mut s.assets {
            a.depends_on.retain(|d| d != "c2" && d != "c3");
        }
    }
    store.save_complete(owner, &small, None).await.unwrap();

    let read = store.get_complete(owner, &big.id).await.unwrap().drama;
    assert_eq!(read, small);
    let ids: Vec<&str> = read.characters.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c0"]);
    assert_eq!(read.episodes.len(), 2);
    assert_eq!(read.episodes[1].scenes[0].id, moved.id);
    let objects = store.asset_objects(owner, &big.id).await.unwrap();
    assert!(
        objects.contains_key(&kept_asset),
        "kept asset lost its object"
    );
    assert!(
        !objects.contains_key(&gone_asset),
        "removed asset kept its object"
    );

    let mut empty = read.clone();
    empty.characters.clear();
    empty.episodes.clear();
    store.save_complete(owner, &empty, None).await.unwrap();
    assert_eq!(
        store.get_complete(owner, &big.id).await.unwrap().drama,
        empty
    );
}

/// Two writers based on the same version: one wins, the other conflicts, nothing is lost.
pub async fn concurrent_writers_with_one_version_exactly_one_wins(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let base = drama("race", 2, 2, 2);
    store.create(owner, &base).await.unwrap();
    for round in 0..5 {
        let version = store.get_complete(owner, &base.id).await.unwrap().version;
        let mut tasks = Vec::new();
        for writer in 0..2 {
            let store = store.clone();
            let mut d = base.clone();
            d.title = format!("round {round} writer {writer}");
            d.episodes[writer].scenes.clear();
            tasks.push(tokio::spawn(async move {
                (
                    d.clone(),
                    store.save_complete(owner, &d, Some(version)).await,
                )
            }));
        }
        let mut winners = Vec::new();
        for t in tasks {
            let (d, result) = t.await.unwrap();
            match result {
                Ok(v) => {
                    assert_eq!(v, version + 1);
                    winners.push(d);
                }
                Err(RepoError::VersionConflict { expected, actual }) => {
                    assert_eq!(expected, version);
                    assert_eq!(actual, version + 1);
                }
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one writer wins");
        let stored = store.get_complete(owner, &base.id).await.unwrap();
        assert_eq!(
            stored.drama, winners[0],
            "the stored tree is the winner's, whole"
        );
        assert_eq!(stored.version, version + 1);
    }
}

/// A PATCH or save with a stale version is refused and leaves the drama as it was.
pub async fn stale_patches_conflict_and_change_nothing(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let d = small_drama("stale");
    store.create(owner, &d).await.unwrap();
    store
        .patch_drama(
            owner,
            &d.id,
            &DramaPatch::from_json(br#"{"title":"v2"}"#).unwrap(),
            Some(1),
        )
        .await
        .unwrap();
    let before = store.get_complete(owner, &d.id).await.unwrap();
    let patch = DramaPatch::from_json(br#"{"title":"lost"}"#).unwrap();
    let r = store.patch_drama(owner, &d.id, &patch, Some(1)).await;
    assert!(
        matches!(
            r,
            Err(RepoError::VersionConflict {
                expected: 1,
                actual: 2
            })
        ),
        "{r:?}"
    );
    let r = store
        .patch_character(
            owner,
            &d.id,
            &d.characters[0].id,
            &CharacterPatch::from_json(br#"{"name":"x"}"#).unwrap(),
            Some(1),
        )
        .await;
    assert!(r.is_err_and(|e| e.is_conflict()));
    let r = store
        .save_complete(owner, &small_drama("stale"), Some(1))
        .await;
    assert!(r.is_err_and(|e| e.is_conflict()));
    assert_eq!(store.get_complete(owner, &d.id).await.unwrap(), before);
}

/// Nested patches address entities through their parents and find nothing elsewhere.
pub async fn patches_find_only_their_own_entities(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let d = drama("nested", 2, 2, 2);
    store.create(owner, &d).await.unwrap();
    let e0 = d.episodes[0].id.clone();
    let e1 = d.episodes[1].id.clone();
    let s_of_e1 = d.episodes[1].scenes[0].id.clone();
    let patch = ScenePatch::from_json(br#"{"description":"x"}"#).unwrap();
    assert_not_found(
        store
            .patch_scene(owner, &d.id, &e0, &s_of_e1, &patch, None)
            .await,
        Entity::Scene,
    );
    assert_not_found(
        store
            .patch_scene(
                owner,
                &d.id,
                &EpisodeId::parse("nope").unwrap(),
                &s_of_e1,
                &patch,
                None,
            )
            .await,
        Entity::Episode,
    );
    assert_not_found(
        store
            .patch_character(
                owner,
                &d.id,
                &CharacterId::parse("nope").unwrap(),
                &CharacterPatch::default(),
                None,
            )
            .await,
        Entity::Character,
    );
    let asset_of_e1 = d.episodes[1].scenes[0].assets[0].id.clone();
    let asset_patch = AssetPatch::from_json(br#"{"prompt":"p"}"#).unwrap();
    assert_not_found(
        store
            .patch_asset(
                owner,
                &d.id,
                &AssetOwner::Scene(d.episodes[0].scenes[0].id.clone()),
                &asset_of_e1,
                &asset_patch,
                None,
            )
            .await,
        Entity::Asset,
    );
    assert_not_found(
        store
            .patch_asset(
                owner,
                &d.id,
                &AssetOwner::Scene(SceneId::parse("nope").unwrap()),
                &asset_of_e1,
                &asset_patch,
                None,
            )
            .await,
        Entity::Scene,
    );
    assert_not_found(
        store
            .patch_episode(owner, &did("nope"), &e1, &EpisodePatch::default(), None)
            .await,
        Entity::Drama,
    );
    // Nothing above changed the drama.
    assert_eq!(store.get_complete(owner, &d.id).await.unwrap().version, 1);
}

/// Keyset pages neither skip nor repeat rows while new dramas are inserted between reads.
pub async fn cursor_pages_are_stable_under_concurrent_inserts(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    for i in 0..25 {
        store
            .create(owner, &small_drama(&format!("page-{i:02}")))
            .await
            .unwrap();
    }
    let first = store
        .list_summaries(owner, &PageRequest::first(10))
        .await
        .unwrap();
    let ids: Vec<String> = first.items.iter().map(|s| s.id.to_string()).collect();
    let expected_first: Vec<String> = (15..25).rev().map(|i| format!("page-{i:02}")).collect();
    assert_eq!(ids, expected_first, "newest first");

    let mut seen: Vec<String> = ids;
    let mut cursor = first.next.expect("more pages");
    let mut inserted = 0;
    loop {
        // Writers insert while the reader pages.
        for _ in 0..3 {
            store
                .create(owner, &small_drama(&format!("late-{inserted:02}")))
                .await
                .unwrap();
            inserted += 1;
        }
        let encoded = cursor.encode();
        let page = store
            .list_summaries(
                owner,
                &PageRequest::after(10, Cursor::decode(&encoded).unwrap()),
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|s| s.id.to_string()));
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("page-{i:02}")).collect();
    assert_eq!(seen, expected, "no row skipped or repeated");

    let complete = store
        .list_complete(owner, &PageRequest::first(3))
        .await
        .unwrap();
    let newest = format!("late-{:02}", inserted - 1);
    assert_eq!(complete.items.len(), 3);
    assert_eq!(complete.items[0].drama.id.as_str(), newest);
    assert_eq!(complete.items[0].drama, small_drama(&newest));
}

/// Offsets skip rows after the cursor; limits outside 1..=1000 are refused.
pub async fn offset_and_limits_are_honoured(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    for i in 0..5 {
        store
            .create(owner, &small_drama(&format!("o{i}")))
            .await
            .unwrap();
    }
    let page = store
        .list_complete(
            owner,
            &PageRequest {
                limit: 2,
                after: None,
                offset: 2,
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = page.items.iter().map(|d| d.drama.id.as_str()).collect();
    assert_eq!(ids, ["o2", "o1"]);
    assert!(page.next.is_some());
    let last = store
        .list_summaries(
            owner,
            &PageRequest {
                limit: 10,
                after: None,
                offset: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(last.items.len(), 2);
    assert!(last.next.is_none());
    for limit in [0, 1001] {
        let r = store
            .list_summaries(owner, &PageRequest::first(limit))
            .await;
        assert!(
            matches!(r, Err(RepoError::Invalid(ref e)) if e.first_field() == "limit"),
            "{r:?}"
        );
    }
    let empty = store
        .list_summaries(user(&*store).await, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none());
}

/// Deleting a drama removes every part and hands back the storage keys of its objects.
pub async fn delete_cascades_and_returns_storage_keys(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let d = drama("doomed", 2, 2, 2);
    store.create(owner, &d).await.unwrap();
    let a = d.episodes[0].scenes[0].assets[0].id.clone();
    let b = d.episodes[1].scenes[1].assets[1].id.clone();
    store
        .attach_asset_object(
            owner,
            &d.id,
            &a,
            "https://cdn/a",
            &object(&okey(owner, "doomed/a.png")),
        )
        .await
        .unwrap();
    store
        .attach_asset_object(
            owner,
            &d.id,
            &b,
            "https://cdn/b",
            &object(&okey(owner, "doomed/b.mp4")),
        )
        .await
        .unwrap();
    let mut keys = store.delete(owner, &d.id).await.unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [okey(owner, "doomed/a.png"), okey(owner, "doomed/b.mp4")]
    );
    assert_not_found(store.get_complete(owner, &d.id).await, Entity::Drama);
    assert_not_found(store.delete(owner, &d.id).await, Entity::Drama);
    assert_not_found(store.asset_objects(owner, &d.id).await, Entity::Drama);

    // The id is free again and nothing of the old tree survives.
    let fresh = drama("doomed", 1, 1, 1);
    store.create(owner, &fresh).await.unwrap();
    assert_eq!(store.get_complete(owner, &d.id).await.unwrap().drama, fresh);
    assert!(store.asset_objects(owner, &d.id).await.unwrap().is_empty());
}

/// User B can never read, list, change or delete user A's drama.
pub async fn owners_are_isolated(store: Arc<dyn Store>) {
    let alice = user(&*store).await;
    let bob = user(&*store).await;
    let d = small_drama("alices");
    store.create(alice, &d).await.unwrap();
    let asset = d.episodes[0].scenes[0].assets[0].id.clone();

    assert_not_found(store.get_complete(bob, &d.id).await, Entity::Drama);
    assert_not_found(store.save_complete(bob, &d, None).await, Entity::Drama);
    assert_not_found(
        store
            .patch_drama(bob, &d.id, &DramaPatch::default(), None)
            .await,
        Entity::Drama,
    );
    assert_not_found(
        store
            .patch_character(
                bob,
                &d.id,
                &d.characters[0].id,
                &CharacterPatch::default(),
                None,
            )
            .await,
        Entity::Drama,
    );
    assert_not_found(
        store
            .patch_episode(
                bob,
                &d.id,
                &d.episodes[0].id,
                &EpisodePatch::default(),
                None,
            )
            .await,
        Entity::Drama,
    );
    assert_not_found(
        store
            .patch_scene(
                bob,
                &d.id,
                &d.episodes[0].id,
                &d.episodes[0].scenes[0].id,
                &ScenePatch::default(),
                None,
            )
            .await,
        Entity::Drama,
    );
    assert_not_found(
        store
            .patch_asset(
                bob,
                &d.id,
                &AssetOwner::Drama,
                &asset,
                &AssetPatch::default(),
                None,
            )
            .await,
        Entity::Drama,
    );
    assert_not_found(
        store
            .attach_asset_object(bob, &d.id, &asset, "https://evil", &object("x"))
            .await,
        Entity::Drama,
    );
    assert_not_found(store.asset_objects(bob, &d.id).await, Entity::Drama);
    assert_not_found(store.delete(bob, &d.id).await, Entity::Drama);
    for page in [PageRequest::first(100)] {
        assert!(
            store
                .list_summaries(bob, &page)
                .await
                .unwrap()
                .items
                .is_empty()
        );
        assert!(
            store
                .list_complete(bob, &page)
                .await
                .unwrap()
                .items
                .is_empty()
        );
    }
    let still = store.get_complete(alice, &d.id).await.unwrap();
    assert_eq!((still.drama, still.version), (d, 1));
}

/// 50 concurrent debits of 1 against a balance of 30: exactly 30 succeed.
pub async fn concurrent_debits_never_overdraw(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    assert_eq!(store.get_user(owner).await.unwrap().tokens, 30);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.debit_tokens(owner, 1).await })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(balance) => {
                assert!(balance >= 0);
                ok += 1;
            }
            Err(RepoError::InsufficientTokens {
                balance: 0,
                needed: 1,
            }) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((ok, refused), (30, 20));
    assert_eq!(store.get_user(owner).await.unwrap().tokens, 0);
    let r = store.debit_tokens(owner, 1).await;
    assert!(matches!(
        r,
        Err(RepoError::InsufficientTokens {
            balance: 0,
            needed: 1
        })
    ));
}

/// Users: create, duplicate, upsert from auth, credit, bad amounts.
pub async fn users_are_created_upserted_and_credited(store: Arc<dyn Store>) {
    let id = UserId::random();
    let mut new = NewUser::new(id);
    new.email = Some("ana@example.com".into());
    new.display_name = Some("Ana".into());
    new.tokens = 5;
    let u = store.create_user(&new).await.unwrap();
    assert_eq!(
        (u.tokens, u.subscription_tier.as_str(), u.email.as_deref()),
        (5, "free", Some("ana@example.com"))
    );
    assert!(matches!(
        store.create_user(&new).await,
        Err(RepoError::AlreadyExists {
            entity: Entity::User,
            ..
        })
    ));
    assert_not_found(store.get_user(UserId::random()).await, Entity::User);

    let again = store.upsert_from_auth(id, None, 999).await.unwrap();
    assert_eq!(
        (again.tokens, again.email.as_deref()),
        (5, Some("ana@example.com"))
    );
    let changed = store
        .upsert_from_auth(id, Some("ana@new.example"), 999)
        .await
        .unwrap();
    assert_eq!(changed.email.as_deref(), Some("ana@new.example"));

    let fresh_id = UserId::random();
    let fresh = store
        .upsert_from_auth(fresh_id, Some("x@y.z"), drama_dal::DEFAULT_TOKENS)
        .await
        .unwrap();
    assert_eq!(
        (fresh.id, fresh.tokens),
        (fresh_id, drama_dal::DEFAULT_TOKENS)
    );
    assert!(matches!(
        store.upsert_from_auth(UserId::random(), None, -1).await,
        Err(RepoError::Invalid(_))
    ));

    assert_eq!(store.credit_tokens(id, 7).await.unwrap(), 12);
    assert_eq!(store.debit_tokens(id, 12).await.unwrap(), 0);
    for bad in [0, -3] {
        assert!(matches!(
            store.debit_tokens(id, bad).await,
            Err(RepoError::Invalid(_))
        ));
        assert!(matches!(
            store.credit_tokens(id, bad).await,
            Err(RepoError::Invalid(_))
        ));
    }
    assert_not_found(store.debit_tokens(UserId::random(), 1).await, Entity::User);
    let mut negative = NewUser::new(UserId::random());
    negative.tokens = -1;
    assert!(matches!(
        store.create_user(&negative).await,
        Err(RepoError::Invalid(_))
    ));
}

/// Multi-byte text and a 1 MB field are stored and read back byte for byte.
pub async fn unicode_and_megabyte_text_round_trip(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let mut d = small_drama("unicode");
    d.title = "柯基·马斯克 🐕‍🦺 — «Fetch» \"the\" 'stars' \\ ñ".into();
    d.characters[0].name = "Zoë Ørsted-Łukasz 🚀".into();
    d.characters[0].voice_description = "مرحبا — שלום — こんにちは".into();
    let chunk = "Ünïcödé ⭐ line\n\t";
    let big: String = chunk.repeat(1024 * 1024 / chunk.len() + 1);
    assert!(big.len() >= 1024 * 1024);
    d.description.clone_from(&big);
    d.episodes[0].scenes[0].assets[0].prompt.clone_from(&big);
    d.metadata = Some(json!({"emoji": "🎬", "nested": {"list": ["ä", 1, null, true]}}));
    store.create(owner, &d).await.unwrap();
    let read = store.get_complete(owner, &d.id).await.unwrap().drama;
    assert_eq!(read, d);
    let summaries = store
        .list_summaries(owner, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(summaries.items[0].description.len(), big.len());

    let mut with_nul = small_drama("nul");
    with_nul.title = "a\u{0}b".into();
    assert!(matches!(
        store.create(owner, &with_nul).await,
        Err(RepoError::Invalid(ref e)) if e.first_field() == "title"
    ));
}

/// Ids of one character, of 128 characters, and of every allowed symbol are stored as given.
pub async fn ids_at_the_edges_of_the_alphabet_round_trip(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let long = "Az09_.-".repeat(19)[..128].to_owned();
    for id in ["x", "-", ".", "_", long.as_str(), "A.b-C_9"] {
        let mut v = drama_json(id, 1, 1, 1);
        v["characters"][0]["id"] = json!(id);
        v["episodes"][0]["id"] = json!(id);
        v["episodes"][0]["scenes"][0]["id"] = json!(id);
        v["episodes"][0]["scenes"][0]["assets"][0]["id"] = json!(id);
        v["episodes"][0]["scenes"][0]["assets"][0]["depends_on"] = json!([id]);
        v["episodes"][0]["scenes"][0]["assets"][1]["depends_on"] = json!([id]);
        let d = Drama::from_value(v).unwrap();
        store.create(owner, &d).await.unwrap();
        assert_eq!(store.get_complete(owner, &d.id).await.unwrap().drama, d);
    }
    let ids: HashSet<String> = store
        .list_summaries(owner, &PageRequest::first(100))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|s| s.id.into_inner())
        .collect();
    assert_eq!(ids.len(), 6);
}

/// Keys: shown once, stored as a hash, found by prefix, refused when revoked or expired.
pub async fn api_keys_store_only_hashes_and_refuse_revoked_and_expired(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let other = user(&*store).await;
    let created = store
        .create_api_key(owner, "ci", &["service".to_owned()], None)
        .await
        .unwrap();
    assert!(created.key.starts_with("dk_"));
    assert_eq!(
        api_key::lookup_of(&created.key),
        Some(created.meta.prefix.as_str())
    );
    let stored = store
        .find_api_key(&created.meta.prefix)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.secret_hash, api_key::hash(&created.key));
    assert!(!String::from_utf8_lossy(&stored.secret_hash).contains(&created.key[15..]));
    assert_eq!(stored.meta, created.meta);
    assert!(stored.meta.is_service());
    assert!(store.find_api_key("nosuchprefix").await.unwrap().is_none());

    let now = Utc::now();
    let meta = api_key::authenticate(&*store, &created.key, now)
        .await
        .unwrap();
    assert_eq!(meta.owner, owner);
    let mut forged = created.key.clone();
    forged.pop();
    forged.push(if created.key.ends_with('a') { 'b' } else { 'a' });
    assert!(matches!(
        api_key::authenticate(&*store, &forged, now).await,
        Err(KeyRejected::Invalid)
    ));

    store.record_api_key_use(meta.id, now).await.unwrap();
    let listed = store.list_api_keys(owner).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].last_used_at.map(|t| t.timestamp_micros()),
        Some(now.timestamp_micros())
    );
    assert!(store.list_api_keys(other).await.unwrap().is_empty());

    assert_not_found(store.revoke_api_key(other, meta.id).await, Entity::ApiKey);
    let revoked = store.revoke_api_key(owner, meta.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    let again = store.revoke_api_key(owner, meta.id).await.unwrap();
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "revoking twice keeps the first time"
    );
    assert!(matches!(
        api_key::authenticate(&*store, &created.key, now).await,
        Err(KeyRejected::Revoked)
    ));

    let expiring = store
        .create_api_key(owner, "short", &[], Some(now + Duration::minutes(5)))
        .await
        .unwrap();
    assert!(
        api_key::authenticate(&*store, &expiring.key, now)
            .await
            .is_ok()
    );
    assert!(matches!(
        api_key::authenticate(&*store, &expiring.key, now + Duration::minutes(6)).await,
        Err(KeyRejected::Expired)
    ));
    assert!(matches!(
        store.create_api_key(owner, " ", &[], None).await,
        Err(RepoError::Invalid(_))
    ));
    assert_not_found(
        store.create_api_key(UserId::random(), "x", &[], None).await,
        Entity::User,
    );
}

/// Generated-object records attach to assets, set their url and bump the version.
pub async fn asset_objects_follow_their_assets(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let d = fixture_drama();
    store.create(owner, &d).await.unwrap();
    let asset = d.episodes[0].scenes[0].assets[1].id.clone();
    let v = store
        .attach_asset_object(
            owner,
            &d.id,
            &asset,
            "https://cdn/clip.mp4",
            &object(&okey(owner, "a/b.mp4")),
        )
        .await
        .unwrap();
    assert_eq!(v, 2);
    let read = store.get_complete(owner, &d.id).await.unwrap().drama;
    assert_eq!(
        read.episodes[0].scenes[0].assets[1].url.as_deref(),
        Some("https://cdn/clip.mp4")
    );
    let objects = store.asset_objects(owner, &d.id).await.unwrap();
    assert_eq!(objects.get(&asset), Some(&object(&okey(owner, "a/b.mp4"))));

    let mut replaced = object(&okey(owner, "a/b2.mp4"));
    replaced.input_hash = Some("h2".into());
    store
        .attach_asset_object(owner, &d.id, &asset, "https://cdn/clip2.mp4", &replaced)
        .await
        .unwrap();
    let objects = store.asset_objects(owner, &d.id).await.unwrap();
    assert_eq!(objects.len(), 1, "a regenerated asset replaces its record");
    assert_eq!(objects.get(&asset), Some(&replaced));
    assert_not_found(
        store
            .attach_asset_object(
                owner,
                &d.id,
                &AssetId::parse("missing").unwrap(),
                "u",
                &object("k"),
            )
            .await,
        Entity::Asset,
    );
}

/// Deleting a drama, removing an asset or replacing its object records the old keys as
/// orphans; each is claimed once; keys still referenced are never claimed.
pub async fn dropped_objects_become_orphans_claimed_once(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let d = drama("orphans", 1, 1, 3);
    store.create(owner, &d).await.unwrap();
    let k = |rest: &str| okey(owner, &format!("orphans/{rest}"));
    let assets: Vec<AssetId> = d.episodes[0]
        .scenes
        .iter()
        .map(|s| s.assets[0].id.clone())
        .collect();
    for (i, a) in assets.iter().enumerate() {
        store
            .attach_asset_object(
                owner,
                &d.id,
                a,
                "https://cdn/x",
                &object(&k(&i.to_string())),
            )
            .await
            .unwrap();
    }
    let claim = |limit: u32, age: std::time::Duration| {
        let store = store.clone();
        async move {
            let mut orphans = store.claim_orphans(limit, age).await.unwrap();
            orphans.sort();
            for o in &orphans {
                assert_eq!((o.owner, o.drama.as_str()), (owner, "orphans"), "{o:?}");
            }
            orphans
                .into_iter()
                .map(|o| o.storage_key)
                .collect::<Vec<_>>()
        }
    };
    let now = std::time::Duration::ZERO;
    assert!(claim(10, now).await.is_empty());

    // Regenerating asset 0 under a new key orphans the old one.
    store
        .attach_asset_object(owner, &d.id, &assets[0], "https://cdn/y", &object(&k("0b")))
        .await
        .unwrap();
    // Removing scene 1 orphans its object.
    let mut smaller = store.get_complete(owner, &d.id).await.unwrap().drama;
    smaller.episodes[0].scenes.remove(1);
    store.save_complete(owner, &smaller, None).await.unwrap();
    assert_eq!(claim(10, now).await, [k("0"), k("1")]);
    assert!(claim(10, now).await.is_empty(), "claimed once");

    // A manually recorded key that is still referenced is not claimable.
    store
        .record_orphans(owner, &d.id, &[k("2"), k("9")], "test")
        .await
        .unwrap();
    assert_eq!(claim(10, now).await, [k("9")]);

    // Deleting the drama orphans everything it still referenced.
    let mut keys = store.delete(owner, &d.id).await.unwrap();
    keys.sort();
    assert_eq!(keys, [k("0b"), k("2")]);
    let mut claimed = claim(1, now).await;
    claimed.extend(claim(5, now).await);
    claimed.sort();
    assert_eq!(claimed, [k("0b"), k("2")]);
    assert!(matches!(
        store.claim_orphans(0, now).await,
        Err(RepoError::Invalid(_))
    ));
    // Young orphans wait: a writer records a key just before it writes the object.
    store
        .record_orphans(owner, &d.id, &[k("young")], "test")
        .await
        .unwrap();
    let hour = std::time::Duration::from_secs(3600);
    assert!(claim(10, hour).await.is_empty());
    assert_eq!(claim(10, now).await, [k("young")]);
}

/// Keys recorded for an owner that lie outside that owner's prefix, and asset-library keys,
/// are never claimed; a store refuses to attach another owner's key to an asset.
pub async fn orphans_are_claimed_only_for_their_owner(store: Arc<dyn Store>) {
    let alice = user(&*store).await;
    let bob = user(&*store).await;
    let d = drama("mine", 1, 1, 1);
    store.create(alice, &d).await.unwrap();
    let asset = d.episodes[0].scenes[0].assets[0].id.clone();
    let bobs = okey(bob, "his/clips/a.mp4");
    let refused = store
        .attach_asset_object(alice, &d.id, &asset, "https://cdn/x", &object(&bobs))
        .await;
    assert!(matches!(refused, Err(RepoError::Invalid(_))), "{refused:?}");
    for key in [
        bobs.clone(),
        okey(alice, "~project/uploads/a.png"),
        "dramas/other/cover.png".to_owned(),
        "k/1".to_owned(),
    ] {
        store
            .record_orphans(alice, &d.id, &[key], "test")
            .await
            .unwrap();
    }
    let mine = okey(alice, "mine/clips/a.mp4");
    let legacy = "old/dramas/mine/cover.png".to_owned();
    store
        .record_orphans(alice, &d.id, &[mine.clone(), legacy.clone()], "test")
        .await
        .unwrap();
    let mut claimed: Vec<String> = store
        .claim_orphans(100, std::time::Duration::ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.storage_key)
        .collect();
    claimed.sort();
    let mut expected = vec![mine, legacy];
    expected.sort();
    assert_eq!(claimed, expected);
}

/// Creation, every committed change and deletion are announced once each, in order, with the
/// version they produced; a refused write announces nothing.
pub async fn changes_are_announced_to_followers(store: Arc<dyn Store>) {
    let alice = user(&*store).await;
    let mut changes = store.drama_changes().await.unwrap();
    let d = small_drama("followed");
    store.create(alice, &d).await.unwrap();
    let mut edited = d.clone();
    edited.title = "Edited".into();
    store.save_complete(alice, &edited, None).await.unwrap();
    assert!(
        store.save_complete(alice, &edited, Some(1)).await.is_err(),
        "a stale write is refused"
    );
    store
        .patch_drama(
            alice,
            &d.id,
            &DramaPatch::from_json(br#"{"title": "Patched"}"#).unwrap(),
            None,
        )
        .await
        .unwrap();
    store.delete(alice, &d.id).await.unwrap();
    // A later drama's notice fences the stream: whatever was announced about the first one
    // arrived before it.
    let fence = small_drama("fence");
    store.create(alice, &fence).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let change = tokio::time::timeout(std::time::Duration::from_secs(10), changes.next())
            .await
            .expect("a notice within 10 s")
            .expect("the feed stays open");
        if change.drama_id == fence.id {
            break;
        }
        if change.drama_id == d.id {
            seen.push(change);
        }
    }
    let notice = |version, deleted| DramaChange {
        drama_id: d.id.clone(),
        owner: alice,
        version,
        deleted,
    };
    assert_eq!(
        seen,
        [
            notice(1, false),
            notice(2, false),
            notice(3, false),
            notice(3, true)
        ]
    );
}
