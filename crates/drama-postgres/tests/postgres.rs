//! drama-postgres against a real PostgreSQL: the shared conformance suite, round-trip bounds
//! and schema health. Each test gets a fresh, migrated database (`#[sqlx::test]`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod jobs_support;

use std::sync::Arc;

use drama_dal::{DramaRepository, NewUser, PageRequest, UserRepository};
use drama_domain::UserId;
use drama_postgres::{MIGRATOR, PgSettings, PgStore};
use drama_testkit::StatementCounter;
use drama_testkit::builders::{drama, fixture_drama};
use sqlx::PgPool;

macro_rules! pg_case {
    ($name:ident) => {
        #[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
        async fn $name(pool: PgPool) {
            drama_testkit::conformance::$name(Arc::new(PgStore::new(pool))).await;
        }
    };
}

drama_testkit::for_each_scenario!(pg_case);

/// A one-connection store whose statements are counted, on the same test database as `pool`.
async fn counted(pool: &PgPool) -> (PgStore, StatementCounter) {
    counted_with_cache(pool, drama_postgres::DEFAULT_CACHE_BYTES).await
}

async fn counted_without_cache(pool: &PgPool) -> (PgStore, StatementCounter) {
    counted_with_cache(pool, 0).await
}

async fn counted_with_cache(pool: &PgPool, cache_bytes: u64) -> (PgStore, StatementCounter) {
    let (counted_pool, counter) = jobs_support::counted_pool(pool).await;
    (PgStore::with_cache(counted_pool, cache_bytes), counter)
}

