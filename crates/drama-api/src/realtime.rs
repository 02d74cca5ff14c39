//! One subscription to the job engine's notifications and one to drama changes per process,
//! fanned out to every Server-Sent-Events stream and GraphQL subscription of the process.
//! Notifications only say "run R has new events up to E" or "drama D is at version V";
//! subscribers read the events or the drama themselves, so a lost notification or a lagging
//! subscriber never loses anything.

use std::sync::Arc;
use std::time::Duration;

use drama_app::App;
use drama_dal::DramaChange;
use drama_jobs::Notification;
use futures::StreamExt as _;
use tokio::sync::{OnceCell, broadcast};

/// The process-wide feeds: job notifications and drama changes.
pub struct Realtime {
    jobs: broadcast::Sender<Notification>,
    dramas: broadcast::Sender<DramaChange>,
    jobs_started: OnceCell<()>,
    dramas_started: OnceCell<()>,
}

impl Default for Realtime {
    fn default() -> Self {
        Self::new()
    }
}

impl Realtime {
    /// Feeds that start listening on first use.
    pub fn new() -> Self {
        let (jobs, _) = broadcast::channel(1024);
        let (dramas, _) = broadcast::channel(1024);
        Self {
            jobs,
            dramas,
            jobs_started: OnceCell::new(),
            dramas_started: OnceCell::new(),
        }
    }

    /// A receiver of every job notification from now on (starting the listener if needed).
    pub async fn subscribe(self: &Arc<Self>, app: &App) -> broadcast::Receiver<Notification> {
        let rx = self.jobs.subscribe();
        self.jobs_started
            .get_or_init(|| {
                let app = app.clone();
                start("job", self.jobs.clone(), move || {
                    let app = app.clone();
                    async move { app.jobs().subscribe().await.map_err(|e| e.to_string()) }
                })
            })
            .await;
        rx
    }

    /// A receiver of every drama change from now on (starting the listener if needed).
    /// Receivers filter by drama and by [`App::may_follow`].
    pub async fn drama_changes(self: &Arc<Self>, app: &App) -> broadcast::Receiver<DramaChange> {
        let rx = self.dramas.subscribe();
        self.dramas_started
            .get_or_init(|| {
                let app = app.clone();
                start("drama", self.dramas.clone(), move || {
                    let app = app.clone();
                    async move { app.drama_changes().await.map_err(|e| e.to_string()) }
                })
            })
            .await;
        rx
    }
}

/// Opens the notification stream before returning, so the first subscriber misses nothing
/// committed after its call, then forwards it into `tx` from a task that reopens it with
/// backoff whenever it ends.
async fn start<T, S, F, Fut>(what: &'static str, tx: broadcast::Sender<T>, open: F)
where
    T: Clone + Send + 'static,
    S: futures::Stream<Item = T> + Unpin + Send + 'static,
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<S, String>> + Send,
{
    let first = open().await;
    tokio::spawn(async move {
        let mut opened = Some(first);
        let mut backoff = Duration::from_millis(100);
        loop {
            let attempt = match opened.take() {
                Some(first) => first,
                None => open().await,
            };
            match attempt {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(100);
                    while let Some(n) = stream.next().await {
                        // No receivers is fine: nobody is following right now.
                        let _ = tx.send(n);
                    }
                    tracing::warn!(feed = what, "notification stream ended; reconnecting");
                }
                Err(e) => {
                    tracing::warn!(feed = what, error = %e, "cannot subscribe to notifications");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    });
}
