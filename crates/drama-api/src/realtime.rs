//! One subscription to the job engine's notifications and one to drama changes per process,
//! fanned out to every Server-Sent-Events stream and GraphQL subscription of the process.
//! Notifications only say "run R has new events up to E" or "drama D is at version V";
//! subscribers read the events or the drama themselves, so a lost notification or a lagging
//! subscriber never loses anything.

use std::collections::HashMap;
#[cfg(feature = "graphql")]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use drama_app::App;
use drama_app::jobs::Notification;
use drama_app::store::DramaChange;
use drama_domain::{Backoff, UserId};
use futures::StreamExt as _;
use tokio::sync::{OnceCell, broadcast};

/// The process-wide feeds: job notifications and drama changes; the followers of jobs; and
/// the count of open streams.
pub struct Realtime {
    jobs: broadcast::Sender<Notification>,
    dramas: broadcast::Sender<DramaChange>,
    jobs_started: OnceCell<()>,
    dramas_started: OnceCell<()>,
    pub(crate) followers: crate::follow::Followers,
    streams: Arc<Streams>,
    /// GraphQL sockets upgraded and not yet past `connection_init`.
    #[cfg(feature = "graphql")]
    waiting: Arc<AtomicUsize>,
    /// How many of those the process holds at most ([`MAX_WAITING_SOCKETS`]).
    #[cfg(feature = "graphql")]
    waiting_cap: usize,
}

/// GraphQL sockets the process holds at once before their `connection_init`. Such a socket
/// has shown no credentials (they come in `connection_init`), yet holds a task, its queues and
/// a connection for up to `http.ws_init_timeout`: the anonymous rate bounds how fast one
/// address opens them, this bounds them all, whatever the number of addresses. A client
/// sends `connection_init` right after the upgrade, so a socket waits for it a round trip;
/// 1,024 is far more than clients reconnecting together after a restart need at once.
pub const MAX_WAITING_SOCKETS: usize = 1_024;

/// A socket's place among those waiting for their `connection_init`, given back when dropped.
#[cfg(feature = "graphql")]
pub(crate) struct WaitingSocket(Arc<AtomicUsize>);

#[cfg(feature = "graphql")]
impl Drop for WaitingSocket {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Default for Realtime {
    fn default() -> Self {
        Self::new()
    }
}

/// Seconds a client refused for too many streams is asked to wait.
const RETRY_AFTER_STREAMS: u64 = 5;

/// The bounds of long-lived streams (SSE and GraphQL subscriptions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCaps {
    /// Streams one user may hold open at once.
    pub per_user: usize,
    /// Streams the process holds open at once.
    pub per_process: usize,
}

impl Default for StreamCaps {
    fn default() -> Self {
        Self {
            per_user: 20,
            per_process: 10_000,
        }
    }
}

/// A stream over one of its caps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Too many open streams ({scope}): at most {limit}; close one or retry later")]
pub struct TooManyStreams {
    /// `user` or `process`.
    pub scope: &'static str,
    /// The cap.
    pub limit: usize,
}

impl TooManyStreams {
    /// Seconds to wait before retrying.
    pub fn retry_after(&self) -> u64 {
        RETRY_AFTER_STREAMS
    }
}

#[derive(Default)]
struct Streams {
    caps: StreamCaps,
    open: Mutex<(usize, HashMap<UserId, usize>)>,
}

/// One open stream; released when dropped.
pub struct StreamPermit {
    streams: Arc<Streams>,
    user: UserId,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.0 = open.0.saturating_sub(1);
        if let Some(n) = open.1.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.1.remove(&self.user);
            }
        }
    }
}

/// The place a GraphQL WebSocket holds among the streams from its `connection_init` on, so
/// that idle sockets count against the caps as SSE streams do. The socket's first
/// subscription runs on this place (a socket with one subscription counts once, like one SSE
/// stream); further ones take places of their own. A place given back while the socket has
/// none is kept for it, so a socket counts as many streams as it runs, and at least one.
#[cfg(feature = "graphql")]
pub(crate) struct SocketPlace {
    spare: Mutex<Option<StreamPermit>>,
    /// The subscriptions running on the socket, and since when it has run none (it is idle
    /// then; the socket closes itself after `http.ws_idle_timeout` of that).
    running: Mutex<(usize, std::time::Instant)>,
}

#[cfg(feature = "graphql")]
impl SocketPlace {
    /// A socket's place, holding `permit`.
    pub(crate) fn new(permit: StreamPermit) -> Arc<Self> {
        Arc::new(Self {
            spare: Mutex::new(Some(permit)),
            running: Mutex::new((0, std::time::Instant::now())),
        })
    }

    fn spare(&self) -> std::sync::MutexGuard<'_, Option<StreamPermit>> {
        self.spare.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, (usize, std::time::Instant)> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the socket has run no subscription; `None` while one runs.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        let (running, since) = *self.running();
        (running == 0).then(|| since.elapsed())
    }
}

