#![doc = include_str!("../README.md")]

mod caller;
mod dramas;
mod error;
mod readiness;
mod sweeper;

pub use caller::Caller;
pub use error::AppError;
pub use readiness::Readiness;

use std::sync::Arc;

use drama_assets::AssetStore;
use drama_dal::Store;

/// The use cases, on the ports the binary wires: repositories and the asset store.
///
/// Cheap to clone (every port is an `Arc`); build one at startup and share it.
#[derive(Clone)]
pub struct App {
    store: Arc<dyn Store>,
    assets: Arc<dyn AssetStore>,
}

impl App {
    /// Use cases on these ports.
    pub fn new(store: Arc<dyn Store>, assets: Arc<dyn AssetStore>) -> Self {
        Self { store, assets }
    }

    /// The repositories (authentication and health checks use them directly).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The asset store.
    pub fn assets(&self) -> &Arc<dyn AssetStore> {
        &self.assets
    }
}
