//! `credits grant|show|check`: an operator's view of the credit ledger.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use drama_dal::{CreditLedger as _, CreditMove, CreditReason, UserRepository as _};

use crate::cli::CreditsCommand;
use crate::serve::{Backend, backend};
use crate::settings::Settings;

pub(crate) async fn run(settings: &Settings, command: CreditsCommand) -> anyhow::Result<ExitCode> {
    if settings.database.url.trim().is_empty() {
        anyhow::bail!("credits are kept in the database: set DATABASE_URL");
    }
    let Backend::Postgres(store) = backend(settings, false).await? else {
        anyhow::bail!("credits need PostgreSQL");
    };
    let mut out = std::io::stdout().lock();
    match command {
        CreditsCommand::Grant {
            owner,
            amount,
            reason,
        } => {
            if amount == 0 {
                anyhow::bail!("--amount must not be 0");
            }
            if reason.trim().is_empty() {
                anyhow::bail!("--reason must say why (it is kept in the ledger)");
            }
            // A negative grant is an operator's correction: recorded as an adjustment.
            let kind = if amount > 0 {
                CreditReason::Grant
            } else {
                CreditReason::Adjustment
            };
            let balance = store
                .move_credits(&CreditMove::new(owner, amount, kind).note(reason))
                .await
                .with_context(|| format!("moving {amount} credits for {owner}"))?;
            writeln!(out, "{owner}: {amount:+} ({kind}), balance {balance}")?;
        }
        CreditsCommand::Show { owner, limit } => {
            let user = store.get_user(owner).await?;
            writeln!(out, "{owner}: balance {}", user.tokens)?;
            for e in store.ledger(owner, limit.clamp(1, 1000), 0).await? {
                writeln!(
                    out,
                    "{:>8}  {}  {:>+8}  → {:<8} {:<13} {}{}",
                    e.id,
                    e.created_at.format("%Y-%m-%d %H:%M:%S"),
                    e.amount,
                    e.balance_after,
                    e.reason,
                    e.run_id.map(|r| format!("run {r} ")).unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )?;
            }
        }
        CreditsCommand::Check => {
            let mismatches = store.check_ledger().await?;
            if mismatches.is_empty() {
                writeln!(out, "ok: every balance equals the sum of its ledger")?;
                return Ok(ExitCode::SUCCESS);
            }
            for m in &mismatches {
                writeln!(
                    out,
                    "{}: balance {} but the ledger sums to {}",
                    m.owner, m.balance, m.ledger_sum
                )?;
            }
            writeln!(out, "{} users do not match their ledger", mismatches.len())?;
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}
