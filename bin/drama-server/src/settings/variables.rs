//! The conventional variable names (`DATABASE_URL`, `PORT`, `API_KEYS`, …) the old server and the
//! Supabase guide use, and what they set: one table to read, and to check docs/CONFIG.md and
//! .env.example against.

use std::collections::HashMap;

use super::Layered;
use crate::provenance::{Effective, Source};

/// Conventional names that map onto a settings key.
pub(super) const PLAIN_VARIABLES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database.url"),
    ("DATABASE_MAX_CONNECTIONS", "database.max_connections"),
    ("DATABASE_SSL_ROOT_CERT", "database.ssl_root_cert"),
    (
        "DATABASE_IDLE_IN_TRANSACTION_TIMEOUT",
        "database.idle_in_transaction_timeout",
    ),
    ("LOG_FORMAT", "log.format"),
    ("HOST", "server.host"),
    ("PORT", "server.port"),
    ("PUBLIC_URL", "server.public_url"),
    ("SUPABASE_JWT_SECRET", "http.auth.jwt_secret"),
    ("SUPABASE_URL", "http.auth.supabase_url"),
    ("RATE_LIMIT_PER_SECOND", "http.rate_per_second"),
    ("RATE_LIMIT_BURST", "http.rate_burst"),
    ("CORS_ALLOWED_ORIGINS", "http.cors_origins"),
    ("GRAPHQL_MAX_BATCH", "http.graphql.max_batch"),
    ("GRAPHQL_MAX_ALIASES", "http.graphql.max_aliases"),
    ("GRAPHQL_MAX_COMPLEXITY", "http.graphql.max_complexity"),
    ("GRAPHQL_MAX_DEPTH", "http.graphql.max_depth"),
    ("GRAPHQL_MAX_ROOT_FIELDS", "http.graphql.max_root_fields"),
    ("STREAMS_PER_USER", "http.streams_per_user"),
    ("UPLOADS_PER_USER", "http.uploads_per_user"),
    ("STREAMS_PER_PROCESS", "http.streams_per_process"),
    ("SOCKET_IDLE_SECS", "http.ws_idle_timeout"),
    ("ANONYMOUS_RATE_PER_SECOND", "http.anonymous_per_second"),
    ("TRUST_FORWARDED_FOR", "http.trust_forwarded"),
    ("FORWARDED_HEADER", "http.forwarded_header"),
    ("WORKER_CONCURRENCY", "worker.concurrency"),
    ("VIDEO_CONCURRENCY", "worker.video_limit"),
    ("IMAGE_CONCURRENCY", "worker.image_limit"),
    ("FFMPEG_PATH", "worker.ffmpeg"),
    ("PRICE_OFFLINE_CALLS", "worker.price_offline_calls"),
    ("DATA_DIR", "server.data_dir"),
    ("EMBEDDED_POSTGRES", "server.embedded_postgres"),
    ("METRICS_TOKEN", "metrics.token"),
    ("MEDIA_URL_LIFETIME", "http.media_url_lifetime"),
    ("LEGACY_API_KEYS", "http.auth.legacy_api_keys"),
    ("LEGACY_USER_ID", "http.auth.legacy_user"),
    ("QUOTA_DRAMAS", "quotas.dramas"),
    ("QUOTA_STORED_BYTES", "quotas.stored_bytes"),
    ("QUOTA_ACTIVE_RUNS", "quotas.active_runs"),
    ("QUOTA_MAX_OBJECTS", "quotas.max_objects"),
    ("INITIAL_CREDITS", "credits.initial"),
    ("LEGACY_MAX_CREDITS", "credits.legacy_max"),
    ("MAX_PREMISE_CHARS", "limits.premise_chars"),
    ("MAX_FEEDBACK_CHARS", "limits.feedback_chars"),
    ("MAX_PROMPT_CHARS", "limits.prompt_chars"),
    ("MAX_TITLE_CHARS", "limits.title_chars"),
    ("MAX_DESCRIPTION_CHARS", "limits.description_chars"),
];

/// Variables the binary reads that set no key of its own: they choose the environment, the
/// file and the log filter, or are checked and derived from (the Supabase keys).
pub(crate) const OTHER_VARIABLES: &[&str] = &[
    "ENVIRONMENT",
    "DRAMA_CONFIG",
    "RUST_LOG",
    "SUPABASE_ANON_KEY",
    "SUPABASE_SERVICE_KEY",
    "API_KEYS",
];

/// The old world's credentials: the service_role key (recognised when presented), and the old
/// server's `API_KEYS` as the legacy keys when `LEGACY_API_KEYS` is not set; then checks that
/// legacy keys have a user to act as.
pub(super) fn legacy_credentials(
    layered: &mut Layered,
    effective: &mut [Effective],
    env: &HashMap<String, String>,
) -> Result<(), String> {
    let auth = &mut layered.http.auth;
    if let Some(key) = env
        .get("SUPABASE_SERVICE_KEY")
        .filter(|v| !v.trim().is_empty())
    {
        auth.service_key = Some(key.clone());
    }
    if auth.legacy_api_keys.is_none()
        && let Some(old) = env.get("API_KEYS").filter(|v| !v.trim().is_empty())
    {
        auth.legacy_api_keys = Some(old.clone());
        if let Some(e) = effective
            .iter_mut()
            .find(|e| e.name == "http.auth.legacy_api_keys")
        {
            e.value = Some("***".to_owned());
            e.source = Source::Environment("API_KEYS".to_owned());
        }
    }
    auth.validate()?;
    let lifetime = layered.http.media_url_lifetime;
    if lifetime.is_zero() || lifetime > drama_api::MAX_MEDIA_URL_LIFETIME {
        return Err(format!(
            "MEDIA_URL_LIFETIME must be between 1 and {} seconds, got {}",
            drama_api::MAX_MEDIA_URL_LIFETIME.as_secs(),
            lifetime.as_secs()
        ));
    }
    Ok(())
}

/// `(NAME, value)` pairs for `names`: the file section's (lower-case keys) first, then the
/// environment's.
pub(super) fn overlay(
    section: &HashMap<String, String>,
    env: &HashMap<String, String>,
    names: &[&str],
) -> Vec<(String, String)> {
    names
        .iter()
        .filter_map(|name| {
            let from_env = env.get(*name).filter(|v| !v.is_empty());
            let from_file = section.get(&name.to_ascii_lowercase());
            from_env
                .or(from_file)
                .map(|v| ((*name).to_owned(), v.clone()))
        })
        .collect()
}
