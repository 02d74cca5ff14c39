use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The drama-server backend: REST + GraphQL API, job workers and admin commands.
#[derive(Debug, Parser)]
#[command(name = "drama-server", version, about)]
pub(crate) struct Cli {
    /// Configuration file (TOML); values from the environment override it.
    #[arg(long, global = true, env = "DRAMA_CONFIG")]
    pub(crate) config: Option<PathBuf>,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Apply pending database migrations (`--adopt-legacy`: first move the old server's
    /// tables aside and import their rows).
    Migrate(crate::migrate::MigrateArgs),
    /// Check the configuration and connectivity: database version, migrations, RLS.
    Check,
    /// Print every setting in effect and where it comes from (secrets redacted).
    Config(crate::config_cmd::ConfigArgs),
    /// Serve the REST and GraphQL API, with job workers in the same process.
    Serve(ServeArgs),
    /// Run job workers only (scale-out; needs DATABASE_URL).
    Worker,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Grant credits, show a user's ledger, or check every balance against its ledger.
    #[command(subcommand)]
    Credits(CreditsCommand),
    /// Import the old server's dramas (`dramas/*/drama.json` in the bucket) into PostgreSQL.
    ImportR2(crate::legacy::ImportArgs),
    /// Write PostgreSQL's dramas back to the bucket in the old layout (rollback).
    ExportR2(crate::legacy::ExportArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    /// Apply pending migrations before serving (otherwise a schema that is behind is refused).
    #[arg(long)]
    pub(crate) migrate: bool,
    /// Serve only; run the jobs in `worker` processes.
    #[arg(long)]
    pub(crate) no_workers: bool,
    /// Interface to bind (default `HOST`, else 0.0.0.0 — or 127.0.0.1 without a database).
    #[arg(long)]
    pub(crate) host: Option<String>,
    /// Port to bind (default `PORT`, else 8000).
    #[arg(long)]
    pub(crate) port: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a key and print it (the only time it is shown).
    Create {
        /// A label for the key.
        #[arg(long)]
        name: String,
        /// The user the key acts as; created if missing. Default: a new user.
        #[arg(long)]
        owner: Option<drama_domain::UserId>,
        /// Let the key act for other users (`userId` arguments).
        #[arg(long)]
        service: bool,
        /// Days until the key expires, 1 to 36500 (default: never). 0 is refused: the key
        /// would be expired when printed.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        expires_in_days: Option<u32>,
    },
    /// List a user's keys (never their secrets).
    List {
        /// Whose keys.
        #[arg(long)]
        owner: drama_domain::UserId,
    },
    /// Revoke a key.
    Revoke {
        /// Whose key.
        #[arg(long)]
        owner: drama_domain::UserId,
        /// The key's id (from `keys list`).
        #[arg(long)]
        id: uuid::Uuid,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CreditsCommand {
    /// Give a user credits (a negative amount takes them: an adjustment); recorded in the
    /// ledger with the reason.
    Grant {
        /// Whose balance.
        #[arg(long)]
        owner: drama_domain::UserId,
        /// How many credits (negative to take).
        #[arg(long, allow_hyphen_values = true)]
        amount: i64,
        /// Why (kept in the ledger).
        #[arg(long)]
        reason: String,
    },
    /// A user's balance and newest ledger entries.
    Show {
        /// Whose.
        #[arg(long)]
        owner: drama_domain::UserId,
        /// How many entries.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Check that every balance equals the sum of its ledger (exit 1 when one does not).
    Check,
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn a_key_that_would_be_expired_when_printed_is_refused() {
        let parse = |days: &str| {
            Cli::try_parse_from([
                "drama-server",
                "keys",
                "create",
                "--name",
                "k",
                "--expires-in-days",
                days,
            ])
        };
        for refused in ["0", "36501", "4294967295"] {
            let e = parse(refused).unwrap_err().to_string();
            assert!(e.contains("expires-in-days"), "{refused}: {e}");
        }
        for accepted in ["1", "36500"] {
            assert!(parse(accepted).is_ok(), "{accepted}");
        }
    }
}
