//! Graphs as callers describe them: a run, its groups and tasks, dependencies by key, and
//! expansions of a running graph. Validation happens here, before anything is written.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::GraphError;
use crate::state::NodeType;

/// Most nodes one run may hold (submission plus expansions).
pub const MAX_NODES_PER_RUN: usize = 100_000;
/// Deepest nesting: a task under this many groups below the run.
pub const MAX_DEPTH: usize = 8;
/// Longest node key, in bytes.
pub const MAX_KEY_LEN: usize = 200;
/// Longest kind, resource class, subject or idempotency key, in bytes.
pub const MAX_NAME_LEN: usize = 200;
/// Largest serialized payload of one node.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Highest `max_attempts`.
pub const MAX_ATTEMPTS: u32 = 100;
/// The resource class of nodes that name none.
pub const DEFAULT_CLASS: &str = "default";
/// Attempts of nodes that set none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// A run: the root of a graph, with the generic filter columns the application uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// A label of the whole run (e.g. `generate_drama`); no handler runs for it.
    pub kind: String,
    /// Who owns the run (checked by the application; RLS for direct clients).
    pub owner: Uuid,
    /// What the run is about (the application puts a drama id here), for listing active runs.
    pub subject: Option<String>,
    /// Submitting again with the same owner and key returns the existing run.
    pub idempotency_key: Option<String>,
    /// Tasks stop starting once the cost of started tasks would exceed this.
    pub budget: Option<i64>,
    /// Free-form data about the run.
    pub payload: Value,
}

impl RunSpec {
    /// A run of `kind` owned by `owner`.
    pub fn new(kind: impl Into<String>, owner: Uuid) -> Self {
        Self {
            kind: kind.into(),
            owner,
            subject: None,
            idempotency_key: None,
            budget: None,
            payload: Value::Null,
        }
    }

    /// Sets the subject.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sets the budget.
    pub fn budget(mut self, budget: i64) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sets the payload.
    pub fn payload(mut self, payload: Value) -> Self {
        self.payload = payload;
        self
    }
}

/// A group or task of a graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeSpec {
    /// Unique within the run; names the node in dependencies, parents and queries.
    pub key: String,
    /// For tasks, selects the handler; for groups, a label.
    pub kind: String,
    /// Group or task (never [`NodeType::Run`]).
    pub node_type: NodeType,
    /// The handler's input.
    pub payload: Value,
    /// Key of the enclosing group; `None` puts the node directly under the run.
    pub parent: Option<String>,
    /// Keys of the tasks that must complete before this one starts.
    pub dependencies: Vec<String>,
    /// Concurrency and rate limits apply per class.
    pub resource_class: String,
    /// Higher starts first among runnable tasks.
    pub priority: i32,
    /// Attempts before the task fails for good (retry-after does not use one).
    pub max_attempts: u32,
    /// Credits the task stands for; summed per group for exact refunds.
    pub cost: i64,
    /// Rough expected run time; tasks on longer remaining paths start first among equals.
    pub duration_hint: Duration,
}

impl NodeSpec {
    /// A task of `kind` with its payload.
    pub fn task(key: impl Into<String>, kind: impl Into<String>, payload: Value) -> Self {
        Self {
            key: key.into(),
            kind: kind.into(),
            node_type: NodeType::Task,
            payload,
            parent: None,
            dependencies: Vec::new(),
            resource_class: DEFAULT_CLASS.to_owned(),
            priority: 0,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            cost: 0,
            duration_hint: Duration::from_secs(1),
        }
    }

    /// A group labelled `kind`.
    pub fn group(key: impl Into<String>, kind: impl Into<String>) -> Self {
        Self {
            node_type: NodeType::Group,
            duration_hint: Duration::ZERO,
            ..Self::task(key, kind, Value::Null)
        }
    }

    /// Puts the node inside the group `parent`.
    pub fn parent(mut self, parent: impl Into<String>) -> Self {
        self.parent = Some(parent.into());
        self
    }

    /// Adds dependencies.
    pub fn after<I, S>(mut self, keys: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.dependencies.extend(keys.into_iter().map(Into::into));
        self
    }

    /// Sets the resource class.
    pub fn class(mut self, class: impl Into<String>) -> Self {
        self.resource_class = class.into();
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Sets the attempts.
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the cost.
    pub fn cost(mut self, cost: i64) -> Self {
        self.cost = cost;
        self
    }

    /// Sets the expected run time.
    pub fn duration_hint(mut self, hint: Duration) -> Self {
        self.duration_hint = hint;
        self
    }
}

/// A run and its nodes, to submit in one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Graph {
    /// The run.
    pub run: RunSpec,
    /// Its groups and tasks, in the order children are listed.
    pub nodes: Vec<NodeSpec>,
}

