//! Configuration: built-in defaults < optional TOML file < `DRAMA__*` variables < the
//! conventional variable names (`DATABASE_URL`, `PORT`, `R2_BUCKET`, `GEMINI_API_KEY`, …)
//! the old server and the Supabase guide use.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use config::{Config, Environment, File, FileFormat};
use drama_ai::AiSettings;
use drama_api::HttpSettings;
use drama_assets::AssetSettings;
use drama_postgres::PgSettings;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("defaults.toml");

/// Everything the binary needs, validated at startup.
#[derive(Debug)]
pub(crate) struct Settings {
    /// PostgreSQL; an empty URL selects the embedded in-memory store where a command allows it.
    pub(crate) database: PgSettings,
    /// Logging.
    pub(crate) log: LogSettings,
    /// Listening address and process roles.
    pub(crate) server: ServerSettings,
    /// HTTP limits and authentication.
    pub(crate) http: HttpSettings,
    /// Object storage (`[assets]` in a file, `R2_*`/`ASSETS_*` in the environment).
    pub(crate) assets: AssetSettings,
    /// AI providers (`[ai]` in a file, `GEMINI_*`/`OPENAI_*`/… in the environment).
    pub(crate) ai: AiSettings,
    /// Job workers.
    pub(crate) worker: WorkerSettings,
}

/// How this process runs jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WorkerSettings {
    /// Handlers running at once in this process.
    pub(crate) concurrency: usize,
    /// Image generations at once, across every process.
    pub(crate) image_limit: u32,
    /// Video generations at once, across every process (the provider's quota).
    pub(crate) video_limit: u32,
    /// Script-model calls at once, across every process.
    pub(crate) script_limit: u32,
    /// Stitching jobs at once, across every process.
    pub(crate) stitch_limit: u32,
    /// Seconds a job's lease lives without a heartbeat (a dead worker's job is retaken after
    /// about this long).
    pub(crate) lease_seconds: u64,
    /// Days settled runs are kept.
    pub(crate) retention_days: u64,
    /// The ffmpeg binary for stitching.
    pub(crate) ffmpeg: String,
    /// Charge credits for offline calls as if a paid provider made them (demos, load tests).
    pub(crate) price_offline_calls: bool,
}

/// The part of the settings the `config` crate layers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Layered {
    database: PgSettings,
    log: LogSettings,
    server: ServerSettings,
    http: HttpSettings,
    #[serde(default)]
    assets: HashMap<String, String>,
    #[serde(default)]
    ai: HashMap<String, String>,
    worker: WorkerSettings,
}

/// How logs look.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogSettings {
    /// `pretty` (default) or `json`.
    pub(crate) format: LogFormat,
    /// A `tracing` filter used when `RUST_LOG` is unset.
    pub(crate) filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    Pretty,
    Json,
}

/// Where `serve` listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ServerSettings {
    /// Interface to bind.
    pub(crate) host: String,
    /// Port to bind (`PORT`).
    pub(crate) port: u16,
    /// HTTP worker threads; 0 = one per CPU.
    pub(crate) http_workers: usize,
    /// Seconds between orphaned-object sweeps.
    pub(crate) sweep_interval: u64,
    /// The origin clients reach this API at (`PUBLIC_URL`), used in URLs the server hands out;
    /// empty means `http://localhost:{port}`.
    pub(crate) public_url: String,
}

impl ServerSettings {
    /// The public origin, without a trailing slash.
    pub(crate) fn public_origin(&self) -> String {
        if self.public_url.trim().is_empty() {
            format!("http://localhost:{}", self.port)
        } else {
            self.public_url.trim().trim_end_matches('/').to_owned()
        }
    }
}

