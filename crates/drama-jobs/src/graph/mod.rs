//! Graphs as callers describe them: a run, its groups and tasks, dependencies by key, and
//! expansions of a running graph. Validation happens here, before anything is written.

mod check;
mod resolve;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::GraphError;
use crate::state::NodeType;

pub use check::check_class_name;
pub(crate) use check::{check_node, check_run};
pub(crate) use resolve::{
    ExistingNode, ExistingNodes, NoExistingNodes, NodeRef, Resolved, resolve,
};

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
