//! The schema's history and its predecessors.
//!
//! Two tools can have applied our migrations: sqlx (`drama-server migrate`, `sqlx migrate
//! run`; history in `public._sqlx_migrations`) and the Supabase CLI (`supabase db push`;
//! history in `supabase_migrations.schema_migrations`). Both count. Before sqlx runs, every
//! migration the Supabase CLI applied and sqlx has not recorded is recorded as applied
//! (sqlx's own "skip"), so that neither tool runs a file twice.
//!
//! A database may also still hold the old Python server's schema (`public.dramas` without an
//! owner, `public.jobs` keyed by `job_id`, no history of ours): our first migrations would
//! collide with it. [`migrate`] refuses such a database; [`adopt_legacy_schema`] moves the old
//! tables into a schema of their own, in one transaction, and then migrates.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sqlx::migrate::{Migrate as _, Migration};
use sqlx::{AssertSqlSafe, PgConnection, PgPool, Row as _};

use crate::MIGRATOR;
use crate::error::PgError;

/// The schema the old tables are moved into.
pub const LEGACY_SCHEMA: &str = "legacy";

/// Where the database rollback of docs/MIGRATION.md puts our tables that share their names
/// with the old server's; `migrate --adopt-legacy` brings them back (a roll-forward).
const ROLLED_BACK_SCHEMA: &str = "drama_server";

/// The tables of the old server's database (`migrations/001_initial_schema.sql` of the old
/// branch, plus the `users` table its code used).
pub const LEGACY_TABLES: [&str; 7] = [
    "dramas",
    "characters",
    "episodes",
    "scenes",
    "assets",
    "jobs",
    "users",
];

/// Trigger functions of the old schema, moved along with their tables.
const LEGACY_FUNCTIONS: [&str; 2] = ["update_updated_at_column", "increment_drama_version"];

/// The first of our migrations that creates tables the old schema also has.
const CORE_SCHEMA_VERSION: i64 = 20_261_125_000_100;

/// One table of the old schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTable {
    /// Its name.
    pub name: String,
    /// Rows it holds.
    pub rows: i64,
}

/// The old server's tables, where they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacySchema {
    /// `public` (not yet adopted) or [`LEGACY_SCHEMA`] (moved aside).
    pub schema: String,
    /// The tables found, in [`LEGACY_TABLES`] order.
    pub tables: Vec<LegacyTable>,
    /// Whether Supabase Realtime's publication is `FOR ALL TABLES`, so that tables moved
    /// into [`LEGACY_SCHEMA`] stay published (they cannot leave such a publication; the
    /// revoked grants and RLS hide their rows from Realtime's clients).
    pub published_to_all: bool,
}

impl LegacySchema {
    /// Rows of `table`, 0 when it is absent.
    pub fn rows(&self, table: &str) -> i64 {
        self.tables
            .iter()
            .find(|t| t.name == table)
            .map_or(0, |t| t.rows)
    }

    /// Whether the tables still sit in `public`.
    pub fn in_public(&self) -> bool {
        self.schema == "public"
    }
}

impl fmt::Display for LegacySchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tables: Vec<String> = self
            .tables
            .iter()
            .map(|t| format!("{}.{} ({} rows)", self.schema, t.name, t.rows))
            .collect();
        f.write_str(&tables.join(", "))?;
        if self.published_to_all && !self.in_public() {
            f.write_str(
                "; still published by supabase_realtime, which is FOR ALL TABLES, and \
                 hidden from its clients by the revoked grants and row level security",
            )?;
        }
        Ok(())
    }
}

/// The migration history, from both tools.
#[derive(Debug, Default)]
pub(crate) struct History {
    /// sqlx's rows: version → (description, checksum, success).
    pub(crate) sqlx: BTreeMap<i64, (String, Vec<u8>, bool)>,
    /// Versions in the Supabase CLI's table (any, not only ours).
    pub(crate) supabase: BTreeSet<i64>,
}

