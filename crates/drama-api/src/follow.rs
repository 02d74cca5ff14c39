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
use futures::future::BoxFuture;
use futures::{Stream, StreamExt as _};
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

/// Appends every logged event of `id` after `last` to `batch`, advancing `last`. Only the
/// follower reads this way: it reads what the run logged since its last look (it starts where
/// the stream that started it had caught up to), and what it reads is shared by every stream
/// of the job. A stream's own catch-up, which may start anywhere in a long log, goes through
/// [`drain`] instead.
async fn read_all(
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

/// Reads the log after `last` one page at a time with `read`, advancing `last`. A full page
/// (the log may hold more) is yielded at once, stamped with `stamp`, and the next page is
/// read only when the consumer asks for more, so a stream replaying a long run holds one
/// page and reads at the pace its client takes the frames (the socket's backpressure). The
/// last page, which is not full, is appended to `events`: the caller sends it with the view
/// it reads next, as before. A failed read is yielded and ends the stream.
fn drain<'a, R, F>(
    mut read: R,
    last: &'a mut Option<EventId>,
    events: &'a mut Vec<Event>,
    stamp: Arc<JobView>,
) -> impl Stream<Item = Result<Progress, AppError>> + Send + 'a
where
    R: FnMut(Option<EventId>) -> F + Send + 'a,
    F: Future<Output = Result<Vec<Event>, AppError>> + Send + 'a,
{
    async_stream::stream! {
        loop {
            let page = match read(*last).await {
                Ok(page) => page,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            };
            if let Some(newest) = page.last() {
                *last = Some(newest.id);
            }
            if page.len() < PAGE {
                events.extend(page);
                return;
            }
            yield Ok(Progress::Events(page, stamp.clone()));
        }
    }
}

/// The page reader of job `id` as `caller` sees it.
fn reader(
    app: &App,
    caller: Caller,
    id: JobId,
) -> impl FnMut(Option<EventId>) -> BoxFuture<'static, Result<Vec<Event>, AppError>> + Send + 'static
{
    let app = app.clone();
    move |after| {
        let app = app.clone();
        Box::pin(async move { app.job_events(&caller, id, after, PAGE).await })
    }
}