async fn owner(store: &PgStore) -> UserId {
    let id = UserId::random();
    store.create_user(&NewUser::new(id)).await.unwrap();
    id
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn get_complete_is_at_most_two_statements_whatever_the_size(pool: PgPool) {
    let (store, counter) = counted(&pool).await;
    let owner = owner(&store).await;
    for (id, chars, eps, scenes) in [("tiny", 1, 1, 1), ("huge", 8, 10, 12)] {
        let expected = drama(id, chars, eps, scenes);
        store.create(owner, &expected).await.unwrap();
        // First read: the version check, then the tree aggregated to JSON.
        counter.reset();
        let read = store.get_complete(owner, &expected.id).await.unwrap();
        assert_eq!(read.drama, expected);
        assert_eq!(
            counter.statements(),
            2,
            "{id}: {:#?}",
            counter.statement_sql()
        );
        // Unchanged since: the version check alone.
        counter.reset();
        let again = store.get_complete(owner, &expected.id).await.unwrap();
        assert_eq!(again, read);
        assert_eq!(
            counter.statements(),
            1,
            "{id}: {:#?}",
            counter.statement_sql()
        );
    }
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn the_drama_cache_never_serves_a_stale_or_foreign_state(pool: PgPool) {
    let owner_id = UserId::random();
    let a = PgStore::new(pool.clone());
    let b = PgStore::new(pool.clone());
    a.create_user(&NewUser::new(owner_id)).await.unwrap();
    let first = drama("cached", 2, 1, 2);
    a.create(owner_id, &first).await.unwrap();
    assert_eq!(
        a.get_complete(owner_id, &first.id).await.unwrap().drama,
        first
    );
    // Another process changes it: the next read here sees the change.
    let mut second = first.clone();
    second.title = "Changed elsewhere".into();
    b.save_complete(owner_id, &second, None).await.unwrap();
    assert_eq!(
        a.get_complete(owner_id, &first.id).await.unwrap().drama,
        second
    );
    // Deleted and re-created elsewhere (version 1 again): still no stale hit.
    b.delete(owner_id, &first.id).await.unwrap();
    let reborn = drama("cached", 1, 1, 1);
    b.create(owner_id, &reborn).await.unwrap();
    b.patch(
        owner_id,
        &reborn.id,
        &drama_domain::EntityPatch::Drama(drama_domain::DramaPatch::default()),
        None,
    )
    .await
    .unwrap();
    let read = a.get_complete(owner_id, &first.id).await.unwrap();
    assert_eq!(read.drama, reborn);
    // Another owner never reads it through the cache.
    let stranger = UserId::random();
    a.create_user(&NewUser::new(stranger)).await.unwrap();
    assert!(a.get_complete(stranger, &first.id).await.is_err());
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn save_complete_statement_count_does_not_grow_with_children(pool: PgPool) {
    let (store, counter) = counted(&pool).await;
    let owner = owner(&store).await;
    let mut counts = Vec::new();
    for (id, chars, eps, scenes) in [("small", 1, 1, 1), ("large", 6, 8, 15)] {
        let mut d = drama(id, chars, eps, scenes);
        store.create(owner, &d).await.unwrap();
        // Warm the connection's statement cache so only the save itself is counted.
        store.save_complete(owner, &d, None).await.unwrap();
        d.title = format!("{id} v2");
        d.episodes.pop();
        d.characters[0].name = "Renamed".into();
        counter.reset();
        store.save_complete(owner, &d, None).await.unwrap();
        counts.push((counter.statements(), counter.transaction_control()));
        assert_eq!(store.get_complete(owner, &d.id).await.unwrap().drama, d);
    }
    assert_eq!(counts[0], counts[1], "statements must not depend on size");
    assert_eq!(counts[0], (6, 2), "one transaction of six statements");
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_page_of_complete_dramas_is_at_most_two_statements(pool: PgPool) {
    let (store, counter) = counted(&pool).await;
    let owner = owner(&store).await;
    for i in 0..20 {
        store
            .create(owner, &drama(&format!("d{i:02}"), 3, 2, 4))
            .await
            .unwrap();
    }
    let first = store
        .list_complete(owner, &PageRequest::first(12))
        .await
        .unwrap();
    counter.reset();
    let second = store
        .list_complete(owner, &PageRequest::after(12, first.next.clone().unwrap()))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 8);
    // Not cached yet: the page's versions, then every drama of it in one aggregation.
    assert_eq!(counter.statements(), 2, "{:#?}", counter.statement_sql());
    counter.reset();
    let all = store
        .list_complete(owner, &PageRequest::first(20))
        .await
        .unwrap();
    assert_eq!(
        counter.statements(),
        1,
        "all cached: only the versions are read"
    );
    let ids: Vec<&str> = all.items.iter().map(|d| d.drama.id.as_str()).collect();
    let expected: Vec<&str> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|d| d.drama.id.as_str())
        .collect();
    assert_eq!(ids, expected, "same order as the two pages");

    // An edit from elsewhere (another process) is seen on the next read: one drama refetched.
    let edited = &all.items[3].drama;
    let mut changed = edited.clone();
    changed.title = "Edited elsewhere".into();
    PgStore::with_cache(pool.clone(), 0)
        .save_complete(owner, &changed, None)
        .await
        .unwrap();
    counter.reset();
    let again = store
        .list_complete(owner, &PageRequest::first(20))
        .await
        .unwrap();
    assert_eq!(counter.statements(), 2);
    assert_eq!(
        again.items[0].drama.title, "Edited elsewhere",
        "newest first"
    );
    assert_eq!(again.items.len(), 20);

    // Without a cache, a page is one statement.
    let (uncached, uncached_counter) = counted_without_cache(&pool).await;
    uncached_counter.reset();
    let plain = uncached
        .list_complete(owner, &PageRequest::first(20))
        .await
        .unwrap();
    assert_eq!(uncached_counter.statements(), 1);
    assert_eq!(
        plain.items.iter().map(|d| &d.drama).collect::<Vec<_>>(),
        again.items.iter().map(|d| &d.drama).collect::<Vec<_>>()
    );
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn the_legacy_fixture_survives_a_round_trip(pool: PgPool) {
    let store = PgStore::new(pool);
    let owner = owner(&store).await;
    let d = fixture_drama();
    store.create(owner, &d).await.unwrap();
    let read = store.get_complete(owner, &d.id).await.unwrap();
    assert_eq!(read.drama, d);
    assert_eq!(
        serde_json::to_value(&read.drama).unwrap(),
        serde_json::to_value(&d).unwrap()
    );
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_migrated_database_reports_healthy_and_rls_everywhere(pool: PgPool) {
    let report = drama_postgres::schema_report(&pool).await.unwrap();
    assert!(report.is_healthy(), "{report:#?}");
    assert_eq!(report.applied.len(), MIGRATOR.iter().count());
    assert!(report.server_version.starts_with(char::is_numeric));
    // Running the migrator again is a no-op.
    drama_postgres::migrate(&pool).await.unwrap();
    let roles: i64 = sqlx::query_scalar(
        "select count(*) from pg_roles where rolname in ('anon', 'authenticated', 'service_role')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(roles, 3);
    let published: bool = sqlx::query_scalar(
        "select exists (select 1 from pg_publication_tables \
         where pubname = 'supabase_realtime' and tablename = 'dramas')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(published);
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn owner_policies_hide_other_users_rows_from_authenticated_clients(pool: PgPool) {
    let store = PgStore::new(pool.clone());
    let alice = owner(&store).await;
    let bob = owner(&store).await;
    store
        .create(alice, &drama("alices", 2, 1, 2))
        .await
        .unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local role authenticated")
        .execute(&mut *tx)
        .await
        .unwrap();
    let visible = |who: UserId| format!("set local request.jwt.claim.sub = '{who}'");
    sqlx::query(sqlx::AssertSqlSafe(visible(bob)))
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen_by_bob: i64 = sqlx::query_scalar(
        "select (select count(*) from dramas) + (select count(*) from scenes) \
         + (select count(*) from assets)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!(seen_by_bob, 0);
    sqlx::query(sqlx::AssertSqlSafe(visible(alice)))
        .execute(&mut *tx)
        .await
        .unwrap();
    let seen_by_alice: i64 = sqlx::query_scalar("select count(*) from scenes")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen_by_alice, 2);
    // Balances are not the client's to change.
    let denied = sqlx::query("update users set tokens = 1000000")
        .execute(&mut *tx)
        .await;
    assert!(denied.is_err());
}

#[tokio::test]
async fn an_unreachable_server_is_reported_not_hung_on() {
    let mut settings = PgSettings::from_url("postgres://postgres@127.0.0.1:1/postgres");
    settings.acquire_timeout = std::time::Duration::from_secs(5);
    let err = settings.connect().await.unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}
