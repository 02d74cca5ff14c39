#![doc = include_str!("../README.md")]

mod catalog;
mod error;
#[cfg(feature = "providers")]
pub mod http;
// Without the clients, settings that name a provider are refused by these stand-ins.
#[cfg(not(feature = "providers"))]
#[path = "absent.rs"]
mod http;
#[cfg(feature = "providers")]
mod json;
// The shapes of model answers, read by `validate` (in use with the provider clients only).
#[cfg_attr(not(feature = "providers"), allow(dead_code))]
mod lite;
#[cfg(feature = "providers")]
mod llm;
mod offline;
pub mod prompts;
mod registry;
mod retry;
mod settings;
mod traits;
mod types;
mod usage;
pub mod validate;

pub use catalog::{ModelCatalog, ScriptModelSpec, ScriptPrices, TokenPrices};
pub use error::{AiError, Provider};
pub use offline::{
    COLOUR_KEY, OFFLINE_IMAGE_SIZE, OFFLINE_MODEL, OFFLINE_VIDEO_FPS, OFFLINE_VIDEO_SIZE,
    OfflineCalls, OfflineLatency, OfflineProvider,
};
pub use prompts::PROMPT_VERSION;
pub use registry::{
    AiProviders, DEFAULT_GPT_MODEL, DEFAULT_SCRIPT_MODEL, ScriptModelChoice, choose_script_model,
};
pub use retry::{RetryPolicy, cancellable};
pub use settings::{AiSettings, ApiKey, ENV_VARS, ImageProviderChoice};
pub use traits::{
    DramaRequest, ImageModel, ScriptModel, VideoModel, VideoPolling, VoiceModel, generate_video,
    wait_for_video,
};
pub use types::{
    GeneratedAudio, GeneratedImage, GeneratedVideo, ImageKind, ImageRequest, ReferenceImage,
    VideoDuration, VideoOutput, VideoRequest, VideoStatus, VideoTask, VoiceRequest, sniff_mime,
};
pub use usage::{CallKind, CostTable, Generated, ModelInfo, Usage};
