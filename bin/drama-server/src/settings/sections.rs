//! The sections of the configuration tree the binary owns (the library crates own theirs):
//! their shapes as the file and the variables give them; the defaults are in `defaults.toml`.
//! Kept apart from the loading in the parent module, which only layers and checks them.

use std::collections::HashMap;

use drama_api::HttpSettings;
use drama_postgres::PgSettings;
use serde::Deserialize;

/// Credits of users the server creates (first sign-in, `keys create` for a new owner).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreditSettings {
    /// What a new user opens with (`INITIAL_CREDITS`), recorded as their first ledger entry.
    pub(crate) initial: u64,
    /// The most a user brought over from the old `users` table opens with
    /// (`LEGACY_MAX_CREDITS`), whatever its old balance.
    pub(crate) legacy_max: u64,
}

impl CreditSettings {
    /// As a balance (values past `i64::MAX` are a configuration slip; they cap).
    pub(crate) fn opening(self) -> i64 {
        i64::try_from(self.initial).unwrap_or(i64::MAX)
    }

    /// The cap on a balance carried over from the old `users` table.
    pub(crate) fn legacy_cap(self) -> i64 {
        i64::try_from(self.legacy_max).unwrap_or(i64::MAX)
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MetricsSettings {
    /// A bearer token `/metrics` requires; empty: no token (keep the path off the public
    /// internet at the proxy).
    pub(crate) token: String,
}

/// Per-user quotas; 0 turns one off.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaSettings {
    /// Dramas one user may hold (`QUOTA_DRAMAS`).
    pub(crate) dramas: u64,
    /// Bytes one user may keep in the bucket (`QUOTA_STORED_BYTES`).
    pub(crate) stored_bytes: u64,
    /// Runs of one user pending or running at once (`QUOTA_ACTIVE_RUNS`).
    pub(crate) active_runs: u64,
    /// Objects one user may keep in the bucket (`QUOTA_MAX_OBJECTS`).
    pub(crate) max_objects: u64,
}

/// Most characters of client text per kind of field; 0 is refused (it would refuse all text).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitSettings {
    /// A premise (`MAX_PREMISE_CHARS`).
    pub(crate) premise_chars: usize,
    /// Feedback for a rewrite (`MAX_FEEDBACK_CHARS`).
    pub(crate) feedback_chars: usize,
    /// An image or video prompt (`MAX_PROMPT_CHARS`).
    pub(crate) prompt_chars: usize,
    /// A title or a name (`MAX_TITLE_CHARS`).
    pub(crate) title_chars: usize,
    /// A description or any other text field (`MAX_DESCRIPTION_CHARS`).
    pub(crate) description_chars: usize,
}

impl From<LimitSettings> for drama_app::TextLimits {
    fn from(l: LimitSettings) -> Self {
        Self {
            premise: l.premise_chars,
            feedback: l.feedback_chars,
            prompt: l.prompt_chars,
            title: l.title_chars,
            description: l.description_chars,
        }
    }
}

impl From<QuotaSettings> for drama_app::Quotas {
    fn from(q: QuotaSettings) -> Self {
        Self {
            dramas: q.dramas,
            stored_bytes: q.stored_bytes,
            active_runs: q.active_runs,
            max_objects: q.max_objects,
        }
    }
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
    /// Days settled runs are kept; 0 keeps them forever.
    pub(crate) retention_days: u64,
    /// The ffmpeg binary for stitching.
    pub(crate) ffmpeg: String,
    /// Charge credits for offline calls as if a paid provider made them (demos, load tests).
    pub(crate) price_offline_calls: bool,
}

/// The shortest `worker.lease_seconds`: heartbeats come every third of a lease, at least a
/// second apart.
pub(crate) const MIN_LEASE_SECONDS: u64 = 5;

/// The longest `worker.retention_days` (about a century): a longer one is a slip (a
/// misplaced unit), refused rather than read as some other period.
pub(crate) const MAX_RETENTION_DAYS: u64 = 36_500;

