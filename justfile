# Common commands. Each recipe is a thin wrapper; nothing requires `just` to be installed.

# List recipes.
default:
    @just --list

# fmt, clippy and every test, with a PostgreSQL found or started (the CI command).
test *ARGS:
    scripts/test {{ARGS}}

# Apply migrations to $DATABASE_URL.
migrate:
    cargo run -p drama-server -- migrate

# Database connectivity and schema health.
check:
    cargo run -p drama-server -- check

# Format the workspace.
fmt:
    cargo fmt --all

# Lints as CI runs them.
lint:
    cargo clippy --workspace --all-targets -- -D warnings

# Repository benchmark (see docs/benchmarks.md).
bench-repo:
    cargo run --release -p drama-postgres --example repo_bench 500
