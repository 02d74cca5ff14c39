//! `migrate` and `check`: the database, the bucket and the providers as an operator sees them.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use drama_postgres::{PgError, PgSettings, SchemaReport};
use sqlx::ConnectOptions as _;

use crate::settings::Settings;

/// How long `check` and `migrate` wait for the server before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects, translating the usual failures into sentences an operator can act on.
pub(crate) async fn connect(settings: &PgSettings) -> anyhow::Result<sqlx::PgPool> {
    if settings.url.trim().is_empty() {
        anyhow::bail!(
            "DATABASE_URL is not set. Set it to the database to use, e.g. \
             postgres://postgres:PASSWORD@db.<project-ref>.supabase.co:5432/postgres"
        );
    }
    let mut settings = settings.clone();
    settings.acquire_timeout = CONNECT_TIMEOUT;
    settings.max_connections = 2;
    // One direct attempt first: a pool retries until its timeout and then reports only that,
    // hiding the reason (refused, authentication, missing database).
    let options = settings.connect_options()?;
    let fail = |reason: String| {
        anyhow::anyhow!(
            "cannot connect to PostgreSQL at {}: {reason}",
            settings.redacted_url()
        )
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => drop(conn),
        Ok(Err(e)) => return Err(fail(explain(&e))),
        Err(_) => return Err(fail(explain(&sqlx::Error::PoolTimedOut))),
    }
    settings.connect().await.map_err(|e| match e {
        PgError::Connect(e) => fail(explain(&e)),
        other => other.into(),
    })
}