impl Realtime {
    /// The progress of job `id` after `after`, then live until it settles. The caller must
    /// already be known to see the job: `view` is the job as read to check that, and stamps
    /// the first pages of a long replay.
    pub(crate) fn follow(
        self: &Arc<Self>,
        app: App,
        caller: Caller,
        id: JobId,
        after: Option<EventId>,
        view: Arc<JobView>,
    ) -> impl Stream<Item = Result<Progress, AppError>> + Send + 'static {
        let realtime = self.clone();
        async_stream::stream! {
            let mut read = reader(&app, caller, id);
            let mut last = after;
            let mut events = Vec::new();
            let mut view = view;
            // Every read of the log below sends its full pages as it reads them (and stops at
            // the first error, which ends the stream); what is left is sent with the view read
            // after it, as a batch of the follower is.
            macro_rules! send_pages {
                ($stamp:expr) => {{
                    let pages = drain(&mut read, &mut last, &mut events, $stamp);
                    tokio::pin!(pages);
                    while let Some(page) = pages.next().await {
                        let failed = page.is_err();
                        yield page;
                        if failed {
                            return;
                        }
                    }
                }};
            }
            loop {
                // On our own: what the log has after our position, and where the job is.
                send_pages!(view.clone());
                view = match app.job(&caller, id).await {
                    Ok(now) => Arc::new(now),
                    Err(e) => {
                        yield Err(e);
                        return;
                    }
                };
                if view.state.is_settled() {
                    // Events logged between the drain above and this read come before the end.
                    send_pages!(view.clone());
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
                if joined {
                    send_pages!(view.clone());
                }
                if !events.is_empty() {
                    yield Ok(Progress::Events(std::mem::take(&mut events), view.clone()));
                }
                loop {
                    match batches.recv().await {
                        Ok(batch) => {
                            if batch.after > last {
                                send_pages!(batch.view.clone());
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
                            send_pages!(view.clone());
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
            if let Err(e) = read_all(app, caller, id, &mut last, &mut events).await {
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
            if settled && let Err(e) = read_all(app, caller, id, &mut last, &mut events).await {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use drama_app::Ports;
    use drama_domain::UserId;
    use drama_jobs::{Graph, JobStore as _, NodeSpec, RunSpec};

    use super::*;

    /// A settled run of `tasks` tasks that logged one event per task and a few of its own.
    async fn long_run(tasks: usize) -> (App, Caller, JobId) {
        let assets = Arc::new(drama_assets::MemoryStore::default());
        let (ports, _, jobs) = Ports::memory(assets, drama_ai::AiProviders::offline(0));
        let app = App::new(ports);
        let caller = Caller::user(UserId::random());
        let mut graph = Graph::new(RunSpec::new("t", caller.user.0));
        for i in 0..tasks {
            graph.add(NodeSpec::task(format!("t{i}"), "k", serde_json::json!({})));
        }
        let run = jobs.submit(&graph).await.unwrap().run_id;
        // Nobody works on the tasks: cancelling them logs an event for each.
        jobs.cancel(run, "test").await.unwrap();
        (app, caller, run)
    }

    #[tokio::test]
    async fn a_long_log_is_read_one_page_per_item_taken() {
        let (app, caller, run) = long_run(3 * PAGE + 123).await;
        let everything = {
            let (mut last, mut all) = (None, Vec::new());
            read_all(&app, &caller, run, &mut last, &mut all)
                .await
                .unwrap();
            all
        };
        assert!(everything.len() > 3 * PAGE, "{}", everything.len());
        let view = Arc::new(app.job(&caller, run).await.unwrap());

        let reads = AtomicUsize::new(0);
        let mut inner = reader(&app, caller, run);
        let read = |after| {
            reads.fetch_add(1, Ordering::SeqCst);
            inner(after)
        };
        let (mut last, mut rest) = (None, Vec::new());
        let mut sent = Vec::new();
        {
            let pages = drain(read, &mut last, &mut rest, view);
            tokio::pin!(pages);
            // Nothing is read before the first item is asked for.
            assert_eq!(reads.load(Ordering::SeqCst), 0);
            let mut taken = 0;
            while let Some(item) = pages.next().await {
                taken += 1;
                let Ok(Progress::Events(page, _)) = item else {
                    panic!("a page of events");
                };
                // One read per page taken: the stream holds the page it hands over, no more.
                assert_eq!(reads.load(Ordering::SeqCst), taken);
                assert_eq!(page.len(), PAGE);
                sent.extend(page);
            }
            // The last read found the partial page, which is left for the caller.
            assert_eq!(reads.load(Ordering::SeqCst), taken + 1);
        }
        assert!(!rest.is_empty() && rest.len() < PAGE, "{}", rest.len());
        assert_eq!(last, everything.last().map(|e| e.id));
        sent.extend(rest);
        let ids = |events: &[Event]| events.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(ids(&sent), ids(&everything), "complete and in order");
    }

    #[tokio::test]
    async fn a_replay_from_the_start_sends_no_item_larger_than_a_page() {
        let (app, caller, run) = long_run(2 * PAGE + 7).await;
        let view = Arc::new(app.job(&caller, run).await.unwrap());
        let realtime = Arc::new(Realtime::new());
        let items: Vec<_> = realtime
            .follow(app.clone(), caller, run, Some(EventId(0)), view)
            .collect()
            .await;
        let mut ids = Vec::new();
        let mut ended = false;
        for item in items {
            match item.unwrap() {
                Progress::Events(events, _) => {
                    assert!(!ended && events.len() <= PAGE, "{}", events.len());
                    ids.extend(events.iter().map(|e| e.id));
                }
                Progress::End(view) => {
                    assert!(view.state.is_settled());
                    ended = true;
                }
            }
        }
        assert!(ended);
        let (mut last, mut all) = (None, Vec::new());
        read_all(&app, &caller, run, &mut last, &mut all)
            .await
            .unwrap();
        assert_eq!(ids, all.iter().map(|e| e.id).collect::<Vec<_>>());
    }
}
