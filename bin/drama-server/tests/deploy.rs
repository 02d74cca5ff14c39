//! The container deployment, checked without a container engine: compose.yaml is parsed and
//! its services wired as docs/DEPLOY.md says (the server's database and bucket are the ones
//! compose starts, health checks gate the start), the server's environment is one the binary
//! accepts, and the Dockerfile is the multi-stage build it claims to be, with the toolchain
//! and the ffmpeg pins of the repository. (scripts/test builds the image where an engine
//! runs.)
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod support;

use serde_json::Value;
use support::{binary, text};

const COMPOSE: &str = include_str!("../../../compose.yaml");
const DOCKERFILE: &str = include_str!("../../../Dockerfile");
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");
const SCRIPT: &str = include_str!("../../../scripts/test");

fn compose() -> Value {
    serde_yaml_ng::from_str(COMPOSE).unwrap()
}

/// Compose's interpolation with only `set` in the environment: `${NAME:-default}` → the value
/// or `default`, `${NAME:?message}` → the value or `Err(message)` (compose refuses to start),
/// `${NAME}` → the value or empty, `$$` → `$`.
fn interpolate_with(value: &str, set: &[(&str, &str)]) -> Result<String, String> {
    let lookup = |name: &str| {
        set.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let end = body.find('}').unwrap();
            let expr = &body[..end];
            if let Some((name, default)) = expr.split_once(":-") {
                out.push_str(&lookup(name).unwrap_or_else(|| default.to_owned()));
            } else if let Some((name, message)) = expr.split_once(":?") {
                out.push_str(&lookup(name).ok_or_else(|| message.to_owned())?);
            } else {
                out.push_str(&lookup(expr).unwrap_or_default());
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// What a `.env` beside the file gives in these tests: the variables compose requires.
const REQUIRED: &[(&str, &str)] = &[("METRICS_TOKEN", "a-token-from-dot-env")];

fn interpolate(value: &str) -> String {
    interpolate_with(value, REQUIRED).unwrap()
}

fn env_of(service: &Value) -> Vec<(String, String)> {
    service["environment"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let raw = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (k.clone(), interpolate(&raw))
        })
        .collect()
}

fn get<'a>(env: &'a [(String, String)], name: &str) -> &'a str {
    env.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("{name} is not set"))
}

