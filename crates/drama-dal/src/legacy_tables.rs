//! The read port of the old server's database: its tables (`dramas`, `characters`,
//! `episodes`, `scenes`, `assets`, `users`), wherever they sit, row by row. The old schema
//! varies between projects (the repository code of the old server wrote columns its SQL file
//! never created: `user_id`, `is_main`, `sequence_number`, …), so rows are handed over as the
//! JSON objects of their columns and the caller decides what each column means.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drama_domain::UserId;
use serde_json::{Map, Value};

use crate::error::RepoError;

/// One row: column name → value.
pub type LegacyRow = Map<String, Value>;

/// A drama listed in the old tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyDramaEntry {
    /// Its id (any text the old schema allowed).
    pub id: String,
    /// Its `user_id` column, when the table has one and it is set (text or number).
    pub owner: Option<String>,
    /// `created_at`, when the table has it.
    pub created_at: Option<DateTime<Utc>>,
    /// `updated_at`, when the table has it.
    pub updated_at: Option<DateTime<Utc>>,
}

/// The rows of one drama, children in their stored order (`sequence_number`, then
/// `created_at`, then id, as far as the tables have those columns).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LegacyDramaRows {
    /// The `dramas` row.
    pub drama: LegacyRow,
    /// Its `characters` rows.
    pub characters: Vec<LegacyRow>,
    /// Its `episodes` rows.
    pub episodes: Vec<LegacyRow>,
    /// The `scenes` rows of its episodes.
    pub scenes: Vec<LegacyRow>,
    /// Its `assets` rows (of the drama and of every part of it).
    pub assets: Vec<LegacyRow>,
}

/// Read access to the old server's tables.
#[async_trait]
pub trait LegacyTables: Send + Sync {
    /// Where the tables are (the schema name), for reports and source keys.
    fn location(&self) -> &str;

    /// Every drama, by id.
    ///
    /// # Errors
    /// `Unavailable`; `Unexpected` when the tables do not have the old shape.
    async fn legacy_dramas(&self) -> Result<Vec<LegacyDramaEntry>, RepoError>;

    /// The rows of one drama, `None` when it is gone. One round trip.
    ///
    /// # Errors
    /// `Unavailable`; `Unexpected`.
    async fn legacy_drama(&self, id: &str) -> Result<Option<LegacyDramaRows>, RepoError>;

    /// The rows of the old `users` table (empty when there is none).
    ///
    /// # Errors
    /// `Unavailable`; `Unexpected`.
    async fn legacy_users(&self) -> Result<Vec<LegacyRow>, RepoError>;

    /// How Supabase Auth knows each of `ids`, the only record of who signed in that no client
    /// could write: `None` when the database has no `auth.users` to ask (not a Supabase
    /// project); otherwise, for each id it lists, whether that user is an anonymous session.
    /// An id Auth does not list is left out.
    ///
    /// # Errors
    /// `Unavailable`; `Unexpected`.
    async fn auth_standing(
        &self,
        ids: &[UserId],
    ) -> Result<Option<HashMap<UserId, AuthStanding>>, RepoError>;
}

/// What Supabase Auth says of one user id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStanding {
    /// A user who signed up (email, phone, a provider).
    SignedUp,
    /// An anonymous session: anyone can open one, so it is worth nothing on its own.
    Anonymous,
}

/// Who could write one old table from outside the server, as the database said before
/// adoption closed it: on Supabase the client roles `anon` and `authenticated` reach every
/// table of `public` through the Data API, so a table they could insert into or update (with
/// no row security, or a permissive policy letting them) held rows anyone could have set.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct LegacyTableAccess {
    /// The table's name.
    pub table: String,
    /// Row security was enabled on it.
    pub row_security: bool,
    /// The names of its permissive policies that allow inserts or updates.
    pub write_policies: Vec<String>,
    /// The client roles that could insert or update its rows (privilege and, under row
    /// security, a permissive policy for them).
    pub writable_by: Vec<String>,
}
