#![doc = include_str!("../README.md")]

#[cfg(feature = "conformance")]
pub mod conformance;
pub mod core;
mod error;
pub mod graph;
mod handler;
mod ids;
mod memory;
mod state;
mod store;
mod worker;

pub use drama_domain::{Backoff, Jitter, JobStatus};
pub use error::{GraphError, JobError};
pub use graph::{Expansion, Graph, NodeSpec, RunSpec};
pub use handler::{
    CHARGE_KEPT, DEFAULT_RETRY, Handler, HandlerOptions, JobContext, Outcome, Registry, charge_kept,
};
pub use ids::{EventId, Fence, JobId, RunId, WorkerId};
pub use memory::MemoryJobStore;
pub use state::{CostTotals, Counts, EventKind, JobState, NodeType};
pub use store::{
    CancelReport, ClaimRequest, ClaimedJob, Event, Heartbeat, JobStore, JobView, Notification,
    NotificationStream, PruneReport, ResourceLimit, ResumeReport, RunFilter, RunTree, Submitted,
    WorkerRegistration,
};
pub use worker::{ShutdownReport, Worker, WorkerConfig, WorkerHandle, WorkerStats};