#[test]
fn compose_brings_up_database_bucket_and_server_in_order() {
    let c = compose();
    let services = c["services"].as_object().unwrap();
    for name in ["db", "s3", "bucket", "server"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    let server = &services["server"];
    assert_eq!(server["build"], ".");
    assert_eq!(server["command"][0], "serve");
    assert!(
        server["command"]
            .as_array()
            .unwrap()
            .contains(&Value::from("--migrate")),
        "the server applies migrations at start"
    );
    assert_eq!(server["ports"][0], "8000:8000");
    // serve needs about 70 s after SIGTERM (docs/DEPLOY.md); Docker's default is 10 s. Every
    // service running the binary gets at least that.
    for (name, service) in services {
        let runs_the_server =
            service["build"] == "." || service["image"].as_str() == server["image"].as_str();
        if runs_the_server {
            let grace = service["stop_grace_period"].as_str().unwrap_or("10s");
            let seconds: u64 = grace.strip_suffix('s').unwrap().parse().unwrap();
            assert!(seconds >= 70, "{name} is killed {grace} after SIGTERM");
        }
    }
    // Every dependency waits for health (or completion), and the health checks exist.
    for (dependency, condition) in server["depends_on"].as_object().unwrap() {
        let condition = condition["condition"].as_str().unwrap();
        match condition {
            "service_healthy" => assert!(
                services[dependency]["healthcheck"]["test"].is_array(),
                "{dependency} has no health check"
            ),
            "service_completed_successfully" => {}
            other => panic!("{dependency}: {other}"),
        }
    }
    assert_eq!(server["depends_on"]["db"]["condition"], "service_healthy");
    assert_eq!(
        server["depends_on"]["bucket"]["condition"],
        "service_completed_successfully"
    );
    assert_eq!(
        services["bucket"]["depends_on"]["s3"]["condition"],
        "service_healthy"
    );

    // The server talks to the compose database and bucket, with their credentials.
    let env = env_of(server);
    let db = env_of(&services["db"]);
    let url = get(&env, "DATABASE_URL");
    let expected = format!(
        "postgres://{}:{}@db:5432/{}",
        get(&db, "POSTGRES_USER"),
        get(&db, "POSTGRES_PASSWORD"),
        get(&db, "POSTGRES_DB")
    );
    assert_eq!(url, expected);
    let s3 = env_of(&services["s3"]);
    assert_eq!(get(&env, "R2_ENDPOINT_URL"), "http://s3:9000");
    assert_eq!(get(&env, "R2_ACCESS_KEY_ID"), get(&s3, "MINIO_ROOT_USER"));
    assert_eq!(
        get(&env, "R2_SECRET_ACCESS_KEY"),
        get(&s3, "MINIO_ROOT_PASSWORD")
    );
    let bucket = get(&env, "R2_BUCKET");
    let script = services["bucket"]["entrypoint"][2].as_str().unwrap();
    assert!(
        script.contains(&format!("mc mb --ignore-existing local/{bucket}")),
        "{script}"
    );
    assert!(get(&env, "R2_PUBLIC_URL").ends_with(&format!(":9000/{bucket}")));
    assert!(
        c["volumes"].as_object().unwrap().contains_key("db-data")
            && c["volumes"].as_object().unwrap().contains_key("s3-data"),
        "data outlives the containers"
    );
}

#[test]
fn compose_guards_metrics_and_ships_no_placeholder_secret() {
    let c = compose();
    let server = &c["services"]["server"];
    let raw = |name: &str| server["environment"][name].as_str().map(str::to_owned);
    // /metrics is served on the published API port: compose refuses to start without a token.
    assert!(
        server["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.as_str().is_some_and(|p| p.ends_with(":8000"))),
        "the API port is published"
    );
    let metrics = raw("METRICS_TOKEN").expect("METRICS_TOKEN is passed to the server");
    let refusal = interpolate_with(&metrics, &[]).unwrap_err();
    assert!(refusal.contains("METRICS_TOKEN"), "{refusal}");
    assert_eq!(
        interpolate_with(&metrics, &[("METRICS_TOKEN", "t0k3n")]).unwrap(),
        "t0k3n"
    );
    // Bucket URLs need no signing key, and a placeholder one would run silently.
    assert!(raw("ASSETS_SIGNING_SECRET").is_none());
    assert!(!COMPOSE.contains("change-me"), "a placeholder is shipped");
}

#[test]
fn the_servers_compose_environment_is_accepted_by_the_binary() {
    let c = compose();
    let env = env_of(&c["services"]["server"]);
    let out = binary(&["config", "--json"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let settings: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |name: &str| settings.iter().find(|s| s["name"] == name).unwrap();
    assert_eq!(
        find("database.url")["value"],
        "postgres://drama:***@db:5432/drama"
    );
    assert_eq!(find("ASSETS_BACKEND")["value"], "s3");
    assert_eq!(find("R2_SECRET_ACCESS_KEY")["value"], "***");
    assert_eq!(find("ENVIRONMENT")["value"], "production");
    for (name, _) in &env {
        assert!(
            settings.iter().any(|s| s["variable"] == name.as_str()),
            "compose sets {name}, which the server does not read"
        );
    }
}

#[test]
fn the_dockerfile_builds_in_stages_onto_a_small_runtime() {
    let froms: Vec<&str> = DOCKERFILE
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(froms.len(), 3, "{froms:?}");
    assert!(froms[0].contains("rust:${RUST_VERSION}") && froms[0].ends_with("AS build"));
    assert!(froms[2].starts_with("FROM debian:bookworm-slim"));
    let channel = TOOLCHAIN
        .lines()
        .find_map(|l| l.strip_prefix("channel = "))
        .unwrap()
        .trim_matches('"');
    assert!(
        DOCKERFILE.contains(&format!("ARG RUST_VERSION={channel}")),
        "the image builds with rust-toolchain.toml's {channel}"
    );
    assert!(DOCKERFILE.contains("cargo build --release --locked -p drama-server"));
    assert!(DOCKERFILE.contains("COPY --from=build /usr/local/bin/drama-server"));
    assert!(DOCKERFILE.contains("COPY --from=ffmpeg /ffmpeg /usr/local/bin/ffmpeg"));
    // The same ffmpeg as scripts/test: every hash pinned there for Linux is pinned here.
    for line in SCRIPT.lines().filter(|l| l.contains("manylinux")) {
        let hash = line.split_whitespace().next().unwrap();
        if hash.len() == 64 {
            assert!(
                DOCKERFILE.contains(hash),
                "{hash} not pinned in the Dockerfile"
            );
        }
    }
    let user = DOCKERFILE
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .unwrap();
    assert_ne!(user.trim(), "root");
    assert!(DOCKERFILE.contains("EXPOSE 8000"));
    assert!(DOCKERFILE.contains("HEALTHCHECK"));
    assert!(DOCKERFILE.contains(r#"ENTRYPOINT ["drama-server"]"#));
}
