//! `serve` with no `DATABASE_URL`: production configurations are refused; otherwise the quick
//! start runs on a private PostgreSQL under `DATA_DIR` (kept across restarts), or in memory,
//! on 127.0.0.1 unless told otherwise, with an ordinary user's key.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use std::os::unix::fs::PermissionsExt as _;

use serde_json::{Value, json};
use support::{Server, binary, free_port, output, text};

/// `serve` without a database, data under `dir`.
fn quick(dir: &std::path::Path, port: u16, extra: &[(&str, &str)]) -> std::process::Command {
    let mut c = binary(&["serve"]);
    c.env("DATA_DIR", dir.join("data"))
        .env("ASSETS_DIR", dir.join("data/assets"))
        .env("PORT", port.to_string())
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "json");
    for (k, v) in extra {
        c.env(k, v);
    }
    c
}

/// A directory the `postgres` user can reach when the tests run as root.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn key_in(log: &str) -> String {
    log.split_whitespace()
        .find(|w| w.starts_with("dk_"))
        .unwrap_or_else(|| panic!("no key printed:\n{log}"))
        .trim_matches('\'')
        .to_owned()
}

fn postgres_installed() -> bool {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("initdb").is_file()));
    on_path
        || std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| d.flatten().any(|e| e.path().join("bin/initdb").is_file()))
            .unwrap_or(false)
}

#[tokio::test]
async fn production_configurations_without_a_database_are_refused() {
    let dir = data_dir();
    for (extra, expected) in [
        (
            vec![("ENVIRONMENT", "production")],
            "ENVIRONMENT=production, but DATABASE_URL is not set",
        ),
        (
            vec![("SORA_API_KEY", "sk-real")],
            "SORA_API_KEY set, so generations cost money",
        ),
        (
            vec![("SUPABASE_URL", "https://abcdefgh.supabase.co")],
            "https://supabase.com/dashboard/project/abcdefgh",
        ),
    ] {
        let out = output(quick(dir.path(), free_port(), &extra)).await;
        let said = text(&out);
        assert!(!out.status.success(), "{extra:?} started:\n{said}");
        assert!(said.contains(expected), "{extra:?}:\n{said}");
        assert!(!said.contains("dk_"), "no key for a refused start:\n{said}");
    }
    // Requests only, with no store a worker could share: paid work would never run.
    let mut no_workers = quick(dir.path(), free_port(), &[]);
    no_workers.arg("--no-workers");
    let out = output(no_workers).await;
    let said = text(&out);
    assert!(!out.status.success(), "--no-workers started:\n{said}");
    assert!(
        said.contains("serve --no-workers needs DATABASE_URL"),
        "{said}"
    );
    assert!(!said.contains("dk_"), "no key for a refused start:\n{said}");
    assert!(
        !dir.path().join("data/postgres").exists(),
        "nothing is started for a refused configuration"
    );
}

#[tokio::test]
async fn the_quick_start_keeps_its_data_across_a_restart() {
    let dir = data_dir();
    let port = free_port();
    let mut server = Server::spawn(quick(dir.path(), port, &[]), port, dir.path(), "first");
    server.wait_for("/ready").await;
    let log = server.logs();
    let key = key_in(&log);
    assert!(log.contains("Listening on 127.0.0.1 only"), "{log}");
    assert!(log.contains(r#""host":"127.0.0.1""#), "{log}");
    assert!(log.contains("1000 credits"), "{log}");
    let http = reqwest::Client::new();
    let created = http
        .post(server.url("/dramas"))
        .bearer_auth(&key)
        .json(
            &json!({"premise": "A lighthouse keeper adopts a storm, in 2 episodes", "id": "storm"}),
        )
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());

    if !postgres_installed() {
        // Without the binaries the fallback is memory, and the banner says so.
        assert!(log.contains("IN MEMORY"), "{log}");
        assert!(log.contains("initdb"), "{log}");
        server.stop().await;
        return;
    }
    assert!(log.contains("a private PostgreSQL in"), "{log}");
    assert!(!log.contains("IN MEMORY"), "{log}");

    // The key is an ordinary one with modest credits.
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("data/embedded.json")).unwrap())
            .unwrap();
    let mode = std::fs::metadata(dir.path().join("data/embedded.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the password file is private");
    let pid = std::fs::read_to_string(dir.path().join("data/postgres/postmaster.pid")).unwrap();
    let pg_port = pid.lines().nth(3).unwrap().trim();
    let url = format!(
        "postgres://drama:{}@127.0.0.1:{pg_port}/postgres",
        state["password"].as_str().unwrap()
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let (scopes, tokens): (Vec<String>, i64) = sqlx::query_as(
        "select k.scopes, u.tokens from api_keys k join users u on u.id = k.owner_id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(scopes.is_empty(), "not a service key: {scopes:?}");
    assert_eq!(tokens, 1000);
    pool.close().await;

    // Stopped, the cluster stops with it; started again, the same key sees the same drama.
    assert!(
        server.stop().await.is_some_and(|s| s.success()),
        "{}",
        server.logs()
    );
    assert!(!dir.path().join("data/postgres/postmaster.pid").exists());
    let port = free_port();
    let mut again = Server::spawn(quick(dir.path(), port, &[]), port, dir.path(), "second");
    again.wait_for("/ready").await;
    assert_eq!(key_in(&again.logs()), key);
    let drama = http
        .get(again.url("/dramas/storm"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(drama.status(), 200, "{}", again.logs());

    // A killed server leaves its cluster running; the next start takes it over.
    again.child.kill().unwrap();
    again.child.wait().unwrap();
    let port = free_port();
    let mut third = Server::spawn(quick(dir.path(), port, &[]), port, dir.path(), "third");
    third.wait_for("/ready").await;
    assert_eq!(key_in(&third.logs()), key);
    third.stop().await;
    assert!(!dir.path().join("data/postgres/postmaster.pid").exists());
}

#[tokio::test]
async fn without_postgres_the_store_is_memory_and_the_banner_says_so() {
    let dir = data_dir();
    let port = free_port();
    let mut server = Server::spawn(
        quick(dir.path(), port, &[("EMBEDDED_POSTGRES", "false")]),
        port,
        dir.path(),
        "memory",
    );
    server.wait_for("/ready").await;
    let log = server.logs();
    assert!(log.contains("IN MEMORY"), "{log}");
    assert!(log.contains("EMBEDDED_POSTGRES=false"), "{log}");
    let key = key_in(&log);
    let list = reqwest::Client::new()
        .get(server.url("/dramas"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    server.stop().await;
    assert!(!dir.path().join("data/postgres").exists());

    // An explicit host is honoured.
    let port = free_port();
    let mut open = Server::spawn(
        quick(
            dir.path(),
            port,
            &[("EMBEDDED_POSTGRES", "false"), ("HOST", "0.0.0.0")],
        ),
        port,
        dir.path(),
        "open",
    );
    open.wait_for("/health").await;
    assert!(
        open.logs().contains("Listening on 0.0.0.0 (as configured)"),
        "{}",
        open.logs()
    );
    open.stop().await;
}

#[tokio::test]
async fn check_and_migrate_say_where_a_supabase_projects_database_url_is() {
    for command in ["check", "migrate"] {
        let out = output({
            let mut c = binary(&[command]);
            c.env("SUPABASE_URL", "https://abcdefgh.supabase.co");
            c
        })
        .await;
        let said = text(&out);
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("DATABASE_URL is not set"), "{said}");
        assert!(said.contains("dashboard/project/abcdefgh"), "{said}");
        assert!(said.contains("Session pooler"), "{said}");
    }
}
