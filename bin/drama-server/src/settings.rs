//! Configuration: built-in defaults < optional TOML file < `DRAMA__*` variables < the
//! conventional variable names (`DATABASE_URL`, `PORT`, …) the old server used.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use config::{Config, Environment, File, FileFormat};
use drama_postgres::PgSettings;
use serde::Deserialize;

const DEFAULTS: &str = include_str!("defaults.toml");

/// Everything the binary needs, validated at startup.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Settings {
    /// PostgreSQL; an empty URL selects the embedded in-memory store where a command allows it.
    pub(crate) database: PgSettings,
    /// Logging.
    pub(crate) log: LogSettings,
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

/// Conventional names that map onto a settings key, as the seed documents them.
const PLAIN_VARIABLES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("DATABASE_MAX_CONNECTIONS", "database.max_connections"),
    ("DATABASE_SSL_ROOT_CERT", "database.ssl_root_cert"),
    ("LOG_FORMAT", "log.format"),
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
        let settings: Self = builder
            .build()
            .context("cannot read the configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        Ok(settings)
    }
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
    }

    #[test]
    fn the_seed_variable_names_work_as_they_are() {
        let s = load(&[
            ("DATABASE_URL", "postgres://u:p@db:5432/x"),
            ("LOG_FORMAT", "json"),
            ("DATABASE_MAX_CONNECTIONS", "4"),
        ])
        .unwrap();
        assert_eq!(s.database.url, "postgres://u:p@db:5432/x");
        assert_eq!(s.database.max_connections, 4);
        assert_eq!(s.log.format, LogFormat::Json);
    }

    #[test]
    fn a_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drama.toml");
        std::fs::write(
            &path,
            "[database]\nurl = \"postgres://file@db/x\"\nmax_connections = 3\n",
        )
        .unwrap();
        let from_file = Settings::load_from(Some(&path), &env(&[])).unwrap();
        assert_eq!(from_file.database.url, "postgres://file@db/x");
        assert_eq!(from_file.database.max_connections, 3);
        let from_env = Settings::load_from(
            Some(&path),
            &env(&[("DATABASE_URL", "postgres://env@db/x")]),
        )
        .unwrap();
        assert_eq!(from_env.database.url, "postgres://env@db/x");
        assert_eq!(from_env.database.max_connections, 3);
        let prefixed = load(&[("DRAMA__DATABASE__MAX_CONNECTIONS", "7")]).unwrap();
        assert_eq!(prefixed.database.max_connections, 7);
        assert!(Settings::load_from(Some(&dir.path().join("missing.toml")), &env(&[])).is_err());
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = load(&[("LOG_FORMAT", "xml")]).unwrap_err();
        assert!(format!("{e:#}").contains("xml"), "{e:#}");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let s = load(&[("DATABASE_URL", "postgres://u:topsecret@db:5432/x")]).unwrap();
        assert!(!format!("{s:?}").contains("topsecret"));
    }
}
