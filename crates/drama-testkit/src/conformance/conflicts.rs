//! Scenarios of refused writes: stale versions, concurrent writers of one version, and nested
//! entities addressed through the wrong parent.

use std::sync::Arc;

use drama_dal::{Entity, RepoError, Store};
use drama_domain::{
    AssetOwner, AssetPatch, CharacterId, CharacterPatch, DramaPatch, EntityPatch, EpisodeId,
    EpisodePatch, SceneId, ScenePatch,
};

use super::{assert_not_found, did, user};
use crate::builders::{drama, small_drama};

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
        .patch(
            owner,
            &d.id,
            &EntityPatch::Drama(DramaPatch::from_json(br#"{"title":"v2"}"#).unwrap()),
            Some(1),
        )
        .await
        .unwrap();
    let before = store.get_complete(owner, &d.id).await.unwrap();
    let patch = DramaPatch::from_json(br#"{"title":"lost"}"#).unwrap();
    let r = store
        .patch(owner, &d.id, &EntityPatch::Drama(patch), Some(1))
        .await;
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
        .patch(
            owner,
            &d.id,
            &EntityPatch::Character {
                id: d.characters[0].id.clone(),
                changes: CharacterPatch::from_json(br#"{"name":"x"}"#).unwrap(),
            },
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
    let asset_of_e1 = d.episodes[1].scenes[0].assets[0].id.clone();
    let asset_patch = AssetPatch::from_json(br#"{"prompt":"p"}"#).unwrap();
    // Each patch names a child under a parent that does not hold it (or that does not
    // exist), and must answer the first missing link; nothing is written.
    let misplaced = [
        (
            d.id.clone(),
            EntityPatch::Scene {
                episode: e0.clone(),
                id: s_of_e1.clone(),
                changes: patch.clone(),
            },
            Entity::Scene,
        ),
        (
            d.id.clone(),
            EntityPatch::Scene {
                episode: EpisodeId::parse("nope").unwrap(),
                id: s_of_e1.clone(),
                changes: patch.clone(),
            },
            Entity::Episode,
        ),
        (
            d.id.clone(),
            EntityPatch::Character {
                id: CharacterId::parse("nope").unwrap(),
                changes: CharacterPatch::default(),
            },
            Entity::Character,
        ),
        (
            d.id.clone(),
            EntityPatch::Asset {
                owner: AssetOwner::Scene {
                    episode: e0.clone(),
                    scene: d.episodes[0].scenes[0].id.clone(),
                },
                id: asset_of_e1.clone(),
                changes: asset_patch.clone(),
            },
            Entity::Asset,
        ),
        // The asset's own scene, addressed through another episode: the scene is not found
        // there (as a scene PATCH through the wrong episode is not).
        (
            d.id.clone(),
            EntityPatch::Asset {
                owner: AssetOwner::Scene {
                    episode: e0.clone(),
                    scene: s_of_e1.clone(),
                },
                id: asset_of_e1.clone(),
                changes: asset_patch.clone(),
            },
            Entity::Scene,
        ),
        (
            d.id.clone(),
            EntityPatch::Asset {
                owner: AssetOwner::Scene {
                    episode: EpisodeId::parse("nope").unwrap(),
                    scene: s_of_e1.clone(),
                },
                id: asset_of_e1.clone(),
                changes: asset_patch.clone(),
            },
            Entity::Episode,
        ),
        (
            d.id.clone(),
            EntityPatch::Asset {
                owner: AssetOwner::Scene {
                    episode: e1.clone(),
                    scene: SceneId::parse("nope").unwrap(),
                },
                id: asset_of_e1.clone(),
                changes: asset_patch.clone(),
            },
            Entity::Scene,
        ),
        (
            did("nope"),
            EntityPatch::Episode {
                id: e1.clone(),
                changes: EpisodePatch::default(),
            },
            Entity::Drama,
        ),
    ];
    for (drama, patch, entity) in &misplaced {
        assert_not_found(store.patch(owner, drama, patch, None).await, *entity);
    }
    // Nothing above changed the drama.
    assert_eq!(store.get_complete(owner, &d.id).await.unwrap().version, 1);
}
