//! `import-r2` and `export-r2`: the data migration from the old server's bucket, and back
//! (runbook: `docs/MIGRATION.md`).
//!
//! The old bucket is the configured asset store (`R2_*`, or any S3 endpoint through
//! `R2_ENDPOINT_URL`): binaries stay where they are, and the storage records the import writes
//! name keys of the bucket the server serves from.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use drama_app::pipeline::jobs_port::{EngineJobs, JobsPort};
use drama_domain::UserId;
use drama_legacy::{
    BucketUrls, CancellationToken, DramaRemover, ExportOptions, ExportOwners, ExportReport,
    ExportedDrama, Exporter, ImportOptions, ImportReport, Importer, Layout, LibraryImporter,
    LibraryOptions, LibraryReport, OwnerMap, Progress, Reason, Repositories,
};
use drama_postgres::PgStore;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::serve::{Backend, backend};
use crate::settings::Settings;

/// Exit status of a run stopped by Ctrl-C (128 + SIGINT), as shells report it.
const INTERRUPTED: u8 = 130;

/// What `import-r2` and `migrate --adopt-legacy` share: whom the old dramas belong to, how
/// the run goes, and where the report goes.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportFlags {
    /// The user that the old default owner `10000` becomes; created if missing.
    #[arg(long)]
    pub(crate) owner: Option<UserId>,
    /// JSON file mapping other old owner ids to user UUIDs (`{"alice": "<uuid>"}`); the users
    /// are created if missing.
    #[arg(long, value_name = "FILE")]
    pub(crate) owner_map: Option<PathBuf>,
    /// Another URL base that points into the bucket (repeatable), e.g. the old server's
    /// `https://pub-….r2.dev` when `R2_PUBLIC_URL` is now a custom domain.
    #[arg(long = "bucket-url", value_name = "URL")]
    pub(crate) bucket_urls: Vec<String>,
    /// Read and check everything, write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Replace dramas edited (or recreate dramas deleted) in the database since their import.
    #[arg(long)]
    pub(crate) overwrite: bool,
    /// Delete a drama imported earlier whose source (file or row) is gone, when it was not
    /// edited in this database since its import (without it, such dramas are only reported
    /// as `source_deleted`).
    #[arg(long)]
    pub(crate) delete_gone: bool,
    /// Dramas imported at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) jobs: u16,
    /// Most MiB of old drama files held at once across the jobs (read, parsed, being
    /// written); a file larger than this waits until no other is held.
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub(crate) memory_mib: u32,
    /// Write the full report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
}

impl ImportFlags {
    /// `--owner-map` read, with `--owner` as the entry for `10000`.
    pub(crate) fn owners(&self) -> anyhow::Result<OwnerMap> {
        let mut owners = match &self.owner_map {
            Some(path) => {
                let bytes = std::fs::read(path)
                    .with_context(|| format!("reading the owner map {}", path.display()))?;
                OwnerMap::parse(&bytes)?
            }
            None => OwnerMap::default(),
        };
        if let Some(owner) = self.owner {
            owners = owners.with_default_owner(owner);
        }
        Ok(owners)
    }

    /// Import options (bucket root layout) for these flags.
    pub(crate) fn options(&self, settings: &Settings) -> anyhow::Result<ImportOptions> {
        Ok(ImportOptions {
            layout: Layout::default(),
            owners: self.owners()?,
            bucket_urls: BucketUrls::for_store(&settings.assets, &self.bucket_urls)?,
            dry_run: self.dry_run,
            overwrite: self.overwrite,
            delete_gone: self.delete_gone,
            jobs: usize::from(self.jobs),
            memory_budget: u64::from(self.memory_mib) * 1024 * 1024,
            initial_credits: settings.credits.opening(),
            trust_legacy_balances: false,
            max_legacy_credits: settings.credits.legacy_cap(),
            legacy_access: Vec::new(),
        })
    }
}

/// `import-r2` options.
#[derive(Debug, clap::Args)]
pub(crate) struct ImportArgs {
    /// Key prefix under which the old layout (`dramas/…`) sits in the bucket.
    #[arg(long, default_value = "")]
    pub(crate) prefix: String,
    /// Leave the old asset library (`10000/{project}/…`) alone.
    #[arg(long)]
    pub(crate) skip_library: bool,
    #[command(flatten)]
    pub(crate) flags: ImportFlags,
}