/// Conventional names that map onto a settings key.
const PLAIN_VARIABLES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("DATABASE_MAX_CONNECTIONS", "database.max_connections"),
    ("DATABASE_SSL_ROOT_CERT", "database.ssl_root_cert"),
    ("LOG_FORMAT", "log.format"),
    ("HOST", "server.host"),
    ("PORT", "server.port"),
    ("PUBLIC_URL", "server.public_url"),
    ("SUPABASE_JWT_SECRET", "http.auth.jwt_secret"),
    ("SUPABASE_URL", "http.auth.supabase_url"),
    ("RATE_LIMIT_PER_SECOND", "http.rate_per_second"),
    ("RATE_LIMIT_BURST", "http.rate_burst"),
    ("CORS_ALLOWED_ORIGINS", "http.cors_origins"),
    ("WORKER_CONCURRENCY", "worker.concurrency"),
    ("VIDEO_CONCURRENCY", "worker.video_limit"),
    ("IMAGE_CONCURRENCY", "worker.image_limit"),
    ("FFMPEG_PATH", "worker.ffmpeg"),
    ("PRICE_OFFLINE_CALLS", "worker.price_offline_calls"),
];

impl Settings {
    /// Loads from the process environment.
    pub(crate) fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, &std::env::vars().collect())
    }

    /// Loads with `env` standing in for the process environment.
    pub(crate) fn load_from(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> anyhow::Result<Self> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
        if let Some(path) = file {
            if !path.is_file() {
                anyhow::bail!("configuration file {} does not exist", path.display());
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        let prefixed: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("DRAMA__"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("DRAMA")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(prefixed)),
        );
        for (variable, key) in PLAIN_VARIABLES {
            if let Some(value) = env.get(*variable).filter(|v| !v.is_empty()) {
                builder = builder
                    .set_override(*key, value.as_str())
                    .with_context(|| format!("cannot use {variable}"))?;
            }
        }
        let layered: Layered = builder
            .build()
            .context("cannot read the configuration")?
            .try_deserialize()
            .context("invalid configuration")?;

        // File sections use the lower-cased variable names; the environment wins over them.
        let assets =
            AssetSettings::from_vars(overlay(&layered.assets, env, &drama_assets::VARIABLES))
                .context("invalid asset-store configuration")?;
        let ai_vars = overlay(&layered.ai, env, &drama_ai::ENV_VARS);
        let ai_map: HashMap<String, String> = ai_vars.into_iter().collect();
        let ai = AiSettings::from_lookup(|name| ai_map.get(name).cloned())
            .context("invalid AI provider configuration")?;
        Ok(Self {
            database: layered.database,
            log: layered.log,
            server: layered.server,
            http: layered.http,
            assets,
            ai,
            worker: layered.worker,
        })
    }
}