impl Graph {
    /// An empty graph for `run`.
    pub fn new(run: RunSpec) -> Self {
        Self {
            run,
            nodes: Vec::new(),
        }
    }

    /// Adds a node.
    pub fn add(&mut self, node: NodeSpec) -> &mut Self {
        self.nodes.push(node);
        self
    }

    /// Adds a node, builder style.
    pub fn with(mut self, node: NodeSpec) -> Self {
        self.nodes.push(node);
        self
    }

    /// Checks everything `submit` checks that does not need the database: names, fields,
    /// duplicate keys, unknown dependencies and parents, group rules, depth and cycles.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), GraphError> {
        check_run(&self.run)?;
        resolve(&self.nodes, &[], &NoExistingNodes).map(|_| ())
    }
}

/// Nodes and dependency edges a completing task adds to its run, atomically with its
/// completion.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Expansion {
    /// New nodes; their dependencies and parents may name new or existing nodes.
    pub nodes: Vec<NodeSpec>,
    /// `(dependent, prerequisite)`: an existing task that has not started yet gains a
    /// dependency on a new task.
    pub edges: Vec<(String, String)>,
}

impl Expansion {
    /// An empty expansion.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a node.
    pub fn with(mut self, node: NodeSpec) -> Self {
        self.nodes.push(node);
        self
    }

    /// Makes the existing task `dependent` wait for the new task `prerequisite` as well.
    pub fn add_dependency(
        mut self,
        dependent: impl Into<String>,
        prerequisite: impl Into<String>,
    ) -> Self {
        self.edges.push((dependent.into(), prerequisite.into()));
        self
    }

    /// Whether it adds nothing.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty() && self.edges.is_empty()
    }

    /// Checks what can be checked without the run: names, fields and duplicate keys among
    /// the new nodes.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate_shape(&self) -> Result<(), GraphError> {
        let mut keys = HashSet::new();
        for node in &self.nodes {
            check_node(node)?;
            if !keys.insert(node.key.as_str()) {
                return Err(GraphError::DuplicateKey(node.key.clone()));
            }
        }
        Ok(())
    }
}

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

/// A node that already exists in the run an expansion extends.
#[derive(Debug, Clone)]
pub(crate) struct ExistingNode {
    pub index: usize,
    pub node_type: NodeType,
    /// How many groups enclose it below the run (the run itself has depth 0).
    pub depth: usize,
}

/// Looks existing nodes up by key and walks their dependencies.
pub(crate) trait ExistingNodes {
    fn get(&self, key: &str) -> Option<ExistingNode>;
    /// Indices of the existing prerequisites of the existing node `index`.
    fn prerequisites(&self, index: usize) -> Vec<usize>;
    /// The key of the existing node `index`.
    fn key(&self, index: usize) -> String;
}

pub(crate) struct NoExistingNodes;

impl ExistingNodes for NoExistingNodes {
    fn get(&self, _: &str) -> Option<ExistingNode> {
        None
    }
    fn prerequisites(&self, _: usize) -> Vec<usize> {
        Vec::new()
    }
    fn key(&self, _: usize) -> String {
        String::new()
    }
}

/// A reference from a new node to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NodeRef {
    New(usize),
    Existing(usize),
}

/// New nodes with their references resolved, in an order where prerequisites and parents come
/// first.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub order: Vec<usize>,
    pub parent: Vec<Option<NodeRef>>,
    pub dependencies: Vec<Vec<NodeRef>>,
    /// Existing dependents gaining an edge: `(existing index, new index)`.
    pub edges: Vec<(usize, usize)>,
    /// New nodes' remaining-path length in milliseconds (higher starts first).
    pub rank: Vec<i64>,
}