impl History {
    /// Whether our migration `version` is recorded by either tool.
    pub(crate) fn has(&self, version: i64) -> bool {
        self.sqlx.get(&version).is_some_and(|(_, _, ok)| *ok) || self.supabase.contains(&version)
    }

    /// Our migrations the Supabase CLI applied that sqlx has not recorded.
    fn supabase_only(&self) -> impl Iterator<Item = &'static Migration> + '_ {
        MIGRATOR
            .iter()
            .filter(|m| self.supabase.contains(&m.version) && !self.sqlx.contains_key(&m.version))
    }
}

pub(crate) async fn read_history(conn: &mut PgConnection) -> Result<History, sqlx::Error> {
    let mut history = History::default();
    let (sqlx_table, supabase_table): (bool, bool) = sqlx::query_as(
        "select to_regclass('public._sqlx_migrations') is not null, \
                to_regclass('supabase_migrations.schema_migrations') is not null",
    )
    .fetch_one(&mut *conn)
    .await?;
    if sqlx_table {
        let rows = sqlx::query(
            "select version, description, checksum, success from public._sqlx_migrations",
        )
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            history.sqlx.insert(
                row.try_get(0)?,
                (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
            );
        }
    }
    if supabase_table {
        // The CLI keeps versions as text; anything that is not a number is not ours.
        let versions: Vec<String> =
            sqlx::query_scalar("select version::text from supabase_migrations.schema_migrations")
                .fetch_all(&mut *conn)
                .await?;
        history.supabase = versions
            .iter()
            .filter_map(|v| v.trim().parse().ok())
            .collect();
    }
    Ok(history)
}

/// Tables of [`LEGACY_TABLES`] in `schema` with their row counts.
async fn tables_in(conn: &mut PgConnection, schema: &str) -> Result<Vec<LegacyTable>, sqlx::Error> {
    let present: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = $1 and c.relkind in ('r', 'p') and c.relname = any($2)",
    )
    .bind(schema)
    .bind(LEGACY_TABLES.as_slice())
    .fetch_all(&mut *conn)
    .await?;
    let mut tables = Vec::new();
    for name in LEGACY_TABLES {
        if !present.iter().any(|p| p == name) {
            continue;
        }
        // Both names come from fixed lists, never from input.
        let rows: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
            "select count(*) from {}.{}",
            quote_ident(schema),
            quote_ident(name)
        )))
        .fetch_one(&mut *conn)
        .await?;
        tables.push(LegacyTable {
            name: name.to_owned(),
            rows,
        });
    }
    Ok(tables)
}

/// Whether `public` holds the old server's shape: `dramas` without an owner, or `jobs` keyed
/// by `job_id`.
async fn public_has_old_shape(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from information_schema.tables \
                        where table_schema = 'public' and table_name = 'dramas') \
                and not exists (select 1 from information_schema.columns \
                        where table_schema = 'public' and table_name = 'dramas' \
                          and column_name = 'owner_id') \
             or exists (select 1 from information_schema.columns \
                        where table_schema = 'public' and table_name = 'jobs' \
                          and column_name = 'job_id')",
    )
    .fetch_one(conn)
    .await
}

async fn detect(conn: &mut PgConnection) -> Result<Option<LegacySchema>, sqlx::Error> {
    // Whatever the history says: after the rollback of docs/MIGRATION.md the history records
    // our migrations while `public` holds the old tables again (ours wait in
    // [`ROLLED_BACK_SCHEMA`]), and a server started on that would fail on every request.
    let published_to_all: bool = sqlx::query_scalar(
        "select exists (select 1 from pg_publication \
                        where pubname = 'supabase_realtime' and puballtables)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if public_has_old_shape(conn).await? {
        return Ok(Some(LegacySchema {
            schema: "public".to_owned(),
            tables: tables_in(conn, "public").await?,
            published_to_all,
        }));
    }
    let moved = tables_in(conn, LEGACY_SCHEMA).await?;
    if moved.iter().any(|t| t.name == "dramas") {
        return Ok(Some(LegacySchema {
            schema: LEGACY_SCHEMA.to_owned(),
            tables: moved,
            published_to_all,
        }));
    }
    Ok(None)
}

