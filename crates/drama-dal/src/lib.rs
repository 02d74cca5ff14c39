#![doc = include_str!("../README.md")]

pub mod api_key;
mod error;
pub mod generation;
pub mod legacy;
pub mod legacy_tables;
mod memory;
mod page;
mod repos;

pub use error::{Entity, RepoError};
pub use generation::{
    Applied, DramaWrite, EntityUrl, GeneratedAsset, GenerationError, GenerationStore, Refund,
};
pub use legacy::{LegacyImportRepository, MemoryLegacyImports};
pub use memory::MemoryStore;
pub use page::{Cursor, MAX_PAGE_SIZE, Page, PageRequest};
pub use repos::{
    ApiKeyRepository, AssetObject, CreatedApiKey, DEFAULT_TOKENS, DramaChange, DramaChangeStream,
    DramaFeed, DramaRepository, NewUser, OrphanRepository, Store, StoredApiKey, StoredDrama,
    UserRepository, Version,
};