/// Resolves and checks `nodes` (plus `edges` onto existing nodes) against `existing`.
pub(crate) fn resolve(
    nodes: &[NodeSpec],
    edges: &[(String, String)],
    existing: &dyn ExistingNodes,
) -> Result<Resolved, GraphError> {
    if nodes.len() > MAX_NODES_PER_RUN {
        return Err(GraphError::TooManyNodes {
            count: nodes.len(),
            max: MAX_NODES_PER_RUN,
        });
    }
    let mut by_key: HashMap<&str, usize> = HashMap::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        check_node(node)?;
        if by_key.insert(node.key.as_str(), i).is_some() || existing.get(&node.key).is_some() {
            return Err(GraphError::DuplicateKey(node.key.clone()));
        }
    }
    let lookup = |key: &str| -> Option<(NodeRef, NodeType)> {
        by_key
            .get(key)
            .map(|&i| (NodeRef::New(i), nodes[i].node_type))
            .or_else(|| {
                existing
                    .get(key)
                    .map(|e| (NodeRef::Existing(e.index), e.node_type))
            })
    };

    let mut parent = Vec::with_capacity(nodes.len());
    for node in nodes {
        parent.push(match &node.parent {
            None => None,
            Some(p) => match lookup(p) {
                None => {
                    return Err(GraphError::UnknownParent {
                        node: node.key.clone(),
                        parent: p.clone(),
                    });
                }
                Some((_, NodeType::Task)) => {
                    return Err(GraphError::ParentNotGroup {
                        node: node.key.clone(),
                        parent: p.clone(),
                    });
                }
                Some((r, _)) => Some(r),
            },
        });
    }
    // Depth, and cycles among parents, by walking up from each new node.
    for (i, node) in nodes.iter().enumerate() {
        let mut depth = 1;
        let mut at = parent[i];
        let mut seen = HashSet::from([i]);
        loop {
            match at {
                None => break,
                Some(NodeRef::Existing(e)) => {
                    let key = existing.key(e);
                    depth += existing.get(&key).map_or(0, |n| n.depth);
                    break;
                }
                Some(NodeRef::New(j)) => {
                    if !seen.insert(j) {
                        let mut path: Vec<String> =
                            seen.iter().map(|&k| nodes[k].key.clone()).collect();
                        path.sort();
                        return Err(GraphError::Cycle { path });
                    }
                    depth += 1;
                    at = parent[j];
                }
            }
        }
        if depth > MAX_DEPTH {
            return Err(GraphError::TooDeep {
                node: node.key.clone(),
                depth,
                max: MAX_DEPTH,
            });
        }
    }

    let mut dependencies = Vec::with_capacity(nodes.len());
    for node in nodes {
        let mut deps = Vec::with_capacity(node.dependencies.len());
        let mut seen = HashSet::new();
        for d in &node.dependencies {
            if !seen.insert(d.as_str()) {
                continue;
            }
            let Some((r, t)) = lookup(d) else {
                return Err(GraphError::UnknownDependency {
                    node: node.key.clone(),
                    dependency: d.clone(),
                });
            };
            if t.is_group() || node.node_type.is_group() {
                return Err(GraphError::GroupDependency {
                    node: node.key.clone(),
                    dependency: d.clone(),
                });
            }
            deps.push(r);
        }
        dependencies.push(deps);
    }

    let mut new_edges = Vec::with_capacity(edges.len());
    for (dependent, prerequisite) in edges {
        let Some(e) = existing.get(dependent) else {
            return Err(if by_key.contains_key(dependent.as_str()) {
                GraphError::InvalidField {
                    node: dependent.clone(),
                    field: "dependencies",
                    reason: "is a new node; list its dependencies on the node itself".to_owned(),
                }
            } else {
                GraphError::UnknownDependency {
                    node: prerequisite.clone(),
                    dependency: dependent.clone(),
                }
            });
        };
        let Some(&n) = by_key.get(prerequisite.as_str()) else {
            return Err(GraphError::UnknownDependency {
                node: dependent.clone(),
                dependency: prerequisite.clone(),
            });
        };
        if e.node_type.is_group() || nodes[n].node_type.is_group() {
            return Err(GraphError::GroupDependency {
                node: dependent.clone(),
                dependency: prerequisite.clone(),
            });
        }
        if !new_edges.contains(&(e.index, n)) {
            new_edges.push((e.index, n));
        }
    }

    let order = topological_order(nodes, &parent, &dependencies)?;
    check_cycles_through_existing(nodes, &dependencies, &new_edges, existing)?;

    // rank = own hint + the longest rank among dependents (new dependents, and existing
    // dependents gaining edges, which contribute their own hint only).
    let mut rank = vec![0i64; nodes.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, deps) in dependencies.iter().enumerate() {
        for d in deps {
            if let NodeRef::New(p) = d {
                dependents[*p].push(i);
            }
        }
    }
    let mut external: Vec<i64> = vec![0; nodes.len()];
    for &(_, n) in &new_edges {
        external[n] = external[n].max(1_000);
    }
    for &i in order.iter().rev() {
        let hint = i64::try_from(nodes[i].duration_hint.as_millis()).unwrap_or(i64::MAX / 4);
        let below = dependents[i]
            .iter()
            .map(|&d| rank[d])
            .max()
            .unwrap_or(0)
            .max(external[i]);
        rank[i] = hint.saturating_add(below);
    }

    Ok(Resolved {
        order,
        parent,
        dependencies,
        edges: new_edges,
        rank,
    })
}

