//! What a call consumed, who produced it, and what it costs in credits.

use std::ops::{Add, AddAssign};

use serde::{Deserialize, Serialize};

use crate::error::Provider;

/// What one call consumed at the provider, summed over retries and the repair attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Prompt tokens (text models; image models when the provider reports them).
    pub input_tokens: u64,
    /// Output tokens, including thinking tokens the provider bills.
    pub output_tokens: u64,
    /// Images produced.
    pub images: u32,
    /// Seconds of video requested from (and billed by) the provider.
    pub video_seconds: u32,
    /// Seconds of speech produced.
    pub audio_seconds: u32,
    /// HTTP requests made, retries and the repair attempt included.
    pub requests: u32,
}

impl Add for Usage {
    type Output = Self;
    fn add(mut self, rhs: Self) -> Self {
        self += rhs;
        self
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, rhs: Self) {
        self.input_tokens += rhs.input_tokens;
        self.output_tokens += rhs.output_tokens;
        self.images += rhs.images;
        self.video_seconds += rhs.video_seconds;
        self.audio_seconds += rhs.audio_seconds;
        self.requests += rhs.requests;
    }
}

/// Which provider and model actually produced an output (provenance).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The backend.
    pub provider: Provider,
    /// The model name sent to it (`offline` for the offline provider).
    pub model: String,
}

impl ModelInfo {
    /// Provider and model.
    pub fn new(provider: Provider, model: impl Into<String>) -> Self {
        Self {
            provider,
            model: model.into(),
        }
    }
}

/// An output with its usage and provenance; every trait method returns one.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated<T> {
    /// The result.
    pub output: T,
    /// What it consumed.
    pub usage: Usage,
    /// Who made it.
    pub model: ModelInfo,
    /// [`crate::prompts::PROMPT_VERSION`] for model calls, so an input hash changes when the
    /// prompts change.
    pub prompt_version: &'static str,
}

impl<T> Generated<T> {
    /// Replaces the output, keeping usage and provenance.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Generated<U> {
        Generated {
            output: f(self.output),
            usage: self.usage,
            model: self.model,
            prompt_version: self.prompt_version,
        }
    }
}

/// The kinds of calls a pipeline pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    /// [`crate::ScriptModel::generate_drama`].
    GenerateDrama,
    /// [`crate::ScriptModel::improve_drama`].
    ImproveDrama,
    /// [`crate::ScriptModel::critique_drama`].
    CritiqueDrama,
    /// [`crate::ScriptModel::write_episode_scenes`].
    WriteEpisodeScenes,
    /// [`crate::ImageModel::generate_image`].
    Image,
    /// A finished video task ([`crate::VideoModel`]); priced per second.
    Video,
    /// [`crate::VoiceModel::speak`]; priced per started 10 seconds.
    Voice,
}

/// Credits (the user's `tokens` balance) charged per call kind.
///
/// The defaults follow provider list prices at roughly one credit per US$0.01, rounded up,
/// so a full drama's price is dominated by video as it is at the providers. Calls served by
/// the offline provider cost nothing. Failed calls should cost nothing either: charge when a
/// call returns `Ok` (for video, when the task is done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CostTable {
    /// Writing a drama from a premise.
    pub generate_drama: u32,
    /// Rewriting a drama from feedback.
    pub improve_drama: u32,
    /// A critique.
    pub critique_drama: u32,
    /// Writing one episode's scenes.
    pub write_episode_scenes: u32,
    /// One image (portrait, storyboard, cover).
    pub image: u32,
    /// One second of video.
    pub video_per_second: u32,
    /// Every started 10 seconds of speech.
    pub voice_per_10_seconds: u32,
}

impl Default for CostTable {
    fn default() -> Self {
        Self {
            generate_drama: 10,
            improve_drama: 10,
            critique_drama: 3,
            write_episode_scenes: 8,
            image: 4,
            video_per_second: 10,
            voice_per_10_seconds: 1,
        }
    }
}

impl CostTable {
    /// Every price 0 (`PRICING=off`).
    pub fn free() -> Self {
        Self {
            generate_drama: 0,
            improve_drama: 0,
            critique_drama: 0,
            write_episode_scenes: 0,
            image: 0,
            video_per_second: 0,
            voice_per_10_seconds: 0,
        }
    }

    /// The price of a call before it is made (`video_seconds` is the requested duration).
    pub fn estimate(&self, kind: CallKind, provider: Provider, video_seconds: u32) -> u32 {
        if provider == Provider::Offline {
            return 0;
        }
        match kind {
            CallKind::GenerateDrama => self.generate_drama,
            CallKind::ImproveDrama => self.improve_drama,
            CallKind::CritiqueDrama => self.critique_drama,
            CallKind::WriteEpisodeScenes => self.write_episode_scenes,
            CallKind::Image => self.image,
            CallKind::Video => self.video_per_second.saturating_mul(video_seconds),
            CallKind::Voice => self.voice_per_10_seconds,
        }
    }

    /// The price of a call that succeeded, from what it reported.
    pub fn charge<T>(&self, kind: CallKind, generated: &Generated<T>) -> u32 {
        if generated.model.provider == Provider::Offline {
            return 0;
        }
        match kind {
            CallKind::Video => self
                .video_per_second
                .saturating_mul(generated.usage.video_seconds),
            CallKind::Voice => self
                .voice_per_10_seconds
                .saturating_mul(generated.usage.audio_seconds.div_ceil(10).max(1)),
            CallKind::Image => self.image.saturating_mul(generated.usage.images.max(1)),
            other => self.estimate(other, generated.model.provider, 0),
        }
    }
}
