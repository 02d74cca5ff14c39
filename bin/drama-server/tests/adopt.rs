//! An existing Supabase database on cutover day, through the binary: one that still holds the
//! old server's tables (refused by `migrate`, which names the command that adopts it; then
//! adopted, dry run first), and one whose migrations the Supabase CLI applied (`serve`
//! accepts it as it is).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use drama_testkit::pg::{
    OLD_ROWS_SQL, OLD_SCHEMA_SQL, ScratchDb, push_like_supabase_cli, run_script,
};
use serde_json::Value;
use support::{Server, binary, free_port, output, text};

fn command(db: &ScratchDb, assets: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = binary(args);
    // Production with local-disk assets signs its media URLs with a key of its own.
    c.env("DATABASE_URL", db.url())
        .env("ENVIRONMENT", "production")
        .env("ASSETS_DIR", assets)
        .env(
            "ASSETS_SIGNING_SECRET",
            "adopt-test-signing-secret-0123456789",
        );
    c
}

async fn count(db: &ScratchDb, sql: &str) -> i64 {
    let pool = db.pool().await;
    let n = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    n
}

/// How many tables the schema `legacy` (where adoption moves the old tables) holds.
async fn legacy_tables(db: &ScratchDb) -> i64 {
    count(
        db,
        "select count(*) from information_schema.tables where table_schema = 'legacy'",
    )
    .await
}

/// `migrate --adopt-legacy --owner owner`, then the `extra` arguments, its report written to
/// `report`.
async fn adopt(
    db: &ScratchDb,
    assets: &std::path::Path,
    owner: &str,
    extra: &[&str],
    report: &std::path::Path,
) -> std::process::Output {
    let mut args = vec!["migrate", "--adopt-legacy", "--owner", owner];
    args.extend_from_slice(extra);
    args.extend(["--report", report.to_str().unwrap()]);
    output(command(db, assets, &args)).await
}

