//! Text that no store can keep.
//!
//! PostgreSQL `text` and `jsonb` cannot hold U+0000, so a NUL anywhere in a document is refused
//! up front with the path of the value (or key) that carries it, instead of failing deep in a
//! write.

use serde_json::Value;

use crate::error::FieldError;

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
}
