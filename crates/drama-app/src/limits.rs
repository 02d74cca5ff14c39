//! How long the text a client sends may be.
//!
//! Everything a client writes ends up in a prompt that is paid per token, and is stored and
//! served on every read; a 4 MB premise would cost the provider far more than the flat price
//! of the call. Client text is therefore bounded by field (in characters, as people count),
//! and a request over a bound is refused before anything is stored or charged, naming the
//! field and the bound. Text the models write is not checked: it is bounded by their output
//! limits.

use drama_domain::{DomainError, FieldError};
use serde_json::Value;

/// Most bytes of a `metadata` object (as compact JSON). Metadata is the client's own and not
/// read by the server, but it is stored and served with every read of its drama, so a drama
/// of many parts must not be able to grow without bound through it.
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// Most characters per kind of field; configurable (`MAX_*_CHARS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextLimits {
    /// A premise (`premise`).
    pub premise: usize,
    /// Feedback for a rewrite (`feedback`).
    pub feedback: usize,
    /// An image or video prompt (`prompt`, `image_prompt`, `video_prompt`).
    pub prompt: usize,
    /// A title or a name (`title`, `name`).
    pub title: usize,
    /// A description (`description`, `voice_description`, `dialogue`, any other text).
    pub description: usize,
}

impl Default for TextLimits {
    fn default() -> Self {
        Self {
            premise: 20_000,
            feedback: 20_000,
            prompt: 10_000,
            title: 500,
            description: 10_000,
        }
    }
}

impl TextLimits {
    /// The bound for a field named `key` (the last part of its path).
    fn bound(&self, key: &str) -> usize {
        match key {
            "premise" => self.premise,
            "feedback" => self.feedback,
            "prompt" | "image_prompt" | "video_prompt" => self.prompt,
            "title" | "name" => self.title,
            _ => self.description,
        }
    }

    /// Checks one field.
    ///
    /// # Errors
    /// A [`DomainError`] naming `field` and its bound.
    pub fn check(&self, field: &str, value: &str) -> Result<(), DomainError> {
        let key = field.rsplit('.').next().unwrap_or(field);
        let mut errors = Vec::new();
        self.push_if_long(&mut errors, field, key, value);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError { errors })
        }
    }

    /// Checks every string of a document a client sent (a drama, a PATCH body), by the name
    /// of the field holding it. `metadata` objects are the client's own: only their size is
    /// bounded ([`MAX_METADATA_BYTES`]). URLs have their own bound
    /// ([`drama_domain::MAX_URL_CHARS`], not configurable: the OpenAPI document states it);
    /// ids theirs (checked when they are parsed).
    ///
    /// # Errors
    /// A [`DomainError`] listing every field over its bound.
    pub fn check_document(&self, doc: &Value) -> Result<(), DomainError> {
        let mut errors = drama_domain::long_urls(doc);
        self.walk(&mut errors, "", "", doc);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError { errors })
        }
    }

    fn walk(&self, errors: &mut Vec<FieldError>, path: &str, key: &str, value: &Value) {
        match value {
            Value::String(s) => self.push_if_long(errors, path, key, s),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(errors, &format!("{path}[{i}]"), key, item);
                }
            }
            Value::Object(fields) => {
                for (name, item) in fields {
                    let child = if path.is_empty() {
                        name.clone()
                    } else {
                        format!("{path}.{name}")
                    };
                    if name == "metadata" {
                        let size = serde_json::to_vec(item).map_or(usize::MAX, |b| b.len());
                        if size > MAX_METADATA_BYTES {
                            errors.push(FieldError::new(
                                child,
                                format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
                            ));
                        }
                        continue;
                    }
                    if name == "id" || drama_domain::is_url_field(name) {
                        continue;
                    }
                    self.walk(errors, &child, name, item);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }

    fn push_if_long(&self, errors: &mut Vec<FieldError>, path: &str, key: &str, value: &str) {
        let bound = self.bound(key);
        // Counting stops one past the bound: a huge value costs no more than a small one.
        if value.chars().take(bound + 1).count() > bound {
            errors.push(FieldError::new(
                path,
                format!("must be at most {bound} characters"),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn metadata_is_bounded_by_its_size_and_named() {
        let limits = TextLimits::default();
        let small = json!({"episodes": [{"metadata": {"note": "x".repeat(1000)}}]});
        assert!(limits.check_document(&small).is_ok());
        let big = json!({"episodes": [{"metadata": {"note": "x".repeat(MAX_METADATA_BYTES)}}]});
        let err = limits.check_document(&big).unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert_eq!(err.errors[0].field, "episodes[0].metadata");
        assert!(err.errors[0].message.contains("65536 bytes"), "{err:?}");
    }

    #[test]
    fn each_field_is_held_to_its_own_bound_and_named() {
        let limits = TextLimits {
            premise: 10,
            feedback: 10,
            prompt: 5,
            title: 3,
            description: 8,
        };
        assert!(limits.check("premise", "0123456789").is_ok());
        let err = limits.check("premise", "0123456789x").unwrap_err();
        assert_eq!(err.errors[0].field, "premise");
        assert_eq!(err.errors[0].message, "must be at most 10 characters");
        // Characters, not bytes.
        assert!(limits.check("title", "äöü").is_ok());

        let doc = json!({
            "title": "long", "id": "a-very-long-id", "url": "https://x/very/long",
            "metadata": {"title": "not checked at all"},
            "characters": [{"name": "Ann", "description": "fine"},
                           {"name": "Bob", "description": "far too long"}],
            "episodes": [{"scenes": [{"assets": [{"prompt": "123456"}]}]}],
        });
        let err = limits.check_document(&doc).unwrap_err();
        let mut fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "characters[1].description",
                "episodes[0].scenes[0].assets[0].prompt",
                "title"
            ]
        );
    }

    #[test]
    fn urls_are_held_to_their_own_bound_and_named() {
        let limits = TextLimits::default();
        let max = drama_domain::MAX_URL_CHARS;
        let fine = json!({"image_url": "u".repeat(max), "url": "u".repeat(max)});
        assert!(limits.check_document(&fine).is_ok());
        let long = json!({"video_url": "u".repeat(max + 1)});
        let err = limits.check_document(&long).unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert_eq!(err.errors[0].field, "video_url");
        assert_eq!(err.errors[0].message, "must be at most 10000 characters");
    }
}
