//! `serve` without `DATABASE_URL`: the quick start. A production configuration is refused
//! (nothing paid or public may run on a store chosen by default); otherwise the server runs on
//! a private PostgreSQL cluster when the binaries are installed (data kept), else in memory,
//! listens on 127.0.0.1 unless told otherwise, and prints an ordinary user's key with modest
//! credits.

use std::path::Path;

use drama_dal::{ApiKeyRepository, NewUser, UserRepository, api_key::authenticate};
use drama_domain::UserId;

use crate::embedded::{Binaries, Cluster};
use crate::settings::Settings;
use crate::supabase;

/// Credits of the quick-start user: a few dramas' worth at list prices
/// (`PRICE_OFFLINE_CALLS`), far from what could hurt.
pub(crate) const QUICK_START_CREDITS: i64 = 1_000;

/// Refuses a configuration that is meant for production but has no database.
///
/// # Errors
/// A message saying what is configured and what to set.
pub(crate) fn guard(settings: &Settings) -> anyhow::Result<()> {
    if settings.is_production() {
        anyhow::bail!(
            "ENVIRONMENT=production, but DATABASE_URL is not set: a production server keeps \
             its data in PostgreSQL. Set DATABASE_URL (docs/DEPLOY.md); the embedded and \
             in-memory stores are for trying the server out"
        );
    }
    if settings.ai.uses_paid_providers() {
        let keys: Vec<&str> = settings
            .ai
            .effective()
            .into_iter()
            .filter(|(name, value)| name.ends_with("_API_KEY") && value == "<set>")
            .map(|(name, _)| name)
            .collect();
        anyhow::bail!(
            "{} set, so generations cost money, but DATABASE_URL is not: credits, jobs and \
             results would live in a store chosen by default. Set DATABASE_URL, or \
             AI_OFFLINE=true to try the server without paid providers",
            keys.join(", ")
        );
    }
    let supabase_named = settings.http.auth.supabase_url.is_some()
        || ["SUPABASE_ANON_KEY", "SUPABASE_SERVICE_KEY"]
            .iter()
            .any(|name| settings.source_of(name).is_explicit());
    if supabase_named {
        anyhow::bail!(
            "the configuration names a Supabase project, but DATABASE_URL is not set: {}",
            supabase::database_hint(settings.http.auth.supabase_url.as_deref())
        );
    }
    Ok(())
}

/// Which quick-start store runs, and why.
pub(crate) enum Store {
    /// A private cluster.
    Embedded(Box<Cluster>),
    /// Process memory; the reason it is not a cluster.
    Memory(String),
}

/// Starts the private cluster when allowed and possible.
pub(crate) async fn choose(settings: &Settings) -> Store {
    if !settings.server.embedded_postgres {
        return Store::Memory("EMBEDDED_POSTGRES=false".to_owned());
    }
    let Some(binaries) = Binaries::find() else {
        return Store::Memory(
            "no PostgreSQL server binaries (initdb, pg_ctl) are installed; install \
             PostgreSQL (Debian: apt-get install postgresql) to keep data"
                .to_owned(),
        );
    };
    let dir = Path::new(&settings.server.data_dir).to_owned();
    match tokio::task::spawn_blocking(move || Cluster::start(binaries, &dir)).await {
        Ok(Ok(cluster)) => Store::Embedded(Box::new(cluster)),
        Ok(Err(e)) => {
            tracing::warn!(
                error = format!("{e:#}"),
                "the embedded PostgreSQL did not start"
            );
            Store::Memory(format!("the embedded PostgreSQL did not start: {e:#}"))
        }
        Err(e) => Store::Memory(format!("the embedded PostgreSQL did not start: {e}")),
    }
}

/// The quick-start user's key: the one kept with the cluster while it still works, else a
/// new ordinary key (no service scope) for the kept user, or for a new user with
/// [`QUICK_START_CREDITS`].
pub(crate) async fn user_key<S>(
    store: &S,
    kept_user: Option<uuid::Uuid>,
    kept_key: Option<String>,
) -> anyhow::Result<(UserId, String)>
where
    S: ApiKeyRepository + UserRepository + ?Sized,
{
    if let (Some(user), Some(key)) = (kept_user, kept_key)
        && authenticate(store, &key, chrono::Utc::now()).await.is_ok()
    {
        return Ok((UserId(user), key));
    }
    let existing = match kept_user {
        Some(user) => store.get_user(UserId(user)).await.ok().map(|u| u.id),
        None => None,
    };
    let user = match existing {
        Some(user) => user,
        None => {
            let user = UserId::random();
            let mut new = NewUser::new(user);
            new.display_name = Some("quick start".to_owned());
            new.tokens = QUICK_START_CREDITS;
            store.create_user(&new).await?;
            user
        }
    };
    let key = store.create_api_key(user, "quick start", &[], None).await?;
    Ok((user, key.key))
}

/// What the banner says about the store.
pub(crate) fn store_line(store: &Store) -> String {
    match store {
        Store::Embedded(cluster) => format!(
            "Database: a private PostgreSQL in {} (127.0.0.1:{}), kept across restarts;\n  \
             {:10}it starts and stops with this process.",
            cluster.dir.join("postgres").display(),
            cluster.port(),
            ""
        ),
        Store::Memory(why) => format!(
            "Database: IN MEMORY: dramas, keys and jobs are LOST when the process stops\n  \
             {:10}({why}).",
            ""
        ),
    }
}

/// Prints the quick start's banner on stderr.
#[allow(clippy::print_stderr)]
pub(crate) fn announce(settings: &Settings, store: &Store, user: UserId, key: &str, console: &str) {
    let base = format!("http://{}:{}", settings.server.host, settings.server.port);
    let exposure = if settings.server.host == "127.0.0.1" {
        "Listening on 127.0.0.1 only (HOST or --host to change).".to_owned()
    } else {
        format!("Listening on {} (as configured).", settings.server.host)
    };
    eprintln!(
        "\n  ================================================================\n  \
         QUICK START: no DATABASE_URL is set.\n  \
         {}\n  \
         Assets: the {} store. AI: {}.\n  \
         {exposure}\n  \n  \
         API key of user {user} ({QUICK_START_CREDITS} credits):\n    {key}\n  \
         REST:      curl -H 'Authorization: Bearer {key}' {base}/dramas\n  \
         GraphiQL:  {base}/graphql\n  \
         Console:   {console}\n  \
         {:11}(signs this browser in once, within 10 minutes)\n  \
         For production set DATABASE_URL (docs/DEPLOY.md).\n  \
         ================================================================\n",
        store_line(store),
        format!("{:?}", settings.assets.backend()).to_lowercase(),
        if settings.ai.uses_paid_providers() {
            "paid providers"
        } else {
            "offline provider"
        },
        "",
    );
}
