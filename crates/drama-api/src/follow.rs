//! Following a job's progress: one database follower per followed job per process, fanned
//! out to every stream (SSE or GraphQL subscription) that follows it.
//!
//! A follower reads the job's new events and its state once per notification (or per poll,
//! since a notification is only a hint) and broadcasts them as a batch; a thousand streams on
//! one running generation cost the database what one does. Each stream still catches up on
//! its own when it starts (from its `Last-Event-ID`) and when it misses batches (it joined
//! late, lagged behind, or the follower stopped), so nothing is lost and nothing is sent
//! twice: a batch says where the follower was before it, and a stream behind that reads the
//! gap itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use drama_app::jobs::{Event, EventId, JobId, JobView, RunId};
use drama_app::{App, AppError, Caller};
use futures::Stream;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::error::Chain;
use crate::realtime::Realtime;

/// How often a follower looks at the log even without a notification (NOTIFY is a hint).
const POLL: Duration = Duration::from_secs(2);
/// Events read per statement.
const PAGE: usize = 500;
/// Batches a slow stream may fall behind before it catches up from the database.
const BACKLOG: usize = 64;

/// What a follower read in one look.
pub(crate) struct Batch {
    /// The follower's position before these events.
    after: Option<EventId>,
    events: Vec<Event>,
    /// The job as read after the events.
    view: Arc<JobView>,
}

/// What a stream receives.
pub(crate) enum Progress {
    /// New events, with the job as read after them (its status stamps them in GraphQL, the
    /// one reader of the view).
    Events(
        Vec<Event>,
        #[cfg_attr(not(feature = "graphql"), allow(dead_code))] Arc<JobView>,
    ),
    /// The job settled; the last item.
    End(Arc<JobView>),
}

/// The followers of the process, by followed job.
#[derive(Default)]
pub(crate) struct Followers {
    feeds: Mutex<HashMap<JobId, broadcast::Sender<Arc<Batch>>>>,
}

