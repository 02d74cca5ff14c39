//! A process-local cache of complete dramas, validated against the stored version on every
//! read: a hit costs one index lookup instead of aggregating the whole tree, and can never
//! serve a version older than the database's (writes from any process bump the version).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use drama_dal::StoredDrama;
use drama_domain::DramaId;

/// Default weight limit of the cache, in bytes of drama JSON.
pub const DEFAULT_CACHE_BYTES: u64 = 32 * 1024 * 1024;

#[derive(Clone)]
pub(crate) struct DramaCache {
    entries: moka::sync::Cache<DramaId, Arc<StoredDrama>>,
}

impl std::fmt::Debug for DramaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DramaCache")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

impl DramaCache {
    pub(crate) fn new(max_bytes: u64) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, d: &Arc<StoredDrama>| {
                    // Every character of the document is about one byte of memory and more;
                    // the text fields dominate, so their length is a fair weight.
                    u32::try_from(weight(&d.drama)).unwrap_or(u32::MAX)
                })
                .build(),
        }
    }

    /// The cached drama if it is at `version` of the incarnation created at `created_at`.
    pub(crate) fn get(
        &self,
        id: &DramaId,
        version: i64,
        created_at: DateTime<Utc>,
    ) -> Option<Arc<StoredDrama>> {
        self.entries
            .get(id)
            .filter(|d| d.version == version && d.created_at == created_at)
    }

    pub(crate) fn put(&self, stored: &StoredDrama) {
        self.entries
            .insert(stored.drama.id.clone(), Arc::new(stored.clone()));
    }

    pub(crate) fn forget(&self, id: &DramaId) {
        self.entries.invalidate(id);
    }
}

/// The memory an entry holds, approximately: the drama as JSON (every field, `metadata` and
/// the assets' provenance included, so a drama cannot hide its size in a field the weight
/// skips) plus the bookkeeping of each node (`String` and `Vec` headers, map entries).
pub(crate) fn weight(d: &drama_domain::Drama) -> usize {
    /// Counts bytes without keeping them.
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    const NODE: usize = 128;
    let mut count = Count(0);
    // Serialising a drama cannot fail (string keys, no non-finite floats in `Value`); were it
    // to, the entry weighs the most a `u32` weight can say and is the first to go.
    if serde_json::to_writer(&mut count, d).is_err() {
        return usize::MAX;
    }
    let nodes = 1
        + d.assets.len()
        + d.characters
            .iter()
            .map(|c| 1 + c.assets.len())
            .sum::<usize>()
        + d.episodes
            .iter()
            .map(|e| {
                1 + e.assets.len() + e.scenes.iter().map(|s| 1 + s.assets.len()).sum::<usize>()
            })
            .sum::<usize>();
    count.0.saturating_add(nodes.saturating_mul(NODE))
}

#[cfg(test)]
mod tests {
    use super::weight;

    #[test]
    fn metadata_and_every_field_count() {
        let plain: drama_domain::Drama =
            serde_json::from_value(drama_testkit::builders::drama_json("w", 1, 1, 1)).unwrap();
        let mut heavy = plain.clone();
        heavy.metadata = Some(serde_json::json!({"blob": "x".repeat(1_000_000)}));
        assert!(weight(&heavy) >= weight(&plain) + 1_000_000);
        let mut titled = plain.clone();
        titled.title = "t".repeat(100_000);
        assert!(weight(&titled) >= weight(&plain) + 99_000);
    }
}
