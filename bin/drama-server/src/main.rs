//! `drama-server`: the one binary of the service.

mod check;
mod cli;
mod config_cmd;
mod credits;
mod embedded;
mod keys;
mod legacy;
mod metrics;
mod migrate;
mod pools;
mod provenance;
mod quickstart;
mod serve;
mod settings;
mod supabase;
mod telemetry;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    // `.env` is a development convenience; it never overrides the real environment, and it is
    // read before any thread exists (setting variables is not thread-safe). ENVIRONMENT is
    // read here as the settings read it (`Production` is production), and refused when it is
    // neither value, before `.env` could be read for a production that was misspelt.
    match settings::environment(std::env::var("ENVIRONMENT").ok().as_deref()) {
        Ok(environment) if environment == "production" => {}
        Ok(_) => {
            let _ = dotenvy::dotenv();
        }
        Err(e) => {
            report_error(&e);
            return ExitCode::from(2);
        }
    }
    let cli = Cli::parse();
    let settings = match settings::Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            report_error(&e);
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            report_error(&anyhow::Error::new(e).context("cannot start the async runtime"));
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli.command, settings));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            report_error(&e);
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, settings: settings::Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Migrate(args) => migrate::run(&settings, args).await,
        Command::Check => check::check(&settings).await,
        Command::Config(args) => config_cmd::run(&settings, &args),
        Command::Serve(args) => serve::serve(settings, args).await,
        Command::Worker => serve::worker(settings).await,
        Command::Keys(command) => keys::run(&settings, command).await,
        Command::Credits(command) => credits::run(&settings, command).await,
        Command::ImportR2(args) => legacy::import(&settings, args).await,
        Command::ExportR2(args) => legacy::export(&settings, args).await,
    }
}

/// Prints an error and its causes, one per line, for a person at a terminal.
#[allow(clippy::print_stderr)]
fn report_error(e: &anyhow::Error) {
    eprintln!("error: {e}");
    for cause in e.chain().skip(1) {
        eprintln!("  caused by: {cause}");
    }
}
