//! After a failover, a pooled session connected to the demoted primary answers every write
//! with 25006 (read-only) until it is closed. The repositories' pool must not hand it out
//! again: the write that met it is a passing failure, the next one succeeds.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use drama_dal::{NewUser, RepoError, UserRepository};
use drama_domain::UserId;
use drama_postgres::{PgSettings, PgStore};
use sqlx::PgPool;

/// A pool of one connection made the way the server makes its pools.
fn server_pool(url: String) -> PgPool {
    let mut settings = PgSettings::from_url(url);
    settings.max_connections = 1;
    settings.pool().unwrap()
}

async fn backend(pool: &PgPool) -> i32 {
    sqlx::query_scalar("select pg_backend_pid()")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The pool's one session turns read-only, as a session on a primary demoted in a failover
/// does: the write that meets it answers `Unavailable` (503 on the wire), and the next write
/// through the same pool is served on a new connection.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_session_that_answered_read_only_is_not_handed_out_again(pool: PgPool) {
    let pool = server_pool(jobs_support::url_of(&pool).await);
    let store = PgStore::new(pool.clone());
    let before = backend(&pool).await;
    sqlx::query("set default_transaction_read_only = on")
        .execute(&pool)
        .await
        .unwrap();

    let refused = store
        .create_user(&NewUser::new(UserId::random()))
        .await
        .unwrap_err();
    assert!(matches!(refused, RepoError::Unavailable(_)), "{refused:?}");
    assert!(refused.is_retryable(), "{refused}");

    let user = UserId::random();
    store
        .create_user(&NewUser::new(user))
        .await
        .expect("the next write runs on a fresh connection");
    assert_eq!(store.get_user(user).await.unwrap().id, user);
    assert_ne!(
        backend(&pool).await,
        before,
        "the read-only session was closed"
    );
}

/// Ordinary failures (a duplicate, a missing row) keep the connection: the pool is renewed
/// only for a session that cannot write any more.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn ordinary_failures_keep_the_connection(pool: PgPool) {
    let pool = server_pool(jobs_support::url_of(&pool).await);
    let store = PgStore::new(pool.clone());
    let before = backend(&pool).await;
    let user = NewUser::new(UserId::random());
    store.create_user(&user).await.unwrap();
    let duplicate = store.create_user(&user).await.unwrap_err();
    assert!(
        matches!(duplicate, RepoError::AlreadyExists { .. }),
        "{duplicate:?}"
    );
    assert_eq!(backend(&pool).await, before);
}