/// Where the old server's tables are: still in `public` (the database was never migrated by
/// us, or rolled back as docs/MIGRATION.md says), moved into [`LEGACY_SCHEMA`], or nowhere.
///
/// # Errors
/// [`PgError::Query`].
pub async fn legacy_schema(pool: &PgPool) -> Result<Option<LegacySchema>, PgError> {
    let mut conn = pool.acquire().await.map_err(PgError::Connect)?;
    detect(&mut conn).await.map_err(PgError::Query)
}

/// Tables our migrations create that already exist although our history does not record the
/// migration that creates them (a project with tables of its own by those names).
async fn collisions(
    conn: &mut PgConnection,
    history: &History,
) -> Result<Vec<String>, sqlx::Error> {
    if history.has(CORE_SCHEMA_VERSION) {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm') \
           and c.relname = any($1) order by 1",
    )
    .bind(
        [
            "users",
            "api_keys",
            "dramas",
            "characters",
            "episodes",
            "scenes",
            "assets",
            "jobs",
        ]
        .as_slice(),
    )
    .fetch_all(conn)
    .await
}

/// Applies every pending migration, counting those the Supabase CLI applied as applied.
///
/// # Errors
/// [`PgError::LegacySchema`] when `public` still holds the old server's tables (nothing is
/// changed; see [`adopt_legacy_schema`]); [`PgError::Collision`] when tables of ours exist
/// without our history; [`PgError::Migrate`] when a migration fails or an applied file was
/// changed.
pub async fn migrate(pool: &PgPool) -> Result<(), PgError> {
    with_migration_lock(pool, |conn| {
        Box::pin(async move {
            let history = read_history(conn).await.map_err(PgError::Query)?;
            if let Some(legacy) = detect(conn).await.map_err(PgError::Query)?
                && legacy.in_public()
            {
                return Err(PgError::LegacySchema(legacy));
            }
            run_pending(conn, &history).await
        })
    })
    .await
}

/// Moves the old server's tables out of `public` into [`LEGACY_SCHEMA`] (one transaction:
/// all of them or none), then applies every pending migration. The tables keep their rows,
/// indexes, constraints and triggers; the roles `anon` and `authenticated` lose access to
/// them. A database whose old tables were already moved is only migrated, so a failed or
/// interrupted run can simply be repeated. A database rolled back as docs/MIGRATION.md says
/// (our history, the old tables in `public`, ours in [`ROLLED_BACK_SCHEMA`]) is rolled
/// forward: in the same transaction our tables come back into `public`.
///
/// Returns the old tables as they are afterwards (`None`: there were none).
///
/// # Errors
/// [`PgError::Config`] when [`LEGACY_SCHEMA`] already holds a table of the same name, or when
/// a rolled-back database's tables of ours are not in [`ROLLED_BACK_SCHEMA`];
/// [`PgError::Query`]; [`PgError::Migrate`].
pub async fn adopt_legacy_schema(pool: &PgPool) -> Result<Option<LegacySchema>, PgError> {
    with_migration_lock(pool, |conn| {
        Box::pin(async move {
            let history = read_history(conn).await.map_err(PgError::Query)?;
            let found = detect(conn).await.map_err(PgError::Query)?;
            if let Some(legacy) = &found
                && legacy.in_public()
            {
                // Our history with the old tables in `public`: a rolled-back database, whose
                // tables of ours come back in the same transaction that moves the old ones.
                let restore = if history.has(CORE_SCHEMA_VERSION) {
                    rolled_back_tables(conn).await?
                } else {
                    Vec::new()
                };
                move_aside(conn, legacy, &restore).await?;
            }
            let history = read_history(conn).await.map_err(PgError::Query)?;
            run_pending(conn, &history).await?;
            detect(conn).await.map_err(PgError::Query)
        })
    })
    .await
}

