//! Bounds of a user's API keys: what a key may revoke, how many keys a day may make, which
//! keys a listing holds and when a lapsed key is deleted.

use std::sync::Arc;

use chrono::{Duration, Utc};
use drama_dal::{Entity, KeyCaps, KeyCreation, Store};
use drama_domain::ApiKeyId;

use super::{assert_not_found, user};

const CAPS: KeyCaps = KeyCaps {
    usable: 50,
    per_day: 1000,
};

async fn make(store: &dyn Store, owner: drama_domain::UserId, maker: Option<ApiKeyId>) -> ApiKeyId {
    match store
        .create_api_key_capped(owner, "k", None, maker, CAPS)
        .await
        .unwrap()
    {
        KeyCreation::Created(k) => k.meta.id,
        other => panic!("{other:?}"),
    }
}

async fn usable(store: &dyn Store, owner: drama_domain::UserId, id: ApiKeyId) -> bool {
    store
        .list_api_keys(owner)
        .await
        .unwrap()
        .iter()
        .any(|k| k.id == id && k.is_usable_at(Utc::now()))
}

/// A revocation asked in a key's name reaches only that key and the keys made with it, down
/// the line: not its maker, not a key its owner made elsewhere, not another owner's key.
pub async fn a_key_revokes_only_within_its_own_line(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let other = user(&*store).await;
    let a = make(&*store, owner, None).await;
    let b = make(&*store, owner, Some(a)).await;
    let grandchild = make(&*store, owner, Some(b)).await;
    let sibling = make(&*store, owner, Some(a)).await;
    let session_made = make(&*store, owner, None).await;
    let theirs = make(&*store, other, None).await;

    for outside in [session_made, a, sibling] {
        assert_not_found(
            store.revoke_api_key_in_line(owner, outside, b).await,
            Entity::ApiKey,
        );
        assert!(
            usable(&*store, owner, outside).await,
            "{outside} was revoked"
        );
    }
    assert_not_found(
        store.revoke_api_key_in_line(other, theirs, b).await,
        Entity::ApiKey,
    );
    assert_not_found(
        store.revoke_api_key_in_line(owner, theirs, theirs).await,
        Entity::ApiKey,
    );
    // Down the line, at any depth.
    let revoked = store
        .revoke_api_key_in_line(owner, grandchild, a)
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    // Itself; then its maker revokes it (again is harmless).
    let revoked = store.revoke_api_key_in_line(owner, b, b).await.unwrap();
    assert_eq!(revoked.id, b);
    assert!(!usable(&*store, owner, b).await);
    store.revoke_api_key_in_line(owner, b, a).await.unwrap();
    assert!(usable(&*store, owner, a).await && usable(&*store, owner, sibling).await);
}

/// Revoked keys free a place among the usable ones, not among the keys a day makes.
pub async fn key_creations_are_capped_per_day(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let caps = KeyCaps {
        usable: 50,
        per_day: 3,
    };
    for _ in 0..3 {
        match store
            .create_api_key_capped(owner, "k", None, None, caps)
            .await
            .unwrap()
        {
            KeyCreation::Created(k) => {
                store.revoke_api_key(owner, k.meta.id).await.unwrap();
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(
        store
            .create_api_key_capped(owner, "k", None, None, caps)
            .await
            .unwrap(),
        KeyCreation::DailyLimit { made: 3 }
    );
    // Another owner's day is its own.
    let other = user(&*store).await;
    assert!(matches!(
        store
            .create_api_key_capped(other, "k", None, None, caps)
            .await,
        Ok(KeyCreation::Created(_))
    ));
}

/// A listing holds the usable keys and those that stopped working since a time, newest first,
/// usable ones kept first when cut; keys that stopped working before a time are deleted, and
/// a usable key is never.
pub async fn lapsed_keys_are_listed_for_a_while_then_purged(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let now = Utc::now();
    let old = store
        .create_api_key(owner, "old", &[], Some(now - Duration::days(40)))
        .await
        .unwrap()
        .meta
        .id;
    let usable_key = make(&*store, owner, None).await;
    let later = store
        .create_api_key(owner, "later", &[], Some(now + Duration::days(10)))
        .await
        .unwrap()
        .meta
        .id;
    let revoked = make(&*store, owner, None).await;
    store.revoke_api_key(owner, revoked).await.unwrap();

    let since = Utc::now() - Duration::days(30);
    let ids = |keys: Vec<drama_domain::ApiKeyMeta>| keys.iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.list_recent_api_keys(owner, since, 100).await.unwrap()),
        [revoked, later, usable_key],
        "newest first, without the key that expired 40 days ago"
    );
    assert_eq!(
        ids(store.list_recent_api_keys(owner, since, 2).await.unwrap()),
        [later, usable_key],
        "cut, the usable ones stay"
    );

    assert!(ids(store.list_api_keys(owner).await.unwrap()).contains(&old));
    assert!(store.purge_lapsed_api_keys(since, 1000).await.unwrap() >= 1);
    assert_eq!(
        ids(store.list_api_keys(owner).await.unwrap()),
        [revoked, later, usable_key]
    );
    assert!(
        store
            .purge_lapsed_api_keys(Utc::now() + Duration::minutes(1), 1000)
            .await
            .unwrap()
            >= 1
    );
    assert_eq!(
        ids(store.list_api_keys(owner).await.unwrap()),
        [later, usable_key]
    );
}
