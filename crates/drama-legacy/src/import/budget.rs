//! The bound on the bytes of old drama documents held at once across an import's jobs.
//!
//! A document is held from before its bytes are read until its drama is written: its bytes,
//! the parsed tree and the drama all live that long. Without a bound, `--jobs 64` files of up
//! to [`MAX_FILE_BYTES`](crate::MAX_FILE_BYTES) each could hold 4 GiB at once; with it, the
//! documents held at once add up to at most the budget, and a document larger than the whole
//! budget waits until it has the budget to itself.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Bytes per permit: a request is a `u32` of permits, so a budget of any size fits.
const UNIT: u64 = 1024;

/// The default budget: 256 MiB.
pub const DEFAULT_MEMORY_BUDGET: u64 = 256 * 1024 * 1024;

/// Permits for the bytes of documents held at once, and what was held.
pub(crate) struct MemoryBudget {
    permits: Semaphore,
    /// Permits the whole budget is.
    units: u32,
    /// Bytes of documents held now, and the most ever held at once.
    held: AtomicU64,
    peak: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `bytes` (at least one permit).
    pub(crate) fn new(bytes: u64) -> Self {
        let most = u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX);
        let units = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, most);
        Self {
            permits: Semaphore::new(units as usize),
            units,
            held: AtomicU64::new(0),
            peak: AtomicU64::new(0),
        }
    }

    /// The budget in bytes.
    pub(crate) fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// The most bytes of documents held at once so far.
    pub(crate) fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Waits until a document of `size` bytes fits beside those held; one larger than the
    /// whole budget waits for all of it. Waiters are served in order, so a large document is
    /// not starved by small ones arriving after it.
    pub(crate) async fn hold(&self, size: u64) -> Held<'_> {
        let units = u32::try_from(size.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .min(self.units);
        // The semaphore is never closed, so this always holds a permit.
        let permit = self.permits.acquire_many(units).await.ok();
        Held {
            budget: self,
            _permit: permit,
            units,
            bytes: 0,
        }
    }
}

/// A share of the budget, given back when dropped.
pub(crate) struct Held<'a> {
    budget: &'a MemoryBudget,
    _permit: Option<SemaphorePermit<'a>>,
    units: u32,
    /// Bytes of the document counted against it.
    bytes: u64,
}

impl Held<'_> {
    /// Whether a document of `size` bytes may be read under this share: it fits, or the
    /// share is the whole budget.
    pub(crate) fn covers(&self, size: u64) -> bool {
        self.units == self.budget.units || size <= u64::from(self.units) * UNIT
    }

    /// Counts the `size` bytes of the document read under this share (for the report's
    /// peak).
    pub(crate) fn count(&mut self, size: u64) {
        let grown = size.saturating_sub(self.bytes);
        self.bytes = self.bytes.max(size);
        let now = self.budget.held.fetch_add(grown, Ordering::Relaxed) + grown;
        self.budget.peak.fetch_max(now, Ordering::Relaxed);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.budget.held.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_permits_held_at_once_never_pass_the_budget() {
        let budget = Arc::new(MemoryBudget::new(4 * MIB));
        let units = budget.units;
        let in_use = Arc::new(AtomicU64::new(0));
        let most = Arc::new(AtomicU64::new(0));
        // 64 workers as `--jobs 64`, documents of 0.5 to 3 MiB and two larger than the budget.
        let sizes: Vec<u64> = (0..64u64)
            .map(|i| match i {
                7 | 40 => 9 * MIB,
                _ => MIB / 2 + (i % 6) * MIB / 2,
            })
            .collect();
        let tasks: Vec<_> = sizes
            .into_iter()
            .map(|size| {
                let (budget, in_use, most) = (budget.clone(), in_use.clone(), most.clone());
                tokio::spawn(async move {
                    let mut held = budget.hold(size).await;
                    assert!(held.covers(size));
                    held.count(size);
                    let permits = u64::from(held.units);
                    let now = in_use.fetch_add(permits, Ordering::SeqCst) + permits;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    in_use.fetch_sub(permits, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= u64::from(units));
        // Bytes held: a document larger than the budget held it alone.
        assert_eq!(budget.peak(), 9 * MIB);
        assert_eq!(budget.held.load(Ordering::SeqCst), 0);
        assert_eq!(budget.permits.available_permits(), units as usize);
    }

    #[tokio::test]
    async fn small_documents_share_the_budget_and_a_large_one_waits_for_all_of_it() {
        let budget = MemoryBudget::new(4 * MIB);
        let a = budget.hold(MIB).await;
        let b = budget.hold(2 * MIB).await;
        assert!(!a.covers(2 * MIB) && b.covers(2 * MIB));
        assert_eq!(budget.permits.available_permits(), 1024);
        let large = budget.hold(64 * MIB);
        tokio::pin!(large);
        assert!(
            futures::poll!(large.as_mut()).is_pending(),
            "waits for all of it"
        );
        drop(a);
        assert!(futures::poll!(large.as_mut()).is_pending());
        drop(b);
        let large = large.await;
        assert!(large.covers(64 * MIB), "the whole budget covers any size");
        assert_eq!(budget.permits.available_permits(), 0);
    }
}