/// One running subscription's place; given back (to its socket first) when dropped.
#[cfg(feature = "graphql")]
pub(crate) struct SubscriptionPermit {
    permit: Option<StreamPermit>,
    socket: Option<Arc<SocketPlace>>,
}

#[cfg(feature = "graphql")]
impl Drop for SubscriptionPermit {
    fn drop(&mut self) {
        if let Some(socket) = &self.socket {
            let mut running = socket.running();
            running.0 = running.0.saturating_sub(1);
            if running.0 == 0 {
                running.1 = std::time::Instant::now();
            }
        }
        if let (Some(permit), Some(socket)) = (self.permit.take(), &self.socket) {
            let mut spare = socket.spare();
            if spare.is_none() {
                *spare = Some(permit);
            }
            // Otherwise `permit` is dropped here, releasing its place.
        }
    }
}

impl Realtime {
    /// Feeds that start listening on first use, with the default stream caps.
    pub fn new() -> Self {
        Self::with_caps(StreamCaps::default())
    }

    /// Feeds that start listening on first use, holding at most `caps` streams open.
    pub fn with_caps(caps: StreamCaps) -> Self {
        let (jobs, _) = broadcast::channel(1024);
        let (dramas, _) = broadcast::channel(1024);
        Self {
            jobs,
            dramas,
            jobs_started: OnceCell::new(),
            dramas_started: OnceCell::new(),
            followers: crate::follow::Followers::default(),
            streams: Arc::new(Streams {
                caps,
                open: Mutex::default(),
            }),
            #[cfg(feature = "graphql")]
            waiting: Arc::default(),
            #[cfg(feature = "graphql")]
            waiting_cap: MAX_WAITING_SOCKETS,
        }
    }

    /// A place for a socket that waits for its `connection_init`; `None` when the process
    /// holds [`MAX_WAITING_SOCKETS`] already.
    #[cfg(feature = "graphql")]
    pub(crate) fn socket_waiting(&self) -> Option<WaitingSocket> {
        self.waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.waiting_cap).then_some(n + 1)
            })
            .ok()
            .map(|_| WaitingSocket(self.waiting.clone()))
    }

    /// Counts a new stream of `user`, unless it would pass a cap.
    ///
    /// # Errors
    /// [`TooManyStreams`] naming the cap.
    pub fn open_stream(&self, user: UserId) -> Result<StreamPermit, TooManyStreams> {
        let caps = self.streams.caps;
        let mut open = self
            .streams
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mine = open.1.get(&user).copied().unwrap_or(0);
        if mine >= caps.per_user {
            return Err(TooManyStreams {
                scope: "user",
                limit: caps.per_user,
            });
        }
        if open.0 >= caps.per_process {
            return Err(TooManyStreams {
                scope: "process",
                limit: caps.per_process,
            });
        }
        open.0 += 1;
        *open.1.entry(user).or_default() += 1;
        Ok(StreamPermit {
            streams: self.streams.clone(),
            user,
        })
    }

    /// Counts a new subscription of `user`: on its socket's place when that one is free,
    /// else as a new stream, unless that would pass a cap.
    ///
    /// # Errors
    /// [`TooManyStreams`] naming the cap.
    #[cfg(feature = "graphql")]
    pub(crate) fn open_subscription(
        &self,
        user: UserId,
        socket: Option<&Arc<SocketPlace>>,
    ) -> Result<SubscriptionPermit, TooManyStreams> {
        let spare = socket.and_then(|s| s.spare().take());
        let permit = match spare {
            Some(permit) => permit,
            None => self.open_stream(user)?,
        };
        if let Some(socket) = socket {
            socket.running().0 += 1;
        }
        Ok(SubscriptionPermit {
            permit: Some(permit),
            socket: socket.cloned(),
        })
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

/// Waits before reopening a notification stream: 100 ms after it ends, doubling while opening
/// fails, up to 10 s.
const REOPEN: Backoff = Backoff::doubling(Duration::from_millis(100), Duration::from_secs(10));

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
        let mut failures = 0;
        loop {
            let attempt = match opened.take() {
                Some(first) => first,
                None => open().await,
            };
            match attempt {
                Ok(mut stream) => {
                    failures = 0;
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
            tokio::time::sleep(REOPEN.delay(failures)).await;
            failures = failures.saturating_add(1);
        }
    });
}

// The only test is of the GraphQL sockets' cap.
#[cfg(all(test, feature = "graphql"))]
mod tests {
    use super::*;

    #[test]
    fn sockets_waiting_for_their_init_are_capped_and_give_their_place_back() {
        let mut realtime = Realtime::new();
        realtime.waiting_cap = 2;
        let first = realtime.socket_waiting();
        let second = realtime.socket_waiting();
        assert!(first.is_some() && second.is_some());
        assert!(realtime.socket_waiting().is_none());
        drop(first);
        assert!(realtime.socket_waiting().is_some());
    }
}
