use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};

use crate::error::PgError;

/// How to reach PostgreSQL.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgSettings {
    /// `postgres://user:password@host:port/db?sslmode=…` (from `DATABASE_URL`).
    pub url: String,
    /// Pool size of this process.
    pub max_connections: u32,
    /// How long a request waits for a pooled connection before the store reports `Unavailable`.
    #[serde(with = "seconds")]
    pub acquire_timeout: Duration,
    /// CA certificate for `sslmode=verify-ca`/`verify-full` (Supabase's `prod-ca-2021.crt`);
    /// overrides `sslrootcert` in the URL.
    pub ssl_root_cert: Option<PathBuf>,
    /// Shown in `pg_stat_activity`.
    pub application_name: String,
    /// How long the server lets one of the pool's sessions sit idle inside a transaction
    /// before it ends the session (`idle_in_transaction_session_timeout`); zero leaves the
    /// server's setting. A process that stops in the middle of a transaction (paused,
    /// swapped out, its connection lost without the server noticing) holds its locks until
    /// then, and every claim and completion of the runs it locked waits. Keep it under half
    /// the job lease (`worker.lease_seconds`).
    #[serde(with = "seconds")]
    pub idle_in_transaction_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            ssl_root_cert: None,
            application_name: "drama-server".to_owned(),
            idle_in_transaction_timeout: Duration::from_secs(15),
        }
    }
}

mod seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        f64::deserialize(d).and_then(|s| {
            Duration::try_from_secs_f64(s).map_err(|e| serde::de::Error::custom(e.to_string()))
        })
    }
}

impl fmt::Debug for PgSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgSettings")
            .field("url", &crate::redact(&self.url))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("application_name", &self.application_name)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .finish()
    }
}

impl PgSettings {
    /// Settings for `url` with every other field at its default.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..Self::default()
        }
    }

    /// The URL with its passwords hidden (the user part's and a query's `password=`), for
    /// logs and messages.
    pub fn redacted_url(&self) -> String {
        crate::redact(&self.url)
    }

    /// Parsed connection options, after refusing URLs that cannot work.
    ///
    /// # Errors
    /// [`PgError::Config`] for an empty or unparsable URL, for port 6543 (Supabase's
    /// transaction pooler), or for a missing root certificate file.
    pub fn connect_options(&self) -> Result<PgConnectOptions, PgError> {
        if self.url.trim().is_empty() {
            return Err(PgError::Config(
                "DATABASE_URL is empty; set it to postgres://USER:PASSWORD@HOST:5432/DATABASE"
                    .to_owned(),
            ));
        }
        if !(self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")) {
            return Err(PgError::Config(format!(
                "DATABASE_URL ({}) is not a PostgreSQL URL: it must start with postgres://",
                self.redacted_url()
            )));
        }
        let mut options = PgConnectOptions::from_str(&self.url).map_err(|e| {
            PgError::Config(format!(
                "DATABASE_URL ({}) is not a PostgreSQL URL: {e}",
                self.redacted_url()
            ))
        })?;
        if options.get_port() == 6543 {
            return Err(PgError::Config(format!(
                "DATABASE_URL ({}) points at port 6543, Supabase's transaction pooler. sqlx \
                 prepares every statement, and through that pooler prepared statements collide \
                 between clients and can return another client's rows. Use the direct \
                 connection (db.<project-ref>.supabase.co:5432) or the session pooler (the same \
                 pooler host on port 5432, user postgres.<project-ref>) instead.",
                self.redacted_url()
            )));
        }
        if let Some(cert) = &self.ssl_root_cert {
            if !cert.is_file() {
                return Err(PgError::Config(format!(
                    "the root certificate {} does not exist or is not a file",
                    cert.display()
                )));
            }
            options = options.ssl_root_cert(cert);
            if matches!(
                options.get_ssl_mode(),
                PgSslMode::Prefer | PgSslMode::Allow | PgSslMode::Disable
            ) {
                options = options.ssl_mode(PgSslMode::VerifyFull);
            }
        }
        Ok(options.application_name(&self.application_name))
    }

    /// A connection pool. Connects lazily: the first query reports an unreachable server.
    ///
    /// # Errors
    /// As [`PgSettings::connect_options`].
    pub fn pool(&self) -> Result<PgPool, PgError> {
        let options = self.connect_options()?;
        Ok(self.pool_options().connect_lazy_with(options))
    }

    /// A connection pool, after checking that the server answers.
    ///
    /// # Errors
    /// As [`PgSettings::connect_options`]; [`PgError::Connect`] when the server cannot be reached.
    pub async fn connect(&self) -> Result<PgPool, PgError> {
        let options = self.connect_options()?;
        self.pool_options()
            .connect_with(options)
            .await
            .map_err(PgError::Connect)
    }

    fn pool_options(&self) -> PgPoolOptions {
        let idle = self.idle_in_transaction_timeout.as_millis().to_string();
        crate::failover::start();
        PgPoolOptions::new()
            .max_connections(self.max_connections.max(1))
            .acquire_timeout(self.acquire_timeout)
            .idle_timeout(Duration::from_secs(600))
            .max_lifetime(Duration::from_secs(1800))
            .after_connect(move |conn, _| {
                let idle = idle.clone();
                Box::pin(async move { prepare_session(conn, &idle).await })
            })
            // A session that answered read-only (a failover's demoted primary) or was ended
            // is not handed out again, nor any connection opened before it answered so
            // (`failover`); deciding it asks nothing of the server.
            .after_release(|_, meta| {
                let keep = crate::failover::keep(&meta);
                Box::pin(async move { Ok(keep) })
            })
            .before_acquire(|_, meta| {
                let keep = crate::failover::keep(&meta);
                Box::pin(async move { Ok(keep) })
            })
    }
}