impl WorkerSettings {
    /// Refuses values the engine could only bend into something else.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (name, value) in [
            (
                "WORKER_CONCURRENCY (worker.concurrency)",
                u64::try_from(self.concurrency).unwrap_or(u64::MAX),
            ),
            (
                "IMAGE_CONCURRENCY (worker.image_limit)",
                u64::from(self.image_limit),
            ),
            (
                "VIDEO_CONCURRENCY (worker.video_limit)",
                u64::from(self.video_limit),
            ),
            (
                "worker.script_limit (DRAMA__WORKER__SCRIPT_LIMIT)",
                u64::from(self.script_limit),
            ),
            (
                "worker.stitch_limit (DRAMA__WORKER__STITCH_LIMIT)",
                u64::from(self.stitch_limit),
            ),
        ] {
            if value == 0 {
                return Err(format!(
                    "{name} must be at least 1: 0 would run none of those jobs at all"
                ));
            }
        }
        if self.lease_seconds < MIN_LEASE_SECONDS {
            return Err(format!(
                "worker.lease_seconds (DRAMA__WORKER__LEASE_SECONDS) must be at least \
                 {MIN_LEASE_SECONDS}, got {}: a shorter lease expires between heartbeats and \
                 hands running jobs to another worker",
                self.lease_seconds
            ));
        }
        if self.retention_days > MAX_RETENTION_DAYS {
            return Err(format!(
                "worker.retention_days (DRAMA__WORKER__RETENTION_DAYS) must be at most \
                 {MAX_RETENTION_DAYS} days, or 0 to keep settled runs forever; got {}",
                self.retention_days
            ));
        }
        Ok(())
    }

    /// A warning when `idle_in_transaction` (`DATABASE_IDLE_IN_TRANSACTION_TIMEOUT`, zero:
    /// the server's setting) is longer than half the lease: a stalled session then holds the
    /// locks of its runs past their leases, and claims, completions and reaping wait for it.
    pub(crate) fn lease_warning(&self, idle_in_transaction: std::time::Duration) -> Option<String> {
        let half = std::time::Duration::from_secs(self.lease_seconds) / 2;
        (!idle_in_transaction.is_zero() && idle_in_transaction > half).then(|| {
            format!(
                "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT ({} s) is longer than half of \
                 worker.lease_seconds ({} s): a stalled session holds its runs' locks past their \
                 leases; keep it at most {} s",
                idle_in_transaction.as_secs_f64(),
                self.lease_seconds,
                half.as_secs_f64()
            )
        })
    }

    /// How long settled runs are kept; `None`: forever.
    pub(crate) fn retention(&self) -> Option<std::time::Duration> {
        (self.retention_days > 0).then(|| {
            std::time::Duration::from_secs(self.retention_days.min(MAX_RETENTION_DAYS) * 86_400)
        })
    }
}

/// The part of the settings the `config` crate layers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Layered {
    pub(super) database: PgSettings,
    pub(super) log: LogSettings,
    pub(super) server: ServerSettings,
    pub(super) http: HttpSettings,
    #[serde(default)]
    pub(super) assets: HashMap<String, String>,
    #[serde(default)]
    pub(super) ai: HashMap<String, String>,
    pub(super) worker: WorkerSettings,
    pub(super) metrics: MetricsSettings,
    pub(super) quotas: QuotaSettings,
    pub(super) limits: LimitSettings,
    pub(super) credits: CreditSettings,
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
    /// Where local data lives (`DATA_DIR`): the embedded PostgreSQL cluster under
    /// `postgres/`.
    pub(crate) data_dir: String,
    /// With no `DATABASE_URL`, start a private PostgreSQL cluster when its binaries are
    /// installed (`EMBEDDED_POSTGRES`); off: the in-memory store.
    pub(crate) embedded_postgres: bool,
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