/// `(NAME, value)` pairs for `names`: the file section's (lower-case keys) first, then the
/// environment's.
fn overlay(
    section: &HashMap<String, String>,
    env: &HashMap<String, String>,
    names: &[&str],
) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            let from_env = env.get(*name).filter(|v| !v.is_empty());
            let from_file = section.get(&name.to_ascii_lowercase());
            from_env
                .or(from_file)
                .map(|v| ((*name).to_owned(), v.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> HashMap<String, String> {
        vars.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Settings> {
        Settings::load_from(None, &env(vars))
    }

    #[test]
    fn defaults_apply_without_any_configuration() {
        let s = load(&[]).unwrap();
        assert!(s.database.url.is_empty());
        assert_eq!(s.database.max_connections, 10);
        assert_eq!(s.log.format, LogFormat::Pretty);
        assert_eq!(s.server.port, 8000);
        assert_eq!(s.assets.backend(), drama_assets::BackendKind::Local);
        assert!(!s.worker.price_offline_calls);
    }

    #[test]
    fn the_seed_variable_names_work_as_they_are() {
        let s = load(&[
            ("DATABASE_URL", "postgres://u:p@db:5432/x"),
            ("LOG_FORMAT", "json"),
            ("DATABASE_MAX_CONNECTIONS", "4"),
            ("PORT", "9001"),
            ("SUPABASE_URL", "https://abc.supabase.co"),
            ("SUPABASE_JWT_SECRET", "jwt-secret"),
            ("R2_ACCOUNT_ID", "acct"),
            ("R2_BUCKET", "sfd-production"),
            ("R2_ACCESS_KEY_ID", "id"),
            ("R2_SECRET_ACCESS_KEY", "secret"),
            ("GEMINI_API_KEY", "gk"),
            ("PRICE_OFFLINE_CALLS", "true"),
            ("OFFLINE_VIDEO_DELAY_MS", "2500"),
        ])
        .unwrap();
        assert!(s.worker.price_offline_calls);
        assert_eq!(s.ai.offline_video_delay_ms, 2500);
        assert_eq!(s.database.url, "postgres://u:p@db:5432/x");
        assert_eq!(s.database.max_connections, 4);
        assert_eq!(s.log.format, LogFormat::Json);
        assert_eq!(s.server.port, 9001);
        assert_eq!(
            s.http.auth.supabase_url.as_deref(),
            Some("https://abc.supabase.co")
        );
        assert_eq!(s.assets.backend(), drama_assets::BackendKind::S3);
        assert_eq!(s.assets.r2_bucket.as_deref(), Some("sfd-production"));
        assert!(s.ai.gemini_api_key.is_some());
    }

    #[test]
    fn a_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drama.toml");
        std::fs::write(
            &path,
            "[database]\nurl = \"postgres://file@db/x\"\nmax_connections = 3\n\n\
             [assets]\nassets_backend = \"memory\"\n\n[ai]\ngpt_model = \"gpt-file\"\n",
        )
        .unwrap();
        let from_file = Settings::load_from(Some(&path), &env(&[])).unwrap();
        assert_eq!(from_file.database.url, "postgres://file@db/x");
        assert_eq!(from_file.database.max_connections, 3);
        assert_eq!(
            from_file.assets.backend(),
            drama_assets::BackendKind::Memory
        );
        assert_eq!(from_file.ai.gpt_model, "gpt-file");
        let from_env = Settings::load_from(
            Some(&path),
            &env(&[
                ("DATABASE_URL", "postgres://env@db/x"),
                ("ASSETS_BACKEND", "local"),
                ("GPT_MODEL", "gpt-env"),
            ]),
        )
        .unwrap();
        assert_eq!(from_env.database.url, "postgres://env@db/x");
        assert_eq!(from_env.database.max_connections, 3);
        assert_eq!(from_env.assets.backend(), drama_assets::BackendKind::Local);
        assert_eq!(from_env.ai.gpt_model, "gpt-env");
        let prefixed = load(&[("DRAMA__DATABASE__MAX_CONNECTIONS", "7")]).unwrap();
        assert_eq!(prefixed.database.max_connections, 7);
        assert!(Settings::load_from(Some(&dir.path().join("missing.toml")), &env(&[])).is_err());
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = load(&[("LOG_FORMAT", "xml")]).unwrap_err();
        assert!(format!("{e:#}").contains("xml"), "{e:#}");
        let e = load(&[("ASSETS_BACKEND", "tape")]).unwrap_err();
        assert!(format!("{e:#}").contains("ASSETS_BACKEND"), "{e:#}");
        let e = load(&[("PORT", "eighty")]).unwrap_err();
        assert!(format!("{e:#}").contains("port"), "{e:#}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let s = load(&[
            ("DATABASE_URL", "postgres://u:topsecret@db:5432/x"),
            ("SUPABASE_JWT_SECRET", "jwtsecretvalue"),
            ("R2_SECRET_ACCESS_KEY", "r2secretvalue"),
            ("OPENAI_API_KEY", "sk-openaisecret"),
        ])
        .unwrap();
        let debug = format!("{s:?}");
        for secret in [
            "topsecret",
            "jwtsecretvalue",
            "r2secretvalue",
            "sk-openaisecret",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked: {debug}");
        }
    }
}

#[cfg(test)]
mod documentation {
    /// Every variable the binary reads is documented in docs/CONFIG.md.
    #[test]
    fn config_md_lists_every_variable() {
        let doc = include_str!("../../../docs/CONFIG.md");
        let names = super::PLAIN_VARIABLES
            .iter()
            .map(|(name, _)| *name)
            .chain(drama_assets::VARIABLES)
            .chain(drama_ai::ENV_VARS);
        let missing: Vec<&str> = names
            .filter(|name| !doc.contains(&format!("`{name}`")))
            .collect();
        assert!(missing.is_empty(), "not in docs/CONFIG.md: {missing:?}");
    }
}
