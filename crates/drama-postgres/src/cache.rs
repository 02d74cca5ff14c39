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

fn weight(d: &drama_domain::Drama) -> usize {
    let assets = |a: &[drama_domain::Asset]| a.iter().map(|a| a.prompt.len() + 64).sum::<usize>();
    d.description.len()
        + d.premise.len()
        + assets(&d.assets)
        + d.characters
            .iter()
            .map(|c| c.description.len() + c.voice_description.len() + assets(&c.assets) + 64)
            .sum::<usize>()
        + d.episodes
            .iter()
            .map(|e| {
                e.description.len()
                    + assets(&e.assets)
                    + e.scenes
                        .iter()
                        .map(|s| s.description.len() + assets(&s.assets) + 64)
                        .sum::<usize>()
            })
            .sum::<usize>()
        + 256
}
