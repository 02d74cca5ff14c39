//! `serve` and `worker`: wiring the ports, the workers and the HTTP server.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use actix_web::middleware::from_fn;
use anyhow::Context as _;
use drama_api::ApiState;
use drama_api::metrics::{HttpMetrics, MetricsEndpoint};
use drama_app::pipeline::jobs_port::EngineJobs;
use drama_app::pipeline::spec::class;
use drama_app::{App, Ports};
use drama_assets::BackendKind;
use drama_dal::MemoryStore;
use drama_jobs::{JobStore, MemoryJobStore, ResourceLimit, Worker, WorkerConfig, WorkerHandle};
use drama_postgres::jobs::PgJobStore;
use drama_postgres::{PgSettings, PgStore};

use crate::check;
use crate::cli::ServeArgs;
use crate::pools::{PoolPlan, Role};
use crate::quickstart;
use crate::settings::Settings;

/// The store the process runs on.
pub(crate) enum Backend {
    /// PostgreSQL: data is kept.
    Postgres(PgStore),
    /// Process memory: nothing survives a restart.
    Memory,
}

/// Connects to PostgreSQL, or — with no `DATABASE_URL` — selects the in-memory store.
/// Refuses a schema that is behind this binary unless `migrate` is set, in which case it
/// applies the pending migrations.
pub(crate) async fn backend(settings: &Settings, migrate: bool) -> anyhow::Result<Backend> {
    if settings.database.url.trim().is_empty() {
        return Ok(Backend::Memory);
    }
    Ok(Backend::Postgres(
        database(&settings.database, migrate).await?,
    ))
}

/// The configured database, its schema checked (and, with `migrate`, brought up to date).
async fn database(database: &PgSettings, migrate: bool) -> anyhow::Result<PgStore> {
    let pool = check::connect(database).await?;
    let report = drama_postgres::schema_report(&pool).await?;
    if let Some(legacy) = report.legacy.as_ref().filter(|l| l.in_public()) {
        anyhow::bail!(
            "this database holds the old server's schema ({legacy}), not this server's; {}",
            crate::migrate::adopt_hint()
        );
    }
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
    Ok(PgStore::new(database.pool()?))
}

/// What `serve` runs on (its pool sized by `plan`), and the quick start's store when there
/// is no `DATABASE_URL`.
async fn serve_backend(
    settings: &mut Settings,
    migrate: bool,
    plan: PoolPlan,
) -> anyhow::Result<(Backend, Option<quickstart::Store>)> {
    if !settings.database.url.trim().is_empty() {
        let store = database(&plan.apply(&settings.database), migrate).await?;
        plan.log();
        return Ok((Backend::Postgres(store), None));
    }
    quickstart::guard(settings)?;
    if !settings.source_of("server.host").is_explicit() {
        settings.server.host = "127.0.0.1".to_owned();
    }
    match quickstart::choose(settings).await {
        quickstart::Store::Embedded(cluster) => {
            if settings.assets.assets_signing_secret.is_none() {
                settings.assets.assets_signing_secret =
                    cluster.state.signing_secret.clone().map(Into::into);
            }
            let mut pg = plan.apply(&settings.database);
            pg.url.clone_from(&cluster.url);
            match database(&pg, true).await {
                Ok(store) => {
                    plan.log();
                    Ok((
                        Backend::Postgres(store),
                        Some(quickstart::Store::Embedded(cluster)),
                    ))
                }
                Err(e) => {
                    cluster.stop();
                    Err(e.context("preparing the embedded PostgreSQL"))
                }
            }
        }
        memory => Ok((Backend::Memory, Some(memory))),
    }
}

/// Workers of either store.
enum Workers {
    Postgres(WorkerHandle<PgJobStore>),
    Memory(WorkerHandle<MemoryJobStore>),
}

impl Workers {
    async fn shutdown(self) {
        let report = match self {
            Self::Postgres(w) => w.shutdown().await,
            Self::Memory(w) => w.shutdown().await,
        };
        tracing::info!(?report, "workers stopped");
    }
}

