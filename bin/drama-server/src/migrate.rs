//! `migrate`: applies the migrations, and adopts a database that still holds the old server's
//! tables (`--adopt-legacy`): they are moved aside into schema `legacy` in one transaction, the
//! migrations run, and their rows are imported the way `import-r2` imports the old bucket
//! (runbook: `docs/MIGRATION.md`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use drama_dal::MemoryLegacyImports;
use drama_dal::legacy_tables::LegacyTables as _;
use drama_legacy::{CancellationToken, DramaRemover, Importer, OwnerMap, Repositories};
use drama_postgres::{LegacySchema, PgError, PgLegacyTables, PgStore};

use crate::check::connect;
use crate::legacy::{
    ApiDelete, ImportFlags, Meter, conclude, import_summary, print, stop_on_ctrl_c,
};
use crate::settings::Settings;

/// `migrate` options.
#[derive(Debug, clap::Args)]
pub(crate) struct MigrateArgs {
    /// Move the old server's tables out of `public` into schema `legacy`, apply the
    /// migrations and import their rows (owner mapping, dry run and report as for
    /// `import-r2`). Repeatable: a second run imports what changed and skips the rest.
    #[arg(long)]
    pub(crate) adopt_legacy: bool,
    /// Carry the balances (`tokens`) of the old `users` table over (at most
    /// `LEGACY_MAX_CREDITS`). Without it those users open with `INITIAL_CREDITS`: the old
    /// tables were writable by anyone holding the anon key, so their balances prove nothing.
    #[arg(long, requires = "adopt_legacy")]
    pub(crate) trust_legacy_balances: bool,
    #[command(flatten)]
    pub(crate) flags: ImportFlags,
}

/// The commands that adopt an old database, for messages.
pub(crate) fn adopt_hint() -> String {
    "move its tables aside into schema legacy and import their rows with\n  \
     drama-server migrate --adopt-legacy --owner <uuid> --dry-run   (what would happen; \
     writes nothing)\n  \
     drama-server migrate --adopt-legacy --owner <uuid>\n\
     where <uuid> is the user the old default owner 10000 becomes (docs/MIGRATION.md, \
     \"An existing Supabase database\")"
        .to_owned()
}

pub(crate) async fn run(settings: &Settings, args: MigrateArgs) -> anyhow::Result<ExitCode> {
    crate::check::require_database(settings)?;
    if args.adopt_legacy {
        return adopt(settings, args.flags, args.trust_legacy_balances).await;
    }
    let pool = connect(&settings.database).await?;
    let before = drama_postgres::schema_report(&pool).await?;
    match drama_postgres::migrate(&pool).await {
        Ok(()) => {}
        Err(PgError::LegacySchema(legacy)) => {
            anyhow::bail!(
                "this database holds the old server's schema ({legacy}); nothing was changed. \
                 To migrate it, {}",
                adopt_hint()
            );
        }
        Err(e) => return Err(e).context("migrating the database"),
    }
    let after = drama_postgres::schema_report(&pool).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "applied {} migration(s); schema is at {}",
        before.pending.len(),
        after.applied.last().map_or_else(
            || "nothing".to_owned(),
            |m| format!("{} {}", m.version, m.description)
        )
    );
    if !before.applied_by_supabase_cli.is_empty() {
        let _ = writeln!(
            out,
            "recorded {} migration(s) the Supabase CLI had applied",
            before.applied_by_supabase_cli.len()
        );
    }
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Refuses, before anything is moved, when dramas belong to old owners the map does not
/// cover: every one of them would fail.
async fn check_owners(tables: &PgLegacyTables, owners: &OwnerMap) -> anyhow::Result<()> {
    let mut unmapped: BTreeMap<String, usize> = BTreeMap::new();
    for drama in tables.legacy_dramas().await? {
        let owner = drama
            .owner
            .unwrap_or_else(|| drama_domain::OLD_DEFAULT_OWNER.to_owned());
        if owners.resolve(&owner).is_none() {
            *unmapped.entry(owner).or_default() += 1;
        }
    }
    if unmapped.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = unmapped
        .iter()
        .map(|(owner, n)| format!("{owner:?} ({n} dramas)"))
        .collect();
    anyhow::bail!(
        "old owner(s) {} have no mapping, so their dramas could not be imported; nothing was \
         changed. Pass --owner <uuid> for the old default user 10000 (and the old demo user a1111111-…) and --owner-map FILE for \
         the others (docs/MIGRATION.md)",
        list.join(", ")
    )
}

