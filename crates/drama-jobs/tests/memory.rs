//! The job engine on the in-memory store, with paused time: the conformance scenarios (with
//! invariant checks after every change) and larger randomized runs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use drama_jobs::MemoryJobStore;

macro_rules! case {
    ($name:ident) => {
        #[tokio::test(start_paused = true)]
        async fn $name() {
            let store = Arc::new(MemoryJobStore::with_invariant_checks());
            drama_jobs::conformance::$name(store.clone()).await;
            assert_eq!(store.violations(), Vec::<String>::new());
        }
    };
}

drama_jobs::for_each_job_scenario!(case);

#[tokio::test(start_paused = true)]
async fn three_thousand_random_dags_never_start_a_node_early() {
    let store = Arc::new(MemoryJobStore::with_invariant_checks());
    drama_jobs::conformance::random_dags(store.clone(), 3000, 2026).await;
    assert_eq!(store.violations(), Vec::<String>::new());
}
