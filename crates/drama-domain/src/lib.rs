#![doc = include_str!("../README.md")]

mod backoff;
mod error;
mod ids;
mod job;
mod model;
mod patch;
mod storage;
mod text;
mod user;
mod validate;

pub use backoff::{Backoff, Jitter};
pub use error::{DomainError, FieldError};
pub use ids::{
    AssetId, CharacterId, ClientIdError, DramaId, EpisodeId, MAX_ID_LEN, SceneId, UserId,
};
pub use job::{JobStatus, JobType};
pub use model::{
    Asset, AssetKind, AssetOwner, Character, Drama, DramaSummary, Episode,
    STORYBOARD_MAX_CHARACTERS, Scene, VIDEO_DURATIONS,
};
pub use patch::{AssetPatch, CharacterPatch, DramaPatch, EntityPatch, EpisodePatch, ScenePatch};
pub use storage::{legacy_key_of, storage_key_belongs};
pub use user::{ApiKeyId, ApiKeyMeta, User};