async fn adopt(
    settings: &Settings,
    flags: ImportFlags,
    trust_legacy_balances: bool,
) -> anyhow::Result<ExitCode> {
    let pool = connect(&settings.database).await?;
    let Some(found) = drama_postgres::legacy_schema(&pool).await? else {
        print("no tables of the old server found; migrating as usual\n")?;
        drama_postgres::migrate(&pool)
            .await
            .context("migrating the database")?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut options = flags.options(settings)?;
    options.trust_legacy_balances = trust_legacy_balances;
    // Before adoption: it revokes the client roles' grants, after which every table reads as
    // closed. (A rerun, once the tables are in `legacy`, can only say they are closed now.)
    options.legacy_access = drama_postgres::legacy_table_access(&pool, &found.schema).await?;
    let tables = PgLegacyTables::open(pool.clone(), &found.schema).await?;
    if !flags.dry_run {
        check_owners(&tables, &options.owners).await?;
    }
    let bucket = drama_assets::open_store(&settings.assets)
        .await
        .context("opening the bucket (R2_* / ASSETS_* settings)")?;
    let (repos, tables, legacy, remover) = if flags.dry_run {
        let (repos, tables, legacy) = dry_run_target(&pool, &found, tables).await?;
        (repos, tables, legacy, None)
    } else {
        let legacy = drama_postgres::adopt_legacy_schema(&pool)
            .await
            .context("moving the old tables aside and migrating")?
            .context("the old tables disappeared while they were being adopted")?;
        let mut database = settings.database.clone();
        database.max_connections = database.max_connections.max(u32::from(flags.jobs) + 2);
        let store = Arc::new(PgStore::new(database.pool()?));
        let tables = PgLegacyTables::open(pool.clone(), &legacy.schema).await?;
        let remover: Arc<dyn DramaRemover> = ApiDelete::new(store.clone(), bucket.clone());
        (Repositories::of(store), tables, legacy, Some(remover))
    };
    options.dry_run = flags.dry_run;
    let stop = CancellationToken::new();
    stop_on_ctrl_c(&stop);
    let progress = Meter::new("adopt");
    let mut importer = Importer::new(bucket, repos, options)?.from_tables(Arc::new(tables));
    if let Some(remover) = remover {
        importer = importer.delete_gone_with(remover);
    }
    let mut report = importer.run(&progress, &stop).await?;
    progress.finish();
    let jobs = legacy.rows("jobs");
    if jobs > 0 {
        report.notes.push(format!(
            "{}.jobs: {jobs} historical job row(s), not imported (as jobs/*.json of the old \
             bucket)",
            legacy.schema
        ));
    }
    report.notes.push(if flags.dry_run {
        format!(
            "the old tables ({legacy}) stay where they are; a real run moves them into schema \
             {} first",
            drama_postgres::LEGACY_SCHEMA
        )
    } else {
        format!(
            "the old tables stay in schema {} ({legacy}); drop it once nothing needs them: \
             drop schema {} cascade",
            legacy.schema, legacy.schema
        )
    });
    let summary = import_summary(&report, flags.report.as_deref());
    conclude(
        flags.report.as_deref(),
        &report,
        &summary,
        report.interrupted,
        report.is_failure(),
    )
}

/// Where a dry run writes: nowhere. When the old tables still sit in `public` on a database
/// we never migrated, our schema does not exist yet, so the run compares against an empty
/// in-memory store (what a real run into the fresh schema would find); once they are moved,
/// against the database itself. A rolled-back database (our history, the old tables back in
/// `public`) is refused: our dramas wait in `drama_server`, where the store cannot read them,
/// and an empty store would call every drama `imported`, unlike the real run.
async fn dry_run_target(
    pool: &sqlx::PgPool,
    found: &LegacySchema,
    tables: PgLegacyTables,
) -> anyhow::Result<(Repositories, PgLegacyTables, LegacySchema)> {
    let history = drama_postgres::schema_report(pool).await?;
    let ours_applied = history
        .applied
        .iter()
        .any(|m| !history.unknown.iter().any(|u| u.version == m.version));
    if found.in_public() && ours_applied {
        anyhow::bail!(
            "this database was rolled back: public holds the old server's tables again and \
             this server's wait in schema drama_server, where a dry run cannot compare with \
             them, so its report would call every drama imported instead of telling \
             unchanged, updated, edited and taken ones apart; nothing was changed. Back the \
             database up (pg_dump) and run `drama-server migrate --adopt-legacy` without \
             --dry-run: the roll-forward moves the tables in one transaction, then reports \
             what it imported (docs/MIGRATION.md, \"Rolling forward\")"
        );
    }
    let repos = if found.in_public() {
        let store = Arc::new(drama_dal::MemoryStore::new());
        Repositories {
            dramas: store.clone(),
            users: store.clone(),
            imports: Arc::new(MemoryLegacyImports::new(store)),
        }
    } else {
        let report = history;
        if !report.pending.is_empty() {
            anyhow::bail!(
                "the schema is behind this build ({} pending migration(s)); run `drama-server \
                 migrate --adopt-legacy` without --dry-run, or `drama-server migrate`, first",
                report.pending.len()
            );
        }
        Repositories::of(Arc::new(PgStore::new(pool.clone())))
    };
    Ok((repos, tables, found.clone()))
}
