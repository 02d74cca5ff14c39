//! Scenarios of users: creation, credits, API keys, and isolation between owners.

use std::sync::Arc;

use chrono::{Duration, Utc};
use drama_dal::api_key::{self, KeyRejected};
use drama_dal::{Entity, KeyCaps, KeyCreation, NewUser, PageRequest, RepoError, Store};
use drama_domain::{
    AssetOwner, AssetPatch, CharacterPatch, DramaPatch, EntityPatch, EpisodePatch, ScenePatch,
    UserId,
};

use super::{assert_not_found, object, user};
use crate::builders::small_drama;

/// User B can never read, list, change or delete user A's drama.
pub async fn owners_are_isolated(store: Arc<dyn Store>) {
    let alice = user(&*store).await;
    let bob = user(&*store).await;
    let d = small_drama("alices");
    store.create(alice, &d).await.unwrap();
    let asset = d.episodes[0].scenes[0].assets[0].id.clone();

    assert_not_found(store.get_complete(bob, &d.id).await, Entity::Drama);
    assert_not_found(store.save_complete(bob, &d, None).await, Entity::Drama);
    // Every kind of patch, so none of them reaches the drama by another path.
    let patches = [
        EntityPatch::Drama(DramaPatch::default()),
        EntityPatch::Character {
            id: d.characters[0].id.clone(),
            changes: CharacterPatch::default(),
        },
        EntityPatch::Episode {
            id: d.episodes[0].id.clone(),
            changes: EpisodePatch::default(),
        },
        EntityPatch::Scene {
            episode: d.episodes[0].id.clone(),
            id: d.episodes[0].scenes[0].id.clone(),
            changes: ScenePatch::default(),
        },
        EntityPatch::Asset {
            owner: AssetOwner::Drama,
            id: asset.clone(),
            changes: AssetPatch::default(),
        },
    ];
    for patch in &patches {
        assert_not_found(store.patch(bob, &d.id, patch, None).await, Entity::Drama);
    }
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

    // A display name is bounded in characters, as the database bounds it; over the bound it
    // is refused naming the field, and nothing is written.
    let mut long = NewUser::new(UserId::random());
    long.display_name = Some("é".repeat(drama_domain::MAX_DISPLAY_NAME + 1));
    match store.create_user(&long).await {
        Err(RepoError::Invalid(e)) => {
            assert_eq!(e.errors[0].field, "display_name", "{e}");
        }
        other => panic!("a display name over the bound: {other:?}"),
    }
    assert_not_found(store.get_user(long.id).await, Entity::User);
    long.display_name = Some("é".repeat(drama_domain::MAX_DISPLAY_NAME));
    let kept = store.create_user(&long).await.unwrap();
    assert_eq!(kept.display_name, long.display_name);
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

/// 20 concurrent capped creations against a limit of 5: exactly 5 keys; revoked and expired
/// keys do not count, other owners' keys neither.
pub async fn capped_key_creation_holds_under_concurrency(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let other = user(&*store).await;
    store
        .create_api_key(other, "theirs", &[], None)
        .await
        .unwrap();
    let now = Utc::now();
    let lapsed = store
        .create_api_key(owner, "lapsed", &[], Some(now - Duration::minutes(1)))
        .await
        .unwrap();
    assert!(!lapsed.meta.is_usable_at(now));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .create_api_key_capped(
                        owner,
                        &format!("k{i}"),
                        None,
                        None,
                        KeyCaps {
                            usable: 5,
                            per_day: 1000,
                        },
                    )
                    .await
            })
        })
        .collect();
    let (mut created, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap().unwrap() {
            KeyCreation::Created(k) => {
                assert_eq!(k.meta.owner, owner);
                created += 1;
            }
            KeyCreation::AtLimit { active } => {
                assert_eq!(active, 5);
                refused += 1;
            }
            other => panic!("no maker was named, no daily limit reached: {other:?}"),
        }
    }
    assert_eq!((created, refused), (5, 15));
    let usable = |keys: Vec<drama_domain::ApiKeyMeta>| {
        keys.iter().filter(|k| k.is_usable_at(Utc::now())).count()
    };
    assert_eq!(usable(store.list_api_keys(owner).await.unwrap()), 5);
    // Revoking one makes room for exactly one more.
    let some = store.list_api_keys(owner).await.unwrap()[0].id;
    store.revoke_api_key(owner, some).await.unwrap();
    assert!(matches!(
        store
            .create_api_key_capped(
                owner,
                "again",
                None,
                None,
                KeyCaps {
                    usable: 5,
                    per_day: 1000
                }
            )
            .await,
        Ok(KeyCreation::Created(_))
    ));
    assert!(matches!(
        store
            .create_api_key_capped(
                owner,
                "more",
                None,
                None,
                KeyCaps {
                    usable: 5,
                    per_day: 1000
                }
            )
            .await,
        Ok(KeyCreation::AtLimit { active: 5 })
    ));
    assert_not_found(
        store
            .create_api_key_capped(
                UserId::random(),
                "x",
                None,
                None,
                KeyCaps {
                    usable: 5,
                    per_day: 1000,
                },
            )
            .await,
        Entity::User,
    );
    assert!(matches!(
        store
            .create_api_key_capped(
                owner,
                " ",
                None,
                None,
                KeyCaps {
                    usable: 50,
                    per_day: 1000
                }
            )
            .await,
        Err(RepoError::Invalid(_))
    ));
}

