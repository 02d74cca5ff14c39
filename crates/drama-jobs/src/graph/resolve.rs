//! Resolving the keys of new nodes against each other and the nodes of the run they extend:
//! parents, dependencies, depth, cycles, creation order and critical-path ranks.

use std::collections::{HashMap, HashSet};

use super::{MAX_DEPTH, MAX_NODES_PER_RUN, NodeSpec, check_node};
use crate::error::GraphError;
use crate::state::NodeType;

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

/// Looks a key up among the new nodes first, then the existing ones.
struct Lookup<'a> {
    nodes: &'a [NodeSpec],
    by_key: HashMap<&'a str, usize>,
    existing: &'a dyn ExistingNodes,
}

impl Lookup<'_> {
    fn get(&self, key: &str) -> Option<(NodeRef, NodeType)> {
        self.by_key
            .get(key)
            .map(|&i| (NodeRef::New(i), self.nodes[i].node_type))
            .or_else(|| {
                self.existing
                    .get(key)
                    .map(|e| (NodeRef::Existing(e.index), e.node_type))
            })
    }
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
    let lookup = Lookup {
        nodes,
        by_key,
        existing,
    };
    let parent = resolve_parents(&lookup)?;
    check_depths(nodes, &parent, existing)?;
    let dependencies = resolve_dependencies(&lookup)?;
    let new_edges = resolve_new_edges(&lookup, edges)?;
    let order = topological_order(nodes, &parent, &dependencies)?;
    check_cycles_through_existing(nodes, &dependencies, &new_edges, existing)?;
    let rank = ranks(nodes, &dependencies, &new_edges, &order);
    Ok(Resolved {
        order,
        parent,
        dependencies,
        edges: new_edges,
        rank,
    })
}

/// Each node's parent, which must be a group.
fn resolve_parents(lookup: &Lookup<'_>) -> Result<Vec<Option<NodeRef>>, GraphError> {
    let mut parent = Vec::with_capacity(lookup.nodes.len());
    for node in lookup.nodes {
        parent.push(match &node.parent {
            None => None,
            Some(p) => match lookup.get(p) {
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
    Ok(parent)
}

/// Depth, and cycles among parents, by walking up from each new node.
fn check_depths(
    nodes: &[NodeSpec],
    parent: &[Option<NodeRef>],
    existing: &dyn ExistingNodes,
) -> Result<(), GraphError> {
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
    Ok(())
}

/// Each node's dependencies (tasks only, duplicates dropped).
fn resolve_dependencies(lookup: &Lookup<'_>) -> Result<Vec<Vec<NodeRef>>, GraphError> {
    let mut dependencies = Vec::with_capacity(lookup.nodes.len());
    for node in lookup.nodes {
        let mut deps = Vec::with_capacity(node.dependencies.len());
        let mut seen = HashSet::new();
        for d in &node.dependencies {
            if !seen.insert(d.as_str()) {
                continue;
            }
            let Some((r, t)) = lookup.get(d) else {
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
    Ok(dependencies)
}

/// Edges from existing tasks onto new ones: `(existing index, new index)`.
fn resolve_new_edges(
    lookup: &Lookup<'_>,
    edges: &[(String, String)],
) -> Result<Vec<(usize, usize)>, GraphError> {
    let mut new_edges = Vec::with_capacity(edges.len());
    for (dependent, prerequisite) in edges {
        let Some(e) = lookup.existing.get(dependent) else {
            return Err(if lookup.by_key.contains_key(dependent.as_str()) {
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
        let Some(&n) = lookup.by_key.get(prerequisite.as_str()) else {
            return Err(GraphError::UnknownDependency {
                node: dependent.clone(),
                dependency: prerequisite.clone(),
            });
        };
        if e.node_type.is_group() || lookup.nodes[n].node_type.is_group() {
            return Err(GraphError::GroupDependency {
                node: dependent.clone(),
                dependency: prerequisite.clone(),
            });
        }
        if !new_edges.contains(&(e.index, n)) {
            new_edges.push((e.index, n));
        }
    }
    Ok(new_edges)
}

/// rank = own hint + the longest rank among dependents (new dependents, and existing
/// dependents gaining edges, which contribute their own hint only).
fn ranks(
    nodes: &[NodeSpec],
    dependencies: &[Vec<NodeRef>],
    new_edges: &[(usize, usize)],
    order: &[usize],
) -> Vec<i64> {
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
    for &(_, n) in new_edges {
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
    rank
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
