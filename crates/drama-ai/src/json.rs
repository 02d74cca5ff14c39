//! Finding the JSON in a model's text, and noticing when it was cut off.

/// Why text is not one complete JSON value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum JsonShape {
    /// One balanced object or array (it may still not parse, or not fit the schema).
    Complete(String),
    /// Brackets or a string left open: the answer was cut off.
    Unbalanced,
    /// No JSON object at all.
    Missing,
}

/// Extracts the JSON object of a model answer, tolerating Markdown fences and chatter around it,
/// and tells a truncated answer apart from a merely wrong one.
pub(crate) fn extract(text: &str) -> JsonShape {
    let Some(start) = text.find(['{', '[']) else {
        return JsonShape::Missing;
    };
    let body = &text[start..];
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return JsonShape::Complete(body[..=i].to_owned());
                }
            }
            _ => {}
        }
    }
    JsonShape::Unbalanced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_objects_come_out_whole() {
        assert_eq!(
            extract("```json\n{\"a\": \"}{\", \"b\": [1, {\"c\": \"\\\"\"}]}\n```"),
            JsonShape::Complete("{\"a\": \"}{\", \"b\": [1, {\"c\": \"\\\"\"}]}".to_owned())
        );
    }

    #[test]
    fn cut_off_answers_are_unbalanced() {
        assert_eq!(
            extract("{\"title\": \"A\", \"episodes\": [{\"id\""),
            JsonShape::Unbalanced
        );
        assert_eq!(extract("{\"title\": \"A long sto"), JsonShape::Unbalanced);
        assert_eq!(extract("no json here"), JsonShape::Missing);
    }
}
