//! Scenarios of whole trees: create, read, replace, patch and delete a drama with every part,
//! and the text and ids it carries.

use std::collections::HashSet;
use std::sync::Arc;

use drama_dal::{Entity, PageRequest, RepoError, Store};
use drama_domain::{
    AssetOwner, AssetPatch, CharacterId, CharacterPatch, Drama, DramaPatch, EntityPatch, EpisodeId,
    EpisodePatch, ScenePatch, UserId,
};
use serde_json::json;

use super::{assert_not_found, did, object, okey, user};
use crate::builders::{drama, drama_json, fixture_drama, small_drama};

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
        .patch(
            owner,
            id,
            &EntityPatch::Drama(
                DramaPatch::from_json(br#"{"title":"T3","metadata":null}"#).unwrap(),
            ),
            Some(2),
        )
        .await
        .unwrap();
    assert_eq!((d.drama.title.as_str(), d.version), ("T3", 3));
    assert_eq!(d.drama.metadata, None);
    assert_eq!(d.drama.description, changed.description);

    let c = CharacterId::parse("char-ava").unwrap();
    let d = store
        .patch(
            owner,
            id,
            &EntityPatch::Character {
                id: c.clone(),
                changes: CharacterPatch::from_json(br#"{"name":"Ava B.","metadata":{"x":1}}"#)
                    .unwrap(),
            },
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
        .patch(
            owner,
            id,
            &EntityPatch::Episode {
                id: e.clone(),
                changes: EpisodePatch::from_json(br#"{"premise":"more rockets"}"#).unwrap(),
            },
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
        .patch(
            owner,
            id,
            &EntityPatch::Scene {
                episode: e.clone(),
                id: first_scene.id.clone(),
                changes: ScenePatch::from_json(
                    br#"{"image_url":"https://cdn/s.png","video_url":null}"#,
                )
                .unwrap(),
            },
            None,
        )
        .await
        .unwrap();
    let (_, scene) = d.drama.scene(first_scene.id.as_str()).unwrap();
    assert_eq!(scene.image_url.as_deref(), Some("https://cdn/s.png"));
    assert_eq!(scene.description, first_scene.description);

    let asset = first_scene.assets[1].id.clone();
    let d = store
        .patch(
            owner,
            id,
            &EntityPatch::Asset {
                owner: AssetOwner::Scene {
                    episode: d.drama.episodes[1].id.clone(),
                    scene: first_scene.id.clone(),
                },
                id: asset.clone(),
                changes: AssetPatch::from_json(
                    br#"{"prompt":"slow pan","url":"https://cdn/v.mp4"}"#,
                )
                .unwrap(),
            },
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