/// `export-r2` options.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// Key prefix under which to write the old layout (`dramas/…`).
    #[arg(long, default_value = "")]
    pub(crate) prefix: String,
    /// Read and serialise everything, write nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Also export this user's dramas (repeatable). By default only the old server's world
    /// goes back: the owners an import brought dramas in for, and `LEGACY_USER_ID`.
    #[arg(long = "owner", value_name = "UUID", conflicts_with = "all_owners")]
    pub(crate) owners: Vec<UserId>,
    /// Export every user's dramas. The old server serves every drama of its bucket without
    /// authentication: those created in the new system become public.
    #[arg(long)]
    pub(crate) all_owners: bool,
    /// Dramas exported at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) jobs: u16,
    /// Write the full report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
}

/// Deletes a drama whose source is gone the way `DELETE /dramas/{id}` does
/// ([`drama_app::delete_drama_of`]): the owner's runs on it that are still going are
/// cancelled, so none of their tasks goes on to pay a provider for a drama that is gone.
pub(crate) struct ApiDelete {
    store: Arc<PgStore>,
    assets: Arc<dyn drama_assets::AssetStore>,
    jobs: Arc<dyn JobsPort>,
}

impl ApiDelete {
    pub(crate) fn new(store: Arc<PgStore>, assets: Arc<dyn drama_assets::AssetStore>) -> Arc<Self> {
        let engine = Arc::new(drama_postgres::jobs::PgJobStore::new(store.pool().clone()));
        Arc::new(Self {
            store,
            assets,
            jobs: Arc::new(EngineJobs(engine)),
        })
    }
}

#[async_trait::async_trait]
impl DramaRemover for ApiDelete {
    async fn delete_drama(
        &self,
        owner: UserId,
        id: &drama_domain::DramaId,
    ) -> Result<(), drama_dal::RepoError> {
        drama_app::delete_drama_of(
            self.store.as_ref(),
            self.assets.as_ref(),
            self.jobs.as_ref(),
            owner,
            id,
        )
        .await
        .map_err(|e| match e {
            drama_app::AppError::NotFound { entity, id } => {
                drama_dal::RepoError::NotFound { entity, id }
            }
            other => drama_dal::RepoError::Unavailable(other.to_string()),
        })
    }
}

/// The database and the bucket, with a pool large enough for `jobs` concurrent dramas.
async fn connect(
    settings: &Settings,
    jobs: u16,
) -> anyhow::Result<(
    Repositories,
    Arc<PgStore>,
    Arc<dyn drama_assets::AssetStore>,
)> {
    if settings.database.url.trim().is_empty() {
        anyhow::bail!(
            "the legacy migration works on PostgreSQL: set DATABASE_URL (the embedded in-memory \
             mode keeps nothing)"
        );
    }
    // Checks the connection and that the schema is current.
    let Backend::Postgres(_) = backend(settings, false).await? else {
        anyhow::bail!("the legacy migration needs PostgreSQL");
    };
    let mut database = settings.database.clone();
    database.max_connections = database.max_connections.max(u32::from(jobs) + 2);
    let store = Arc::new(PgStore::new(database.pool()?));
    let bucket = drama_assets::open_store(&settings.assets)
        .await
        .context("opening the bucket (R2_* / ASSETS_* settings)")?;
    Ok((Repositories::of(store.clone()), store, bucket))
}

/// Cancels `stop` on the first Ctrl-C (dramas in progress finish); exits on the second.
pub(crate) fn stop_on_ctrl_c(stop: &CancellationToken) {
    let stop = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        tracing::warn!("interrupted: finishing the dramas in progress (Ctrl-C again to abort)");
        stop.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(i32::from(INTERRUPTED));
        }
    });
}

pub(crate) async fn import(settings: &Settings, args: ImportArgs) -> anyhow::Result<ExitCode> {
    let mut options = args.flags.options(settings)?;
    options.layout = Layout::new(&args.prefix)?;
    let (repos, store, bucket) = connect(settings, args.flags.jobs).await?;
    let stop = CancellationToken::new();
    stop_on_ctrl_c(&stop);
    let progress = Meter::new("import");
    let library = LibraryOptions {
        layout: options.layout.clone(),
        owners: options.owners.clone(),
        api_origin: settings.server.public_origin(),
        dry_run: options.dry_run,
        jobs: options.jobs,
    };
    let mut report = Importer::new(bucket.clone(), repos, options)?
        .delete_gone_with(ApiDelete::new(store, bucket.clone()))
        .run(&progress, &stop)
        .await?;
    progress.finish();
    if !args.skip_library && !stop.is_cancelled() {
        let progress = Meter::new("library");
        let owners = library.owners.clone();
        // A library that cannot be listed fails the run, but the dramas were imported: their
        // report and summary are still written, with the library's error in them.
        let library = match LibraryImporter::new(bucket, library) {
            Ok(importer) => importer.run(&progress, &stop).await,
            Err(e) => Err(e),
        };
        progress.finish();
        report.library = Some(library.unwrap_or_else(|e| {
            tracing::error!(error = %e, "the asset library could not be imported");
            LibraryReport::stopped(&owners, &e)
        }));
        report.interrupted |= stop.is_cancelled();
    }
    let summary = import_summary(&report, args.flags.report.as_deref());
    conclude(
        args.flags.report.as_deref(),
        &report,
        &summary,
        report.interrupted,
        report.is_failure(),
    )
}

