//! The pause schedule between attempts, one type for every retry of the workspace: job
//! retries, provider calls, completions, notification feeds and key-set fetches. It lives in
//! the innermost crate because each of those layers needs it and none may depend on another.

use std::time::Duration;

/// Exponential backoff: the pause before retry `n` (0-based) is `initial × multiplier^n`,
/// capped at `max`, then spread by `jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Pause before the first retry.
    pub initial: Duration,
    /// Longest pause, before the spread.
    pub max: Duration,
    /// Growth per retry; values below 1 count as 1.
    pub multiplier: f64,
    /// How a pause is spread.
    pub jitter: Jitter,
}

/// How a pause is spread, so that the retries of many callers do not arrive together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Jitter {
    /// The schedule exactly.
    None,
    /// Uniform within this fraction either side of the schedule (0.25: 75–125 %).
    Around(f64),
    /// Uniform between `1 − fraction` of the schedule and the schedule, so a pause never
    /// exceeds `max` (0.5: half to full).
    Below(f64),
}

impl Backoff {
    /// Doubling from `initial` up to `max`, without spread.
    pub const fn doubling(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            multiplier: 2.0,
            jitter: Jitter::None,
        }
    }

    /// The pause before retry `retry` (0-based: 0 follows the first failure).
    pub fn delay(&self, retry: u32) -> Duration {
        let exponent = i32::try_from(retry).unwrap_or(i32::MAX).min(64);
        let schedule = (self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(exponent))
            .min(self.max.as_secs_f64());
        let factor = match self.jitter {
            Jitter::None => 1.0,
            Jitter::Around(fraction) => {
                1.0 + fraction.clamp(0.0, 1.0) * (rand::random::<f64>() * 2.0 - 1.0)
            }
            Jitter::Below(fraction) => 1.0 - fraction.clamp(0.0, 1.0) * rand::random::<f64>(),
        };
        Duration::try_from_secs_f64((schedule * factor).max(0.0)).unwrap_or(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_to_their_cap() {
        let b = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(10));
        let pauses: Vec<u64> = (0..6).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
        let flat = Backoff {
            multiplier: 0.5,
            ..b
        };
        assert_eq!(flat.delay(3), Duration::from_secs(1));
    }

    #[test]
    fn spreads_stay_in_their_bounds() {
        let b = Backoff::doubling(Duration::from_secs(1), Duration::from_secs(10));
        let around = Backoff {
            jitter: Jitter::Around(0.5),
            ..b
        };
        let below = Backoff {
            jitter: Jitter::Below(0.5),
            ..b
        };
        for _ in 0..200 {
            let d = around.delay(2).as_secs_f64();
            assert!((2.0..=6.0).contains(&d), "{d}");
            let d = below.delay(2).as_secs_f64();
            assert!((2.0..=4.0).contains(&d), "{d}");
            let d = below.delay(9).as_secs_f64();
            assert!((5.0..=10.0).contains(&d), "{d}");
        }
    }
}
