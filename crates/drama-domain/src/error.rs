use std::fmt;

/// One problem with one field of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `episodes[0].scenes[1].id`; empty for the document itself.
    pub field: String,
    /// What is wrong, in words a client developer can act on.
    pub message: String,
}

impl FieldError {
    /// A problem with `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Input that does not describe a valid entity. Carries every problem found, in document order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.errors))]
pub struct DomainError {
    /// The problems, at least one.
    pub errors: Vec<FieldError>,
}

fn summary(errors: &[FieldError]) -> String {
    match errors {
        [] => "invalid input".to_owned(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more problems)", rest.len()),
    }
}

impl DomainError {
    /// A single problem with `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            errors: vec![FieldError::new(field, message)],
        }
    }

    /// The field of the first problem.
    pub fn first_field(&self) -> &str {
        self.errors.first().map_or("", |e| e.field.as_str())
    }

    /// Prefixes every field path, e.g. with `drama` when the entity sat under that key.
    #[must_use]
    pub fn within(mut self, prefix: &str) -> Self {
        for e in &mut self.errors {
            e.field = if e.field.is_empty() {
                prefix.to_owned()
            } else if e.field.starts_with('[') {
                format!("{prefix}{}", e.field)
            } else {
                format!("{prefix}.{}", e.field)
            };
        }
        self
    }

    /// Parses `json` as `T`, naming the field where parsing failed.
    ///
    /// # Errors
    /// A [`DomainError`] whose field is the path of the offending value (empty when the text is
    /// not JSON at all).
    pub fn parse_json<T: serde::de::DeserializeOwned>(json: &[u8]) -> Result<T, Self> {
        let mut de = serde_json::Deserializer::from_slice(json);
        let parsed = serde_path_to_error::deserialize(&mut de).map_err(Self::from_path_error)?;
        de.end().map_err(|e| Self::field("", e.to_string()))?;
        Ok(parsed)
    }

    /// Converts an already parsed JSON value into `T`, naming the field where conversion failed.
    ///
    /// # Errors
    /// As [`DomainError::parse_json`].
    pub fn from_value<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, Self> {
        serde_path_to_error::deserialize(value).map_err(Self::from_path_error)
    }

    fn from_path_error<E: fmt::Display>(e: serde_path_to_error::Error<E>) -> Self {
        let path = e.path().to_string();
        let mut field = if path == "." { String::new() } else { path };
        let message = clean_serde_message(&e.into_inner().to_string());
        // serde reports a missing key at its parent; the key itself is the field to name.
        if let Some(key) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            field = if field.is_empty() {
                key.to_owned()
            } else {
                format!("{field}.{key}")
            };
        }
        Self::field(field, message)
    }
}

/// serde_json appends " at line L column C"; the field path already says where.
fn clean_serde_message(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}