fn worker_config(settings: &Settings) -> WorkerConfig {
    let w = &settings.worker;
    WorkerConfig {
        // The settings refuse zeros and leases under 5 s; the bounds only keep the engine's
        // own rules whatever the caller.
        concurrency: w.concurrency.max(1),
        lease_ttl: Duration::from_secs(w.lease_seconds.max(5)),
        heartbeat_interval: Duration::from_secs((w.lease_seconds / 3).max(1)),
        retention: w.retention(),
        resource_limits: vec![
            ResourceLimit::concurrency(class::IMAGE, w.image_limit.max(1)),
            ResourceLimit::concurrency(class::VIDEO, w.video_limit.max(1)),
            ResourceLimit::concurrency(class::SCRIPT, w.script_limit.max(1)),
            ResourceLimit::concurrency(class::STITCH, w.stitch_limit.max(1)),
        ],
        ..WorkerConfig::default()
    }
}

async fn start_workers<S: JobStore>(
    store: Arc<S>,
    app: &App,
    settings: &Settings,
) -> anyhow::Result<WorkerHandle<S>> {
    if let Some(warning) = settings
        .worker
        .lease_warning(settings.database.idle_in_transaction_timeout)
    {
        tracing::warn!("{warning}");
    }
    Worker::start(store, app.registry(), worker_config(settings))
        .await
        .context("starting the job workers")
}

/// The use cases and (when asked) the workers of this process.
async fn wire(
    settings: &Settings,
    backend: &Backend,
    with_workers: bool,
) -> anyhow::Result<(App, Option<Workers>, Option<Arc<MemoryStore>>)> {
    // Signed file URLs name this server; without ASSETS_BASE_URL that is where clients
    // reach it (PUBLIC_URL), not a fixed default they may not be able to reach.
    let mut asset_settings = settings.assets.clone();
    if asset_settings.assets_base_url.is_none() {
        asset_settings.assets_base_url = Some(settings.server.public_origin());
    }
    let assets = drama_assets::open_store(&asset_settings)
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
    let finish = |ports: Ports| {
        App::new(ports)
            .with_public_base_url(settings.server.public_origin())
            .with_ffmpeg(settings.worker.ffmpeg.clone())
            .with_offline_pricing(settings.worker.price_offline_calls)
            .with_quotas(settings.quotas.into())
            .with_text_limits(settings.limits.into())
            .with_initial_credits(settings.credits.opening())
    };
    match backend {
        Backend::Postgres(pg) => {
            let jobs = Arc::new(PgJobStore::new(pg.pool().clone()));
            let pg = Arc::new(pg.clone());
            let app = finish(Ports {
                store: pg.clone(),
                assets,
                generation: pg,
                jobs: Arc::new(EngineJobs(jobs.clone())),
                ai,
            });
            let workers = if with_workers {
                Some(Workers::Postgres(
                    start_workers(jobs, &app, settings).await?,
                ))
            } else {
                None
            };
            Ok((app, workers, None))
        }
        Backend::Memory => {
            let (ports, store, jobs) = Ports::memory(assets, ai);
            let app = finish(ports);
            let workers = if with_workers {
                Some(Workers::Memory(start_workers(jobs, &app, settings).await?))
            } else {
                None
            };
            Ok((app, workers, Some(store)))
        }
    }
}

/// Creates (or finds again) the quick-start user and key, and says loudly what runs where.
async fn announce_quick_start(
    settings: &Settings,
    quick: &mut quickstart::Store,
    backend: &Backend,
    memory: Option<&Arc<MemoryStore>>,
    state: &ApiState,
) -> anyhow::Result<()> {
    let (user, key) = match (backend, memory, &mut *quick) {
        (Backend::Postgres(store), _, quickstart::Store::Embedded(cluster)) => {
            let (user, key) =
                quickstart::user_key(store, cluster.state.user, cluster.state.api_key.clone())
                    .await?;
            cluster.state.user = Some(user.0);
            cluster.state.api_key = Some(key.clone());
            cluster.state.save(&cluster.dir)?;
            (user, key)
        }
        (_, Some(store), _) => quickstart::user_key(store.as_ref(), None, None).await?,
        _ => anyhow::bail!("the quick start has no store"),
    };
    let console = state.console_sign_in_link(&settings.server.public_origin(), &key);
    quickstart::announce(settings, quick, user, &key, &console);
    Ok(())
}