#[tokio::test]
async fn an_old_database_is_refused_by_name_then_adopted_with_every_row_owned() {
    let db = ScratchDb::create("adopt").await;
    let pool = db.pool().await;
    run_script(&pool, OLD_SCHEMA_SQL).await;
    run_script(&pool, OLD_ROWS_SQL).await;
    pool.close().await;
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");
    let owner = uuid::Uuid::new_v4().to_string();

    // migrate and serve refuse, change nothing, and name the command.
    let refused = output(command(&db, &assets, &["migrate"])).await;
    let out = text(&refused);
    assert!(!refused.status.success(), "{out}");
    assert!(out.contains("old server's schema"), "{out}");
    assert!(out.contains("public.dramas (3 rows)"), "{out}");
    assert!(
        out.contains("drama-server migrate --adopt-legacy --owner <uuid>"),
        "{out}"
    );
    let serve = output(command(&db, &assets, &["serve"])).await;
    assert!(!serve.status.success());
    assert!(text(&serve).contains("--adopt-legacy"), "{}", text(&serve));
    let check = output(command(&db, &assets, &["check"])).await;
    assert!(!check.status.success());
    assert!(text(&check).contains("--adopt-legacy"), "{}", text(&check));
    assert_eq!(legacy_tables(&db).await, 0);

    // Without an owner for 10000, nothing is moved.
    let unmapped = output(command(&db, &assets, &["migrate", "--adopt-legacy"])).await;
    let out = text(&unmapped);
    assert!(!unmapped.status.success(), "{out}");
    assert!(out.contains("\"10000\" (3 dramas)"), "{out}");
    assert!(out.contains("--owner <uuid>"), "{out}");
    assert_eq!(count(&db, "select count(*) from public.dramas").await, 3);

    // The dry run reports what a run would do and writes nothing.
    let dry_report = dir.path().join("dry.json");
    let dry = adopt(&db, &assets, &owner, &["--dry-run"], &dry_report).await;
    let out = text(&dry);
    assert_eq!(dry.status.code(), Some(1), "one drama fails: {out}");
    assert!(out.contains("DRY RUN"), "{out}");
    assert!(out.contains("imported 2"), "{out}");
    let report: Value = serde_json::from_slice(&std::fs::read(&dry_report).unwrap()).unwrap();
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["command"], "migrate --adopt-legacy");
    assert_eq!(report["counts"]["failed"], 1);
    assert_eq!(count(&db, "select count(*) from public.dramas").await, 3);
    assert_eq!(legacy_tables(&db).await, 0);

    // The real run: moved, migrated, imported; the bad row is reported and kept aside.
    let report_path = dir.path().join("adopt.json");
    let adopted = adopt(&db, &assets, &owner, &[], &report_path).await;
    let out = text(&adopted);
    assert_eq!(adopted.status.code(), Some(1), "{out}");
    assert!(out.contains("imported 2"), "{out}");
    assert!(
        out.contains("legacy.jobs: 2 historical job row(s)"),
        "{out}"
    );
    assert!(out.contains("drop schema legacy cascade"), "{out}");
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let broken = report["dramas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["drama_id"] == "broken")
        .unwrap();
    assert_eq!(broken["reason"]["code"], "invalid_drama");
    for (table, rows) in [
        ("dramas", 2),
        ("characters", 3),
        ("episodes", 3),
        ("scenes", 3),
        ("assets", 5),
    ] {
        assert_eq!(
            count(
                &db,
                &format!(
                    "select count(*) from public.{table} t join public.dramas d on d.id = \
                     t.{} where d.owner_id = '{owner}'",
                    if table == "dramas" { "id" } else { "drama_id" }
                )
            )
            .await,
            rows,
            "{table}"
        );
    }
    assert_eq!(count(&db, "select count(*) from legacy.dramas").await, 3);
    let check = output(command(&db, &assets, &["check"])).await;
    let out = text(&check);
    assert!(out.contains("status: healthy"), "{out}");
    assert!(out.contains("moved aside: legacy.dramas (3 rows)"), "{out}");

    // Rerun: nothing changes; the repaired row comes over.
    run_script(
        &db.pool().await,
        "update legacy.assets set duration = 15 where id = 'broken-e1-s1-vid'",
    )
    .await;
    let again = output(command(
        &db,
        &assets,
        &["migrate", "--adopt-legacy", "--owner", &owner],
    ))
    .await;
    let out = text(&again);
    assert!(again.status.success(), "{out}");
    assert!(out.contains("imported 1, updated 0, unchanged 2"), "{out}");
    assert_eq!(count(&db, "select count(*) from public.dramas").await, 3);

    // The rollback of docs/MIGRATION.md: the old tables are back where the old server reads
    // them, with their triggers working, and this server's are kept aside.
    run_script(&db.pool().await, &rollback_sql()).await;
    let column = |table: &str, column: &str| {
        format!(
            "select count(*) from information_schema.columns where table_schema = 'public' \
             and table_name = '{table}' and column_name = '{column}'"
        )
    };
    assert_eq!(count(&db, &column("dramas", "owner_id")).await, 0);
    assert_eq!(count(&db, &column("jobs", "job_id")).await, 1);
    assert_eq!(count(&db, "select count(*) from public.dramas").await, 3);
    assert_eq!(
        count(
            &db,
            &format!("select count(*) from drama_server.dramas where owner_id = '{owner}'")
        )
        .await,
        3
    );
    assert_eq!(legacy_tables(&db).await, 0);
    let version =
        "select version::bigint from public.dramas where id = (select min(id) from public.dramas)";
    let before = count(&db, version).await;
    run_script(
        &db.pool().await,
        "update public.dramas set title = title || '.' where id = (select min(id) from public.dramas)",
    )
    .await;
    assert_eq!(
        count(&db, version).await,
        before + 1,
        "the old trigger runs"
    );
    // The old server, running again, deletes a drama.
    run_script(
        &db.pool().await,
        "delete from public.dramas where id = 'heist'",
    )
    .await;

    // The way forward again: the history records our migrations, yet `public` holds the old
    // tables, so migrate, serve and check refuse as on the first day instead of starting on
    // tables they cannot read.
    let refused = output(command(&db, &assets, &["migrate"])).await;
    let out = text(&refused);
    assert!(!refused.status.success(), "{out}");
    assert!(out.contains("--adopt-legacy"), "{out}");
    let check = output(command(&db, &assets, &["check"])).await;
    assert!(!check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("--adopt-legacy"), "{}", text(&check));

    // A dry run of the roll-forward cannot compare with this server's tables while they wait
    // in drama_server (an empty store would call every drama imported): refused, by name.
    let dry = adopt(
        &db,
        &assets,
        &owner,
        &["--dry-run"],
        &dir.path().join("forward-dry.json"),
    )
    .await;
    let out = text(&dry);
    assert_eq!(dry.status.code(), Some(1), "{out}");
    assert!(out.contains("rolled back"), "{out}");
    assert!(out.contains("without --dry-run"), "{out}");
    assert!(!out.contains("imported 3"), "{out}");
    assert_eq!(count(&db, &column("dramas", "owner_id")).await, 0);

    // Adoption rolls forward: the old tables go aside again and ours come back, with the
    // edit the old server made during the rollback imported.
    let forward_report = dir.path().join("forward.json");
    let forward = adopt(&db, &assets, &owner, &[], &forward_report).await;
    let out = text(&forward);
    assert!(forward.status.success(), "{out}");
    assert!(out.contains("imported 0, updated 1, unchanged 1"), "{out}");
    // The drama the old server deleted is reported, not silently kept as unchanged.
    assert!(
        out.contains("gone from the source: deleted 0, kept 1"),
        "{out}"
    );
    assert!(
        out.contains("db:legacy/dramas/heist: source_deleted"),
        "{out}"
    );
    assert_eq!(count(&db, &column("dramas", "owner_id")).await, 1);
    assert_eq!(count(&db, &column("jobs", "job_id")).await, 0);
    assert_eq!(
        count(
            &db,
            &format!("select count(*) from public.dramas where owner_id = '{owner}'")
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &db,
            "select count(*) from public.dramas where title like '%.' and owner_id is not null"
        )
        .await,
        1,
        "the rollback's edit came over"
    );
    assert_eq!(count(&db, "select count(*) from legacy.dramas").await, 2);
    assert_eq!(
        count(
            &db,
            "select count(*) from pg_namespace where nspname = 'drama_server'"
        )
        .await,
        0
    );
    // --delete-gone deletes it, as the API would.
    let gone = adopt(
        &db,
        &assets,
        &owner,
        &["--delete-gone"],
        &dir.path().join("gone.json"),
    )
    .await;
    let out = text(&gone);
    assert!(gone.status.success(), "{out}");
    assert!(out.contains("deleted 1, kept 0"), "{out}");
    assert_eq!(
        count(
            &db,
            &format!("select count(*) from public.dramas where owner_id = '{owner}'")
        )
        .await,
        2
    );
    let check = output(command(&db, &assets, &["check"])).await;
    assert!(text(&check).contains("status: healthy"), "{}", text(&check));
    db.drop_it().await;
}

