//! The node kinds of the pipeline, their payloads, and how they appear to clients.

use drama_dal::EntityUrl;
use drama_domain::JobType;
use serde::{Deserialize, Serialize};

/// Node and run kinds (stored with every job; never rename one that has been used).
pub mod kind {
    /// Run: write a drama from a premise (then portraits and cover).
    pub const CREATE_DRAMA: &str = "create_drama";
    /// Run: write an improved copy of a drama.
    pub const IMPROVE_DRAMA: &str = "improve_drama";
    /// Run and task: critique a drama.
    pub const CRITIQUE_DRAMA: &str = "critique_drama";
    /// Run: generate assets of a drama (all of it, or a scope).
    pub const GENERATE: &str = "generate";
    /// Task: the script model writes a drama.
    pub const WRITE_DRAMA: &str = "write_drama";
    /// Task: the script model writes an episode's scenes.
    pub const WRITE_SCENES: &str = "write_scenes";
    /// Task: a character portrait.
    pub const PORTRAIT: &str = "portrait";
    /// Task: a character audition video.
    pub const AUDITION: &str = "audition";
    /// Task: a scene storyboard.
    pub const STORYBOARD: &str = "storyboard";
    /// Task: a scene clip.
    pub const CLIP: &str = "clip";
    /// Task: the drama cover.
    pub const COVER: &str = "cover";
    /// Task: an episode's clips stitched into one video.
    pub const STITCH: &str = "stitch";
    /// Group: a character's or an episode's nodes.
    pub const GROUP: &str = "group";
}

/// Resource classes (their concurrency limits hold across every worker process).
pub mod class {
    /// Language-model calls.
    pub const SCRIPT: &str = "script";
    /// Image generation.
    pub const IMAGE: &str = "image";
    /// Video generation.
    pub const VIDEO: &str = "video";
    /// ffmpeg.
    pub const STITCH: &str = "stitch";
}

/// The wire type of a job (`JobStatusRecord.type`): the one its payload names, where the old
/// server gave the request that started it its own type (an audition, an episode's
/// generation), otherwise the type of its kind.
pub fn job_type_of(kind: &str, payload: &serde_json::Value) -> JobType {
    payload["type"]
        .as_str()
        .and_then(JobType::parse)
        .unwrap_or_else(|| job_type(kind))
}

/// The wire type of a run or node kind.
pub fn job_type(kind: &str) -> JobType {
    match kind {
        kind::CREATE_DRAMA | kind::WRITE_DRAMA | kind::GENERATE => JobType::GenerateDrama,
        kind::IMPROVE_DRAMA => JobType::ImproveDrama,
        kind::CRITIQUE_DRAMA => JobType::CritiqueDrama,
        kind::WRITE_SCENES => JobType::WriteScenes,
        kind::AUDITION | kind::CLIP => JobType::GenerateVideo,
        kind::STITCH => JobType::StitchVideo,
        _ => JobType::GenerateImage,
    }
}

/// Payload of an image or video task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaTask {
    /// The drama.
    pub drama: String,
    /// The asset the result belongs to.
    pub asset: String,
    /// Content prompt (the provider adds the 9:16 framing).
    pub prompt: String,
    /// A short caption (the offline provider draws it).
    pub label: String,
    /// Assets whose objects are passed as reference images, in order.
    pub references: Vec<String>,
    /// Seconds, for videos.
    pub duration: Option<i64>,
    /// The entity url set with the asset's.
    pub target: EntityUrl,
}

/// Payload of a scene-writing task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenesTask {
    /// The drama.
    pub drama: String,
    /// The episode whose scenes are written.
    pub episode: String,
    /// Script model name (`None`: the default).
    pub model: Option<String>,
    /// Per-token prices frozen at submit (`None`: the per-call price stands; also what a
    /// task submitted before prices were frozen reads).
    #[serde(default)]
    pub token_prices: Option<drama_ai::TokenPrices>,
    /// Characters whose portraits are generated in this run (their storyboards wait for them).
    pub portraits_in_run: Vec<String>,
    /// The episode's stitch node, which gains dependencies on the new clips.
    pub stitch: Option<String>,
    /// The parent group of the new nodes.
    pub group: Option<String>,
}

/// Payload of a stitching task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StitchTask {
    /// The drama.
    pub drama: String,
    /// The episode.
    pub episode: String,
    /// The episode-video asset that records the result.
    pub asset: String,
}

/// Payload of a drama-writing task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DramaTask {
    /// Id of the drama to write.
    pub drama: String,
    /// The premise (create) or the original's premise (improve).
    pub premise: String,
    /// Script model name.
    pub model: Option<String>,
    /// Per-token prices frozen at submit (see [`ScenesTask::token_prices`]).
    #[serde(default)]
    pub token_prices: Option<drama_ai::TokenPrices>,
    /// For an improvement: the drama improved, and the feedback.
    pub improve: Option<ImproveSpec>,
    /// Storage key of a reference image uploaded with the premise.
    pub reference_key: Option<String>,
    /// Its public url (kept in `metadata.reference_image_url`).
    pub reference_url: Option<String>,
    /// Why a reference image sent with the premise was not kept (kept in
    /// `metadata.reference_image_dropped`). Absent from payloads without one, so theirs stay
    /// as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_dropped: Option<String>,
}

/// What an improvement starts from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImproveSpec {
    /// The original drama.
    pub original: String,
    /// The feedback to apply.
    pub feedback: String,
}

/// Payload of a critique task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CritiqueTask {
    /// The drama.
    pub drama: String,
    /// Script model name.
    pub model: Option<String>,
    /// Per-token prices frozen at submit (see [`ScenesTask::token_prices`]).
    #[serde(default)]
    pub token_prices: Option<drama_ai::TokenPrices>,
}