/// `/metrics`: the request counters, and on PostgreSQL the job tables and the pool.
fn metrics_endpoint(settings: &Settings, backend: &Backend) -> MetricsEndpoint {
    let mut sources: Vec<Arc<dyn drama_api::metrics::MetricsSource>> = Vec::new();
    if let Backend::Postgres(store) = backend {
        sources.push(crate::metrics::DatabaseMetrics::new(store.pool().clone()));
    }
    let token = settings.metrics.token.trim();
    if token.is_empty() && settings.is_production() {
        tracing::warn!("METRICS_TOKEN is not set: /metrics answers anyone who reaches it");
    }
    MetricsEndpoint {
        http: HttpMetrics::new(),
        sources,
        token: (!token.is_empty()).then(|| token.to_owned()),
    }
}

/// The API's settings, with the origins media URLs may name (for the console's policy): the
/// bucket's public URL and endpoint, and where this server's own file URLs point.
fn http_settings(settings: &Settings) -> drama_api::HttpSettings {
    let assets = &settings.assets;
    let mut http = settings.http.clone();
    http.media_origins = [
        assets.r2_public_url.clone(),
        assets.s3_endpoint(),
        assets.assets_public_url.clone(),
        assets.assets_base_url.clone(),
        Some(settings.server.public_origin()),
    ]
    .into_iter()
    .flatten()
    .collect();
    http
}

/// Sweeps orphaned objects and settles refunds until dropped.
fn background(app: &App, settings: &Settings) -> Vec<tokio::task::JoinHandle<()>> {
    vec![
        tokio::spawn(
            app.clone()
                .run_sweeper(Duration::from_secs(settings.server.sweep_interval.max(1))),
        ),
        tokio::spawn(app.clone().run_refunds(Duration::from_secs(5))),
    ]
}

/// Refuses, in production, an asset store whose media URLs this server signs (local disk,
/// memory) without `ASSETS_SIGNING_SECRET`: its random per-process key would break every URL
/// handed out at the next restart, and instances would refuse each other's. Elsewhere the store
/// warns about it when it opens; the embedded quick start keeps a key of its own.
pub(crate) fn signing_guard(settings: &Settings) -> anyhow::Result<()> {
    let backend = settings.assets.backend();
    let signs_itself = matches!(backend, BackendKind::Local | BackendKind::Memory);
    if signs_itself && settings.assets.assets_signing_secret.is_none() && settings.is_production() {
        let name = if backend == BackendKind::Local {
            "local-disk"
        } else {
            "in-memory"
        };
        anyhow::bail!(
            "ENVIRONMENT=production with the {name} asset store, but ASSETS_SIGNING_SECRET is \
             not set: the media URLs this server signs would stop working at every restart and \
             differ between instances. Set ASSETS_SIGNING_SECRET to 32 or more random bytes \
             (openssl rand -base64 48), the same on every instance (docs/CONFIG.md)"
        );
    }
    Ok(())
}

/// Refuses `serve --no-workers` without `DATABASE_URL`: its store (embedded or in memory) is
/// this process's alone, so no `worker` could run the jobs it would accept and charge for.
fn no_workers_guard(settings: &Settings, args: &ServeArgs) -> anyhow::Result<()> {
    if args.no_workers && settings.database.url.trim().is_empty() {
        anyhow::bail!(
            "serve --no-workers needs DATABASE_URL: without it the store is this process's own \
             (embedded or in memory), no `worker` process can reach it, and every generation \
             would be charged and never run. Set DATABASE_URL to the database the workers \
             share, or drop --no-workers"
        );
    }
    Ok(())
}

