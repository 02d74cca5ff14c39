//! `DramaFeed` on PostgreSQL: `LISTEN drama_changes`, fed by the `dramas_announce_change`
//! trigger, so a change committed by any process reaches every listener.

use async_trait::async_trait;
use drama_dal::{DramaChange, DramaChangeStream, DramaFeed, RepoError};
use futures::StreamExt as _;
use sqlx::postgres::PgListener;

use crate::PgStore;
use crate::error::db;

/// The channel the trigger notifies.
const CHANNEL: &str = "drama_changes";

#[async_trait]
impl DramaFeed for PgStore {
    async fn drama_changes(&self) -> Result<DramaChangeStream, RepoError> {
        let mut listener = PgListener::connect_with(&self.pool).await.map_err(db)?;
        listener.listen(CHANNEL).await.map_err(db)?;
        Ok(listener
            .into_stream()
            .filter_map(|n| async move {
                match n {
                    Ok(n) => match serde_json::from_str::<DramaChange>(n.payload()) {
                        Ok(change) => Some(change),
                        Err(e) => {
                            tracing::warn!(error = %e, payload = n.payload(), "unreadable drama notice");
                            None
                        }
                    },
                    // The listener reconnects by itself on the next poll; notices sent while
                    // it was away are lost, which subscribers tolerate (they re-read).
                    Err(e) => {
                        tracing::warn!(error = %e, "drama change listener failed; reconnecting");
                        None
                    }
                }
            })
            .boxed())
    }
}
