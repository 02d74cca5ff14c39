//! docs/CONFIG.md and .env.example against the code: a variable or key added to the code
//! and not to both files (or a name in them the code does not know) fails here.

use std::collections::BTreeSet;

const CONFIG_MD: &str = include_str!("../../../../docs/CONFIG.md");
const ENV_EXAMPLE: &str = include_str!("../../../../.env.example");

/// Every variable the binary reads.
fn variables() -> BTreeSet<&'static str> {
    super::PLAIN_VARIABLES
        .iter()
        .map(|(name, _)| *name)
        .chain(drama_assets::VARIABLES)
        .chain(drama_ai::ENV_VARS)
        .chain(super::OTHER_VARIABLES.iter().copied())
        .collect()
}

/// Every leaf key of the built-in defaults.
fn keys() -> BTreeSet<String> {
    let tree: serde_json::Value = config::Config::builder()
        .add_source(config::File::from_str(
            super::DEFAULTS,
            config::FileFormat::Toml,
        ))
        .build()
        .unwrap()
        .try_deserialize()
        .unwrap();
    crate::provenance::flatten(&tree).into_keys().collect()
}

/// Names assigned in .env.example, commented out or not.
fn in_env_example() -> BTreeSet<String> {
    ENV_EXAMPLE
        .lines()
        .filter_map(|line| {
            let line = line.trim().trim_start_matches('#').trim();
            let (name, _) = line.split_once('=')?;
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            ok.then(|| name.to_owned())
        })
        .collect()
}

#[test]
fn config_md_lists_every_variable_and_key() {
    let missing: Vec<String> = variables()
        .into_iter()
        .map(str::to_owned)
        .chain(keys())
        .filter(|name| !CONFIG_MD.contains(&format!("`{name}`")))
        .collect();
    assert!(missing.is_empty(), "not in docs/CONFIG.md: {missing:?}");
}

#[test]
fn env_example_lists_every_variable_and_nothing_else() {
    let listed = in_env_example();
    let missing: Vec<&str> = variables()
        .into_iter()
        .filter(|v| !listed.contains(*v))
        .collect();
    assert!(missing.is_empty(), "not in .env.example: {missing:?}");
    let known = variables();
    let unknown: Vec<&String> = listed
        .iter()
        .filter(|v| !known.contains(v.as_str()) && !v.starts_with("DRAMA__"))
        .collect();
    assert!(
        unknown.is_empty(),
        "in .env.example but read by nothing: {unknown:?}"
    );
}

#[test]
fn the_example_environment_loads() {
    let env = in_env_example_values();
    super::Settings::load_from(None, &env).unwrap();
}

/// The uncommented assignments of .env.example.
fn in_env_example_values() -> std::collections::HashMap<String, String> {
    ENV_EXAMPLE
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
