//! What `drama-server check` reports about the database.

use std::collections::HashMap;

use sqlx::{PgPool, Row as _};

use crate::MIGRATOR;
use crate::error::PgError;

/// One migration as the database and the binary see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// The 14-digit timestamp.
    pub version: i64,
    /// The name after the timestamp.
    pub description: String,
}

/// The state of the schema compared with the migrations this binary embeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaReport {
    /// `SHOW server_version`.
    pub server_version: String,
    /// Migrations recorded as applied, oldest first.
    pub applied: Vec<AppliedMigration>,
    /// Embedded migrations not yet applied.
    pub pending: Vec<AppliedMigration>,
    /// Applied migrations whose file changed since (sqlx will refuse to migrate).
    pub modified: Vec<AppliedMigration>,
    /// Applied migrations this binary does not know (the database is ahead of it).
    pub unknown: Vec<AppliedMigration>,
    /// Tables of the `public` schema without Row Level Security.
    pub tables_without_rls: Vec<String>,
}

impl SchemaReport {
    /// Whether the schema is exactly what this binary expects.
    pub fn is_healthy(&self) -> bool {
        self.pending.is_empty()
            && self.modified.is_empty()
            && self.unknown.is_empty()
            && self.tables_without_rls.is_empty()
    }
}

/// Reads the server version, the migration history and RLS status.
///
/// # Errors
/// [`PgError::Query`] when the database cannot be queried.
pub async fn schema_report(pool: &PgPool) -> Result<SchemaReport, PgError> {
    let server_version: String = sqlx::query_scalar("show server_version")
        .fetch_one(pool)
        .await
        .map_err(PgError::Query)?;
    let history_exists: bool =
        sqlx::query_scalar("select to_regclass('public._sqlx_migrations') is not null")
            .fetch_one(pool)
            .await
            .map_err(PgError::Query)?;
    let mut recorded: HashMap<i64, (String, Vec<u8>)> = HashMap::new();
    if history_exists {
        let rows = sqlx::query(
            "select version, description, checksum from public._sqlx_migrations \
             where success order by version",
        )
        .fetch_all(pool)
        .await
        .map_err(PgError::Query)?;
        for row in rows {
            recorded.insert(row.get(0), (row.get(1), row.get(2)));
        }
    }
    let mut report = SchemaReport {
        server_version,
        applied: Vec::new(),
        pending: Vec::new(),
        modified: Vec::new(),
        unknown: Vec::new(),
        tables_without_rls: Vec::new(),
    };
    for m in MIGRATOR.iter() {
        let entry = AppliedMigration {
            version: m.version,
            description: m.description.to_string(),
        };
        match recorded.remove(&m.version) {
            Some((_, checksum)) => {
                if checksum != m.checksum.as_ref() {
                    report.modified.push(entry.clone());
                }
                report.applied.push(entry);
            }
            None => report.pending.push(entry),
        }
    }
    let mut unknown: Vec<_> = recorded
        .into_iter()
        .map(|(version, (description, _))| AppliedMigration {
            version,
            description,
        })
        .collect();
    unknown.sort_by_key(|m| m.version);
    report.unknown = unknown;
    report.tables_without_rls = sqlx::query_scalar(
        "select c.relname::text from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = 'public' and c.relkind = 'r' and not c.relrowsecurity order by 1",
    )
    .fetch_all(pool)
    .await
    .map_err(PgError::Query)?;
    Ok(report)
}
