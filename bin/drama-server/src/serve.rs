//! `serve`: the HTTP API (and, with the job engine, in-process workers).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use anyhow::Context as _;
use drama_api::ApiState;
use drama_app::App;
use drama_dal::{MemoryStore, NewUser, Store, UserRepository as _};
use drama_domain::UserId;
use drama_postgres::PgStore;

use crate::check;
use crate::cli::ServeArgs;
use crate::settings::Settings;

/// The store the process runs on.
pub(crate) enum Backend {
    /// PostgreSQL: data is kept.
    Postgres(PgStore),
    /// Process memory: nothing survives a restart.
    Memory(Arc<MemoryStore>),
}

impl Backend {
    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Postgres(pg) => Arc::new(pg.clone()),
            Self::Memory(m) => m.clone(),
        }
    }
}

/// Connects to PostgreSQL, or — with no `DATABASE_URL` — sets up the embedded in-memory store.
/// Refuses a schema that is behind this binary unless `migrate` is set, in which case it
/// applies the pending migrations.
pub(crate) async fn backend(settings: &Settings, migrate: bool) -> anyhow::Result<Backend> {
    if settings.database.url.trim().is_empty() {
        return Ok(Backend::Memory(Arc::new(MemoryStore::new())));
    }
    let pool = check::connect(&settings.database).await?;
    let report = drama_postgres::schema_report(&pool).await?;
    if !report.pending.is_empty() {
        if migrate {
            drama_postgres::migrate(&pool)
                .await
                .context("applying migrations")?;
            tracing::info!(applied = report.pending.len(), "migrations applied");
        } else {
            anyhow::bail!(
                "the database schema is behind this build ({} pending migration(s), first {} {}); \
                 run `drama-server migrate` (or start with --migrate)",
                report.pending.len(),
                report.pending[0].version,
                report.pending[0].description
            );
        }
    }
    if !report.modified.is_empty() {
        anyhow::bail!(
            "applied migration {} was modified after it was applied; restore the original file",
            report.modified[0].version
        );
    }
    // The pool for requests gets the configured size; `connect` above used a small one.
    let pool = settings.database.pool()?;
    Ok(Backend::Postgres(PgStore::new(pool)))
}

/// Prints what an operator of the embedded mode needs, loudly.
#[allow(clippy::print_stderr)]
async fn announce_embedded(store: &MemoryStore, settings: &Settings) -> anyhow::Result<()> {
    let user = UserId::random();
    let mut new = NewUser::new(user);
    new.display_name = Some("local".to_owned());
    new.tokens = 1_000_000;
    store.create_user(&new).await?;
    let key = drama_dal::ApiKeyRepository::create_api_key(
        store,
        user,
        "embedded",
        &["service".to_owned()],
        None,
    )
    .await?;
    let base = format!("http://localhost:{}", settings.server.port);
    eprintln!(
        "\n  ================================================================\n  \
         EMBEDDED MODE: no DATABASE_URL is set. Data lives in memory and is\n  \
         LOST when the process stops. Assets go to the {} store.\n  \n  \
         API key (shown once):  {}\n  \
         REST:                  curl -H 'Authorization: Bearer {}' {base}/dramas\n  \
         GraphiQL:              {base}/graphql\n  \
         ================================================================\n",
        format!("{:?}", settings.assets.backend()).to_lowercase(),
        key.key,
        key.key,
    );
    Ok(())
}

pub(crate) async fn serve(settings: Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let backend = backend(&settings, args.migrate).await?;
    let assets = drama_assets::open_store(&settings.assets)
        .await
        .context("opening the asset store")?;
    let ai = drama_ai::AiProviders::from_settings(&settings.ai)
        .context("configuring the AI providers")?;
    tracing::info!(
        scripts = if ai.offline_scripts() { "offline" } else { "remote" },
        images = ?ai.image_provider(),
        videos = ?ai.video_model().model().provider,
        "AI providers ready"
    );
    if let Backend::Memory(memory) = &backend {
        announce_embedded(memory, &settings).await?;
    }
    let app =
        App::new(backend.store(), assets).with_public_base_url(settings.server.public_origin());
    let state = ApiState::new(app.clone(), settings.http.clone());

    let sweeper = tokio::spawn(
        app.clone()
            .run_sweeper(Duration::from_secs(settings.server.sweep_interval.max(1))),
    );

    let workers = match settings.server.http_workers {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    let bind = (settings.server.host.clone(), settings.server.port);
    tracing::info!(host = %bind.0, port = bind.1, workers, "serving HTTP");
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(from_fn(drama_api::middleware::request_context))
            .configure(drama_api::configure(state.clone()))
    })
    .workers(workers)
    .shutdown_timeout(30)
    .bind(&bind)
    .with_context(|| format!("cannot listen on {}:{}", bind.0, bind.1))?
    .run();
    // actix stops accepting on SIGINT/SIGTERM and drains in-flight requests.
    server.await.context("HTTP server failed")?;
    sweeper.abort();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}
