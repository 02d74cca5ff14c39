//! How many calls the offline provider answered, by kind: what a paid provider would have
//! billed. Tests and benchmarks compare it with the number of tasks to prove that a retried
//! commit never calls the provider again.

use std::sync::atomic::{AtomicU64, Ordering};

/// Calls answered by one offline provider since it was made, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OfflineCalls {
    /// Script calls: dramas written or improved, critiques, episode scenes.
    pub scripts: u64,
    /// Images drawn (portraits, storyboards, covers).
    pub images: u64,
    /// Video tasks submitted (clips, auditions); polls and downloads are free.
    pub videos: u64,
    /// Speech synthesised.
    pub voices: u64,
}

impl OfflineCalls {
    /// Image and video calls: one per media task that needed the provider.
    pub fn media(&self) -> u64 {
        self.images + self.videos
    }
}

#[derive(Debug, Default)]
pub(super) struct CallCounter {
    scripts: AtomicU64,
    images: AtomicU64,
    videos: AtomicU64,
    voices: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Call {
    Script,
    Image,
    Video,
    Voice,
}

impl CallCounter {
    pub(super) fn count(&self, call: Call) {
        // One line per call: a process killed before it can log its totals still leaves the
        // calls it made in its log.
        tracing::debug!(call = ?call, "offline provider call");
        let counter = match call {
            Call::Script => &self.scripts,
            Call::Image => &self.images,
            Call::Video => &self.videos,
            Call::Voice => &self.voices,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> OfflineCalls {
        OfflineCalls {
            scripts: self.scripts.load(Ordering::Relaxed),
            images: self.images.load(Ordering::Relaxed),
            videos: self.videos.load(Ordering::Relaxed),
            voices: self.voices.load(Ordering::Relaxed),
        }
    }
}
