//! One subscription to the job engine's notifications per process, fanned out to every
//! Server-Sent-Events stream and GraphQL subscription of the process. Notifications only say
//! "run R has new events up to E"; subscribers read the events themselves from the durable
//! log, so a lost notification or a lagging subscriber never loses an event.

use std::sync::Arc;
use std::time::Duration;

use drama_app::App;
use drama_jobs::Notification;
use futures::StreamExt as _;
use tokio::sync::{OnceCell, broadcast};

/// The process-wide feed.
pub struct Realtime {
    tx: broadcast::Sender<Notification>,
    started: OnceCell<()>,
}

impl Default for Realtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Realtime {
    /// A feed that starts listening on first use.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(1024);
        Self {
            tx,
            started: OnceCell::new(),
        }
    }

    /// A receiver of every notification from now on (starting the listener if needed).
    pub async fn subscribe(self: &Arc<Self>, app: &App) -> broadcast::Receiver<Notification> {
        let rx = self.tx.subscribe();
        self.started
            .get_or_init(|| async {
                tokio::spawn(listen(app.clone(), self.tx.clone()));
            })
            .await;
        rx
    }
}

/// Forwards the engine's notifications; reconnects with backoff when the stream ends.
async fn listen(app: App, tx: broadcast::Sender<Notification>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match app.jobs().subscribe().await {
            Ok(mut stream) => {
                backoff = Duration::from_millis(100);
                while let Some(n) = stream.next().await {
                    // No receivers is fine: nobody is following a job right now.
                    let _ = tx.send(n);
                }
                tracing::warn!("job notification stream ended; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to job notifications"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}
