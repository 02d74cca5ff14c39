//! The limit on a user's active API keys holds when creations race: the count and the insert
//! are one step per owner (the owner's row is locked first). The test makes the race certain:
//! it holds the key table against inserts, so every creation that has counted waits there;
//! without the owner's lock all twenty would count zero and then all insert.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use drama_dal::{ApiKeyRepository as _, KeyCreation, NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_postgres::PgStore;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn racing_key_creations_cannot_pass_the_limit_together(pool: PgPool) {
    // One connection per racer, so they wait on locks, never on the pool.
    let racers = PgPoolOptions::new()
        .max_connections(24)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();
    let store = Arc::new(PgStore::new(racers));
    let owner = UserId::random();
    store.create_user(&NewUser::new(owner)).await.unwrap();

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
                    .create_api_key_capped(owner, &format!("k{i}"), None, None, 5)
                    .await
            })
        })
        .collect();
    // Every racer is blocked: on the table (it counted) or on the owner's row (it waits to).
    let mut waiting = 0;
    for _ in 0..2000 {
        waiting = sqlx::query_scalar::<_, i64>(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        if waiting >= 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(waiting, 20, "every racer waits on a lock");
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
