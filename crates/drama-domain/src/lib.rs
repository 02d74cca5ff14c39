#![doc = include_str!("../README.md")]

mod backoff;
mod error;
mod ids;
mod job;
pub mod lax;
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
    Asset, AssetKind, AssetOwner, Character, Drama, DramaSummary, Episode, MAX_ASSETS_PER_PART,
    MAX_CHARACTERS, MAX_EPISODES, MAX_PARTS, MAX_SCENES_PER_EPISODE, STORYBOARD_MAX_CHARACTERS,
    Scene, VIDEO_DURATIONS,
};
pub use patch::{AssetPatch, CharacterPatch, DramaPatch, EntityPatch, EpisodePatch, ScenePatch};
pub use storage::{legacy_key_of, storage_key_belongs};
pub use text::{MAX_URL_CHARS, is_url_field, long_urls};
pub use user::{
    ApiKeyId, ApiKeyMeta, MAX_DISPLAY_NAME, OLD_DEFAULT_OWNER, OLD_DEMO_USER, User,
    is_old_default_owner,
};
