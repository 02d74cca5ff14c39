//! The size rule: no Rust source file outside tests is longer than [`MAX_LINES`] lines, so a
//! file stays readable in one sitting and splits happen along seams before they blur.
//!
//! Files still over the limit are listed in [`PENDING`] with the reason; the check fails once
//! one of them fits (the list only shrinks) and for any other file over the limit.

use std::path::{Component, Path, PathBuf};

/// The most lines a checked file may have.
pub const MAX_LINES: usize = 800;

/// The directories checked, relative to the workspace root.
pub const ROOTS: &[&str] = &["crates", "bin", "xtask"];

/// Files allowed over the limit for now: (path from the workspace root, why).
pub const PENDING: &[(&str, &str)] = &[];

/// Whether the rule applies to `path` (relative to the workspace root): Rust sources that are
/// not under a `tests` directory.
pub fn is_checked(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "rs")
        && !path
            .components()
            .any(|c| c == Component::Normal("tests".as_ref()))
}

/// Every broken rule for `files` (path from the workspace root, line count), in a stable
/// order; empty when each fits.
pub fn violations(files: &[(PathBuf, usize)], pending: &[(&str, &str)]) -> Vec<String> {
    let mut found = Vec::new();
    let mut sorted: Vec<&(PathBuf, usize)> = files.iter().collect();
    sorted.sort();
    for (path, lines) in sorted {
        if !is_checked(path) {
            continue;
        }
        let shown = path.to_string_lossy().replace('\\', "/");
        let listed = pending.iter().find(|(p, _)| *p == shown);
        match (listed, *lines > MAX_LINES) {
            (None, true) => found.push(format!(
                "{shown}: {lines} lines, more than {MAX_LINES}; split it along its seams"
            )),
            (Some((_, why)), false) => found.push(format!(
                "{shown}: listed as over the size limit ({why}) but has {lines} lines; remove it \
                 from the pending list in xtask/src/size.rs"
            )),
            _ => {}
        }
    }
    for (path, why) in pending {
        if !files
            .iter()
            .any(|(p, _)| p.to_string_lossy().replace('\\', "/") == *path)
        {
            found.push(format!(
                "{path}: listed as over the size limit ({why}) but does not exist"
            ));
        }
    }
    found
}

/// The checked files under [`ROOTS`] of `root` with their line counts.
pub fn scan(root: &Path) -> std::io::Result<Vec<(PathBuf, usize)>> {
    let mut files = Vec::new();
    let mut dirs: Vec<PathBuf> = ROOTS.iter().map(PathBuf::from).collect();
    while let Some(dir) = dirs.pop() {
        let full = root.join(&dir);
        if !full.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&full)? {
            let entry = entry?;
            let relative = dir.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                dirs.push(relative);
            } else if is_checked(&relative) {
                let text = std::fs::read_to_string(entry.path())?;
                files.push((relative, text.lines().count()));
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, usize)]) -> Vec<(PathBuf, usize)> {
        list.iter().map(|(p, n)| (PathBuf::from(p), *n)).collect()
    }

    #[test]
    fn files_within_the_limit_pass() {
        let tree = files(&[("crates/a/src/lib.rs", 800), ("bin/b/src/main.rs", 12)]);
        assert_eq!(violations(&tree, &[]), Vec::<String>::new());
    }

    #[test]
    fn a_file_over_the_limit_fails() {
        let tree = files(&[("crates/a/src/lib.rs", 801), ("crates/a/src/ok.rs", 10)]);
        assert_eq!(
            violations(&tree, &[]),
            vec!["crates/a/src/lib.rs: 801 lines, more than 800; split it along its seams"]
        );
    }

    #[test]
    fn tests_and_other_files_are_not_checked() {
        let tree = files(&[
            ("crates/a/tests/big.rs", 5000),
            ("crates/a/tests/common/mod.rs", 5000),
            ("crates/a/schema.graphql", 5000),
        ]);
        assert_eq!(violations(&tree, &[]), Vec::<String>::new());
    }

    #[test]
    fn a_pending_file_passes_while_it_is_long_and_must_leave_the_list_once_it_fits() {
        let pending = [("crates/a/src/lib.rs", "being edited")];
        let long = files(&[("crates/a/src/lib.rs", 900)]);
        assert_eq!(violations(&long, &pending), Vec::<String>::new());
        let short = files(&[("crates/a/src/lib.rs", 700)]);
        let found = violations(&short, &pending);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("remove it from the pending list"),
            "{found:?}"
        );
        let gone = violations(&[], &pending);
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert!(gone[0].ends_with("does not exist"), "{gone:?}");
    }
}
