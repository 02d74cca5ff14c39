//! Scenarios of stored-object records: attaching them to assets, and the orphans a write leaves
//! for the collector to claim.

use std::sync::Arc;

use drama_dal::{Entity, RepoError, Store};
use drama_domain::AssetId;

use super::{assert_not_found, object, okey, user};
use crate::builders::{drama, fixture_drama};

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
