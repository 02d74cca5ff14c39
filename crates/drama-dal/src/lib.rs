#![doc = include_str!("../README.md")]

pub mod api_key;
mod credits;
mod error;
pub mod generation;
pub mod legacy;
pub mod legacy_tables;
mod memory;
mod page;
mod repos;
mod usage;

pub use credits::{
    CreditLedger, CreditMove, CreditReason, LedgerEntry, LedgerMismatch, MAX_NOTE_LEN,
    check_amount, check_ledger_limit, check_move,
};
pub use error::{Entity, RepoError};
pub use generation::{
    Applied, DramaWrite, EntityUrl, GeneratedAsset, GenerationError, GenerationStore, Refund,
    ResumeCharged, ScriptCompletion,
};
pub use legacy::{LegacyImportRepository, MemoryLegacyImports};
pub use memory::MemoryStore;
pub use page::{Cursor, MAX_PAGE_SIZE, Page, PageRequest};
pub use repos::{
    ApiKeyRepository, AssetObject, CreatedApiKey, DEFAULT_TOKENS, DramaChange, DramaChangeStream,
    DramaFeed, DramaRepository, KeyCaps, KeyCreation, NewUser, Orphan, OrphanRepository, Store,
    StoredApiKey, StoredDrama, UserRepository, Version, is_library_key,
};
pub use usage::UsageRepository;