type LockedFuture<'c, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, PgError>> + Send + 'c>>;

/// Runs `work` on one connection holding sqlx's migration lock, so that processes that
/// migrate at the same time (several `serve --migrate`) run one after another. The
/// connection is closed afterwards rather than returned to the pool, so a lock left behind by
/// a failure dies with it.
async fn with_migration_lock<T>(
    pool: &PgPool,
    work: impl for<'c> FnOnce(&'c mut PgConnection) -> LockedFuture<'c, T>,
) -> Result<T, PgError> {
    let mut conn = pool.acquire().await.map_err(PgError::Connect)?.detach();
    conn.lock().await.map_err(PgError::Migrate)?;
    let outcome = work(&mut conn).await;
    if outcome.is_ok() {
        conn.unlock().await.map_err(PgError::Migrate)?;
    }
    drop(conn);
    outcome
}

/// Records what the Supabase CLI applied, then lets sqlx apply the rest.
async fn run_pending(conn: &mut PgConnection, history: &History) -> Result<(), PgError> {
    let collided = collisions(conn, history).await.map_err(PgError::Query)?;
    if !collided.is_empty() {
        return Err(PgError::Collision(collided));
    }
    conn.ensure_migrations_table("_sqlx_migrations")
        .await
        .map_err(PgError::Migrate)?;
    for migration in history.supabase_only() {
        conn.skip("_sqlx_migrations", migration)
            .await
            .map_err(PgError::Migrate)?;
        tracing::info!(
            version = migration.version,
            "migration applied by the Supabase CLI recorded for sqlx"
        );
    }
    // sqlx's history sits in `public`, which Supabase's Data API exposes; without policies RLS
    // hides it. (The first migration does this too, but not when the Supabase CLI ran it.)
    sqlx::query("alter table public._sqlx_migrations enable row level security")
        .execute(&mut *conn)
        .await
        .map_err(PgError::Query)?;
    MIGRATOR
        .run_direct(None, conn, false)
        .await
        .map_err(PgError::Migrate)
}

/// Moves the old tables and their trigger functions into [`LEGACY_SCHEMA`], in one
/// transaction.
/// Our tables that the rollback moved into [`ROLLED_BACK_SCHEMA`].
///
/// # Errors
/// [`PgError::Config`] when they are not there: the history records our migrations, yet
/// neither `public` nor that schema holds our `dramas`, so migrating would build an empty
/// schema beside a history that says it exists.
async fn rolled_back_tables(conn: &mut PgConnection) -> Result<Vec<String>, PgError> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = $1 and c.relkind in ('r', 'p') order by 1",
    )
    .bind(ROLLED_BACK_SCHEMA)
    .fetch_all(&mut *conn)
    .await
    .map_err(PgError::Query)?;
    if !tables.iter().any(|t| t == "dramas") {
        return Err(PgError::Config(format!(
            "public holds the old server's tables, and the migration history records this \
             server's, but schema {ROLLED_BACK_SCHEMA} (where the rollback of \
             docs/MIGRATION.md keeps them) has no dramas table; restore this server's tables \
             into {ROLLED_BACK_SCHEMA} or public first, or restore the dump taken before the \
             cutover"
        )));
    }
    Ok(tables)
}

