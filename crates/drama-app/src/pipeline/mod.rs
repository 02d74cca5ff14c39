//! The generation pipeline: planning a drama into a job graph, the job handlers, and the use
//! cases that start and follow runs.

mod control;
mod generate;
mod handlers;
pub mod hash;
mod inspect;
pub mod jobs_port;
pub mod memory_generation;
pub mod normalize;
mod one_part;
pub mod plan;
pub(crate) mod product;
mod runs;
pub mod spec;
pub mod stitch;
mod usecases;

pub(crate) use usecases::job_error;

pub use inspect::{DEFAULT_SCENES_PER_EPISODE, DramaOverview, Estimate, KindEstimate};
pub use one_part::Target;
pub use plan::{Models, Planned, Planner, Scope};
pub use runs::{MAX_TREE_NODES, NodeBudget};
pub use usecases::{GenerateOptions, PremiseRequest, ReferenceUpload, Started, Waited};
