//! Text that no store can keep, or should not.
//!
//! PostgreSQL `text` and `jsonb` cannot hold U+0000, so a NUL anywhere in a document is refused
//! up front with the path of the value (or key) that carries it, instead of failing deep in a
//! write.
//!
//! URL fields are bounded ([`MAX_URL_CHARS`]): a URL is stored and served with every read of
//! its drama, so a drama must not be able to grow without bound through them.

use serde_json::Value;

use crate::error::FieldError;

/// Most characters of a URL field (`url`, `image_url`, `video_url`, `premise_url`, …).
pub const MAX_URL_CHARS: usize = 10_000;

/// Whether a field named `name` holds a URL, bounded by [`MAX_URL_CHARS`].
pub fn is_url_field(name: &str) -> bool {
    name.ends_with("url")
}

/// Whether `value` is over [`MAX_URL_CHARS`] characters (counting stops one past the bound,
/// so a huge value costs no more than a small one).
fn url_too_long(value: &str) -> bool {
    value.chars().take(MAX_URL_CHARS + 1).count() > MAX_URL_CHARS
}

/// Every URL field of `doc` over [`MAX_URL_CHARS`], with its path. `metadata` objects are the
/// client's own and bounded as a whole elsewhere, so URLs inside them are not looked at.
pub fn long_urls(doc: &Value) -> Vec<FieldError> {
    let mut found = Vec::new();
    urls_in(doc, "", "", &mut found);
    found
}

fn urls_in(value: &Value, path: &str, key: &str, found: &mut Vec<FieldError>) {
    match value {
        Value::String(s) if is_url_field(key) && url_too_long(s) => {
            found.push(FieldError::new(
                path,
                format!("must be at most {MAX_URL_CHARS} characters"),
            ));
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                urls_in(item, &format!("{path}[{i}]"), key, found);
            }
        }
        Value::Object(map) => {
            for (name, item) in map {
                if name == "metadata" {
                    continue;
                }
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                urls_in(item, &child, name, found);
            }
        }
        _ => {}
    }
}

/// The first string (value or object key) in `value` that contains U+0000, as a field error.
pub(crate) fn find_nul(value: &Value) -> Option<FieldError> {
    let mut path = String::new();
    walk(value, &mut path)
        .then(|| FieldError::new(path, "must not contain the NUL character (U+0000)"))
}

fn walk(value: &Value, path: &mut String) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let found = walk(item, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Object(map) => map.iter().any(|(k, v)| {
            let len = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(k);
            let found = k.contains('\0') || walk(v, path);
            if !found {
                path.truncate(len);
            }
            found
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_path_of_the_nul() {
        assert_eq!(find_nul(&json!({"a": [1, "x"]})), None);
        let e = find_nul(&json!({"a": [1, {"b": "x\u{0}"}]})).unwrap();
        assert_eq!(e.field, "a[1].b");
        let e = find_nul(&json!({"m": {"k\u{0}": 1}})).unwrap();
        assert_eq!(e.field, "m.k\u{0}");
    }

    #[test]
    fn names_each_url_over_its_bound() {
        let long = "h".repeat(MAX_URL_CHARS + 1);
        let fine = "h".repeat(MAX_URL_CHARS);
        let doc = json!({
            "url": fine, "title": long,
            "metadata": {"url": long},
            "episodes": [{"scenes": [{"image_url": fine, "video_url": long}]}],
            "characters": [{"premise_url": long}],
        });
        let mut fields: Vec<String> = long_urls(&doc).into_iter().map(|e| e.field).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "characters[0].premise_url",
                "episodes[0].scenes[0].video_url"
            ]
        );
    }
}
