//! `keys create|list|revoke`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use chrono::{Duration, Utc};
use drama_dal::{ApiKeyRepository as _, NewUser, RepoError, UserRepository as _};
use drama_domain::UserId;

use crate::cli::KeysCommand;
use crate::serve::{Backend, backend};
use crate::settings::Settings;

pub(crate) async fn run(settings: &Settings, command: KeysCommand) -> anyhow::Result<ExitCode> {
    if settings.database.url.trim().is_empty() {
        anyhow::bail!(
            "keys are stored in the database: set DATABASE_URL (the embedded mode prints its \
             own key at startup)"
        );
    }
    let Backend::Postgres(store) = backend(settings, false).await? else {
        anyhow::bail!("keys need PostgreSQL");
    };
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Create {
            name,
            owner,
            service,
            expires_in_days,
        } => {
            let owner = owner.unwrap_or_else(UserId::random);
            let mut user = NewUser::new(owner);
            user.tokens = settings.credits.opening();
            match store.create_user(&user).await {
                Ok(_) => writeln!(out, "created user {owner}")?,
                Err(RepoError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e).context("creating the key's user"),
            }
            let scopes: Vec<String> = if service {
                vec!["service".to_owned()]
            } else {
                Vec::new()
            };
            let expires = expires_in_days.map(|d| Utc::now() + Duration::days(i64::from(d)));
            let created = store
                .create_api_key(owner, &name, &scopes, expires)
                .await
                .context("creating the key")?;
            writeln!(out, "key id:  {}", created.meta.id)?;
            writeln!(out, "owner:   {owner}")?;
            writeln!(out, "scopes:  {}", created.meta.scopes.join(","))?;
            writeln!(out, "API key (shown only now, store it safely):")?;
            writeln!(out, "{}", created.key)?;
        }
        KeysCommand::List { owner } => {
            let keys = store.list_api_keys(owner).await?;
            if keys.is_empty() {
                writeln!(out, "no keys for {owner}")?;
            }
            for k in keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= Utc::now()) {
                    "expired"
                } else {
                    "active"
                };
                // A key made with another is revoked with it: the listing says with which.
                let maker = k
                    .made_by
                    .map(|id| format!("  made with {id}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{}  dk_{}_…  {:<8} {:<20} created {}  last used {}{maker}",
                    k.id,
                    k.prefix,
                    state,
                    k.name,
                    k.created_at.format("%Y-%m-%d %H:%M"),
                    k.last_used_at.map_or_else(
                        || "never".to_owned(),
                        |t| t.format("%Y-%m-%d %H:%M").to_string()
                    )
                )?;
            }
        }
        KeysCommand::Revoke { owner, id } => {
            let key = store.revoke_api_key(owner, id).await?;
            writeln!(out, "revoked {} ({})", key.id, key.name)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