async fn move_aside(
    conn: &mut PgConnection,
    legacy: &LegacySchema,
    restore: &[String],
) -> Result<(), PgError> {
    let taken = tables_in(conn, LEGACY_SCHEMA)
        .await
        .map_err(PgError::Query)?;
    if let Some(clash) = taken.first() {
        return Err(PgError::Config(format!(
            "schema {LEGACY_SCHEMA} already holds a table {} ({} rows), so the old tables \
             cannot be moved there; rename that schema first (alter schema {LEGACY_SCHEMA} \
             rename to …)",
            clash.name, clash.rows
        )));
    }
    let schema = quote_ident(LEGACY_SCHEMA);
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(PgError::Query)?;
    let mut statements = vec![format!("create schema if not exists {schema}")];
    for table in &legacy.tables {
        statements.push(format!(
            "alter table public.{} set schema {schema}",
            quote_ident(&table.name)
        ));
    }
    // A roll-forward: the old tables have left `public`, so ours can take their names back.
    let rolled_back = quote_ident(ROLLED_BACK_SCHEMA);
    for table in restore {
        statements.push(format!(
            "alter table {rolled_back}.{} set schema public",
            quote_ident(table)
        ));
    }
    if !restore.is_empty() {
        // Not `cascade`: anything else an operator put there stays, and so does the schema.
        statements.push(format!(
            "do $$ begin if not exists (select 1 from pg_class c join pg_namespace n \
             on n.oid = c.relnamespace where n.nspname = '{ROLLED_BACK_SCHEMA}') then \
             drop schema {rolled_back}; end if; end $$"
        ));
    }
    statements.push(format!(
        "comment on schema {schema} is 'The old server''s tables, moved out of public by \
         drama-server migrate --adopt-legacy on {}'",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    ));
    for statement in statements {
        sqlx::query(AssertSqlSafe(statement))
            .execute(&mut *tx)
            .await
            .map_err(PgError::Query)?;
    }
    let functions: Vec<String> = LEGACY_FUNCTIONS.iter().map(|f| format!("'{f}'")).collect();
    // Every name here comes from a fixed list; a DO block takes no parameters.
    let block = MOVE_FUNCTIONS_AND_REVOKE
        .replace("{schema}", &schema)
        .replace("{schema_text}", LEGACY_SCHEMA)
        .replace("{functions}", &functions.join(", "));
    sqlx::query(AssertSqlSafe(block))
        .execute(&mut *tx)
        .await
        .map_err(PgError::Query)?;
    tx.commit().await.map_err(PgError::Query)?;
    tracing::info!(tables = %legacy, schema = LEGACY_SCHEMA, restored = ?restore, "old tables moved aside");
    Ok(())
}

/// Moves the old trigger functions, closes the schema to Supabase's client roles (its old
/// allow-all policies would otherwise still apply) and takes its tables out of Realtime
/// where the publication lists them (not when it is FOR ALL TABLES).
/// Roles and the publication exist on Supabase only, so each step is guarded.
const MOVE_FUNCTIONS_AND_REVOKE: &str = "\
do $$
declare
  fn text;
  t record;
  role_name text;
begin
  foreach fn in array array[{functions}]::text[] loop
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'public' and p.proname = fn and p.pronargs = 0) then
      execute format('alter function public.%I() set schema {schema}', fn);
    end if;
  end loop;
  execute 'revoke all on schema {schema} from public';
  foreach role_name in array array['anon', 'authenticated'] loop
    if exists (select 1 from pg_roles where rolname = role_name) then
      execute format('revoke all on all tables in schema {schema} from %I', role_name);
      execute format('revoke all on schema {schema} from %I', role_name);
    end if;
  end loop;
  -- Only tables the publication names one by one can leave it: one FOR ALL TABLES (or FOR
  -- TABLES IN SCHEMA) names none, and `drop table` would abort the whole move. Such a
  -- publication keeps publishing the old tables; the revoked grants (and their RLS) keep
  -- Realtime's clients from reading them.
  for t in select c.relname from pg_publication_rel pr
           join pg_publication p on p.oid = pr.prpubid
           join pg_class c on c.oid = pr.prrelid
           join pg_namespace n on n.oid = c.relnamespace
           where p.pubname = 'supabase_realtime' and n.nspname = '{schema_text}' loop
    execute format('alter publication supabase_realtime drop table {schema}.%I', t.relname);
  end loop;
end
$$";

/// `"name"` with inner quotes doubled.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
