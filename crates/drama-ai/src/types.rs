//! Requests and results of the image, video and voice models.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::AiError;

/// An image given to a model as a reference (a character portrait, a storyboard).
#[derive(Clone, PartialEq, Eq)]
pub struct ReferenceImage {
    /// The image itself; always sent when the provider accepts inline images.
    pub bytes: Bytes,
    /// `image/png`, `image/jpeg`, `image/webp`.
    pub mime_type: String,
    /// A URL the provider can fetch (e.g. a presigned GET), for APIs that only take URLs.
    pub url: Option<String>,
}

impl ReferenceImage {
    /// A reference from bytes and their MIME type.
    pub fn new(bytes: impl Into<Bytes>, mime_type: impl Into<String>) -> Self {
        Self {
            bytes: bytes.into(),
            mime_type: mime_type.into(),
            url: None,
        }
    }

    /// Adds a fetchable URL.
    #[must_use]
    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// The image as a `data:` URL.
    pub fn data_url(&self) -> String {
        use base64::Engine as _;
        format!(
            "data:{};base64,{}",
            self.mime_type,
            base64::engine::general_purpose::STANDARD.encode(&self.bytes)
        )
    }
}

impl std::fmt::Debug for ReferenceImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceImage")
            .field("mime_type", &self.mime_type)
            .field("len", &self.bytes.len())
            .field("url", &self.url)
            .finish()
    }
}

/// What an image is for; it picks the prompt frame (and the offline layout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageKind {
    /// A character's front half-body portrait.
    Portrait,
    /// A scene's storyboard frame.
    Storyboard,
    /// The drama's cover poster.
    Cover,
}

impl ImageKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Portrait => "portrait",
            Self::Storyboard => "storyboard",
            Self::Cover => "cover",
        }
    }
}

/// Ask an image model for one 9:16 image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRequest {
    /// Portrait, storyboard or cover.
    pub kind: ImageKind,
    /// What to draw (the asset's prompt, or a builder of [`crate::prompts`]); the model adds
    /// the 9:16 frame and the style.
    pub prompt: String,
    /// A short caption: character name, scene id, drama title. The offline provider prints it.
    pub label: String,
    /// Reference images in order of importance (portraits for a storyboard, at most
    /// [`crate::ImageModel::max_references`]).
    pub references: Vec<ReferenceImage>,
}

/// Image bytes and their type.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedImage {
    /// The encoded image.
    pub bytes: Bytes,
    /// Its MIME type as sniffed from the bytes (`image/png`, `image/jpeg`, `image/webp`).
    pub mime_type: String,
}

impl std::fmt::Debug for GeneratedImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedImage")
            .field("mime_type", &self.mime_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// The two clip lengths the video models accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum VideoDuration {
    /// Ten seconds.
    #[serde(rename = "10")]
    Ten,
    /// Fifteen seconds.
    #[serde(rename = "15")]
    Fifteen,
}

impl VideoDuration {
    /// Seconds.
    pub fn seconds(self) -> u32 {
        match self {
            Self::Ten => 10,
            Self::Fifteen => 15,
        }
    }

    /// From an asset's `duration`.
    ///
    /// # Errors
    /// [`AiError::InvalidRequest`] for anything but 10 or 15.
    pub fn from_seconds(seconds: i64) -> Result<Self, AiError> {
        match seconds {
            10 => Ok(Self::Ten),
            15 => Ok(Self::Fifteen),
            other => Err(AiError::InvalidRequest(format!(
                "a clip lasts 10 or 15 seconds, got {other}"
            ))),
        }
    }
}

/// Ask a video model for one 9:16 clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoRequest {
    /// Action and camera movement.
    pub prompt: String,
    /// A short caption (scene id, character name); the offline provider prints it.
    pub label: String,
    /// The first frame to animate: the clip's storyboard, or a character's portrait.
    pub reference: Option<ReferenceImage>,
    /// 10 or 15 seconds.
    pub duration: VideoDuration,
}

/// A submitted video task. Store `task_id` before waiting: it is what a restarted worker polls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VideoTask {
    /// The provider's id.
    pub task_id: String,
    /// What was requested.
    pub duration: VideoDuration,
}

/// Where a finished video is.
#[derive(Clone, PartialEq, Eq)]
pub enum VideoOutput {
    /// At a URL (provider storage; usually expires).
    Url(String),
    /// Already in memory.
    Bytes {
        /// The file.
        bytes: Bytes,
        /// Its MIME type.
        mime_type: String,
    },
}

impl std::fmt::Debug for VideoOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Url(url) => f.debug_tuple("Url").field(url).finish(),
            Self::Bytes { bytes, mime_type } => f
                .debug_struct("Bytes")
                .field("mime_type", mime_type)
                .field("len", &bytes.len())
                .finish(),
        }
    }
}

/// The state of a video task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VideoStatus {
    /// Queued, not started.
    Pending,
    /// Rendering.
    Running {
        /// Percent done, when the provider says.
        progress: Option<u8>,
    },
    /// Finished.
    Done {
        /// Where the file is.
        output: VideoOutput,
    },
    /// Failed at the provider.
    Failed {
        /// The provider's reason, verbatim.
        reason: String,
    },
}

impl VideoStatus {
    /// `pending`, `running`, `done` or `failed`.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running { .. } => "running",
            Self::Done { .. } => "done",
            Self::Failed { .. } => "failed",
        }
    }
}

/// Video bytes and their type.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedVideo {
    /// The file.
    pub bytes: Bytes,
    /// `video/mp4` (or `video/quicktime`), sniffed from the bytes.
    pub mime_type: String,
}

impl std::fmt::Debug for GeneratedVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedVideo")
            .field("mime_type", &self.mime_type)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Ask a voice model to speak a line in a character's voice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceRequest {
    /// What to say.
    pub text: String,
    /// The character's `voice_description`.
    pub voice_description: String,
}

/// Audio bytes and their type.
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedAudio {
    /// The file.
    pub bytes: Bytes,
    /// `audio/wav`.
    pub mime_type: String,
    /// Length in milliseconds.
    pub duration_ms: u32,
}

impl std::fmt::Debug for GeneratedAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedAudio")
            .field("mime_type", &self.mime_type)
            .field("len", &self.bytes.len())
            .field("duration_ms", &self.duration_ms)
            .finish()
    }
}

/// The MIME type of an image or video from its first bytes, if it is one we know.
pub fn sniff_mime(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WAVE" {
        Some("audio/wav")
    } else if bytes.starts_with(b"GIF8") {
        Some("image/gif")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        if &bytes[8..12] == b"qt  " {
            Some("video/quicktime")
        } else {
            Some("video/mp4")
        }
    } else if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        Some("video/webm")
    } else {
        None
    }
}
/// Rejects requests no image model should receive.
pub(crate) fn check_image_request(request: &ImageRequest, max: usize) -> Result<(), AiError> {
    if request.prompt.trim().is_empty() {
        return Err(AiError::InvalidRequest(
            "the image prompt is empty".to_owned(),
        ));
    }
    if request.references.len() > max {
        return Err(AiError::InvalidRequest(format!(
            "{} reference images; at most {max}",
            request.references.len()
        )));
    }
    if let Some(bad) = request.references.iter().find(|r| r.bytes.is_empty()) {
        return Err(AiError::InvalidRequest(format!(
            "an empty reference image ({})",
            bad.mime_type
        )));
    }
    Ok(())
}