/// The SQL block of docs/MIGRATION.md's database rollback.
fn rollback_sql() -> String {
    const DOC: &str = include_str!("../../../docs/MIGRATION.md");
    let block = DOC
        .split("<!-- rollback:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- rollback:end -->").next())
        .expect("the rollback block of MIGRATION.md");
    let sql = block
        .split("```sql")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an sql fence in the rollback block");
    sql.to_owned()
}

#[tokio::test]
async fn serve_accepts_a_database_migrated_by_the_supabase_cli() {
    let db = ScratchDb::create("supabase_cli").await;
    let pool = db.pool().await;
    push_like_supabase_cli(&pool, &drama_postgres::MIGRATOR).await;
    pool.close().await;
    let dir = tempfile::tempdir().unwrap();
    let assets = dir.path().join("assets");

    let check = output(command(&db, &assets, &["check"])).await;
    let out = text(&check);
    assert!(check.status.success(), "{out}");
    assert!(out.contains("pending migrations: none"), "{out}");
    assert!(out.contains("(by the Supabase CLI)"), "{out}");

    let port = free_port();
    let mut c = command(&db, &assets, &["serve"]);
    c.env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("AI_OFFLINE", "true");
    let mut server = Server::spawn(c, port, dir.path(), "serve");
    server.wait_for("/ready").await;
    server.stop().await;

    // `migrate` afterwards records the CLI's migrations for sqlx and applies nothing twice.
    let migrate = output(command(&db, &assets, &["migrate"])).await;
    let out = text(&migrate);
    assert!(migrate.status.success(), "{out}");
    assert!(out.contains("applied 0 migration(s)"), "{out}");
    assert!(out.contains("the Supabase CLI had applied"), "{out}");
    db.drop_it().await;
}
