//! The structured-output shapes the language models fill, and their JSON schemas.
//!
//! The drama shape follows the peer's "Lite" models (peer-contract §1.4). Scenes use a stricter
//! shape than the peer's free asset list: one `storyboard` and one `clip` object per scene, so a
//! model cannot return two images or forget the video; [`crate::validate`] turns them into the
//! domain's `Asset`s with the peer's `depends_on` convention.

use serde::Deserialize;
use serde_json::{Value, json};

/// A drama as the model writes it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct DramaLite {
    pub title: String,
    pub description: String,
    pub characters: Vec<CharacterLite>,
    pub episodes: Vec<EpisodeLite>,
}

/// A character as the model writes it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CharacterLite {
    pub id: String,
    pub name: String,
    pub description: String,
    pub gender: String,
    pub voice_description: String,
    pub main: bool,
    #[serde(default)]
    pub premise_url: Option<String>,
}

/// An episode outline as the model writes it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EpisodeLite {
    pub id: String,
    pub title: String,
    pub description: String,
}

/// The scenes of one episode as the model writes them.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct EpisodeScenesLite {
    pub scenes: Vec<SceneLite>,
}

/// One scene with its storyboard and clip.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct SceneLite {
    pub id: String,
    pub description: String,
    pub storyboard: StoryboardLite,
    pub clip: ClipLite,
}

/// The scene's still frame.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct StoryboardLite {
    pub id: String,
    pub prompt: String,
    pub character_ids: Vec<String>,
}

/// The scene's video clip.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ClipLite {
    pub id: String,
    pub prompt: String,
    pub duration: i64,
}

fn string(description: &str) -> Value {
    json!({"type": "string", "description": description})
}

fn object(properties: Value, description: &str) -> Value {
    let required: Vec<Value> = properties
        .as_object()
        .map(|p| p.keys().map(|k| Value::String(k.clone())).collect())
        .unwrap_or_default();
    json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "required": required,
        "additionalProperties": false
    })
}

/// Name of the drama schema in OpenAI's `json_schema` response format.
pub(crate) const DRAMA_SCHEMA_NAME: &str = "drama_script";
/// Name of the scenes schema in OpenAI's `json_schema` response format.
pub(crate) const SCENES_SCHEMA_NAME: &str = "episode_scenes";

/// JSON Schema of [`DramaLite`], strict: every property required, no extra keys.
pub(crate) fn drama_schema() -> Value {
    let character = object(
        json!({
            "id": string("short unique id of [a-z0-9-], e.g. char-mara"),
            "name": string("display name"),
            "description": string("appearance (face, hair, build, clothes, colours) and personality, concrete enough to draw the same person every time"),
            "gender": {"type": "string", "enum": ["male", "female", "other"]},
            "voice_description": string("tone, pitch, pace, accent, emotional quality and speaking style"),
            "main": {"type": "boolean", "description": "true for the 1 or 2 leads only"},
            "premise_url": {"type": ["string", "null"], "description": "an image URL the premise gives for this character, else null"}
        }),
        "a character",
    );
    let episode = object(
        json!({
            "id": string("short unique id of [a-z0-9-], e.g. ep1"),
            "title": string("episode title"),
            "description": string("the whole arc of the episode and its key beats")
        }),
        "an episode outline; scenes are written later",
    );
    object(
        json!({
            "title": string("drama title"),
            "description": string("one-paragraph logline"),
            "characters": {"type": "array", "items": character, "description": "1-2 main characters plus supporting ones"},
            "episodes": {"type": "array", "items": episode, "description": "episodes in order"}
        }),
        "a short vertical drama",
    )
}

/// JSON Schema of [`EpisodeScenesLite`], strict.
pub(crate) fn scenes_schema() -> Value {
    let storyboard = object(
        json!({
            "id": string("unique asset id, e.g. <scene id>-storyboard"),
            "prompt": string("the still frame: composition, framing, lighting, mood, who is where"),
            "character_ids": {"type": "array", "items": {"type": "string"}, "description": "ids of the characters visible, at most 3"}
        }),
        "the scene's storyboard image",
    );
    let clip = object(
        json!({
            "id": string("unique asset id, e.g. <scene id>-clip"),
            "prompt": string("the motion: action, dialogue delivery, camera movement"),
            "duration": {"type": "integer", "enum": [10, 15], "description": "seconds"}
        }),
        "the scene's video clip, animated from the storyboard",
    );
    let scene = object(
        json!({
            "id": string("unique scene id, e.g. <episode id>-s1"),
            "description": string("what happens: action and dialogue"),
            "storyboard": storyboard,
            "clip": clip
        }),
        "one scene",
    );
    object(
        json!({"scenes": {"type": "array", "items": scene, "description": "3 to 5 scenes in order"}}),
        "the scenes of one episode",
    )
}