/// Sets up a new pooled session: the idle-in-transaction timeout, in milliseconds ("0" keeps
/// the server's setting).
async fn prepare_session(conn: &mut sqlx::PgConnection, idle: &str) -> Result<(), sqlx::Error> {
    if idle != "0" {
        sqlx::query("select set_config('idle_in_transaction_session_timeout', $1, false)")
            .bind(idle)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_pooler_is_refused_with_the_url_to_use() {
        let s = PgSettings::from_url(
            "postgres://postgres.abc:secret@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
        );
        let e = s.connect_options().unwrap_err().to_string();
        assert!(e.contains("6543") && e.contains("session pooler"), "{e}");
        assert!(!e.contains("secret"), "password leaked: {e}");
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let s = PgSettings::from_url("postgres://u:hunter2@db:5432/x?sslmode=require");
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("u:***@db:5432"), "{debug}");
        let s = PgSettings::from_url("postgres://db:5432/x?user=app&password=hunter2");
        let debug = format!("{s:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("user=app&password=***"), "{debug}");
    }

    #[test]
    fn a_password_in_the_query_never_reaches_an_error_message() {
        for url in [
            "postgres://db.example.com:6543/x?user=app&password=hunter2",
            "mysql://db:3306/x?user=app&password=hunter2",
            "postgres://db:notaport/x?user=app&password=hunter2",
        ] {
            let e = PgSettings::from_url(url)
                .connect_options()
                .unwrap_err()
                .to_string();
            assert!(!e.contains("hunter2"), "{e}");
            assert!(e.contains("password=***"), "{e}");
        }
    }

    #[test]
    fn tls_modes_come_from_the_url_and_a_root_certificate_implies_verification() {
        let require = PgSettings::from_url("postgres://u@db:5432/x?sslmode=require")
            .connect_options()
            .unwrap();
        assert!(matches!(require.get_ssl_mode(), PgSslMode::Require));
        let full = PgSettings::from_url("postgres://u@db:5432/x?sslmode=verify-full")
            .connect_options()
            .unwrap();
        assert!(matches!(full.get_ssl_mode(), PgSslMode::VerifyFull));

        let dir = std::env::temp_dir().join(format!("pgcert-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("ca.crt");
        std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let mut s = PgSettings::from_url("postgres://u@db:5432/x");
        s.ssl_root_cert = Some(cert);
        assert!(matches!(
            s.connect_options().unwrap().get_ssl_mode(),
            PgSslMode::VerifyFull
        ));
        s.ssl_root_cert = Some(dir.join("missing.crt"));
        assert!(
            s.connect_options()
                .unwrap_err()
                .to_string()
                .contains("missing.crt")
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn empty_and_malformed_urls_say_what_is_wrong() {
        let e = PgSettings::from_url("").connect_options().unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL is empty"));
        let e = PgSettings::from_url("mysql://x")
            .connect_options()
            .unwrap_err();
        assert!(e.to_string().contains("not a PostgreSQL URL"), "{e}");
    }
}
