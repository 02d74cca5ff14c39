#![doc = include_str!("../README.md")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

pub mod builders;
pub mod conformance;
pub mod pg;
pub mod s3;
mod statement_counter;

pub use statement_counter::StatementCounter;
