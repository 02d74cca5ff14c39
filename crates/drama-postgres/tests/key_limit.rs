//! The limit on a user's active API keys holds when creations race: the count and the insert
//! are one step per owner (the owner's row is locked first). The test makes the race certain:
//! it holds the key table against inserts, so every creation that has counted waits there;
//! without the owner's lock all twenty would count zero and then all insert. The same hold
//! puts a revocation beside a creation made with the revoked key.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use drama_dal::{ApiKeyRepository as _, KeyCaps, KeyCreation, NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_postgres::PgStore;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

/// A store on its own pool of `connections` (one per racer, so racers wait on locks, never on
/// the pool) and a user of it.
async fn racers(pool: &PgPool, connections: u32) -> (Arc<PgStore>, UserId) {
    let racers = PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let store = Arc::new(PgStore::new(racers));
    let owner = UserId::random();
    store.create_user(&NewUser::new(owner)).await.unwrap();
    (store, owner)
}

/// Waits until `n` statements of the test database wait on a lock.
async fn until_waiting(pool: &PgPool, n: i64) {
    let mut waiting = 0;
    for _ in 0..2000 {
        waiting = sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(waiting, n, "every racer waits on a lock");
}

/// A creation with a key has checked its maker and waits to insert when the maker is revoked:
/// the revocation waits for it (both take the owner's row first) and then revokes the new key
/// too. Were the revocation not to wait, it could commit first, and the key made after it
/// would work on; each round leaves the order to the server, so the test finds that.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_revocation_racing_a_creation_with_the_key_leaves_no_successor(pool: PgPool) {
    let (store, owner) = racers(&pool, 4).await;
    for round in 0..8 {
        let maker = store
            .create_api_key(owner, "maker", &[], None)
            .await
            .unwrap()
            .meta
            .id;
        let mut holder = pool.begin().await.unwrap();
        sqlx::query("lock table public.api_keys in share row exclusive mode")
            .execute(&mut *holder)
            .await
            .unwrap();
        let creating = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .create_api_key_capped(
                        owner,
                        "made",
                        None,
                        Some(maker),
                        KeyCaps {
                            usable: 1000,
                            per_day: 1000,
                        },
                    )
                    .await
            }
        });
        until_waiting(&pool, 1).await;
        let revoking = tokio::spawn({
            let store = store.clone();
            async move { store.revoke_api_key(owner, maker).await }
        });
        until_waiting(&pool, 2).await;
        holder.commit().await.unwrap();
        creating.await.unwrap().unwrap();
        revoking.await.unwrap().unwrap();
        let now = chrono::Utc::now();
        let alive: Vec<_> = store
            .list_api_keys(owner)
            .await
            .unwrap()
            .into_iter()
            .filter(|k| k.made_by == Some(maker) && k.is_usable_at(now))
            .collect();
        assert!(
            alive.is_empty(),
            "round {round}: {alive:?} outlived its maker"
        );
    }
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn racing_key_creations_cannot_pass_the_limit_together(pool: PgPool) {
    let (store, owner) = racers(&pool, 24).await;

    let mut holder = pool.begin().await.unwrap();
    sqlx::query("lock table public.api_keys in share row exclusive mode")
        .execute(&mut *holder)
        .await
        .unwrap();
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
    // Every racer is blocked: on the table (it counted) or on the owner's row (it waits to).
    until_waiting(&pool, 20).await;
    holder.commit().await.unwrap();

    let mut created = 0;
    for t in tasks {
        if let KeyCreation::Created(_) = t.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 5);
    assert_eq!(store.list_api_keys(owner).await.unwrap().len(), 5);
}