pub(crate) async fn export(settings: &Settings, args: ExportArgs) -> anyhow::Result<ExitCode> {
    let layout = Layout::new(&args.prefix)?;
    let (repos, _, bucket) = connect(settings, args.jobs).await?;
    let owners = if args.all_owners {
        ExportOwners::All
    } else {
        // Old clients keep acting as the legacy user after the cutover: what they create
        // belongs to the old server's world.
        let legacy = settings.http.auth.validate().map_err(anyhow::Error::msg)?;
        ExportOwners::Legacy(args.owners.iter().copied().chain(legacy).collect())
    };
    let options = ExportOptions {
        layout,
        dry_run: args.dry_run,
        jobs: usize::from(args.jobs),
        owners,
    };
    let stop = CancellationToken::new();
    stop_on_ctrl_c(&stop);
    let progress = Meter::new("export");
    let report = Exporter::new(bucket, repos, options)?
        .run(&progress, &stop)
        .await?;
    progress.finish();
    let summary = export_summary(&report, args.report.as_deref());
    conclude(
        args.report.as_deref(),
        &report,
        &summary,
        report.interrupted,
        report.is_failure(),
    )
}

/// Writes the report where asked, prints the summary and answers the exit code: interrupted
/// before failed before success.
pub(crate) fn conclude(
    report_path: Option<&Path>,
    report: &impl Serialize,
    summary: &str,
    interrupted: bool,
    failed: bool,
) -> anyhow::Result<ExitCode> {
    if let Some(path) = report_path {
        write_json(path, report)?;
    }
    print(summary)?;
    Ok(if interrupted {
        ExitCode::from(INTERRUPTED)
    } else if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Writes `value` as pretty JSON, through a temporary file so a reader never sees half of it.
fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(value).context("serialising the report")?;
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, json).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub(crate) fn print(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

pub(crate) fn import_summary(r: &ImportReport, report_file: Option<&Path>) -> String {
    let mut s = String::new();
    let c = &r.counts;
    if r.dry_run {
        let _ = writeln!(
            s,
            "DRY RUN: nothing was written; counts say what a run would do."
        );
    }
    if r.source.origin == "database" {
        let _ = writeln!(s, "{}: {} dramas in {}", r.command, c.total, r.source.index);
    } else {
        let _ = writeln!(
            s,
            "{}: {} files under {}dramas/ (index {}, {} entries; {} files listed, {} not in \
             the index)",
            r.command,
            c.total,
            r.source.prefix,
            r.source.index,
            r.source.index_entries,
            r.source.files_listed,
            r.source.not_in_index
        );
    }
    let _ = writeln!(
        s,
        "  imported {}, updated {}, unchanged {}, skipped {}, failed {}, not started {}",
        c.imported, c.updated, c.unchanged, c.skipped, c.failed, c.not_started
    );
    if c.source_deleted + c.deleted > 0 {
        let verb = if r.dry_run { "would delete" } else { "deleted" };
        let _ = writeln!(
            s,
            "  imported earlier but gone from the source: {verb} {}, kept {}",
            c.deleted, c.source_deleted
        );
    }
    let mib = |bytes: u64| bytes.div_ceil(1024 * 1024);
    let _ = writeln!(
        s,
        "  {:.1} s, {:.1} dramas/s; drama files held at once: peak {} MiB of {} MiB (--memory-mib)",
        r.elapsed_seconds,
        r.dramas_per_second,
        mib(r.memory.peak_bytes),
        mib(r.memory.budget_bytes)
    );
    for user in &r.users_created {
        let verb = if r.dry_run { "would create" } else { "created" };
        let _ = writeln!(s, "  {verb} user {user}");
    }
    for note in &r.notes {
        let _ = writeln!(s, "  note: {note}");
    }
    if !r.defaulted_fields.is_empty() {
        let _ = writeln!(s, "  fields that took their default (times):");
        for (field, n) in &r.defaulted_fields {
            let _ = writeln!(s, "    {field}: {n}");
        }
    }
    for (title, outcome) in [
        ("skipped", drama_legacy::Outcome::Skipped),
        ("failed", drama_legacy::Outcome::Failed),
        (
            "gone from the source, kept",
            drama_legacy::Outcome::SourceDeleted,
        ),
        (
            if r.dry_run {
                "gone from the source, would be deleted"
            } else {
                "gone from the source, deleted"
            },
            drama_legacy::Outcome::Deleted,
        ),
    ] {
        let items: Vec<_> = r.dramas.iter().filter(|d| d.outcome == outcome).collect();
        if items.is_empty() {
            continue;
        }
        let _ = writeln!(s, "  {title}:");
        for d in items {
            let why = d
                .reason
                .as_ref()
                .map(|r| format!("{}: {}", code(r), r.message))
                .unwrap_or_default();
            if why.is_empty() {
                let _ = writeln!(s, "    {}", d.source_key);
            } else {
                let _ = writeln!(s, "    {}: {why}", d.source_key);
            }
        }
    }
    if let Some(library) = &r.library {
        library_summary(&mut s, library, r.dry_run);
    }
    if r.interrupted {
        let _ = writeln!(
            s,
            "  interrupted: run the same command again to continue where it stopped"
        );
    }
    if let Some(path) = report_file {
        let _ = writeln!(s, "  report: {}", path.display());
    }
    s
}

fn library_summary(s: &mut String, r: &LibraryReport, dry_run: bool) {
    let owners = if r.owners.is_empty() {
        "no old owner is mapped (--owner, --owner-map)".to_owned()
    } else {
        format!("owners {}", r.owners.join(", "))
    };
    let verb = if dry_run { "would copy" } else { "copied" };
    let _ = writeln!(
        s,
        "asset library ({owners}): {} records; {verb} {}, again {}, unchanged {}, deleted \
         since their import {}, failed {}, not started {}",
        r.total, r.imported, r.updated, r.unchanged, r.skipped, r.failed, r.not_started
    );
    if let Some(error) = &r.error {
        let _ = writeln!(s, "    stopped: {error}");
    }
    for item in r.items.iter().filter(|i| i.reason.is_some()) {
        if let Some(reason) = &item.reason {
            let _ = writeln!(
                s,
                "    {}: {}: {}",
                item.source_key,
                code(reason),
                reason.message
            );
        }
    }
}

fn export_summary(r: &ExportReport, report_file: Option<&Path>) -> String {
    let mut s = String::new();
    if r.dry_run {
        let _ = writeln!(s, "DRY RUN: nothing was written.");
    }
    let _ = writeln!(
        s,
        "export-r2: {} dramas to {}dramas/: exported {}, failed {}, not started {}",
        r.total, r.prefix, r.exported, r.failed, r.not_started
    );
    let _ = writeln!(
        s,
        "  {:.1} s, {:.1} dramas/s",
        r.elapsed_seconds, r.dramas_per_second
    );
    let _ = writeln!(
        s,
        "  index: {}",
        if r.index_written {
            format!("rewritten with {} entries", r.index_entries)
        } else {
            "left as it was".to_owned()
        }
    );
    if r.repaired > 0 {
        let _ = writeln!(
            s,
            "  {} exported drama(s) leave out what the old server cannot read (the database \
             keeps it):",
            r.repaired
        );
        for d in r.dramas.iter().filter(|d| !d.repairs.is_empty()) {
            for repair in &d.repairs {
                let _ = writeln!(s, "    {}: {repair}", d.key);
            }
        }
    }
    if r.all_owners {
        let _ = writeln!(
            s,
            "  owners: all {} (--all-owners): their dramas are public on the old server",
            r.owners.len()
        );
    } else {
        let owners: Vec<String> = r.owners.iter().map(ToString::to_string).collect();
        let _ = writeln!(s, "  owners: {}", owners.join(", "));
        if r.left_out > 0 {
            let _ = writeln!(
                s,
                "  left out: {} drama(s) of {} other owner(s), created in the new system \
                 (--owner UUID or --all-owners exports them, public on the old server)",
                r.left_out, r.left_out_owners
            );
        }
    }
    let set_aside: Vec<&ExportedDrama> =
        r.dramas.iter().filter(|d| d.set_aside.is_some()).collect();
    if !set_aside.is_empty() {
        let verb = if r.dry_run {
            "would be copied"
        } else {
            "copied"
        };
        let _ = writeln!(
            s,
            "  {} old drama file(s) that no import or earlier export explains (an old drama \
             never imported, or changed since its import) {verb} aside before being \
             overwritten; compare them with the exported drama of the same id:",
            set_aside.len()
        );
        for d in set_aside {
            let _ = writeln!(
                s,
                "    {} -> {}",
                d.key,
                d.set_aside.as_deref().unwrap_or_default()
            );
        }
    }
    let moved: Vec<&str> = r.moved_aside.iter().map(|m| m.key.as_str()).collect();
    let left: Vec<&String> = r
        .stale_files
        .iter()
        .filter(|k| !moved.contains(&k.as_str()))
        .collect();
    if !left.is_empty() {
        let _ = writeln!(
            s,
            "  {} drama file(s) in the bucket for dramas the export did not write (left in \
             place; the old server still serves them by id, and lists those marked +):",
            left.len()
        );
        for key in left {
            let mark = if r.stale_indexed.contains(key) {
                "+"
            } else {
                " "
            };
            let _ = writeln!(s, "   {mark}{key}");
        }
    }
    if !r.moved_aside.is_empty() {
        let verb = if r.dry_run { "would move" } else { "moved" };
        let _ = writeln!(
            s,
            "  {} file(s) of dramas deleted since their import, so that the old server no \
             longer serves them ({verb} aside):",
            r.moved_aside.len()
        );
        for m in &r.moved_aside {
            match &m.reason {
                None => {
                    let _ = writeln!(s, "    {} -> {}", m.key, m.to);
                }
                Some(reason) => {
                    let _ = writeln!(
                        s,
                        "    failed {}: {}: {}",
                        m.key,
                        code(reason),
                        reason.message
                    );
                }
            }
        }
    }
    for d in r.dramas.iter().filter(|d| d.reason.is_some()) {
        if let Some(reason) = &d.reason {
            let _ = writeln!(
                s,
                "  failed {}: {}: {}",
                d.key,
                code(reason),
                reason.message
            );
        }
    }
    if r.interrupted {
        let _ = writeln!(s, "  interrupted: run the same command again");
    }
    if let Some(path) = report_file {
        let _ = writeln!(s, "  report: {}", path.display());
    }
    s
}

fn code(reason: &Reason) -> String {
    serde_json::to_value(reason.code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Progress on stderr: a bar with counts and rate on a terminal, plain lines otherwise.
pub(crate) struct Meter {
    what: &'static str,
    bar: Option<ProgressBar>,
    state: Mutex<MeterState>,
}

struct MeterState {
    total: usize,
    done: usize,
    by_outcome: std::collections::BTreeMap<String, usize>,
    started: Instant,
    last_line: Instant,
}

impl Meter {
    pub(crate) fn new(what: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            if let Ok(style) = ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} eta {eta} {msg}",
            ) {
                bar.set_style(style);
            }
            bar.set_prefix(what);
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Self {
            what,
            bar,
            state: Mutex::new(MeterState {
                total: 0,
                done: 0,
                by_outcome: std::collections::BTreeMap::new(),
                started: Instant::now(),
                last_line: Instant::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeterState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    #[allow(clippy::print_stderr)]
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }
}

fn counts_text(by_outcome: &std::collections::BTreeMap<String, usize>) -> String {
    by_outcome
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Progress for Meter {
    fn start(&self, total: usize) {
        let mut state = self.lock();
        state.total = total;
        state.started = Instant::now();
        drop(state);
        match &self.bar {
            Some(bar) => bar.set_length(total as u64),
            None => self.line(&format!("{}: {total} to do", self.what)),
        }
    }

    fn step(&self, item: &str, outcome: &str, reason: Option<&Reason>) {
        let mut state = self.lock();
        state.done += 1;
        *state.by_outcome.entry(outcome.to_owned()).or_default() += 1;
        let counts = counts_text(&state.by_outcome);
        let (done, total) = (state.done, state.total);
        // Plain output: a line every 5 % (or 10 s), plus every skip and failure.
        let every = (total / 20).max(1);
        let periodic = done % every == 0
            || done == total
            || state.last_line.elapsed() >= Duration::from_secs(10);
        let rate = {
            #[allow(clippy::cast_precision_loss)]
            let done = done as f64;
            done / state.started.elapsed().as_secs_f64().max(1e-9)
        };
        if periodic {
            state.last_line = Instant::now();
        }
        drop(state);
        if let Some(reason) = reason {
            self.line(&format!("{outcome} {item}: {}", reason.message));
        }
        match &self.bar {
            Some(bar) => {
                bar.inc(1);
                bar.set_message(counts);
            }
            None if periodic => self.line(&format!(
                "{}: {done}/{total} ({counts}), {rate:.1}/s",
                self.what
            )),
            None => {}
        }
    }
}