impl Followers {
    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, broadcast::Sender<Arc<Batch>>>> {
        self.feeds.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Appends every logged event of `id` after `last` to `batch`, advancing `last`.
async fn drain(
    app: &App,
    caller: &Caller,
    id: JobId,
    last: &mut Option<EventId>,
    batch: &mut Vec<Event>,
) -> Result<(), AppError> {
    loop {
        let events = app.job_events(caller, id, *last, PAGE).await?;
        let full = events.len() >= PAGE;
        if let Some(newest) = events.last() {
            *last = Some(newest.id);
        }
        batch.extend(events);
        if !full {
            return Ok(());
        }
    }
}

impl Realtime {
    /// The progress of job `id` after `after`, then live until it settles. The caller must
    /// already be known to see the job (the first read refuses otherwise).
    pub(crate) fn follow(
        self: &Arc<Self>,
        app: App,
        caller: Caller,
        id: JobId,
        after: Option<EventId>,
    ) -> impl Stream<Item = Result<Progress, AppError>> + Send + 'static {
        let realtime = self.clone();
        async_stream::stream! {
            let mut last = after;
            let mut events = Vec::new();
            loop {
                // On our own: what the log has after our position, and where the job is.
                if let Err(e) = drain(&app, &caller, id, &mut last, &mut events).await {
                    yield Err(e);
                    return;
                }
                let view = match app.job(&caller, id).await {
                    Ok(view) => Arc::new(view),
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                };
                if view.state.is_settled() {
                    // Events logged between the drain above and this read come before the end.
                    if let Err(e) = drain(&app, &caller, id, &mut last, &mut events).await {
                        yield Err(e);
                        return;
                    }
                    if !events.is_empty() {
                        yield Ok(Progress::Events(std::mem::take(&mut events), view.clone()));
                    }
                    yield Ok(Progress::End(view));
                    return;
                }
                // Live, through the process's one follower of this job (joined before the
                // catch-up is sent, so a stream's first frames mean it is following).
                let (mut batches, joined) = realtime.join(&app, caller, id, view.run_id, last);
                // What that follower sent before we joined is read once more.
                if joined
                    && let Err(e) = drain(&app, &caller, id, &mut last, &mut events).await
                {
                    yield Err(e);
                    return;
                }
                if !events.is_empty() {
                    yield Ok(Progress::Events(std::mem::take(&mut events), view.clone()));
                }
                let mut view = view;
                loop {
                    match batches.recv().await {
                        Ok(batch) => {
                            if batch.after > last
                                && let Err(e) =
                                    drain(&app, &caller, id, &mut last, &mut events).await
                            {
                                yield Err(e);
                                return;
                            }
                            for e in &batch.events {
                                if Some(e.id) > last {
                                    last = Some(e.id);
                                    events.push(e.clone());
                                }
                            }
                            view = batch.view.clone();
                            if !events.is_empty() {
                                yield Ok(Progress::Events(std::mem::take(&mut events), view.clone()));
                            }
                            if view.state.is_settled() {
                                yield Ok(Progress::End(view));
                                return;
                            }
                        }
                        Err(RecvError::Lagged(_)) => {
                            if let Err(e) = drain(&app, &caller, id, &mut last, &mut events).await {
                                yield Err(e);
                                return;
                            }
                            if !events.is_empty() {
                                yield Ok(Progress::Events(std::mem::take(&mut events), view.clone()));
                            }
                        }
                        // The follower stopped (the job could not be read): look again ourselves.
                        Err(RecvError::Closed) => break,
                    }
                }
            }
        }
    }

    /// A receiver of the batches of job `id`'s follower, starting one at `last` if there is
    /// none; `true` when an existing follower was joined.
    fn join(
        self: &Arc<Self>,
        app: &App,
        caller: Caller,
        id: JobId,
        run: RunId,
        last: Option<EventId>,
    ) -> (broadcast::Receiver<Arc<Batch>>, bool) {
        let mut feeds = self.followers.feeds();
        if let Some(feed) = feeds.get(&id) {
            return (feed.subscribe(), true);
        }
        let (tx, rx) = broadcast::channel(BACKLOG);
        feeds.insert(id, tx.clone());
        drop(feeds);
        let (realtime, app) = (self.clone(), app.clone());
        tokio::spawn(async move {
            realtime.feed(&app, &caller, id, run, last, &tx).await;
            let mut feeds = realtime.followers.feeds();
            if feeds.get(&id).is_some_and(|f| f.same_channel(&tx)) {
                feeds.remove(&id);
            }
        });
        (rx, false)
    }

    /// The follower of one job: reads after each notification of its run (or each poll) and
    /// broadcasts what it read, until the job settles or nobody follows it.
    async fn feed(
        self: &Arc<Self>,
        app: &App,
        caller: &Caller,
        id: JobId,
        run: RunId,
        mut last: Option<EventId>,
        tx: &broadcast::Sender<Arc<Batch>>,
    ) {
        let mut notifications = self.subscribe(app).await;
        loop {
            // Read at once: the stream that started this follower read the log before the
            // follower was listening.
            let before = last;
            let mut events = Vec::new();
            if let Err(e) = drain(app, caller, id, &mut last, &mut events).await {
                tracing::warn!(job = %id, error = %Chain(&e), "reading job events failed");
                return;
            }
            let view = match app.job(caller, id).await {
                Ok(view) => view,
                Err(e) => {
                    tracing::warn!(job = %id, error = %Chain(&e), "reading a followed job failed");
                    return;
                }
            };
            let settled = view.state.is_settled();
            if settled && let Err(e) = drain(app, caller, id, &mut last, &mut events).await {
                tracing::warn!(job = %id, error = %Chain(&e), "reading job events failed");
                return;
            }
            if !events.is_empty() || settled {
                // No receivers left is handled below.
                let _ = tx.send(Arc::new(Batch {
                    after: before,
                    events,
                    view: Arc::new(view),
                }));
            }
            if settled {
                return;
            }
            let wait = tokio::time::sleep(POLL);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    n = notifications.recv() => match n {
                        Ok(n) if n.run_id != run || Some(n.event_id) <= last => continue,
                        Ok(_) | Err(RecvError::Lagged(_)) => break,
                        Err(RecvError::Closed) => { (&mut wait).await; break; }
                    },
                    () = &mut wait => break,
                }
            }
            // Nobody follows any more: stop (under the lock, so no stream joins meanwhile).
            let mut feeds = self.followers.feeds();
            if tx.receiver_count() == 0 {
                if feeds.get(&id).is_some_and(|f| f.same_channel(tx)) {
                    feeds.remove(&id);
                }
                return;
            }
        }
    }
}
