#![doc = include_str!("../README.md")]

mod api_keys;
mod cache;
mod credits;
mod dramas;
mod error;
mod failover;
mod feed;
mod generation;
mod health;
pub mod jobs;
mod legacy;
mod legacy_tables;
mod metrics;
mod orphans;
mod redact;
mod schema;
mod settings;
mod usage;
mod users;

pub use error::PgError;
pub use health::{AppliedMigration, SchemaReport, schema_report};
pub use legacy_tables::{PgLegacyTables, legacy_table_access};
pub use metrics::{ClassWork, JobMetrics, job_metrics};
pub use redact::redact;
pub use schema::{
    LEGACY_SCHEMA, LEGACY_TABLES, LegacySchema, LegacyTable, adopt_legacy_schema, legacy_schema,
    migrate,
};
pub use settings::PgSettings;

use sqlx::PgPool;

/// The migrations of `/migrations`, embedded at build time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

/// All repositories on one PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    cache: Option<cache::DramaCache>,
}

pub use cache::DEFAULT_CACHE_BYTES;

impl PgStore {
    /// Repositories on an existing pool, with a drama cache of [`DEFAULT_CACHE_BYTES`].
    pub fn new(pool: PgPool) -> Self {
        Self::with_cache(pool, DEFAULT_CACHE_BYTES)
    }

    /// Repositories whose drama cache holds up to `max_bytes` (0 turns it off). Cached
    /// dramas are checked against the stored version on every read.
    pub fn with_cache(pool: PgPool, max_bytes: u64) -> Self {
        Self {
            pool,
            cache: (max_bytes > 0).then(|| cache::DramaCache::new(max_bytes)),
        }
    }

    /// The pool, for components that share it (the job engine, health checks).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}
