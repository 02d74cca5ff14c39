//! Configuration: built-in defaults < optional TOML file < `DRAMA__*` variables < the
//! conventional variable names (`DATABASE_URL`, `PORT`, `R2_BUCKET`, `GEMINI_API_KEY`, …)
//! the old server and the Supabase guide use.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::Context as _;
use config::{Config, Environment, File, FileFormat};
use drama_ai::AiSettings;
use drama_api::HttpSettings;
use drama_assets::AssetSettings;
use drama_postgres::PgSettings;

use crate::provenance::{self, Effective, Source, flatten};
use crate::supabase;

#[cfg(test)]
mod documentation;
mod sections;
mod variables;

use sections::Layered;
pub(crate) use sections::{
    CreditSettings, LimitSettings, LogFormat, LogSettings, MetricsSettings, QuotaSettings,
    ServerSettings, WorkerSettings,
};
pub(crate) use variables::OTHER_VARIABLES;
use variables::{PLAIN_VARIABLES, legacy_credentials, overlay};

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
    /// `/metrics`.
    pub(crate) metrics: MetricsSettings,
    /// Per-user quotas.
    pub(crate) quotas: QuotaSettings,
    /// How long client text may be.
    pub(crate) limits: LimitSettings,
    /// Credits of new users.
    pub(crate) credits: CreditSettings,
    /// `ENVIRONMENT` (`development` unless set): `production` refuses what is only fit for
    /// trying the server out.
    pub(crate) environment: String,
    /// Every setting with its source, secrets redacted (`drama-server config`).
    pub(crate) effective: Vec<Effective>,
}

