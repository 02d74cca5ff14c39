use drama_dal::{Entity, RepoError};

/// Failures of this crate's own operations (connecting, migrating); repository methods return
/// [`RepoError`].
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The configured URL cannot work; the message says what to use instead.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed or an applied migration file was modified.
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[error("query failed: {0}")]
    Query(#[source] sqlx::Error),
    /// `public` holds the old server's tables, which our migrations would collide with.
    #[error(
        "this database holds the old server's schema ({0}); its tables must be moved aside \
         and their rows imported before it can be migrated"
    )]
    LegacySchema(crate::schema::LegacySchema),
    /// Tables our migrations create already exist, but our history does not record them.
    #[error(
        "tables our migrations create already exist in public without our migration history: \
         {}; rename or drop them, or migrate another database",
        .0.join(", ")
    )]
    Collision(Vec<String>),
}

/// Maps a driver error to what a caller can act on. `entity`/`id` name the record the statement
/// was about, for constraint violations.
pub(crate) fn map_err(err: sqlx::Error, entity: Entity, id: &str) -> RepoError {
    crate::failover::note(&err);
    match &err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let constraint = db.constraint().unwrap_or_default().to_owned();
            match code.as_str() {
                "23505" => {
                    let entity = match constraint.as_str() {
                        "users_pkey" => Entity::User,
                        "api_keys_pkey" | "api_keys_prefix_key" => Entity::ApiKey,
                        "dramas_pkey" => Entity::Drama,
                        _ => entity,
                    };
                    RepoError::AlreadyExists {
                        entity,
                        id: id.to_owned(),
                    }
                }
                "23503" if constraint.ends_with("owner_id_fkey") => {
                    RepoError::not_found(Entity::User, id)
                }
                // check_violation, not_null_violation: a rule the domain checks missed.
                "23514" | "23502" => RepoError::invalid(
                    constraint.clone(),
                    format!("violates the database rule {constraint}"),
                ),
                // Text the server cannot store (e.g. an unpaired surrogate escape).
                "22021" | "22P05" | "22P02" | "22001" => {
                    RepoError::invalid("", "contains text the database cannot store")
                }
                // Serialization failures, deadlocks, a lock not granted in time, shutdowns,
                // resource exhaustion, a read-only session (25006: a failover left the
                // connection on a standby, or the database was made read-only for a while), a
                // session ended for idling in its transaction (25P03): retry later (`note`
                // above has the pool replace such sessions, see `failover`). A paid
                // step's write refused for good would fail its task after the provider was
                // paid.
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300" | "53400"
                | "25006" | "25P03" => RepoError::Unavailable(format!("database busy ({code})")),
                c if c.starts_with("08") => {
                    RepoError::Unavailable(format!("database connection failed ({code})"))
                }
                _ => RepoError::Unexpected(Box::new(err)),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => RepoError::Unavailable(err.to_string()),
        _ => RepoError::Unexpected(Box::new(err)),
    }
}

/// `map_err` for statements that are not about one particular record.
pub(crate) fn db(err: sqlx::Error) -> RepoError {
    map_err(err, Entity::Drama, "")
}
