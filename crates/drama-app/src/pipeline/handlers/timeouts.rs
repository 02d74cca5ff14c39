//! How long an attempt of each kind of task may run: derived from the AI settings, so that a
//! provider call the settings allow is never cut off mid-way (and paid again by the next attempt).

use std::time::Duration;

/// How long an attempt of each kind of task may run before the worker cuts it off.
///
/// At least the provider work the AI settings allow (every try of every call running to its
/// timeout, with the longest pauses between them) and a minute more for the rest of the
/// attempt (references, upload, the completing transaction): an attempt cut off in the middle
/// of a provider call drops a call that is billed anyway, and the next attempt pays again.
/// Never less than the fixed limits of before (10 minutes for scripts and images, 45 for
/// videos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandlerTimeouts {
    pub script: Duration,
    pub image: Duration,
    pub video: Duration,
}

impl HandlerTimeouts {
    /// The rest of an attempt, around its provider work.
    const MARGIN: Duration = Duration::from_secs(60);

    pub(crate) fn from_settings(settings: &drama_ai::AiSettings) -> Self {
        let at_least = |work: Duration, minutes: u64| {
            work.saturating_add(Self::MARGIN)
                .max(Duration::from_secs(minutes * 60))
        };
        Self {
            script: at_least(settings.longest_script_work(), 10),
            image: at_least(settings.longest_image_work(), 10),
            video: at_least(settings.longest_video_work(), 45),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use drama_ai::AiSettings;

    use super::HandlerTimeouts;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn handler_timeouts_outlast_the_provider_work_the_settings_allow() {
        let defaults = AiSettings::default();
        let t = HandlerTimeouts::from_settings(&defaults);
        // A script: its answer and a repair, each three tries of 180 s with two pauses of up
        // to 60 s (a Retry-After) between them: 22 minutes.
        assert!(
            t.script > Duration::from_secs(2 * (3 * 180 + 2 * 60)),
            "{t:?}"
        );
        // An image: three tries of 120 s, then its download, three tries of 60 s.
        assert!(
            t.image > Duration::from_secs(3 * 120 + 3 * 60 + 4 * 60),
            "{t:?}"
        );
        assert!(t.video >= 45 * MINUTE, "{t:?}");

        let patient = AiSettings {
            text_timeout_secs: 600,
            max_retries: 4,
            video_deadline_secs: 3600,
            ..AiSettings::default()
        };
        let t = HandlerTimeouts::from_settings(&patient);
        assert!(t.script > Duration::from_secs(2 * 5 * 600), "{t:?}");
        assert!(t.video > Duration::from_secs(3600), "{t:?}");

        // Quick settings keep the limits of before.
        let quick = AiSettings {
            max_retries: 0,
            text_timeout_secs: 10,
            image_timeout_secs: 10,
            download_timeout_secs: 10,
            video_deadline_secs: 60,
            ..AiSettings::default()
        };
        let t = HandlerTimeouts::from_settings(&quick);
        assert_eq!(
            (t.script, t.image, t.video),
            (10 * MINUTE, 10 * MINUTE, 45 * MINUTE)
        );
    }
}