/// `ENVIRONMENT` as the server reads it, the same before `.env` is loaded and after:
/// trimmed and lower-cased, `development` when unset or empty. Any other value is refused: a
/// typo of `production` (`prod`) would otherwise run with development's conveniences (`.env`
/// read, the quick start allowed).
pub(crate) fn environment(raw: Option<&str>) -> anyhow::Result<String> {
    let value = raw
        .map(|e| e.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match value.as_str() {
        "" => Ok("development".to_owned()),
        "development" | "production" => Ok(value),
        _ => anyhow::bail!(
            "ENVIRONMENT must be `development` or `production`, got `{}`",
            raw.unwrap_or_default().trim()
        ),
    }
}

/// The most `INITIAL_CREDITS` may be (a trillion; balances are 64-bit).
const MAX_INITIAL_CREDITS: u64 = 1_000_000_000_000;

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
        let defaults = File::from_str(DEFAULTS, FileFormat::Toml);
        let mut builder = Config::builder().add_source(defaults);
        let mut from_file = BTreeMap::new();
        if let Some(path) = file {
            if !path.is_file() {
                anyhow::bail!("configuration file {} does not exist", path.display());
            }
            let source = File::from(path).format(FileFormat::Toml);
            from_file = flatten(
                &Config::builder()
                    .add_source(source.clone())
                    .build()
                    .with_context(|| format!("cannot read {}", path.display()))?
                    .try_deserialize::<serde_json::Value>()
                    .with_context(|| format!("cannot read {}", path.display()))?,
            );
            builder = builder.add_source(source);
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
        let merged = builder.build().context("cannot read the configuration")?;
        let tree: serde_json::Value = merged
            .clone()
            .try_deserialize()
            .context("invalid configuration")?;
        let mut layered: Layered = merged.try_deserialize().context("invalid configuration")?;

        // File sections use the lower-cased variable names; the environment wins over them.
        let assets =
            AssetSettings::from_vars(overlay(&layered.assets, env, &drama_assets::VARIABLES))
                .context("invalid asset-store configuration")?;
        let ai_vars = overlay(&layered.ai, env, &drama_ai::ENV_VARS);
        let ai_map: HashMap<String, String> = ai_vars.into_iter().collect();
        let ai = AiSettings::from_lookup(|name| ai_map.get(name).cloned())
            .context("invalid AI provider configuration")?;

        let mut effective = provenance::layered(&flatten(&tree), &from_file, env, PLAIN_VARIABLES);
        let derived = supabase::check(
            env,
            layered.http.auth.supabase_url.as_deref(),
            layered.http.auth.jwt_secret.as_deref(),
        )
        .map_err(anyhow::Error::msg)?;
        if let Some((url, from)) = derived.url {
            layered.http.auth.supabase_url = Some(url.clone());
            if let Some(e) = effective
                .iter_mut()
                .find(|e| e.name == "http.auth.supabase_url")
            {
                e.value = Some(url);
                e.source = Source::Derived(from.to_owned());
            }
        }
        legacy_credentials(&mut layered, &mut effective, env).map_err(anyhow::Error::msg)?;
        let limits = &layered.limits;
        for (name, value) in [
            ("MAX_PREMISE_CHARS", limits.premise_chars),
            ("MAX_FEEDBACK_CHARS", limits.feedback_chars),
            ("MAX_PROMPT_CHARS", limits.prompt_chars),
            ("MAX_TITLE_CHARS", limits.title_chars),
            ("MAX_DESCRIPTION_CHARS", limits.description_chars),
        ] {
            if value == 0 {
                anyhow::bail!("{name} must be at least 1 (it bounds client text in characters)");
            }
        }
        layered.worker.check().map_err(anyhow::Error::msg)?;
        if layered.credits.legacy_max > MAX_INITIAL_CREDITS {
            anyhow::bail!(
                "LEGACY_MAX_CREDITS must be at most {MAX_INITIAL_CREDITS}, got {}: a balance \
                 near the largest number the database holds could take no further grant",
                layered.credits.legacy_max
            );
        }
        if layered.credits.initial > MAX_INITIAL_CREDITS {
            anyhow::bail!(
                "INITIAL_CREDITS must be at most {MAX_INITIAL_CREDITS}, got {}: a balance near \
                 the largest number the database holds could take no further grant",
                layered.credits.initial
            );
        }
        effective.extend(provenance::flat(assets.effective(), &layered.assets, env));
        effective.extend(provenance::flat(
            ai.effective()
                .into_iter()
                .map(|(n, v)| (n, Some(v)))
                .collect(),
            &layered.ai,
            env,
        ));
        for name in OTHER_VARIABLES {
            let value = env.get(*name).filter(|v| !v.is_empty());
            effective.push(Effective {
                name: (*name).to_owned(),
                variable: Some((*name).to_owned()),
                value: value.map(|v| provenance::shown(name, v)),
                source: value.map_or(Source::Default, |_| Source::Environment((*name).to_owned())),
            });
        }
        let environment = environment(env.get("ENVIRONMENT").map(String::as_str))?;
        Ok(Self {
            database: layered.database,
            log: layered.log,
            server: layered.server,
            http: layered.http,
            assets,
            ai,
            worker: layered.worker,
            metrics: layered.metrics,
            quotas: layered.quotas,
            limits: layered.limits,
            credits: layered.credits,
            environment,
            effective,
        })
    }

    /// Where the value of `name` (a `section.key` or a variable of the asset and AI groups)
    /// comes from.
    pub(crate) fn source_of(&self, name: &str) -> Source {
        self.effective
            .iter()
            .find(|e| e.name == name)
            .map_or(Source::Default, |e| e.source.clone())
    }

    /// Records a value given on the command line (`serve --host`).
    pub(crate) fn set_from_command_line(&mut self, name: &str, option: &str, value: String) {
        if let Some(e) = self.effective.iter_mut().find(|e| e.name == name) {
            e.value = Some(provenance::shown(name, &value));
            e.source = Source::CommandLine(option.to_owned());
        }
    }

    /// Whether this is a production deployment (`ENVIRONMENT=production`).
    pub(crate) fn is_production(&self) -> bool {
        self.environment == "production"
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
        assert_eq!(s.server.port, 8000);
        assert_eq!(s.assets.backend(), drama_assets::BackendKind::Local);
        assert!(!s.worker.price_offline_calls);
    }

    #[test]
    fn initial_credits_are_read_and_bounded() {
        assert_eq!(load(&[]).unwrap().credits.opening(), 30);
        let s = load(&[("INITIAL_CREDITS", "750")]).unwrap();
        assert_eq!(s.credits.opening(), 750);
        assert_eq!(
            load(&[("INITIAL_CREDITS", "0")]).unwrap().credits.opening(),
            0
        );
        let err = load(&[("INITIAL_CREDITS", "9223372036854775807")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("INITIAL_CREDITS must be at most"), "{err}");
        assert!(load(&[("INITIAL_CREDITS", "-5")]).is_err());
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
    fn the_old_api_keys_variable_is_read_as_the_legacy_keys() {
        let user = ("LEGACY_USER_ID", "6f1c1c8e-4a57-4f0e-9d55-0d7b6f0c1a11");
        let s = load(&[("API_KEYS", "old-1,old-2"), user]).unwrap();
        assert_eq!(s.http.auth.legacy_api_keys.as_deref(), Some("old-1,old-2"));
        let shown = s
            .effective
            .iter()
            .find(|e| e.name == "http.auth.legacy_api_keys");
        assert_eq!(shown.and_then(|e| e.value.as_deref()), Some("***"));
        assert_eq!(
            s.source_of("http.auth.legacy_api_keys"),
            Source::Environment("API_KEYS".to_owned())
        );
        let both = load(&[("API_KEYS", "old"), ("LEGACY_API_KEYS", "new"), user]).unwrap();
        assert_eq!(both.http.auth.legacy_api_keys.as_deref(), Some("new"));
        let err = load(&[("API_KEYS", "old")]).unwrap_err().to_string();
        assert!(err.contains("LEGACY_USER_ID"), "{err}");
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
    fn every_setting_says_where_it_comes_from_with_secrets_hidden() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drama.toml");
        std::fs::write(
            &path,
            "[server]\nport = 9100\n\n[assets]\nr2_bucket = \"from-file\"\n\
             r2_secret_access_key = \"file-secret\"\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&path),
            &env(&[
                ("DATABASE_URL", "postgres://u:topsecret@db:5432/x"),
                ("DRAMA__WORKER__CONCURRENCY", "3"),
                ("GEMINI_API_KEY", "sk-geminisecret"),
                ("SUPABASE_JWT_SECRET", "jwtsecretvalue"),
                ("R2_ENDPOINT_URL", "http://127.0.0.1:9000"),
                ("R2_ACCESS_KEY_ID", "id"),
                ("ENVIRONMENT", "Production"),
            ]),
        )
        .unwrap();
        assert!(s.is_production());
        assert_eq!(s.source_of("server.port"), Source::File);
        assert_eq!(s.source_of("server.host"), Source::Default);
        assert_eq!(
            s.source_of("database.url"),
            Source::Environment("DATABASE_URL".to_owned())
        );
        assert_eq!(
            s.source_of("worker.concurrency"),
            Source::Environment("DRAMA__WORKER__CONCURRENCY".to_owned())
        );
        assert_eq!(s.source_of("R2_BUCKET"), Source::File);
        assert_eq!(
            s.source_of("GEMINI_API_KEY"),
            Source::Environment("GEMINI_API_KEY".to_owned())
        );
        let value = |name: &str| {
            s.effective
                .iter()
                .find(|e| e.name == name)
                .and_then(|e| e.value.clone())
        };
        assert_eq!(
            value("database.url").as_deref(),
            Some("postgres://u:***@db:5432/x")
        );
        assert_eq!(value("http.auth.jwt_secret").as_deref(), Some("***"));
        assert_eq!(value("R2_BUCKET").as_deref(), Some("from-file"));
        assert_eq!(value("worker.concurrency").as_deref(), Some("3"));
        let all = serde_json::to_string(&s.effective).unwrap();
        for secret in [
            "topsecret",
            "sk-geminisecret",
            "jwtsecretvalue",
            "file-secret",
        ] {
            assert!(!all.contains(secret), "{secret} shown: {all}");
        }
        // Every variable and key appears once.
        let mut names: Vec<&str> = s.effective.iter().map(|e| e.name.as_str()).collect();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count);
        assert!(names.contains(&"SUPABASE_SERVICE_KEY"));
    }

    #[test]
    fn the_supabase_keys_give_the_project_url() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        // Unsigned is enough without SUPABASE_JWT_SECRET: only the claims are read.
        let anon = format!(
            "{}.{}.c2ln",
            b64(r#"{"alg":"HS256"}"#),
            b64(r#"{"iss":"supabase","ref":"abcdefgh","role":"anon"}"#)
        );
        let s = load(&[("SUPABASE_ANON_KEY", &anon)]).unwrap();
        assert_eq!(
            s.http.auth.supabase_url.as_deref(),
            Some("https://abcdefgh.supabase.co")
        );
        assert_eq!(
            s.source_of("http.auth.supabase_url"),
            Source::Derived("SUPABASE_ANON_KEY".to_owned())
        );
        let e = load(&[
            ("SUPABASE_ANON_KEY", &anon),
            ("SUPABASE_JWT_SECRET", "not-the-secret"),
        ])
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("SUPABASE_JWT_SECRET did not sign"),
            "{e:#}"
        );
    }

    #[test]
    fn the_environment_is_development_or_production_in_any_case() {
        assert_eq!(load(&[]).unwrap().environment, "development");
        assert_eq!(
            load(&[("ENVIRONMENT", "")]).unwrap().environment,
            "development"
        );
        for production in ["production", "Production", " PRODUCTION\n"] {
            assert!(
                load(&[("ENVIRONMENT", production)])
                    .unwrap()
                    .is_production()
            );
        }
        assert!(
            !load(&[("ENVIRONMENT", "Development")])
                .unwrap()
                .is_production()
        );
        for unknown in ["prod", "staging", "test"] {
            let e = load(&[("ENVIRONMENT", unknown)]).unwrap_err().to_string();
            assert!(e.contains("ENVIRONMENT") && e.contains(unknown), "{e}");
        }
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