fn explain(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused (is the server running, and is the host and port right?)".into()
        }
        sqlx::Error::Io(io) => format!("network error: {io}"),
        sqlx::Error::PoolTimedOut => format!(
            "no answer within {} s (is the host reachable? Supabase's direct host is IPv6-only; \
             use the session pooler on an IPv4-only network)",
            CONNECT_TIMEOUT.as_secs()
        ),
        sqlx::Error::Tls(t) => format!("TLS failed: {t}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => "password authentication failed".into(),
            Some("28000") => format!("not allowed to connect: {}", db.message()),
            Some("3D000") => format!("{} (create it, or fix the URL)", db.message()),
            _ => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// The database, the bucket and the providers, as `serve` would use them.
/// With a Supabase project configured but no `DATABASE_URL`, says where the URL is.
pub(crate) fn require_database(settings: &Settings) -> anyhow::Result<()> {
    if settings.database.url.trim().is_empty()
        && let Some(url) = settings.http.auth.supabase_url.as_deref()
    {
        anyhow::bail!(
            "DATABASE_URL is not set: {}",
            crate::supabase::database_hint(Some(url))
        );
    }
    Ok(())
}

pub(crate) async fn check(settings: &Settings) -> anyhow::Result<ExitCode> {
    require_database(settings)?;
    let pool = connect(&settings.database).await?;
    let report = drama_postgres::schema_report(&pool).await?;
    let mut out = std::io::stdout().lock();
    print_report(&mut out, &settings.database.redacted_url(), &report)?;
    // Which endpoint is used when an old environment names two: the check below says where
    // it went, this says why not to the other one.
    if settings.assets.backend() == drama_assets::BackendKind::S3
        && let Some(note) = settings.assets.endpoint_note()
    {
        writeln!(out, "assets: note: {note}")?;
    }
    // A store that cannot even be opened (a bad setting) is a failed check, not an error.
    let assets_ok = match drama_assets::open_store(&settings.assets).await {
        Ok(store) => {
            let assets = store.check().await;
            write!(out, "{assets}")?;
            assets.ok()
        }
        Err(e) => {
            writeln!(out, "assets: FAILED: {e}")?;
            false
        }
    };
    let ai_ok = match drama_ai::AiProviders::from_settings(&settings.ai) {
        Ok(ai) => {
            print_providers(&mut out, &ai)?;
            true
        }
        Err(e) => {
            writeln!(out, "AI providers: FAILED: {e}")?;
            false
        }
    };
    // Informational: without ffmpeg most episodes still stitch (see `ffmpeg_line`).
    writeln!(out, "{}", ffmpeg_line(&settings.worker.ffmpeg).await)?;
    Ok(if report.is_healthy() && assets_ok && ai_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// What `check` says about ffmpeg: found (with its version) or absent, and what that means
/// for stitching episodes.
pub(crate) async fn ffmpeg_line(path: &str) -> String {
    let run = tokio::process::Command::new(path)
        .arg("-version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let version = match tokio::time::timeout(Duration::from_secs(10), run).await {
        Ok(Ok(output)) if output.status.success() => {
            let text = String::from_utf8_lossy(&output.stdout);
            Some(
                text.lines()
                    .next()
                    .and_then(|l| l.strip_prefix("ffmpeg version "))
                    .and_then(|l| l.split_whitespace().next())
                    .unwrap_or("unknown")
                    .to_owned(),
            )
        }
        _ => None,
    };
    match version {
        Some(version) => format!(
            "ffmpeg: found ({path}, version {version}); episodes whose clips share codec \
             parameters are joined without it, the others are re-encoded with it"
        ),
        None => format!(
            "ffmpeg: absent (not found at {path}); episodes whose clips share codec parameters \
             (the offline provider's, one provider's H.264/AAC MP4s) are still stitched, \
             clips that differ fail until ffmpeg is installed (apt-get install ffmpeg) or \
             FFMPEG_PATH points at it"
        ),
    }
}

/// Which provider serves each kind of call (configured, not called: calls cost money).
fn print_providers(
    out: &mut impl std::io::Write,
    ai: &drama_ai::AiProviders,
) -> std::io::Result<()> {
    let scripts = if ai.offline_scripts() {
        "offline (no GEMINI_API_KEY or OPENAI_API_KEY)".to_owned()
    } else {
        match ai.script_model(None) {
            Ok(m) => {
                let info = m.model();
                format!("{} {}", info.provider.as_str(), info.model)
            }
            Err(e) => format!("FAILED: {e}"),
        }
    };
    let images = ai.image_model().model();
    let videos = ai.video_model().model();
    writeln!(out, "AI providers (configured; not called):")?;
    writeln!(out, "  scripts: {scripts}")?;
    writeln!(
        out,
        "  images:  {} {}",
        images.provider.as_str(),
        images.model
    )?;
    writeln!(
        out,
        "  videos:  {} {}",
        videos.provider.as_str(),
        videos.model
    )
}

fn print_report(
    out: &mut impl std::io::Write,
    url: &str,
    report: &SchemaReport,
) -> std::io::Result<()> {
    writeln!(out, "database: {url}")?;
    writeln!(
        out,
        "  server version: PostgreSQL {}",
        report.server_version
    )?;
    writeln!(out, "  applied migrations: {}", report.applied.len())?;
    for m in &report.applied {
        let by = if report.applied_by_supabase_cli.contains(m) {
            " (by the Supabase CLI)"
        } else {
            ""
        };
        writeln!(out, "    {} {}{by}", m.version, m.description)?;
    }
    if report.pending.is_empty() {
        writeln!(out, "  pending migrations: none")?;
    } else {
        writeln!(
            out,
            "  pending migrations: {} (run `drama-server migrate`)",
            report.pending.len()
        )?;
        for m in &report.pending {
            writeln!(out, "    {} {}", m.version, m.description)?;
        }
    }
    for m in &report.modified {
        writeln!(
            out,
            "  MODIFIED after it was applied: {} {} (never edit an applied migration)",
            m.version, m.description
        )?;
    }
    for m in &report.unknown {
        writeln!(
            out,
            "  applied but unknown to this binary: {} {} (the database is newer than this build)",
            m.version, m.description
        )?;
    }
    match &report.legacy {
        Some(legacy) if legacy.in_public() => writeln!(
            out,
            "  the old server's schema is in public: {legacy}\n  to adopt it, {}",
            crate::migrate::adopt_hint().replace('\n', "\n  ")
        )?,
        Some(legacy) => writeln!(
            out,
            "  the old server's tables, moved aside: {legacy} (`drama-server migrate \
             --adopt-legacy` imports what changed; drop schema {} when done)",
            legacy.schema
        )?,
        None => {}
    }
    if report.tables_without_rls.is_empty() {
        writeln!(out, "  row level security: on for every table")?;
    } else {
        writeln!(
            out,
            "  row level security OFF for: {}",
            report.tables_without_rls.join(", ")
        )?;
    }
    writeln!(
        out,
        "  status: {}",
        if report.is_healthy() {
            "healthy"
        } else {
            "NOT healthy"
        }
    )
}
