//! The binary's admin commands against a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::{Command, Output};

use drama_testkit::pg::ScratchDb;

fn drama_server(args: &[&str], database_url: &str) -> Output {
    let assets = std::env::temp_dir().join(format!("drama-cli-assets-{}", std::process::id()));
    Command::new(env!("CARGO_BIN_EXE_drama-server"))
        .args(args)
        .env_clear()
        .env("ASSETS_DIR", assets)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("ENVIRONMENT", "production")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn migrate_then_check_reports_a_healthy_schema() {
    let db = ScratchDb::create("cli").await;

    let before = drama_server(&["check"], &db.url());
    assert!(!before.status.success(), "{}", text(&before));
    assert!(
        text(&before).contains("pending migrations"),
        "{}",
        text(&before)
    );

    let migrate = drama_server(&["migrate"], &db.url());
    assert!(migrate.status.success(), "{}", text(&migrate));
    assert!(text(&migrate).contains("applied"), "{}", text(&migrate));

    let check = drama_server(&["check"], &db.url());
    let out = text(&check);
    assert!(check.status.success(), "{out}");
    assert!(out.contains("server version: PostgreSQL"), "{out}");
    assert!(out.contains("pending migrations: none"), "{out}");
    assert!(
        out.contains("row level security: on for every table"),
        "{out}"
    );
    assert!(out.contains("status: healthy"), "{out}");
    assert!(out.contains("assets (local"), "{out}");
    assert!(out.contains("scripts: offline"), "{out}");
    assert!(out.contains("videos:  offline"), "{out}");

    // A bucket that cannot be reached fails the check, and says which one.
    let unreachable = Command::new(env!("CARGO_BIN_EXE_drama-server"))
        .arg("check")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .env("ENVIRONMENT", "production")
        .env("RUST_LOG", "warn")
        .env("R2_ENDPOINT_URL", "http://127.0.0.1:1")
        .env("R2_BUCKET", "nowhere")
        .env("R2_ACCESS_KEY_ID", "id")
        .env("R2_SECRET_ACCESS_KEY", "secret")
        .output()
        .unwrap();
    let out = text(&unreachable);
    assert!(!unreachable.status.success(), "{out}");
    assert!(out.contains("nowhere") && out.contains("FAILED"), "{out}");

    let again = drama_server(&["migrate"], &db.url());
    assert!(again.status.success());
    assert!(
        text(&again).contains("applied 0 migration(s)"),
        "{}",
        text(&again)
    );
    db.drop_it().await;
}

#[test]
fn check_against_a_stopped_database_fails_with_a_reason() {
    let out = drama_server(&["check"], "postgres://postgres:pw@127.0.0.1:1/postgres");
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(msg.contains("cannot connect to PostgreSQL"), "{msg}");
    assert!(msg.contains("connection refused"), "{msg}");
    assert!(!msg.contains(":pw@"), "password leaked: {msg}");
}

#[test]
fn the_transaction_pooler_is_refused_before_connecting() {
    let out = drama_server(
        &["check"],
        "postgres://postgres.ref:pw@aws-0-eu.pooler.supabase.com:6543/postgres",
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("session pooler"), "{}", text(&out));
}

#[test]
fn a_missing_database_url_is_explained() {
    let out = drama_server(&["check"], "");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("DATABASE_URL is not set"),
        "{}",
        text(&out)
    );
}