pub(crate) async fn serve(mut settings: Settings, args: ServeArgs) -> anyhow::Result<ExitCode> {
    no_workers_guard(&settings, &args)?;
    // Without a database this is the quick start, which production refuses first with the
    // reason that matters (no DATABASE_URL); the signing secret comes after that.
    if !settings.database.url.trim().is_empty() {
        signing_guard(&settings)?;
    }
    if let Some(host) = &args.host {
        settings.server.host.clone_from(host);
        settings.set_from_command_line("server.host", "--host", host.clone());
    }
    if let Some(port) = args.port {
        settings.server.port = port;
        settings.set_from_command_line("server.port", "--port", port.to_string());
    }
    let role = if args.no_workers {
        Role::Requests
    } else {
        Role::RequestsAndWorkers
    };
    let plan = PoolPlan::new(&settings, role);
    let (backend, mut quick) = serve_backend(&mut settings, args.migrate, plan).await?;
    let (app, workers, memory) = wire(&settings, &backend, !args.no_workers).await?;
    let state = ApiState::new(app.clone(), http_settings(&settings));
    if let Some(quick) = &mut quick {
        announce_quick_start(&settings, quick, &backend, memory.as_ref(), &state).await?;
    }
    let tasks = background(&app, &settings);
    let cors = settings.http.clone();
    let http_workers = match settings.server.http_workers {
        0 => std::thread::available_parallelism().map_or(2, usize::from),
        n => n,
    };
    let bind = (settings.server.host.clone(), settings.server.port);
    let metrics = metrics_endpoint(&settings, &backend);
    tracing::info!(host = %bind.0, port = bind.1, http_workers, job_workers = workers.is_some(), "serving HTTP");
    let streams = state.clone();
    let dead_peer_timeout = settings.http.dead_peer_timeout;
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(from_fn(drama_api::metrics::observe))
            .wrap(from_fn(drama_api::middleware::request_context))
            .wrap(drama_api::middleware::cors(&cors))
            .configure(drama_api::metrics::configure(metrics.clone()))
            .configure(drama_api::configure(state.clone()))
    })
    .workers(http_workers)
    .shutdown_timeout(30)
    .disable_signals()
    // Before `bind`: it takes the callback then.
    .on_connect(drama_api::connection::on_connect(dead_peer_timeout))
    .bind(&bind)
    .with_context(|| format!("cannot listen on {}:{}", bind.0, bind.1))?
    .run();
    // On SIGINT/SIGTERM the streams and sockets end first (they would never end by
    // themselves and would hold the drain for its whole timeout), then actix stops accepting
    // and drains in-flight requests; then the jobs this process holds are finished or handed
    // back.
    // A second signal stops without waiting for requests.
    let handle = server.handle();
    let stop = tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping: ending streams, draining requests");
        streams.shut_down();
        let graceful = handle.clone();
        tokio::spawn(async move { graceful.stop(true).await });
        shutdown_signal().await;
        tracing::warn!("second signal: stopping without draining requests");
        handle.stop(false).await;
    });
    let served = server.await;
    stop.abort();
    served.context("HTTP server failed")?;
    if let Some(workers) = workers {
        workers.shutdown().await;
        log_offline_calls(&app);
    }
    for t in tasks {
        t.abort();
    }
    drop(app);
    drop(backend);
    if let Some(quickstart::Store::Embedded(cluster)) = quick {
        tokio::task::spawn_blocking(move || cluster.stop()).await?;
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn worker(settings: Settings) -> anyhow::Result<ExitCode> {
    if settings.database.url.trim().is_empty() {
        anyhow::bail!(
            "a separate worker needs the shared database: set DATABASE_URL (the embedded mode \
             runs its workers inside `serve`)"
        );
    }
    let plan = PoolPlan::new(&settings, Role::Workers);
    let backend = Backend::Postgres(database(&plan.apply(&settings.database), false).await?);
    plan.log();
    let (app, workers, _) = wire(&settings, &backend, true).await?;
    let tasks = background(&app, &settings);
    tracing::info!("worker running; stop it with SIGTERM or Ctrl-C");
    shutdown_signal().await;
    if let Some(workers) = workers {
        workers.shutdown().await;
    }
    log_offline_calls(&app);
    for t in tasks {
        t.abort();
    }
    Ok(ExitCode::SUCCESS)
}

/// One line with what the offline provider of this process was asked for, when it was asked
/// anything: what a paid provider would have billed.
fn log_offline_calls(app: &App) {
    let calls = app.offline_calls();
    if calls != drama_ai::OfflineCalls::default() {
        tracing::info!(
            offline_calls.scripts = calls.scripts,
            offline_calls.images = calls.images,
            offline_calls.videos = calls.videos,
            offline_calls.voices = calls.voices,
            "offline provider calls of this process"
        );
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Settings {
        let env: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load_from(None, &env).unwrap()
    }

    #[test]
    fn settled_runs_are_kept_as_long_as_configured_or_forever() {
        let retention = |days: &str| {
            worker_config(&settings(&[("DRAMA__WORKER__RETENTION_DAYS", days)])).retention
        };
        assert_eq!(retention("30"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(retention("0"), None, "0 keeps settled runs forever");
        assert_eq!(
            retention("36500"),
            Some(Duration::from_secs(36_500 * 86_400))
        );
        for slip in ["36501", "100000000", "1000000000000"] {
            let refused = Settings::load_from(
                None,
                &HashMap::from([("DRAMA__WORKER__RETENTION_DAYS".to_owned(), slip.to_owned())]),
            )
            .unwrap_err()
            .to_string();
            assert!(
                refused.contains("DRAMA__WORKER__RETENTION_DAYS") && refused.contains(slip),
                "{refused}"
            );
        }
    }

    #[test]
    fn zero_limits_and_short_leases_are_refused_by_name() {
        for (variable, value, named) in [
            ("VIDEO_CONCURRENCY", "0", "VIDEO_CONCURRENCY"),
            ("IMAGE_CONCURRENCY", "0", "IMAGE_CONCURRENCY"),
            ("WORKER_CONCURRENCY", "0", "WORKER_CONCURRENCY"),
            (
                "DRAMA__WORKER__SCRIPT_LIMIT",
                "0",
                "DRAMA__WORKER__SCRIPT_LIMIT",
            ),
            (
                "DRAMA__WORKER__STITCH_LIMIT",
                "0",
                "DRAMA__WORKER__STITCH_LIMIT",
            ),
            (
                "DRAMA__WORKER__LEASE_SECONDS",
                "4",
                "DRAMA__WORKER__LEASE_SECONDS",
            ),
            (
                "DRAMA__WORKER__LEASE_SECONDS",
                "0",
                "DRAMA__WORKER__LEASE_SECONDS",
            ),
        ] {
            let refused = Settings::load_from(
                None,
                &HashMap::from([(variable.to_owned(), value.to_owned())]),
            )
            .unwrap_err()
            .to_string();
            assert!(refused.contains(named), "{variable}={value}: {refused}");
        }
        let config = worker_config(&settings(&[
            ("VIDEO_CONCURRENCY", "1"),
            ("DRAMA__WORKER__LEASE_SECONDS", "5"),
        ]));
        assert_eq!(config.lease_ttl, Duration::from_secs(5));
    }

    #[test]
    fn an_idle_in_transaction_timeout_past_half_the_lease_is_warned_about() {
        let warning = |vars: &[(&str, &str)]| {
            let s = settings(vars);
            s.worker
                .lease_warning(s.database.idle_in_transaction_timeout)
        };
        assert_eq!(warning(&[]), None, "15 s of a 30 s lease");
        assert_eq!(
            warning(&[("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT", "0")]),
            None
        );
        let said = warning(&[("DRAMA__WORKER__LEASE_SECONDS", "10")]).unwrap();
        assert!(
            said.contains("DATABASE_IDLE_IN_TRANSACTION_TIMEOUT (15 s)") && said.contains("5 s"),
            "{said}"
        );
    }

    #[test]
    fn production_refuses_self_signed_media_urls_without_a_secret() {
        let secret = (
            "ASSETS_SIGNING_SECRET",
            "0123456789abcdef0123456789abcdef-x",
        );
        let production = ("ENVIRONMENT", "production");
        for backend in ["local", "memory"] {
            let refused = signing_guard(&settings(&[production, ("ASSETS_BACKEND", backend)]))
                .unwrap_err()
                .to_string();
            assert!(refused.contains("ASSETS_SIGNING_SECRET"), "{refused}");
            signing_guard(&settings(&[
                production,
                ("ASSETS_BACKEND", backend),
                secret,
            ]))
            .unwrap();
            signing_guard(&settings(&[("ASSETS_BACKEND", backend)])).unwrap();
        }
        // Bucket URLs are presigned with the bucket's credentials.
        signing_guard(&settings(&[
            production,
            ("R2_BUCKET", "b"),
            ("R2_ACCOUNT_ID", "a"),
        ]))
        .unwrap();
    }
}
