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
    print(&render(settings, args.json)?)?;
    Ok(ExitCode::SUCCESS)
}

/// What `config` prints: the table, or one JSON object per line.
fn render(settings: &Settings, json: bool) -> anyhow::Result<String> {
    let mut out = String::new();
    if json {
        for e in &settings.effective {
            let _ = writeln!(out, "{}", serde_json::to_string(e)?);
        }
        return Ok(out);
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
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn the_table_and_the_json_lines_show_no_secret() {
        let vars: HashMap<String, String> = [
            (
                "DATABASE_URL",
                "host=db user=app password=kvsecret sslpassword='ssl secret' dbname=x",
            ),
            ("LEGACY_USER_ID", "6f1c1c8e-4a57-4f0e-9d55-0d7b6f0c1a11"),
            ("API_KEYS", "oldkeysecret"),
            ("METRICS_TOKEN", "metricstokensecret"),
            ("SUPABASE_JWT_SECRET", "jwtsecretvalue-0123456789"),
            (
                "ASSETS_SIGNING_SECRET",
                "signingsecret-0123456789-0123456789",
            ),
            ("ASSETS_BACKEND", "local"),
            (
                "ASSETS_PUBLIC_URL",
                "https://cdn.example.com/a?token=urltokensecret",
            ),
            ("OPENAI_API_KEY", "sk-openaisecret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings = Settings::load_from(None, &vars).unwrap();
        let table = render(&settings, false).unwrap();
        let lines = render(&settings, true).unwrap();
        for secret in [
            "kvsecret",
            "ssl secret",
            "oldkeysecret",
            "metricstokensecret",
            "jwtsecretvalue",
            "signingsecret",
            "urltokensecret",
            "sk-openaisecret",
        ] {
            assert!(
                !table.contains(secret),
                "{secret} shown in the table:\n{table}"
            );
            assert!(!lines.contains(secret), "{secret} shown in JSON:\n{lines}");
        }
        let row = |name: &str| {
            table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no row {name}:\n{table}"))
                .to_owned()
        };
        assert!(
            row("database.url").contains("host=db user=app password=*** sslpassword=*** dbname=x"),
            "{}",
            row("database.url")
        );
        assert!(row("http.auth.legacy_api_keys").contains("= ***"));
        assert!(row("http.auth.legacy_api_keys").contains("(environment API_KEYS)"));
        assert!(row("metrics.token").contains("= ***"));
        assert!(row("ASSETS_PUBLIC_URL").contains("https://cdn.example.com/a?token=***"));
    }

    #[test]
    fn an_endpoint_url_beside_an_account_id_shows_as_ignored() {
        let vars: HashMap<String, String> = [
            ("R2_ACCOUNT_ID", "abc123"),
            ("R2_ENDPOINT_URL", "http://minio.internal:9000"),
            ("R2_BUCKET", "b"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let settings = Settings::load_from(None, &vars).unwrap();
        let table = render(&settings, false).unwrap();
        let row = table
            .lines()
            .find(|l| l.starts_with("R2_ENDPOINT_URL"))
            .unwrap();
        assert!(
            row.contains("http://minio.internal:9000 (ignored: R2_ACCOUNT_ID is set and wins)"),
            "{row}"
        );
    }
}