#[tokio::test]
async fn production_serve_refuses_self_signed_media_urls_without_a_signing_secret() {
    let db = ScratchDb::create("signing").await;
    let migrated = drama_server(&["migrate"], &db.url());
    assert!(migrated.status.success(), "{}", text(&migrated));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    // The production environment of `drama_server` (local-disk assets), with a migrated
    // database and a metrics token: nothing else stands in the way of serving.
    let mut child = Command::new(env!("CARGO_BIN_EXE_drama-server"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .env("ENVIRONMENT", "production")
        .env("ASSETS_DIR", dir.path().join("assets"))
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("METRICS_TOKEN", "a-metrics-token")
        .env("RUST_LOG", "warn")
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let mut status = None;
    for _ in 0..300 {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        status.is_some_and(|s| !s.success()),
        "serve started: {said}"
    );
    assert!(said.contains("ASSETS_SIGNING_SECRET is not set"), "{said}");
    db.drop_it().await;
}

#[tokio::test]
async fn credits_are_granted_shown_and_checked_against_the_ledger() {
    let db = ScratchDb::create("cli_credits").await;
    let migrate = drama_server(&["migrate"], &db.url());
    assert!(migrate.status.success(), "{}", text(&migrate));
    let owner = uuid::Uuid::new_v4().to_string();
    let pool = db.pool().await;
    sqlx::query("insert into public.users (id, tokens) values ($1::uuid, 30)")
        .bind(&owner)
        .execute(&pool)
        .await
        .unwrap();

    let grant = drama_server(
        &[
            "credits",
            "grant",
            "--owner",
            &owner,
            "--amount",
            "500",
            "--reason",
            "beta tester",
        ],
        &db.url(),
    );
    assert!(grant.status.success(), "{}", text(&grant));
    assert!(text(&grant).contains("balance 530"), "{}", text(&grant));
    let take = drama_server(
        &[
            "credits", "grant", "--owner", &owner, "--amount", "-600", "--reason", "too much",
        ],
        &db.url(),
    );
    assert!(!take.status.success(), "a balance never goes below zero");
    assert!(
        text(&take).contains("insufficient tokens"),
        "{}",
        text(&take)
    );

    let show = drama_server(&["credits", "show", "--owner", &owner], &db.url());
    let out = text(&show);
    assert!(show.status.success(), "{out}");
    assert!(out.contains("balance 530"), "{out}");
    assert!(
        out.contains("grant") && out.contains("beta tester"),
        "{out}"
    );
    assert!(out.contains("opening"), "{out}");

    let check = drama_server(&["credits", "check"], &db.url());
    assert!(check.status.success(), "{}", text(&check));
    assert!(text(&check).contains("ok"), "{}", text(&check));

    // A balance written around the ledger is refused at commit.
    let bypass = sqlx::query("update public.users set tokens = 9999 where id = $1::uuid")
        .bind(&owner)
        .execute(&pool)
        .await;
    let err = bypass.unwrap_err().to_string();
    assert!(err.contains("without a ledger entry"), "{err}");
    // And the ledger itself cannot be rewritten.
    let rewrite = sqlx::query("update public.credit_ledger set amount = 1")
        .execute(&pool)
        .await;
    assert!(rewrite.unwrap_err().to_string().contains("append-only"));

    // With the guard switched off by hand, the check finds the difference.
    sqlx::query("alter table public.users disable trigger users_tokens_follow_ledger")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("update public.users set tokens = 9999 where id = $1::uuid")
        .bind(&owner)
        .execute(&pool)
        .await
        .unwrap();
    let broken = drama_server(&["credits", "check"], &db.url());
    let out = text(&broken);
    assert!(!broken.status.success(), "{out}");
    assert!(
        out.contains(&owner) && out.contains("balance 9999 but the ledger sums to 530"),
        "{out}"
    );
    pool.close().await;
    db.drop_it().await;
}

#[tokio::test]
async fn new_users_open_with_the_configured_initial_credits() {
    let db = ScratchDb::create("cli_initial_credits").await;
    let migrate = drama_server(&["migrate"], &db.url());
    assert!(migrate.status.success(), "{}", text(&migrate));
    let owner = uuid::Uuid::new_v4().to_string();
    let assets = std::env::temp_dir().join(format!("drama-cli-assets-{}", std::process::id()));
    let created = Command::new(env!("CARGO_BIN_EXE_drama-server"))
        .args(["keys", "create", "--name", "beta", "--owner", &owner])
        .env_clear()
        .env("ASSETS_DIR", assets)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db.url())
        .env("ENVIRONMENT", "production")
        .env("RUST_LOG", "warn")
        .env("INITIAL_CREDITS", "750")
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", text(&created));
    let show = drama_server(&["credits", "show", "--owner", &owner], &db.url());
    let out = text(&show);
    assert!(out.contains("balance 750"), "{out}");
    assert!(out.contains("opening"), "{out}");
    let check = drama_server(&["credits", "check"], &db.url());
    assert!(check.status.success(), "{}", text(&check));
    db.drop_it().await;
}

/// `config --json` run in `dir` (which may hold a `.env`) with only `ENVIRONMENT` set.
fn config_in(dir: &std::path::Path, environment: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_drama-server"))
        .args(["config", "--json"])
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ENVIRONMENT", environment)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn production_in_any_case_reads_no_dot_env_and_other_environments_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "PORT=9876\n").unwrap();
    let port_of = |out: &Output| {
        assert!(out.status.success(), "{}", text(out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|s| s["name"] == "server.port")
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(port_of(&config_in(dir.path(), "development")), "9876");
    for production in ["production", "Production", " PRODUCTION "] {
        assert_eq!(
            port_of(&config_in(dir.path(), production)),
            "8000",
            "ENVIRONMENT={production:?} read .env"
        );
    }
    for unknown in ["prod", "staging"] {
        let out = config_in(dir.path(), unknown);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("ENVIRONMENT must be `development` or `production`")
                && said.contains(unknown),
            "{said}"
        );
    }
}

#[test]
fn a_database_password_given_in_the_query_is_never_printed() {
    // Nothing listens on port 1: check, migrate and serve fail to connect and say where to.
    let url = "postgres://127.0.0.1:1/app?user=app&password=hunter2&sslmode=disable";
    for args in [&["check"][..], &["migrate"], &["config"]] {
        let out = drama_server(args, url);
        let said = text(&out);
        assert!(!said.contains("hunter2"), "{args:?}: {said}");
        assert!(said.contains("password=***"), "{args:?}: {said}");
    }
}