/// Orders new nodes so that every node comes after its new parent and new prerequisites;
/// reports a cycle among new nodes with its path.
fn topological_order(
    nodes: &[NodeSpec],
    parent: &[Option<NodeRef>],
    dependencies: &[Vec<NodeRef>],
) -> Result<Vec<usize>, GraphError> {
    let n = nodes.len();
    let mut before: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        if let Some(NodeRef::New(p)) = parent[i] {
            before[i].push(p);
        }
        for d in &dependencies[i] {
            if let NodeRef::New(p) = d {
                before[i].push(*p);
            }
        }
    }
    // Iterative depth-first search; grey nodes are on the current path.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        White,
        Grey,
        Black,
    }
    let mut mark = vec![Mark::White; n];
    let mut order = Vec::with_capacity(n);
    for start in 0..n {
        if mark[start] != Mark::White {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
        mark[start] = Mark::Grey;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            let Some(&p) = before[node].get(next) else {
                mark[node] = Mark::Black;
                order.push(node);
                stack.pop();
                continue;
            };
            top.1 += 1;
            match mark[p] {
                Mark::White => {
                    mark[p] = Mark::Grey;
                    stack.push((p, 0));
                }
                Mark::Grey => {
                    // Each entry depends on the next; p closes the loop.
                    let from = stack.iter().position(|&(k, _)| k == p).unwrap_or(0);
                    let mut path: Vec<String> = stack[from..]
                        .iter()
                        .map(|&(k, _)| nodes[k].key.clone())
                        .collect();
                    path.push(nodes[p].key.clone());
                    return Err(GraphError::Cycle { path });
                }
                Mark::Black => {}
            }
        }
    }
    Ok(order)
}

