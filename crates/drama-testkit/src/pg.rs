//! Databases made for one test on the server `DATABASE_URL` points at, for tests that run the
//! binary (which migrates its own database) or need several processes on one database.

use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};

/// `DATABASE_URL`, which database tests require.
///
/// # Panics
/// When it is not set (the test script always sets it).
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").expect("DATABASE_URL points at a server for database tests")
}

/// A database created for one test; [`ScratchDb::drop_it`] removes it, and so does dropping
/// the value (a failed test leaves nothing behind).
#[derive(Debug)]
pub struct ScratchDb {
    name: String,
    dropped: bool,
}

impl ScratchDb {
    /// Creates `{prefix}_{pid}_{nanos}` (empty: the binary's `migrate` fills it).
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn create(prefix: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let name = format!("{prefix}_{}_{nanos}", std::process::id());
        let mut admin = PgConnection::connect(&server_url())
            .await
            .expect("connecting to DATABASE_URL");
        sqlx::query(AssertSqlSafe(format!("create database {name}")))
            .execute(&mut admin)
            .await
            .expect("creating a scratch database");
        Self {
            name,
            dropped: false,
        }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL of this database (`DATABASE_URL` with the database swapped).
    ///
    /// # Panics
    /// When `DATABASE_URL` has no `/database` part.
    pub fn url(&self) -> String {
        let base = server_url();
        let (server, _) = base
            .rsplit_once('/')
            .expect("DATABASE_URL ends with /database");
        format!("{server}/{}", self.name)
    }

    /// A small pool on it.
    ///
    /// # Panics
    /// When the database cannot be reached.
    pub async fn pool(&self) -> PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.url())
            .await
            .expect("connecting to the scratch database")
    }

    /// `select count(*)` of a table in `public`.
    ///
    /// # Panics
    /// When the query fails.
    pub async fn count(&self, table: &str) -> i64 {
        let mut conn = PgConnection::connect(&self.url())
            .await
            .expect("connecting to the scratch database");
        sqlx::query_scalar(AssertSqlSafe(format!(
            "select count(*) from public.{table}"
        )))
        .fetch_one(&mut conn)
        .await
        .expect("counting rows")
    }

    /// Drops the database, disconnecting whoever is still connected.
    ///
    /// # Panics
    /// When the server refuses.
    pub async fn drop_it(mut self) {
        drop_database(&self.name).await;
        self.dropped = true;
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Async work cannot run inside `drop`, and the test's runtime may be unwinding: a
        // thread with a runtime of its own removes the database.
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the scratch database");
            runtime.block_on(drop_database(&name));
        })
        .join();
        if dropped.is_err() && !std::thread::panicking() {
            panic!("dropping scratch database {} failed", self.name);
        }
    }
}

async fn drop_database(name: &str) {
    let mut admin = PgConnection::connect(&server_url())
        .await
        .expect("connecting to DATABASE_URL");
    sqlx::query(AssertSqlSafe(format!(
        "drop database if exists {name} with (force)"
    )))
    .execute(&mut admin)
    .await
    .expect("dropping the scratch database");
}

/// The old server's schema as its `migrations/001_initial_schema.sql` created it (text keys
/// per table, `jobs` keyed by `job_id`, no `users`).
pub const OLD_SCHEMA_SQL: &str = include_str!("../../../fixtures/legacy-db/old_schema.sql");

/// Rows for [`OLD_SCHEMA_SQL`]: three dramas of the old default user (one the new model
/// refuses), with parts and assets at every level, and historical jobs.
pub const OLD_ROWS_SQL: &str = include_str!("../../../fixtures/legacy-db/old_rows.sql");

/// Runs a script of several statements.
///
/// # Panics
/// When a statement fails.
pub async fn run_script(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .expect("running an SQL script");
}

/// Applies `migrator`'s files the way `supabase db push` does: each file's SQL, then a row in
/// `supabase_migrations.schema_migrations` (version as text, name, statements), and no sqlx
/// history.
///
/// # Panics
/// When a file fails.
pub async fn push_like_supabase_cli(pool: &PgPool, migrator: &sqlx::migrate::Migrator) {
    run_script(
        pool,
        "create schema if not exists supabase_migrations;
         create table if not exists supabase_migrations.schema_migrations (
           version text not null primary key, statements text[], name text);",
    )
    .await;
    for m in migrator.iter() {
        run_script(pool, m.sql.as_str()).await;
        sqlx::query(
            "insert into supabase_migrations.schema_migrations (version, statements, name) \
             values ($1, array[$2], $3)",
        )
        .bind(m.version.to_string())
        .bind(m.sql.as_str())
        .bind(m.description.as_ref())
        .execute(pool)
        .await
        .expect("recording a migration as the Supabase CLI does");
    }
}
