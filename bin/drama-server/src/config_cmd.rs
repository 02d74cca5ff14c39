//! `config`: every setting in effect, where it comes from, secrets redacted.

use std::fmt::Write as _;
use std::process::ExitCode;

use crate::legacy::print;
use crate::provenance::Effective;
use crate::settings::Settings;

/// `config` options.
#[derive(Debug, clap::Args)]
pub(crate) struct ConfigArgs {
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// The group a setting is shown under: its section, or `assets`/`ai`/`other` for variables.
fn group(e: &Effective) -> String {
    if let Some((section, _)) = e.name.split_once('.') {
        return section.to_owned();
    }
    let in_assets = drama_assets::VARIABLES.contains(&e.name.as_str());
    let in_ai = drama_ai::ENV_VARS.contains(&e.name.as_str());
    if in_assets {
        "assets".to_owned()
    } else if in_ai {
        "ai".to_owned()
    } else {
        "other".to_owned()
    }
}

pub(crate) fn run(settings: &Settings, args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let mut out = String::new();
    if args.json {
        for e in &settings.effective {
            let _ = writeln!(out, "{}", serde_json::to_string(e)?);
        }
        print(&out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let width = settings
        .effective
        .iter()
        .map(|e| e.name.len())
        .max()
        .unwrap_or(0);
    let value_width = settings
        .effective
        .iter()
        .map(|e| e.value.as_deref().map_or(7, str::len).min(48))
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "# drama-server configuration in effect; secrets are shown as ***.\n\
         # Sources, later ones winning: default < file (--config) < DRAMA__SECTION__KEY < the \
         conventional variable."
    );
    let mut current = String::new();
    for e in &settings.effective {
        let section = group(e);
        if section != current {
            let _ = writeln!(out, "\n[{section}]");
            current = section;
        }
        let value = e.value.as_deref().unwrap_or("(unset)");
        let variable = match &e.variable {
            Some(v) if *v != e.name => format!("  ${v}"),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "{:<width$} = {value:<value_width$}  ({}){variable}",
            e.name, e.source
        );
    }
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}
