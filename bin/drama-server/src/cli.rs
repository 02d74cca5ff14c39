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
    /// Apply pending database migrations.
    Migrate,
    /// Check the configuration and connectivity: database version, migrations, RLS.
    Check,
}
