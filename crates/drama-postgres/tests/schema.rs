//! The schema's history and its predecessors on a real PostgreSQL: migrations applied by the
//! Supabase CLI count as applied, and the old server's tables are refused by `migrate` and
//! moved aside by `adopt_legacy_schema`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drama_postgres::{LEGACY_SCHEMA, MIGRATOR, PgError};
use drama_testkit::pg::{OLD_ROWS_SQL, OLD_SCHEMA_SQL, push_like_supabase_cli, run_script};
use sqlx::PgPool;

async fn sqlx_versions(pool: &PgPool) -> Vec<i64> {
    sqlx::query_scalar("select version from public._sqlx_migrations where success order by 1")
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn table_schema(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select table_schema::text from information_schema.tables where table_name = $1 \
         and table_schema in ('public', 'legacy') order by 1",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

fn all_versions() -> Vec<i64> {
    MIGRATOR.iter().map(|m| m.version).collect()
}

#[sqlx::test(migrations = false)]
async fn migrations_pushed_by_the_supabase_cli_count_as_applied(pool: PgPool) {
    push_like_supabase_cli(&pool, &MIGRATOR).await;

    let report = drama_postgres::schema_report(&pool).await.unwrap();
    assert!(report.pending.is_empty(), "{report:?}");
    assert_eq!(report.applied.len(), MIGRATOR.iter().count());
    assert_eq!(report.applied_by_supabase_cli, report.applied);
    assert!(report.legacy.is_none());
    assert!(report.is_healthy(), "{report:?}");

    // `migrate` records them for sqlx instead of running them again (which would fail on
    // tables that exist), and then has nothing to do.
    drama_postgres::migrate(&pool).await.unwrap();
    assert_eq!(sqlx_versions(&pool).await, all_versions());
    drama_postgres::migrate(&pool).await.unwrap();
    let report = drama_postgres::schema_report(&pool).await.unwrap();
    assert!(report.applied_by_supabase_cli.is_empty());
    assert!(report.is_healthy(), "{report:?}");
    let rls: bool = sqlx::query_scalar(
        "select relrowsecurity from pg_class where oid = 'public._sqlx_migrations'::regclass",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        rls,
        "sqlx's history must not be readable through the Data API"
    );
}

#[sqlx::test(migrations = false)]
async fn a_partial_supabase_push_is_completed_by_migrate(pool: PgPool) {
    let mut first_two = sqlx::migrate::Migrator::DEFAULT;
    first_two.migrations = MIGRATOR.migrations[..2].to_vec().into();
    push_like_supabase_cli(&pool, &first_two).await;

    let report = drama_postgres::schema_report(&pool).await.unwrap();
    assert_eq!(report.applied_by_supabase_cli.len(), 2);
    assert_eq!(report.pending.len(), MIGRATOR.iter().count() - 2);
    assert!(!report.is_healthy());

    drama_postgres::migrate(&pool).await.unwrap();
    assert_eq!(sqlx_versions(&pool).await, all_versions());
    assert!(
        drama_postgres::schema_report(&pool)
            .await
            .unwrap()
            .is_healthy()
    );
}

#[sqlx::test(migrations = false)]
async fn the_old_schema_is_refused_untouched_then_adopted(pool: PgPool) {
    run_script(&pool, OLD_SCHEMA_SQL).await;
    run_script(&pool, OLD_ROWS_SQL).await;

    let found = drama_postgres::legacy_schema(&pool).await.unwrap().unwrap();
    assert!(found.in_public());
    assert_eq!(found.rows("dramas"), 3);
    assert_eq!(found.rows("assets"), 6);
    assert_eq!(found.rows("jobs"), 2);
    assert_eq!(found.rows("users"), 0);
    let report = drama_postgres::schema_report(&pool).await.unwrap();
    assert!(!report.is_healthy());

    let refused = drama_postgres::migrate(&pool).await.unwrap_err();
    assert!(matches!(refused, PgError::LegacySchema(_)), "{refused}");
    assert!(
        refused.to_string().contains("public.dramas (3 rows)"),
        "{refused}"
    );
    assert_eq!(table_schema(&pool, "dramas").await, ["public"]);
    let history: bool = sqlx::query_scalar("select to_regclass('public._sqlx_migrations') is null")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(history, "a refused migrate writes nothing");

    let adopted = drama_postgres::adopt_legacy_schema(&pool)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(adopted.schema, LEGACY_SCHEMA);
    assert_eq!(adopted.tables.len(), found.tables.len());
    for table in &found.tables {
        assert_eq!(adopted.rows(&table.name), table.rows, "{}", table.name);
    }
    assert_eq!(table_schema(&pool, "dramas").await, ["legacy", "public"]);
    assert_eq!(table_schema(&pool, "jobs").await, ["legacy", "public"]);
    let report = drama_postgres::schema_report(&pool).await.unwrap();
    assert!(report.is_healthy(), "{report:?}");
    assert_eq!(report.legacy.unwrap().schema, LEGACY_SCHEMA);

    // The old trigger functions went along; the old triggers still fire.
    let moved: i64 = sqlx::query_scalar(
        "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
         where n.nspname = 'legacy' and p.proname in ('update_updated_at_column', \
         'increment_drama_version')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(moved, 2);
    let version: i32 = sqlx::query_scalar(
        "update legacy.dramas set title = 'Corgi' where id = 'corgi' returning version",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(version, 2);

    // Supabase's client roles cannot read the moved tables (their allow-all policies came along).
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("set role anon")
        .execute(&mut *conn)
        .await
        .unwrap();
    let denied = sqlx::query("select * from legacy.dramas")
        .fetch_all(&mut *conn)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    sqlx::query("reset role").execute(&mut *conn).await.unwrap();
    drop(conn);

    // Again: nothing to move, nothing to apply.
    let again = drama_postgres::adopt_legacy_schema(&pool)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.schema, LEGACY_SCHEMA);
    drama_postgres::migrate(&pool).await.unwrap();
}

#[sqlx::test(migrations = false)]
async fn two_adoptions_at_once_move_the_tables_once(pool: PgPool) {
    run_script(&pool, OLD_SCHEMA_SQL).await;
    run_script(&pool, OLD_ROWS_SQL).await;
    let (a, b) = tokio::join!(
        drama_postgres::adopt_legacy_schema(&pool),
        drama_postgres::adopt_legacy_schema(&pool)
    );
    assert_eq!(a.unwrap().unwrap().rows("dramas"), 3);
    assert_eq!(b.unwrap().unwrap().rows("dramas"), 3);
    assert_eq!(sqlx_versions(&pool).await, all_versions());
}

#[sqlx::test(migrations = false)]
async fn a_legacy_schema_of_someone_else_blocks_the_move_and_changes_nothing(pool: PgPool) {
    run_script(&pool, OLD_SCHEMA_SQL).await;
    run_script(
        &pool,
        "create schema legacy; create table legacy.dramas (note text);",
    )
    .await;
    let e = drama_postgres::adopt_legacy_schema(&pool)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("schema legacy already holds"), "{e}");
    assert_eq!(table_schema(&pool, "characters").await, ["public"]);
}

#[sqlx::test(migrations = false)]
async fn tables_of_our_names_without_our_history_are_named(pool: PgPool) {
    run_script(&pool, "create table public.users (id int primary key);").await;
    let e = drama_postgres::migrate(&pool).await.unwrap_err();
    assert!(
        matches!(&e, PgError::Collision(t) if t == &["users"]),
        "{e}"
    );
    assert!(e.to_string().contains("users"), "{e}");
}

/// A name stored over the bound before it existed (through the Data API, or by an earlier
/// import) is cut by the migration that adds the bound, so the row can still be updated: its
/// credits still move.
#[sqlx::test(migrations = false)]
async fn a_display_name_stored_over_the_bound_is_cut_and_its_row_still_updates(pool: PgPool) {
    let bound = 20261207000300;
    let mut before = sqlx::migrate::Migrator::DEFAULT;
    before.migrations = MIGRATOR
        .iter()
        .filter(|m| m.version < bound)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    let user = uuid::Uuid::new_v4();
    sqlx::query("insert into public.users (id, display_name) values ($1, repeat('é', 300))")
        .bind(user)
        .execute(&pool)
        .await
        .unwrap();

    drama_postgres::migrate(&pool).await.unwrap();
    let length: i32 =
        sqlx::query_scalar("select char_length(display_name) from public.users where id = $1")
            .bind(user)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(length, 200);
    let balance: Option<i64> = sqlx::query_scalar("select public.move_credits($1, 5, 'grant')")
        .bind(user)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(balance, Some(35), "30 to open with, 5 granted");
}

/// Ready tasks stored with a `run_after` ahead before `delayed` existed (waiting for a retry's
/// backoff) are flagged by the migration that adds it, so claims skip them from the start;
/// due ones and tasks in other states are not.
#[sqlx::test(migrations = false)]
async fn tasks_waiting_for_their_retry_when_delayed_is_added_are_flagged(pool: PgPool) {
    let added = 20261207000600;
    let mut before = sqlx::migrate::Migrator::DEFAULT;
    before.migrations = MIGRATOR
        .iter()
        .filter(|m| m.version < added)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    sqlx::query(
        "with run as (select gen_random_uuid() as id, gen_random_uuid() as owner), \
           root as (insert into public.jobs (id, run_id, node_type, key, kind, owner_id) \
             select id, id, 'run', '', 'r', owner from run) \
         insert into public.jobs (id, run_id, parent_id, ancestors, node_type, key, kind, \
           owner_id, state, run_after) \
         select gen_random_uuid(), run.id, run.id, array[run.id], 'task', t.key, 'k', run.owner, \
           t.state, now() + t.ahead \
         from run, (values ('backoff', 'ready', interval '1 hour'), \
                           ('due', 'ready', interval '-1 second'), \
                           ('waiting', 'waiting', interval '1 hour')) as t(key, state, ahead)",
    )
    .execute(&pool)
    .await
    .unwrap();

    drama_postgres::migrate(&pool).await.unwrap();
    let flagged: Vec<(String, bool)> = sqlx::query_as(
        "select key, delayed from public.jobs where node_type = 'task' order by key",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        flagged,
        vec![
            ("backoff".to_owned(), true),
            ("due".to_owned(), false),
            ("waiting".to_owned(), false)
        ]
    );
}

/// A Supabase project whose `supabase_realtime` publishes every table (`FOR ALL TABLES`,
/// created before the old server's tables): such a publication names no table, so the
/// adoption leaves it alone instead of failing on `drop table`, and says that the old tables
/// stay published behind the revoked grants.
#[sqlx::test(migrations = false)]
async fn the_old_schema_is_adopted_under_a_publication_of_all_tables(pool: PgPool) {
    run_script(
        &pool,
        "create publication supabase_realtime for all tables;",
    )
    .await;
    run_script(&pool, OLD_SCHEMA_SQL).await;
    run_script(&pool, OLD_ROWS_SQL).await;

    let adopted = drama_postgres::adopt_legacy_schema(&pool)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(adopted.schema, LEGACY_SCHEMA);
    assert_eq!(adopted.rows("dramas"), 3);
    assert!(adopted.published_to_all);
    let said = adopted.to_string();
    assert!(
        said.contains("legacy.dramas (3 rows)") && said.contains("FOR ALL TABLES"),
        "{said}"
    );
    assert_eq!(table_schema(&pool, "dramas").await, ["legacy", "public"]);
    assert_eq!(sqlx_versions(&pool).await, all_versions());
    let all: bool = sqlx::query_scalar(
        "select puballtables from pg_publication where pubname = 'supabase_realtime'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(all, "the publication is left as it was");
    // The old rows are still written through the old triggers, published or not.
    let version: i32 = sqlx::query_scalar(
        "update legacy.dramas set title = 'Corgi' where id = 'corgi' returning version",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(version, 2);
}

/// A publication that lists the old tables one by one loses them when they are moved.
#[sqlx::test(migrations = false)]
async fn old_tables_the_publication_lists_leave_it_when_moved(pool: PgPool) {
    run_script(&pool, OLD_SCHEMA_SQL).await;
    run_script(&pool, OLD_ROWS_SQL).await;
    run_script(
        &pool,
        "create publication supabase_realtime for table public.dramas, public.jobs;",
    )
    .await;
    let adopted = drama_postgres::adopt_legacy_schema(&pool)
        .await
        .unwrap()
        .unwrap();
    assert!(!adopted.published_to_all);
    assert!(!adopted.to_string().contains("published"), "{adopted}");
    let published: Vec<String> = sqlx::query_scalar(
        "select schemaname || '.' || tablename from pg_publication_tables \
         where pubname = 'supabase_realtime' order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(
        published.iter().all(|t| !t.starts_with("legacy.")),
        "{published:?}"
    );
    assert!(
        published.contains(&"public.dramas".to_owned()),
        "{published:?}"
    );
}

/// Under a publication FOR ALL TABLES, PostgreSQL refuses updates and deletes of a table
/// without a replica identity: every table of ours has one.
#[sqlx::test(migrations = false)]
async fn every_table_has_a_replica_identity(pool: PgPool) {
    drama_postgres::migrate(&pool).await.unwrap();
    let without: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = 'public' and c.relkind in ('r', 'p') and c.relreplident <> 'f' \
           and not exists (select 1 from pg_index i where i.indrelid = c.oid \
                           and (i.indisprimary or i.indisreplident)) \
         order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(without.is_empty(), "no replica identity: {without:?}");
}

/// Finished runs are pruned under a publication FOR ALL TABLES: their event batches can be
/// deleted.
#[sqlx::test(migrations = false)]
async fn runs_are_pruned_under_a_publication_of_all_tables(pool: PgPool) {
    use drama_jobs::{Graph, JobStore as _, NodeSpec, RunSpec};

    run_script(
        &pool,
        "create publication supabase_realtime for all tables;",
    )
    .await;
    drama_postgres::migrate(&pool).await.unwrap();
    let store = drama_postgres::jobs::PgJobStore::new(pool.clone());
    let graph = Graph::new(RunSpec::new("prune", uuid::Uuid::new_v4())).with(NodeSpec::task(
        "a",
        "k",
        serde_json::json!({}),
    ));
    let run = store.submit(&graph).await.unwrap();
    store.cancel(run.run_id, "done").await.unwrap();
    let batches = || sqlx::query_scalar::<_, i64>("select count(*) from public.job_event_batches");
    assert!(batches().fetch_one(&pool).await.unwrap() > 0);

    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let pruned = store.prune(later, 10).await.unwrap();
    assert_eq!(pruned.runs, 1);
    assert!(pruned.events > 0);
    assert_eq!(batches().fetch_one(&pool).await.unwrap(), 0);
}
