//! The errors of the job engine.

use crate::ids::{Fence, JobId};
use crate::state::JobState;

/// Why a graph (or an expansion of a running graph) was rejected. Nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// A node key, kind or resource class is malformed.
    #[error("{what} {value:?} is invalid: {reason}")]
    InvalidName {
        /// `key`, `kind` or `resource class`.
        what: &'static str,
        /// The value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A field of a node is out of range.
    #[error("node {node:?}: {field} {reason}")]
    InvalidField {
        /// The node's key.
        node: String,
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Two nodes share a key (or a new node reuses a key of the run).
    #[error("duplicate node key {0:?}")]
    DuplicateKey(String),
    /// A dependency names no node.
    #[error("node {node:?} depends on {dependency:?}, which does not exist")]
    UnknownDependency {
        /// The dependent.
        node: String,
        /// The missing key.
        dependency: String,
    },
    /// A parent names no node.
    #[error("node {node:?} has parent {parent:?}, which does not exist")]
    UnknownParent {
        /// The child.
        node: String,
        /// The missing key.
        parent: String,
    },
    /// A parent is a task; only groups have children.
    #[error("node {node:?} has parent {parent:?}, which is a task; only groups have children")]
    ParentNotGroup {
        /// The child.
        node: String,
        /// The task named as parent.
        parent: String,
    },
    /// Groups neither depend on anything nor are depended on; depend on their tasks instead.
    #[error(
        "dependency between {node:?} and {dependency:?} involves a group; only tasks have dependencies"
    )]
    GroupDependency {
        /// The dependent.
        node: String,
        /// The prerequisite.
        dependency: String,
    },
    /// The dependencies form a cycle; `path` lists it, first key repeated at the end.
    #[error("dependency cycle: {}", path.join(" -> "))]
    Cycle {
        /// The keys along the cycle.
        path: Vec<String>,
    },
    /// Groups nest too deeply.
    #[error("node {node:?} is nested {depth} levels deep; at most {max} are allowed")]
    TooDeep {
        /// The node.
        node: String,
        /// Its depth.
        depth: usize,
        /// The limit.
        max: usize,
    },
    /// Too many nodes in one submission or one run.
    #[error("{count} nodes exceed the limit of {max} per run")]
    TooManyNodes {
        /// How many.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// An expansion adds a dependency to a node that has already started or settled.
    #[error("node {node:?} is {state} and cannot gain dependencies")]
    AlreadyStarted {
        /// The existing node.
        node: String,
        /// Its state.
        state: JobState,
    },
}

/// What went wrong in an engine or store operation, in terms a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// The graph or expansion is invalid; nothing was written.
    #[error("invalid graph: {0}")]
    InvalidGraph(#[from] GraphError),
    /// A request parameter is invalid (names the parameter).
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The parameter.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No such job (or run).
    #[error("job {0} not found")]
    NotFound(JobId),
    /// The fence is stale: the task was retaken, finished or released since this attempt
    /// claimed it. Nothing was written; inside a caller's transaction, roll it back.
    #[error("fence {0} lost: the task was retaken or already finished")]
    FenceLost(Fence),
    /// The worker's registration expired (it missed heartbeats); register again.
    #[error("worker {0} is not registered or its registration expired")]
    WorkerExpired(crate::ids::WorkerId),
    /// The store cannot be reached, or a transaction lost a race (deadlock, serialization);
    /// retrying the whole operation may succeed.
    #[error("job store unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unmapped store error.
    #[error("unexpected job store error: {0}")]
    Unexpected(String),
}

impl JobError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// Whether this is [`JobError::FenceLost`].
    pub fn is_fence_lost(&self) -> bool {
        matches!(self, Self::FenceLost(_))
    }
}
