//! Where every setting's value comes from (built-in default, configuration file, a variable,
//! the command line, or derived from another setting), with secrets redacted: what
//! `drama-server config` prints, and how `serve` tells a deliberate choice (`HOST=0.0.0.0`)
//! from a default it may narrow (embedded mode binds 127.0.0.1).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// Where a value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub(crate) enum Source {
    /// The built-in default.
    Default,
    /// The configuration file.
    File,
    /// A variable (named).
    Environment(String),
    /// A command-line option (named).
    CommandLine(String),
    /// Worked out from another setting (named).
    Derived(String),
}

impl Source {
    /// Whether someone chose the value (anything but the built-in default).
    pub(crate) fn is_explicit(&self) -> bool {
        !matches!(self, Self::Default)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default"),
            Self::File => f.write_str("file"),
            Self::Environment(name) => write!(f, "environment {name}"),
            Self::CommandLine(name) => write!(f, "command line {name}"),
            Self::Derived(name) => write!(f, "derived from {name}"),
        }
    }
}

/// One setting as shown to people: its value already redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Effective {
    /// `section.key` for layered settings, the variable name for the asset and AI groups.
    pub(crate) name: String,
    /// The conventional variable that sets it, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) variable: Option<String>,
    /// The value (`None`: unset), with secrets replaced by `***`.
    pub(crate) value: Option<String>,
    /// Where it comes from.
    pub(crate) source: Source,
}

/// Whether a setting's name says it holds a secret: a segment `secret`, `password`, `token`,
/// `key` or `keys` (but not a `…_KEY_ID`, which only names the key).
pub(crate) fn is_secret(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let segments: Vec<&str> = lower.split(['_', '.']).collect();
    segments.last() != Some(&"id")
        && segments
            .iter()
            .any(|s| matches!(*s, "secret" | "password" | "token" | "key" | "keys"))
}

/// `value` as it may be shown for the setting `name`.
pub(crate) fn shown(name: &str, value: &str) -> String {
    if value.is_empty() {
        value.to_owned()
    } else if is_secret(name) {
        "***".to_owned()
    } else {
        drama_postgres::redact(value)
    }
}

/// The leaves of a configuration tree, `section.key` → value as text.
pub(crate) fn flatten(tree: &Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::String(s) => {
                out.insert(prefix.to_owned(), s.clone());
            }
            Value::Null => {}
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", tree, &mut out);
    out
}

/// The layered settings, each with its source: a conventional variable wins over a
/// `DRAMA__` variable, which wins over the file, which wins over the default.
pub(crate) fn layered(
    merged: &BTreeMap<String, String>,
    from_file: &BTreeMap<String, String>,
    env: &HashMap<String, String>,
    plain: &[(&str, &str)],
) -> Vec<Effective> {
    let mut keys: Vec<&String> = merged.keys().collect();
    let unset: Vec<String> = plain
        .iter()
        .map(|(_, key)| (*key).to_owned())
        .filter(|key| !merged.contains_key(key))
        .collect();
    keys.extend(unset.iter());
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| !key.starts_with("assets.") && !key.starts_with("ai."))
        .map(|key| {
            let variable = plain
                .iter()
                .find(|(_, k)| k == key)
                .map(|(v, _)| (*v).to_owned());
            let prefixed = format!("DRAMA__{}", key.to_ascii_uppercase().replace('.', "__"));
            let set = |name: &str| env.get(name).is_some_and(|v| !v.is_empty());
            let source = match &variable {
                Some(v) if set(v) => Source::Environment(v.clone()),
                _ if env.contains_key(&prefixed) => Source::Environment(prefixed),
                _ if from_file.contains_key(key) => Source::File,
                _ => Source::Default,
            };
            Effective {
                value: merged.get(key).map(|v| shown(key, v)),
                name: key.clone(),
                variable,
                source,
            }
        })
        .collect()
}

/// A group of flat variables (the asset store's, the providers'): the value in effect from
/// the crate, the source from where the name was found.
pub(crate) fn flat(
    effective: Vec<(&'static str, Option<String>)>,
    file_section: &HashMap<String, String>,
    env: &HashMap<String, String>,
) -> Vec<Effective> {
    effective
        .into_iter()
        .map(|(name, value)| {
            let source = if env.get(name).is_some_and(|v| !v.is_empty()) {
                Source::Environment(name.to_owned())
            } else if file_section.contains_key(&name.to_ascii_lowercase()) {
                Source::File
            } else {
                Source::Default
            };
            Effective {
                name: name.to_owned(),
                variable: Some(name.to_owned()),
                // The crates say `<set>`/`<unset>` for secrets and `<…>` for defaults that
                // are not values (`<random per process>`).
                value: value.and_then(|v| match v.as_str() {
                    "<set>" => Some("***".to_owned()),
                    "<unset>" => None,
                    _ if v.starts_with('<') => Some(v),
                    _ => Some(shown(name, &v)),
                }),
                source,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_recognised_by_their_names() {
        for name in [
            "DATABASE_PASSWORD",
            "SUPABASE_JWT_SECRET",
            "http.auth.jwt_secret",
            "SUPABASE_ANON_KEY",
            "LEGACY_API_KEYS",
            "METRICS_TOKEN",
            "R2_SECRET_ACCESS_KEY",
        ] {
            assert!(is_secret(name), "{name}");
        }
        for name in [
            "R2_ACCESS_KEY_ID",
            "MAX_OUTPUT_TOKENS",
            "database.url",
            "GPT_MODEL",
        ] {
            assert!(!is_secret(name), "{name}");
        }
    }

    #[test]
    fn urls_and_connection_strings_lose_their_passwords() {
        // The rules are drama_postgres::redact's (tested there); shown applies them.
        assert_eq!(
            shown(
                "database.url",
                "postgres://u:pw@db:5432/x?user=v&password=q"
            ),
            "postgres://u:***@db:5432/x?user=v&password=***"
        );
        assert_eq!(shown("x", "host=db password=plain"), "host=db password=***");
        assert_eq!(shown("SUPABASE_ANON_KEY", "eyJ..."), "***");
        for name in [
            "SOME_PASSWORD",
            "DRAMA__HTTP__WEBHOOK_SECRET",
            "PROVIDER_TOKEN",
            "ANY_KEY",
            "lower_case_password",
            "http.auth.legacy_api_keys",
        ] {
            assert_eq!(shown(name, "value-1"), "***", "{name}");
        }
    }
}
