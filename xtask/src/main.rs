//! Workspace checks that are code, not prose: `cargo run -p xtask -- deps [--write]` checks the
//! manifests against the dependency rules of `rules.rs` and that `docs/ARCHITECTURE.md` shows
//! them (`--write` regenerates that table); `cargo run -p xtask -- size` checks that no source
//! file outside tests exceeds the line limit of `size.rs`.

mod check;
mod rules;
mod size;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn metadata(root: &Path) -> anyhow::Result<serde_json::Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root)
        .output()
        .context("running cargo metadata")?;
    if !output.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading cargo metadata's output")
}

const DOC: &str = "docs/ARCHITECTURE.md";

/// The version of the crates.io `sqlx-core` that `vendor/sqlx-core` patches.
const VENDORED_SQLX: &str = "0.9.0";

/// The fields of `[[package]] name = "{name}"` in `Cargo.lock`: (version, has a `source`).
fn locked(lock: &str, name: &str) -> Vec<(String, bool)> {
    lock.split("[[package]]")
        .filter_map(|block| {
            let field = |key: &str| {
                block.lines().find_map(|l| {
                    l.strip_prefix(key)
                        .and_then(|rest| rest.trim().strip_prefix('='))
                        .map(|v| v.trim().trim_matches('"').to_owned())
                })
            };
            (field("name ").as_deref() == Some(name)).then(|| {
                (
                    field("version ").unwrap_or_default(),
                    field("source ").is_some(),
                )
            })
        })
        .collect()
}

/// The patched `sqlx-core` must be the one built and must match the `sqlx` in use: once a
/// newer sqlx is locked (the upstream fix released), the copy is dead weight and this says so.
fn vendor_guard(lock: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let sqlx = locked(lock, "sqlx");
    let core = locked(lock, "sqlx-core");
    if sqlx.iter().any(|(v, _)| v != VENDORED_SQLX) {
        problems.push(format!(
            "Cargo.lock has sqlx {:?}, newer than the {VENDORED_SQLX} that vendor/sqlx-core \
             patches: delete vendor/sqlx-core and its [patch.crates-io] entry (vendor/README.md)",
            sqlx.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>()
        ));
    }
    if core.iter().any(|(_, from_registry)| *from_registry) || lock.contains("[[patch.unused]]") {
        problems.push(
            "Cargo.lock builds sqlx-core from crates.io or leaves the patch unused: \
             vendor/sqlx-core no longer applies (vendor/README.md says what to do)"
                .to_owned(),
        );
    }
    problems
}

/// Problems with the manifests and the architecture document, empty when both are right.
fn deps(root: &Path, write: bool) -> anyhow::Result<Vec<String>> {
    let workspace =
        check::Workspace::from_metadata(&metadata(root)?).map_err(anyhow::Error::msg)?;
    let mut problems = check::violations(&workspace, rules::CRATES, rules::EXTERNAL);
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    problems.extend(vendor_guard(&lock));
    let path = root.join(DOC);
    let doc = std::fs::read_to_string(&path).with_context(|| format!("reading {DOC}"))?;
    let table = check::render(rules::CRATES, rules::EXTERNAL);
    let wanted = check::splice(&doc, &table).map_err(|e| anyhow::anyhow!("{DOC}: {e}"))?;
    if wanted != doc {
        if write {
            std::fs::write(&path, wanted).with_context(|| format!("writing {DOC}"))?;
        } else {
            problems.push(format!(
                "{DOC}: its dependency table differs from xtask/src/rules.rs \
                 (run `cargo run -p xtask -- deps --write`)"
            ));
        }
    }
    Ok(problems)
}

/// Problems with the length of the workspace's source files, empty when each fits.
fn sizes(root: &Path) -> anyhow::Result<Vec<String>> {
    let files = size::scan(root).context("reading the source files")?;
    Ok(size::violations(&files, size::PENDING))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("deps") => {
            let problems = deps(&root(), args.iter().any(|a| a == "--write"))?;
            if problems.is_empty() {
                println!("dependency rules: ok");
                Ok(())
            } else {
                bail!(
                    "{} dependency rule(s) broken:\n{}",
                    problems.len(),
                    problems.join("\n")
                )
            }
        }
        Some("size") => {
            let problems = sizes(&root())?;
            if problems.is_empty() {
                println!("file sizes: ok");
                Ok(())
            } else {
                bail!(
                    "{} file(s) over the size rule:\n{}",
                    problems.len(),
                    problems.join("\n")
                )
            }
        }
        _ => bail!("usage: cargo run -p xtask -- deps [--write] | size"),
    }
}

#[cfg(test)]
mod tests {
    const LOCK: &str = "[[package]]\nname = \"sqlx\"\nversion = \"0.9.0\"\nsource = \"registry+x\"\n\n\
                        [[package]]\nname = \"sqlx-core\"\nversion = \"0.9.0\"\n";

    #[test]
    fn the_vendor_guard_accepts_the_patched_release() {
        assert_eq!(super::vendor_guard(LOCK), Vec::<String>::new());
    }

    #[test]
    fn the_vendor_guard_fires_once_sqlx_moves_on() {
        let newer = LOCK.replace("version = \"0.9.0\"\nsource", "version = \"0.9.1\"\nsource");
        let problems = super::vendor_guard(&newer);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].contains("delete vendor/sqlx-core"),
            "{problems:?}"
        );
        // sqlx-core (the last block) taken from the registry.
        let unpatched = format!("{LOCK}source = \"registry+x\"\n");
        assert_eq!(super::vendor_guard(&unpatched).len(), 1);
    }

    /// No source file of the real tree is over the size limit (but those still listed).
    #[test]
    fn the_workspace_keeps_its_files_short() {
        let problems = super::sizes(&super::root()).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }

    /// The real tree obeys the rules and the architecture document shows them.
    #[test]
    fn the_workspace_obeys_its_dependency_rules() {
        let problems = super::deps(&super::root(), false).unwrap();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
