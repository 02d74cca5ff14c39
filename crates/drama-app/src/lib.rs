#![doc = include_str!("../README.md")]

mod caller;
mod dramas;
mod error;
mod library;
pub mod pipeline;
mod readiness;
mod sweeper;

pub use caller::Caller;
pub use error::AppError;
pub use library::{LibraryItem, LibraryTag, LibraryType, LibraryUpload};
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
    public_base_url: String,
}

/// Where clients reach the API when nothing else is configured.
pub const DEFAULT_PUBLIC_BASE_URL: &str = "http://localhost:8000";

impl App {
    /// Use cases on these ports.
    pub fn new(store: Arc<dyn Store>, assets: Arc<dyn AssetStore>) -> Self {
        Self {
            store,
            assets,
            public_base_url: DEFAULT_PUBLIC_BASE_URL.to_owned(),
        }
    }

    /// Sets the API's public origin (e.g. `https://api.example.com`), used in the URLs of
    /// objects that have no public URL of their own.
    #[must_use]
    pub fn with_public_base_url(mut self, base: impl Into<String>) -> Self {
        self.public_base_url = base.into().trim_end_matches('/').to_owned();
        self
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
