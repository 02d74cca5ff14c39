//! Deletes objects that no record refers to any more.

use std::time::Duration;

use drama_assets::ObjectKey;

use crate::App;

/// How long a recorded orphan waits before it is swept: longer than any generation takes
/// between recording its object's key and attaching the object.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(3600);

impl App {
    /// Claims up to `limit` orphaned keys and deletes their objects. Keys whose deletion
    /// fails are recorded again for a later sweep. Returns how many objects were deleted.
    #[tracing::instrument(skip_all)]
    pub async fn sweep_orphans(&self, limit: u32) -> usize {
        let keys = match self.store.claim_orphans(limit, ORPHAN_GRACE).await {
            Ok(keys) => keys,
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim orphaned objects");
                return 0;
            }
        };
        let mut failed = Vec::new();
        let mut deleted = 0;
        for key in keys {
            let result = match ObjectKey::parse(key.clone()) {
                Ok(object) => self.assets.delete(&object).await,
                // A key the store cannot even address has no object to delete.
                Err(_) => Ok(()),
            };
            match result {
                Ok(()) => deleted += 1,
                Err(e) => {
                    tracing::warn!(error = %e, object.key = %key, "deleting an orphaned object failed");
                    failed.push(key);
                }
            }
        }
        if !failed.is_empty()
            && let Err(e) = self
                .store
                .record_orphans(&failed, "delete failed; retrying")
                .await
        {
            tracing::error!(error = %e, keys = ?failed, "orphaned objects could not be recorded again");
        }
        deleted
    }

    /// Sweeps orphans every `period` until the task is dropped.
    pub async fn run_sweeper(self, period: Duration) {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            while self.sweep_orphans(100).await == 100 {}
        }
    }
}
