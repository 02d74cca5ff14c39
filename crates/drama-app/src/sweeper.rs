//! Deletes objects that no record refers to any more (and, on the same round, API keys that
//! stopped working long ago).

use std::time::Duration;

use drama_assets::ObjectKey;

use crate::App;

/// How long a recorded orphan waits before it is swept: longer than any generation takes
/// between recording its object's key and attaching the object.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

impl App {
    /// Claims up to `limit` orphaned keys and deletes their objects. Keys whose deletion
    /// fails are recorded again for a later sweep. Returns how many objects were deleted.
    ///
    /// A key is deleted only on behalf of the owner it was recorded with: it must belong to
    /// that owner and drama ([`drama_domain::storage_key_belongs`]) and must not be an
    /// asset-library object. The repository claims no other; a claimed key that fails the
    /// check anyway is left alone and logged, never deleted.
    #[tracing::instrument(skip_all)]
    pub async fn sweep_orphans(&self, limit: u32) -> usize {
        let orphans = match self.store.claim_orphans(limit, ORPHAN_GRACE).await {
            Ok(orphans) => orphans,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim orphaned objects");
                return 0;
            }
        };
        let mut deleted = 0;
        for orphan in orphans {
            if !orphan.is_deletable() {
                tracing::error!(
                    object.key = %orphan.storage_key,
                    owner = %orphan.owner,
                    drama.id = %orphan.drama,
                    "an orphaned key does not belong to its recorded owner; not deleting it"
                );
                continue;
            }
            let result = match ObjectKey::parse(orphan.storage_key.clone()) {
                Ok(object) => self.assets.delete(&object).await,
                // A key the store cannot even address has no object to delete.
                Err(_) => Ok(()),
            };
            match result {
                Ok(()) => deleted += 1,
                Err(e) => {
                    tracing::warn!(error = %e, object.key = %orphan.storage_key, "deleting an orphaned object failed");
                    let again = self
                        .store
                        .record_orphans(
                            orphan.owner,
                            &orphan.drama,
                            std::slice::from_ref(&orphan.storage_key),
                            "delete failed; retrying",
                        )
                        .await;
                    if let Err(e) = again {
                        tracing::error!(error = %e, object.key = %orphan.storage_key, "an orphaned object could not be recorded again");
                    }
                }
            }
        }
        deleted
    }

    /// Sweeps orphans, and deletes API keys that stopped working long ago
    /// ([`App::purge_lapsed_keys`]), every `period` until the task is dropped.
    pub async fn run_sweeper(self, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            while self.sweep_orphans(100).await == 100 {}
            self.purge_lapsed_keys().await;
        }
    }
}
