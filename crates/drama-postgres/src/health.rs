//! What `drama-server check` (and `serve` before it starts) reports about the database.

use std::collections::HashMap;

use sqlx::PgPool;

use crate::MIGRATOR;
use crate::error::PgError;
use crate::schema::{LegacySchema, legacy_schema, read_history};

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
    /// Migrations recorded as applied (by sqlx or by the Supabase CLI), oldest first.
    pub applied: Vec<AppliedMigration>,
    /// Of those, the ones only the Supabase CLI recorded (`supabase db push`); `migrate`
    /// records them for sqlx too.
    pub applied_by_supabase_cli: Vec<AppliedMigration>,
    /// Embedded migrations not yet applied.
    pub pending: Vec<AppliedMigration>,
    /// Applied migrations whose file changed since (sqlx will refuse to migrate).
    pub modified: Vec<AppliedMigration>,
    /// Applied migrations this binary does not know (the database is ahead of it).
    pub unknown: Vec<AppliedMigration>,
    /// Tables of the `public` schema without Row Level Security.
    pub tables_without_rls: Vec<String>,
    /// The old server's tables: still in `public` (to adopt), or moved aside.
    pub legacy: Option<LegacySchema>,
}

impl SchemaReport {
    /// Whether the schema is exactly what this binary expects.
    pub fn is_healthy(&self) -> bool {
        self.pending.is_empty()
            && self.modified.is_empty()
            && self.unknown.is_empty()
            && self.tables_without_rls.is_empty()
            && !self.legacy.as_ref().is_some_and(LegacySchema::in_public)
    }
}

/// Reads the server version, the migration history of both tools and RLS status.
///
/// # Errors
/// [`PgError::Query`] when the database cannot be queried.
pub async fn schema_report(pool: &PgPool) -> Result<SchemaReport, PgError> {
    let mut conn = pool.acquire().await.map_err(PgError::Connect)?;
    let server_version: String = sqlx::query_scalar("show server_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(PgError::Query)?;
    let history = read_history(&mut conn).await.map_err(PgError::Query)?;
    let mut recorded: HashMap<i64, (String, Vec<u8>)> = history
        .sqlx
        .iter()
        .filter(|(_, (_, _, success))| *success)
        .map(|(version, (description, checksum, _))| {
            (*version, (description.clone(), checksum.clone()))
        })
        .collect();
    let mut report = SchemaReport {
        server_version,
        applied: Vec::new(),
        applied_by_supabase_cli: Vec::new(),
        pending: Vec::new(),
        modified: Vec::new(),
        unknown: Vec::new(),
        tables_without_rls: Vec::new(),
        legacy: None,
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
            // The Supabase CLI keeps the statements, not a checksum: such a file counts as
            // applied as it is.
            None if history.supabase.contains(&m.version) => {
                report.applied_by_supabase_cli.push(entry.clone());
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
    .fetch_all(&mut *conn)
    .await
    .map_err(PgError::Query)?;
    drop(conn);
    report.legacy = legacy_schema(pool).await?;
    Ok(report)
}
