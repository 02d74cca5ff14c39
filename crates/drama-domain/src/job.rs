use serde::{Deserialize, Serialize};

/// Job types as clients see them. New kinds are added; existing names never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobType {
    /// Write a drama from a premise (and its first portraits and cover).
    GenerateDrama,
    /// Write an improved copy of a drama from feedback.
    ImproveDrama,
    /// Critique a drama.
    CritiqueDrama,
    /// Generate an image (portrait, storyboard, cover) or a group of them.
    GenerateImage,
    /// Generate a video (clip, audition).
    GenerateVideo,
    /// Generate audio.
    GenerateAudio,
    /// Concatenate an episode's clips into one video.
    StitchVideo,
    /// Write the scenes of an episode.
    WriteScenes,
}

impl JobType {
    /// Every type, in declaration order.
    pub const ALL: [Self; 8] = [
        Self::GenerateDrama,
        Self::ImproveDrama,
        Self::CritiqueDrama,
        Self::GenerateImage,
        Self::GenerateVideo,
        Self::GenerateAudio,
        Self::StitchVideo,
        Self::WriteScenes,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GenerateDrama => "generate_drama",
            Self::ImproveDrama => "improve_drama",
            Self::CritiqueDrama => "critique_drama",
            Self::GenerateImage => "generate_image",
            Self::GenerateVideo => "generate_video",
            Self::GenerateAudio => "generate_audio",
            Self::StitchVideo => "stitch_video",
            Self::WriteScenes => "write_scenes",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// Job status as clients see it: the one vocabulary of it in the workspace. The engine
/// (`drama-jobs`, which knows no dramas) maps its finer states onto it (`JobState::coarse`), and
/// the use cases and both APIs show it; it lives here because both sides may depend on this
/// crate and on nothing of each other's for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Not started: waiting for a worker or for its dependencies.
    Pending,
    /// Running (or, for a group, some of its children are).
    Processing,
    /// Finished successfully.
    Completed,
    /// Failed, or skipped because something it needed failed; `error` says which.
    Failed,
    /// Cancelled by a user.
    Cancelled,
}

impl JobStatus {
    /// Every status, in declaration order.
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Processing,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether the job will not change again (unless resumed).
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_through_serde_and_parse() {
        for t in JobType::ALL {
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
            assert_eq!(JobType::parse(t.as_str()), Some(t));
        }
        for s in JobStatus::ALL {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobType::parse("generate_everything"), None);
    }

    #[test]
    fn the_peer_names_are_kept() {
        let peer = [
            "generate_drama",
            "improve_drama",
            "critique_drama",
            "generate_image",
            "generate_video",
            "generate_audio",
        ];
        for name in peer {
            assert!(JobType::parse(name).is_some(), "{name}");
        }
        for name in ["pending", "processing", "completed", "failed"] {
            assert!(JobStatus::parse(name).is_some(), "{name}");
        }
    }
}
