//! The conformance suite on the in-memory implementation.
#![allow(missing_docs)]

use std::sync::Arc;

use drama_dal::MemoryStore;

macro_rules! memory_case {
    ($name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            drama_testkit::conformance::$name(Arc::new(MemoryStore::new())).await;
        }
    };
}

drama_testkit::for_each_scenario!(memory_case);
