//! Checks the workspace's manifests (as `cargo metadata` reports them) against [`crate::rules`].

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

use crate::rules::{CrateRule, DEV_ONLY, ExternalRule};

/// How a dependency is declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// `[dependencies]` or `[build-dependencies]`: part of what the crate ships.
    Normal,
    /// `[dev-dependencies]`: tests, examples and benchmarks only.
    Dev,
}

/// One declared dependency of a workspace crate.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Edge {
    /// The depending workspace crate.
    pub from: String,
    /// The package depended on.
    pub to: String,
    /// How it is declared.
    pub kind: Kind,
}

/// The workspace as the checker sees it.
#[derive(Debug, Default)]
pub struct Workspace {
    /// Names of the workspace's packages.
    pub members: BTreeSet<String>,
    /// Every declared dependency of every member.
    pub edges: Vec<Edge>,
}

impl Workspace {
    /// Reads the output of `cargo metadata --format-version 1 --no-deps`.
    pub fn from_metadata(metadata: &Value) -> Result<Self, String> {
        let packages = metadata["packages"]
            .as_array()
            .ok_or("cargo metadata has no `packages` array")?;
        let mut workspace = Workspace::default();
        for package in packages {
            let name = package["name"].as_str().ok_or("a package without a name")?;
            workspace.members.insert(name.to_owned());
            for dep in package["dependencies"].as_array().into_iter().flatten() {
                let to = dep["name"].as_str().ok_or("a dependency without a name")?;
                let kind = match dep["kind"].as_str() {
                    Some("dev") => Kind::Dev,
                    _ => Kind::Normal,
                };
                workspace.edges.push(Edge {
                    from: name.to_owned(),
                    to: to.to_owned(),
                    kind,
                });
            }
        }
        workspace.edges.sort();
        workspace.edges.dedup();
        Ok(workspace)
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

/// Every broken rule, in a stable order; empty when the workspace obeys `rules`.
pub fn violations(
    workspace: &Workspace,
    rules: &[CrateRule],
    external: &[ExternalRule],
) -> Vec<String> {
    let mut found = Vec::new();
    for member in &workspace.members {
        if !rules.iter().any(|r| r.name == member) {
            found.push(format!(
                "{member}: a workspace crate without a rule (add it to xtask/src/rules.rs)"
            ));
        }
    }
    for rule in rules {
        if !workspace.members.contains(rule.name) {
            found.push(format!(
                "{}: a rule for a crate that does not exist",
                rule.name
            ));
        }
        for (to, why) in rule.pending {
            let present = workspace
                .edges
                .iter()
                .any(|e| e.from == rule.name && e.to == *to && e.kind == Kind::Normal);
            if !present {
                found.push(format!(
                    "{} -> {to}: listed as pending ({why}) but gone; remove it from the pending list",
                    rule.name
                ));
            }
        }
    }
    for edge in &workspace.edges {
        let Some(rule) = rules.iter().find(|r| r.name == edge.from) else {
            continue;
        };
        if workspace.members.contains(&edge.to) {
            let pending = rule.pending.iter().any(|(to, _)| *to == edge.to);
            let allowed = match edge.kind {
                Kind::Normal => rule.may_use.contains(&edge.to.as_str()) || pending,
                Kind::Dev => {
                    rule.may_use.contains(&edge.to.as_str())
                        || rule.dev_may_use.contains(&edge.to.as_str())
                        || pending
                }
            };
            if edge.kind == Kind::Normal && DEV_ONLY.contains(&edge.to.as_str()) {
                found.push(format!(
                    "{} -> {}: {} may only be a dev-dependency",
                    edge.from, edge.to, edge.to
                ));
            } else if !allowed {
                let how = match edge.kind {
                    Kind::Normal => "dependency",
                    Kind::Dev => "dev-dependency",
                };
                found.push(format!(
                    "{} -> {}: a {how} the rules do not allow",
                    edge.from, edge.to
                ));
            }
            continue;
        }
        if edge.kind == Kind::Dev {
            continue;
        }
        for ext in external {
            if matches(ext.pattern, &edge.to) && !ext.only.contains(&edge.from.as_str()) {
                found.push(format!(
                    "{} -> {}: only {} may depend on {} ({})",
                    edge.from,
                    edge.to,
                    ext.only.join(", "),
                    ext.pattern,
                    ext.why
                ));
            }
        }
    }
    found
}

/// The markdown table that `docs/ARCHITECTURE.md` carries between its markers.
pub fn render(rules: &[CrateRule], external: &[ExternalRule]) -> String {
    let mut out = String::new();
    let list = |names: &[&str]| {
        if names.is_empty() {
            "—".to_owned()
        } else {
            names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    out.push_str("| Crate | May depend on | Also in tests | Still to remove (why) |\n");
    out.push_str("|---|---|---|---|\n");
    for rule in rules {
        let pending = if rule.pending.is_empty() {
            "—".to_owned()
        } else {
            rule.pending
                .iter()
                .map(|(to, why)| format!("`{to}` ({why})"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            rule.name,
            list(rule.may_use),
            list(rule.dev_may_use),
            pending
        );
    }
    out.push('\n');
    for ext in external {
        let _ = writeln!(
            out,
            "- `{}`: only {} ({}).",
            ext.pattern,
            list(ext.only),
            ext.why
        );
    }
    let _ = writeln!(out, "- {} only as a dev-dependency.", list(DEV_ONLY));
    out
}

/// Marker lines around the generated table in `docs/ARCHITECTURE.md`.
pub const BEGIN: &str = "<!-- deps:begin (generated by `cargo run -p xtask -- deps --write`) -->";
/// The closing marker.
pub const END: &str = "<!-- deps:end -->";

/// `doc` with the text between the markers replaced by `table`, or an error naming a missing
/// marker.
pub fn splice(doc: &str, table: &str) -> Result<String, String> {
    let start = doc
        .find(BEGIN)
        .ok_or_else(|| format!("marker `{BEGIN}` not found"))?;
    let end = doc
        .find(END)
        .ok_or_else(|| format!("marker `{END}` not found"))?;
    if end < start {
        return Err("the end marker comes before the begin marker".to_owned());
    }
    Ok(format!(
        "{}{BEGIN}\n\n{table}\n{}",
        &doc[..start],
        &doc[end..]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::{CRATES, CrateRule, EXTERNAL};
    use serde_json::json;

    fn workspace(edges: &[(&str, &str, Option<&str>)]) -> Workspace {
        let names: BTreeSet<&str> = CRATES.iter().map(|r| r.name).collect();
        let packages: Vec<Value> = names
            .iter()
            .map(|name| {
                let deps: Vec<Value> = edges
                    .iter()
                    .filter(|(from, _, _)| from == name)
                    .map(|(_, to, kind)| json!({"name": to, "kind": kind}))
                    .collect();
                json!({"name": name, "dependencies": deps})
            })
            .collect();
        Workspace::from_metadata(&json!({ "packages": packages })).unwrap()
    }

    /// The edges of the API as the rules want them: the use cases and the domain, the
    /// lower layers in tests only.
    fn api_edges() -> Vec<(&'static str, &'static str, Option<&'static str>)> {
        vec![
            ("drama-api", "drama-app", None),
            ("drama-api", "drama-domain", None),
            ("drama-api", "drama-dal", Some("dev")),
        ]
    }

    /// The workspace's rules with `pending` edges for the API (the rules had such entries
    /// while the API still reached past the use cases).
    fn rules_with_pending(pending: &'static [(&'static str, &'static str)]) -> Vec<CrateRule> {
        CRATES
            .iter()
            .map(|r| CrateRule {
                name: r.name,
                may_use: r.may_use,
                dev_may_use: r.dev_may_use,
                pending: if r.name == "drama-api" {
                    pending
                } else {
                    r.pending
                },
            })
            .collect()
    }

    #[test]
    fn an_allowed_tree_passes() {
        let mut edges = api_edges();
        edges.extend([
            ("drama-app", "drama-dal", None),
            ("drama-app", "drama-postgres", Some("dev")),
            ("drama-postgres", "sqlx", None),
            ("drama-assets", "aws-sdk-s3", None),
            ("drama-dal", "tokio", Some("dev")),
        ]);
        assert_eq!(
            violations(&workspace(&edges), CRATES, EXTERNAL),
            Vec::<String>::new()
        );
    }

    #[test]
    fn an_inward_layer_depending_outward_fails() {
        let mut edges = api_edges();
        edges.push(("drama-dal", "drama-app", None));
        let found = violations(&workspace(&edges), CRATES, EXTERNAL);
        assert_eq!(
            found,
            vec!["drama-dal -> drama-app: a dependency the rules do not allow".to_owned()]
        );
    }

    #[test]
    fn a_wrong_dev_dependency_fails_too() {
        let mut edges = api_edges();
        edges.push(("drama-domain", "drama-testkit", Some("dev")));
        let found = violations(&workspace(&edges), CRATES, EXTERNAL);
        assert_eq!(
            found,
            vec![
                "drama-domain -> drama-testkit: a dev-dependency the rules do not allow".to_owned()
            ]
        );
    }

    #[test]
    fn the_testkit_is_never_a_normal_dependency() {
        let mut edges = api_edges();
        edges.push(("drama-app", "drama-testkit", None));
        let found = violations(&workspace(&edges), CRATES, EXTERNAL);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].contains("may only be a dev-dependency"),
            "{found:?}"
        );
    }

    #[test]
    fn a_fenced_third_party_crate_outside_its_layer_fails() {
        let mut edges = api_edges();
        edges.push(("drama-app", "sqlx", None));
        edges.push(("drama-domain", "tokio", None));
        let found = violations(&workspace(&edges), CRATES, EXTERNAL);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(found[0].starts_with("drama-app -> sqlx: only"), "{found:?}");
        assert!(
            found[1].starts_with("drama-domain -> tokio: only"),
            "{found:?}"
        );
    }

    #[test]
    fn the_api_reaching_past_the_use_cases_fails() {
        let mut edges = api_edges();
        edges.push(("drama-api", "drama-jobs", None));
        let found = violations(&workspace(&edges), CRATES, EXTERNAL);
        assert_eq!(
            found,
            vec!["drama-api -> drama-jobs: a dependency the rules do not allow".to_owned()]
        );
    }

    #[test]
    fn a_pending_edge_is_allowed_while_it_exists() {
        let rules = rules_with_pending(&[("drama-jobs", "job views are not re-exported yet")]);
        let mut edges = api_edges();
        edges.push(("drama-api", "drama-jobs", None));
        assert_eq!(
            violations(&workspace(&edges), &rules, EXTERNAL),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_pending_edge_that_is_gone_must_leave_the_list() {
        let rules = rules_with_pending(&[
            ("drama-dal", "pages are not re-exported yet"),
            ("drama-jobs", "job views are not re-exported yet"),
        ]);
        let mut edges = api_edges();
        edges.push(("drama-api", "drama-jobs", None));
        let found = violations(&workspace(&edges), &rules, EXTERNAL);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("drama-api -> drama-dal: listed as pending"),
            "{found:?}"
        );
    }

    #[test]
    fn a_crate_without_a_rule_fails() {
        let mut ws = workspace(&api_edges());
        ws.members.insert("drama-new".to_owned());
        let found = violations(&ws, CRATES, EXTERNAL);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("drama-new: a workspace crate without a rule"));
    }

    #[test]
    fn splice_replaces_only_between_the_markers() {
        let doc = format!("intro\n{BEGIN}\nold\n{END}\noutro\n");
        let out = splice(&doc, "new\n").unwrap();
        assert_eq!(out, format!("intro\n{BEGIN}\n\nnew\n\n{END}\noutro\n"));
        assert!(splice("no markers", "x").is_err());
    }
}
