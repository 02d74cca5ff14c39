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

/// A URL with the password of its user part replaced.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split_once(':').map_or(user, |(n, _)| n);
            let slash = if rest.contains('/') { "/" } else { "" };
            format!("{scheme}://{name}:***@{host}{slash}{path}")
        }
        _ => url.to_owned(),
    }
}

/// Whether a parameter of a URL query or a libpq connection string holds a secret:
/// `password`, `sslpassword`, or a name `is_secret` recognises (`api_key`, `token`, …).
fn is_secret_parameter(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    lower.ends_with("password") || is_secret(&lower)
}

/// A URL with its user password and the secret parameters of its query replaced.
fn redact_url_and_query(url: &str) -> String {
    let url = redact_url(url);
    let Some((base, rest)) = url.split_once('?') else {
        return url;
    };
    let (query, fragment) = rest
        .split_once('#')
        .map_or((rest, None), |(q, f)| (q, Some(f)));
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
    format!("{base}?{}{fragment}", pairs.join("&"))
}

/// A libpq keyword/value connection string (`host=db user=u password='p w'`) with the values
/// of its secret keywords replaced; `None` when `value` is not one.
fn redact_keyword_values(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    let mut pairs = 0;
    let skip_spaces = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    loop {
        let start = skip_spaces(i);
        out.push_str(&value[i..start]);
        i = start;
        if i >= bytes.len() {
            break;
        }
        let name_end = value[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(bytes.len(), |n| i + n);
        if name_end == i {
            return None;
        }
        let name = &value[i..name_end];
        let equals = skip_spaces(name_end);
        if bytes.get(equals) != Some(&b'=') {
            return None;
        }
        let value_start = skip_spaces(equals + 1);
        // A quoted value ends at the first quote not escaped by a backslash; a bare one at
        // white space.
        let value_end = if bytes.get(value_start) == Some(&b'\'') {
            let mut j = value_start + 1;
            loop {
                match bytes.get(j) {
                    None => return None,
                    Some(b'\\') => j += 2,
                    Some(b'\'') => break j + 1,
                    Some(_) => j += 1,
                }
            }
        } else {
            value[value_start..]
                .find(|c: char| c.is_ascii_whitespace())
                .map_or(bytes.len(), |n| value_start + n)
        };
        out.push_str(&value[i..value_start]);
        if is_secret_parameter(name) {
            out.push_str("***");
        } else {
            out.push_str(&value[value_start..value_end.min(bytes.len())]);
        }
        i = value_end.min(bytes.len());
        pairs += 1;
    }
    (pairs > 0).then_some(out)
}

/// `value` with every password it carries hidden: in a URL (its user part and its query) or in
/// a libpq keyword/value string. Text that mentions a password but parses as neither is
/// hidden whole rather than half.
fn redact_value(value: &str) -> String {
    if value.contains("://") {
        return redact_url_and_query(value);
    }
    if value.contains('=') {
        if let Some(redacted) = redact_keyword_values(value) {
            return redacted;
        }
        if value.to_ascii_lowercase().contains("password") {
            return "***".to_owned();
        }
    }
    value.to_owned()
}

/// `value` as it may be shown for the setting `name`.
pub(crate) fn shown(name: &str, value: &str) -> String {
    if value.is_empty() {
        value.to_owned()
    } else if is_secret(name) {
        "***".to_owned()
    } else {
        redact_value(value)
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
    fn urls_lose_their_passwords_only() {
        assert_eq!(
            shown("database.url", "postgres://u:pw@db:5432/x?sslmode=require"),
            "postgres://u:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            shown("x", "https://cdn.example.com/a"),
            "https://cdn.example.com/a"
        );
        assert_eq!(shown("x", "postgres://u@db"), "postgres://u@db");
        assert_eq!(shown("SUPABASE_ANON_KEY", "eyJ..."), "***");
    }

    #[test]
    fn passwords_in_queries_and_keyword_strings_are_hidden() {
        assert_eq!(
            shown(
                "database.url",
                "postgres://db:5432/x?user=u&password=qsecret&sslmode=require&sslpassword=ksecret#f"
            ),
            "postgres://db:5432/x?user=u&password=***&sslmode=require&sslpassword=***#f"
        );
        assert_eq!(
            shown(
                "database.url",
                "postgresql://u:pw@db/x?PASSWORD=upper&api_key=k1&sslkey=/etc/k.pem"
            ),
            "postgresql://u:***@db/x?PASSWORD=***&api_key=***&sslkey=/etc/k.pem"
        );
        assert_eq!(
            shown(
                "database.url",
                "host=db port=5432 user=u password=plain dbname=x sslpassword = 'two words' sslmode=require"
            ),
            "host=db port=5432 user=u password=*** dbname=x sslpassword = *** sslmode=require"
        );
        assert_eq!(
            shown("database.url", r"host=db password='it\'s \\ secret' user=u"),
            "host=db password=*** user=u"
        );
        // Half a keyword string that mentions a password is hidden whole.
        assert_eq!(
            shown("database.url", "host=db password='unterminated"),
            "***"
        );
        assert_eq!(shown("x", "a=b c=d"), "a=b c=d");
        assert_eq!(shown("x", "plain text"), "plain text");
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
