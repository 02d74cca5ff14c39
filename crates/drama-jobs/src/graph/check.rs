//! Validation of names, keys, payloads, runs and single nodes.

use std::time::Duration;

use serde_json::Value;

use super::{MAX_ATTEMPTS, MAX_KEY_LEN, MAX_NAME_LEN, MAX_PAYLOAD_BYTES, NodeSpec, RunSpec};
use crate::error::GraphError;
use crate::state::NodeType;

fn check_name(what: &'static str, value: &str, max: usize) -> Result<(), GraphError> {
    let bad = |reason: &str| GraphError::InvalidName {
        what,
        value: value.to_owned(),
        reason: reason.to_owned(),
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > max {
        return Err(bad(&format!("must be at most {max} bytes")));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-' | '/')))
    {
        return Err(bad(&format!(
            "may only contain A-Z, a-z, 0-9 and _ . : - /, found {c:?}"
        )));
    }
    Ok(())
}

/// Checks a resource class name (the rules of kinds: 1–200 bytes of `A-Z a-z 0-9 _ . : - /`).
///
/// # Errors
/// [`GraphError::InvalidName`].
pub fn check_class_name(class: &str) -> Result<(), GraphError> {
    check_name("resource class", class, MAX_NAME_LEN)
}

fn check_key(key: &str) -> Result<(), GraphError> {
    let bad = |reason: &str| GraphError::InvalidName {
        what: "key",
        value: key.to_owned(),
        reason: reason.to_owned(),
    };
    if key.is_empty() {
        return Err(bad("must not be empty"));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(bad(&format!("must be at most {MAX_KEY_LEN} bytes")));
    }
    if key.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    if key.trim() != key {
        return Err(bad("must not start or end with whitespace"));
    }
    Ok(())
}

fn check_text(field: &'static str, value: &str) -> Result<(), GraphError> {
    let bad = |reason: &str| GraphError::InvalidField {
        node: String::new(),
        field,
        reason: reason.to_owned(),
    };
    if value.is_empty() {
        return Err(bad("must not be empty"));
    }
    if value.len() > MAX_NAME_LEN {
        return Err(bad(&format!("must be at most {MAX_NAME_LEN} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    Ok(())
}

fn check_payload(node: &str, payload: &Value) -> Result<(), GraphError> {
    let size = serde_json::to_vec(payload).map_or(usize::MAX, |v| v.len());
    if size > MAX_PAYLOAD_BYTES {
        return Err(GraphError::InvalidField {
            node: node.to_owned(),
            field: "payload",
            reason: format!("is {size} bytes; at most {MAX_PAYLOAD_BYTES} are allowed"),
        });
    }
    Ok(())
}

/// Checks the run's own fields.
pub(crate) fn check_run(run: &RunSpec) -> Result<(), GraphError> {
    check_name("kind", &run.kind, MAX_NAME_LEN)?;
    if let Some(subject) = &run.subject {
        check_text("subject", subject)?;
    }
    if let Some(key) = &run.idempotency_key {
        check_text("idempotency_key", key)?;
    }
    if let Some(budget) = run.budget
        && budget < 0
    {
        return Err(GraphError::InvalidField {
            node: String::new(),
            field: "budget",
            reason: format!("must not be negative, got {budget}"),
        });
    }
    check_payload("", &run.payload)
}

/// Checks one node's own fields.
pub(crate) fn check_node(node: &NodeSpec) -> Result<(), GraphError> {
    check_key(&node.key)?;
    check_name("kind", &node.kind, MAX_NAME_LEN)?;
    check_name("resource class", &node.resource_class, MAX_NAME_LEN)?;
    let field = |field: &'static str, reason: String| GraphError::InvalidField {
        node: node.key.clone(),
        field,
        reason,
    };
    if node.node_type == NodeType::Run {
        return Err(field(
            "node_type",
            "must be group or task; the run is the graph's root".to_owned(),
        ));
    }
    if !(1..=MAX_ATTEMPTS).contains(&node.max_attempts) {
        return Err(field(
            "max_attempts",
            format!(
                "must be between 1 and {MAX_ATTEMPTS}, got {}",
                node.max_attempts
            ),
        ));
    }
    if node.cost < 0 {
        return Err(field(
            "cost",
            format!("must not be negative, got {}", node.cost),
        ));
    }
    if node.duration_hint > Duration::from_secs(365 * 24 * 3600) {
        return Err(field("duration_hint", "must be at most a year".to_owned()));
    }
    if let Some(parent) = &node.parent
        && parent == &node.key
    {
        return Err(field("parent", "must not be the node itself".to_owned()));
    }
    check_payload(&node.key, &node.payload)
}