/// A new edge `existing E → new N` closes a cycle when N (through its prerequisites, new and
/// existing) already depends on E.
fn check_cycles_through_existing(
    nodes: &[NodeSpec],
    dependencies: &[Vec<NodeRef>],
    new_edges: &[(usize, usize)],
    existing: &dyn ExistingNodes,
) -> Result<(), GraphError> {
    if new_edges.is_empty() {
        return Ok(());
    }
    // Existing dependents that gain edges, with the new prerequisites they gain.
    let mut gained: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(e, n) in new_edges {
        gained.entry(e).or_default().push(n);
    }
    for &(target, start) in new_edges {
        // Walk prerequisites from `start`; reaching `target` means a cycle.
        let mut stack = vec![NodeRef::New(start)];
        let mut seen: HashSet<NodeRef> = HashSet::new();
        while let Some(at) = stack.pop() {
            if !seen.insert(at) {
                continue;
            }
            match at {
                NodeRef::Existing(e) if e == target => {
                    return Err(GraphError::Cycle {
                        path: vec![
                            existing.key(target),
                            nodes[start].key.clone(),
                            existing.key(target),
                        ],
                    });
                }
                NodeRef::Existing(e) => {
                    stack.extend(existing.prerequisites(e).into_iter().map(NodeRef::Existing));
                    if let Some(ns) = gained.get(&e) {
                        stack.extend(ns.iter().map(|&n| NodeRef::New(n)));
                    }
                }
                NodeRef::New(n) => stack.extend(dependencies[n].iter().copied()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn graph(nodes: Vec<NodeSpec>) -> Graph {
        let mut g = Graph::new(RunSpec::new("test", Uuid::nil()));
        for n in nodes {
            g.add(n);
        }
        g
    }

    fn task(key: &str) -> NodeSpec {
        NodeSpec::task(key, "noop", json!({}))
    }

    #[test]
    fn a_valid_hierarchy_resolves_prerequisites_first() {
        let g = graph(vec![
            task("clip").parent("ep1").after(["board"]),
            NodeSpec::group("ep1", "episode"),
            task("board").parent("ep1"),
        ]);
        g.validate().unwrap();
        let r = resolve(&g.nodes, &[], &NoExistingNodes).unwrap();
        let pos = |i| r.order.iter().position(|&x| x == i).unwrap();
        assert!(pos(1) < pos(0) && pos(1) < pos(2) && pos(2) < pos(0));
        assert!(
            r.rank[2] > r.rank[0],
            "a prerequisite ranks above its dependent"
        );
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        let g = graph(vec![
            task("a").after(["c"]),
            task("b").after(["a"]),
            task("c").after(["b"]),
            task("d"),
        ]);
        match g.validate() {
            Err(GraphError::Cycle { path }) => {
                assert_eq!(path.first(), path.last());
                assert_eq!(path.len(), 4, "{path:?}");
                for k in ["a", "b", "c"] {
                    assert!(path.contains(&k.to_owned()));
                }
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
        assert!(matches!(
            graph(vec![task("a").after(["a"])]).validate(),
            Err(GraphError::Cycle { .. })
        ));
    }

    #[test]
    fn bad_references_name_the_node() {
        assert_eq!(
            graph(vec![task("a").after(["ghost"])]).validate(),
            Err(GraphError::UnknownDependency {
                node: "a".into(),
                dependency: "ghost".into()
            })
        );
        assert_eq!(
            graph(vec![task("a"), task("a")]).validate(),
            Err(GraphError::DuplicateKey("a".into()))
        );
        assert!(matches!(
            graph(vec![task("a"), task("b").parent("a")]).validate(),
            Err(GraphError::ParentNotGroup { .. })
        ));
        assert!(matches!(
            graph(vec![NodeSpec::group("g", "grp"), task("b").after(["g"])]).validate(),
            Err(GraphError::GroupDependency { .. })
        ));
        assert!(matches!(
            graph(vec![task("b").parent("nowhere")]).validate(),
            Err(GraphError::UnknownParent { .. })
        ));
    }

    #[test]
    fn fields_and_names_are_checked() {
        assert!(matches!(
            graph(vec![task("")]).validate(),
            Err(GraphError::InvalidName { what: "key", .. })
        ));
        assert!(matches!(
            graph(vec![NodeSpec::task("a", "bad kind", json!(1))]).validate(),
            Err(GraphError::InvalidName { what: "kind", .. })
        ));
        assert!(matches!(
            graph(vec![task("a").max_attempts(0)]).validate(),
            Err(GraphError::InvalidField {
                field: "max_attempts",
                ..
            })
        ));
        assert!(matches!(
            graph(vec![task("a").cost(-1)]).validate(),
            Err(GraphError::InvalidField { field: "cost", .. })
        ));
        let big = json!({"x": "y".repeat(MAX_PAYLOAD_BYTES)});
        assert!(matches!(
            graph(vec![NodeSpec::task("a", "k", big)]).validate(),
            Err(GraphError::InvalidField {
                field: "payload",
                ..
            })
        ));
        let mut deep = vec![NodeSpec::group("g0", "grp")];
        for i in 1..=MAX_DEPTH {
            deep.push(NodeSpec::group(format!("g{i}"), "grp").parent(format!("g{}", i - 1)));
        }
        assert!(matches!(
            graph(deep).validate(),
            Err(GraphError::TooDeep { .. })
        ));
    }

    #[test]
    fn parent_loops_are_cycles() {
        let g = graph(vec![
            NodeSpec::group("x", "grp").parent("y"),
            NodeSpec::group("y", "grp").parent("x"),
        ]);
        assert!(matches!(g.validate(), Err(GraphError::Cycle { .. })));
    }

    struct Existing(Vec<(&'static str, NodeType, Vec<usize>)>);

    impl ExistingNodes for Existing {
        fn get(&self, key: &str) -> Option<ExistingNode> {
            self.0
                .iter()
                .position(|(k, _, _)| *k == key)
                .map(|index| ExistingNode {
                    index,
                    node_type: self.0[index].1,
                    depth: 1,
                })
        }
        fn prerequisites(&self, index: usize) -> Vec<usize> {
            self.0[index].2.clone()
        }
        fn key(&self, index: usize) -> String {
            self.0[index].0.to_owned()
        }
    }

    #[test]
    fn expansions_may_not_close_cycles_through_existing_nodes() {
        // stitch (existing) depends on write (existing); adding clip with stitch -> clip is
        // fine, but a clip that itself depends on stitch closes a cycle.
        let run = Existing(vec![
            ("write", NodeType::Task, vec![]),
            ("stitch", NodeType::Task, vec![0]),
        ]);
        let ok = resolve(
            &[task("clip").after(["write"])],
            &[("stitch".into(), "clip".into())],
            &run,
        )
        .unwrap();
        assert_eq!(ok.edges, vec![(1, 0)]);
        let bad = resolve(
            &[task("clip").after(["stitch"])],
            &[("stitch".into(), "clip".into())],
            &run,
        );
        assert!(matches!(bad, Err(GraphError::Cycle { .. })), "{bad:?}");
        assert_eq!(
            resolve(&[task("write")], &[], &run).unwrap_err(),
            GraphError::DuplicateKey("write".into())
        );
    }
}