/// A key made with a key is revoked with it, down the line, and only that line: the maker's
/// own maker, its siblings and another owner's keys stay. Once the maker is revoked (or
/// expired) nothing more is made with it.
pub async fn a_revocation_reaches_the_keys_made_with_the_key(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    let other = user(&*store).await;
    let make = |maker: Option<drama_domain::ApiKeyId>, name: &'static str| {
        let store = store.clone();
        async move {
            match store
                .create_api_key_capped(
                    owner,
                    name,
                    None,
                    maker,
                    KeyCaps {
                        usable: 50,
                        per_day: 1000,
                    },
                )
                .await
                .unwrap()
            {
                KeyCreation::Created(k) => k.meta.id,
                other => panic!("{name}: {other:?}"),
            }
        }
    };
    let root = make(None, "session's").await;
    let taken = make(Some(root), "taken").await;
    let sibling = make(Some(root), "sibling").await;
    let child = make(Some(taken), "child").await;
    let grandchild = make(Some(child), "grandchild").await;
    let theirs = store
        .create_api_key(other, "theirs", &[], None)
        .await
        .unwrap()
        .meta
        .id;
    let listed = store.list_api_keys(owner).await.unwrap();
    let made_by = |id| listed.iter().find(|k| k.id == id).unwrap().made_by;
    assert_eq!(
        (made_by(root), made_by(taken), made_by(grandchild)),
        (None, Some(root), Some(child))
    );

    assert_not_found(store.revoke_api_key(other, taken).await, Entity::ApiKey);
    let revoked = store.revoke_api_key(owner, taken).await.unwrap();
    assert_eq!(revoked.id, taken);
    let now = Utc::now();
    let usable: Vec<_> = store
        .list_api_keys(owner)
        .await
        .unwrap()
        .into_iter()
        .filter(|k| k.is_usable_at(now))
        .map(|k| k.id)
        .collect();
    assert!(
        usable.contains(&root) && usable.contains(&sibling),
        "{usable:?}"
    );
    for gone in [taken, child, grandchild] {
        assert!(!usable.contains(&gone), "{gone} outlived its maker");
    }
    assert!(
        store.list_api_keys(other).await.unwrap()[0].is_usable_at(now),
        "{theirs}"
    );

    assert!(matches!(
        store
            .create_api_key_capped(
                owner,
                "late",
                None,
                Some(taken),
                KeyCaps {
                    usable: 50,
                    per_day: 1000
                }
            )
            .await,
        Ok(KeyCreation::MakerUnusable)
    ));
    let lapsed = store
        .create_api_key(owner, "lapsed", &[], Some(now - Duration::minutes(1)))
        .await
        .unwrap()
        .meta
        .id;
    assert!(matches!(
        store
            .create_api_key_capped(
                owner,
                "late",
                None,
                Some(lapsed),
                KeyCaps {
                    usable: 50,
                    per_day: 1000
                }
            )
            .await,
        Ok(KeyCreation::MakerUnusable)
    ));
    // Another owner's key is no maker of this owner's keys.
    assert!(matches!(
        store
            .create_api_key_capped(
                owner,
                "late",
                None,
                Some(theirs),
                KeyCaps {
                    usable: 50,
                    per_day: 1000
                }
            )
            .await,
        Ok(KeyCreation::MakerUnusable)
    ));
}
