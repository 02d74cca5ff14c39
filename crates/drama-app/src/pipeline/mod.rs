//! The generation pipeline: planning a drama into a job graph, the job handlers, and the use
//! cases that start and follow runs.

mod control;
pub mod engine;
mod handlers;
pub mod hash;
mod inspect;
pub mod normalize;
pub mod plan;
mod product;
pub mod spec;
pub mod stitch;
mod usecases;

pub(crate) use usecases::job_error;

pub use inspect::{DramaOverview, Estimate, KindEstimate};
pub use plan::{Models, Planned, Planner, Scope};
pub use usecases::{
    GenerateOptions, PremiseRequest, ReferenceUpload, Started, Waited, wire_status,
};
