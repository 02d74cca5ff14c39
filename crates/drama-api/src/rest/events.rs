//! Server-Sent Events. `GET /jobs/{id}/events`: a run's (or subtree's) events, replayed from
//! `Last-Event-ID` (or `?after=`), then live until the run settles. `GET /dramas/{id}/events`:
//! the drama's current version, then each new one, until it is deleted.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpMessage as _, HttpRequest, HttpResponse, web};
use bytes::Bytes;
use drama_app::jobs::{Event, EventId, JobView};
use drama_app::{App, AppError, Caller};
use drama_domain::DramaId;
use futures::{Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::jobs::job_id;
use super::openapi::schemas as doc;
use super::query::Query;
use crate::error::{ApiError, Chain, ErrorCode};
use crate::follow::Progress;
use crate::headers::header_text;
use crate::lapse::{Credentials, Until, lapsed};
use crate::media_links::sign_text;
use crate::realtime::StreamPermit;
use crate::state::{ApiState, Auth};

/// How often a comment keeps idle connections (and proxies) alive.
const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    after: Option<i64>,
}

/// One event in the wire format of the stream.
pub(crate) fn event_json(e: &Event) -> serde_json::Value {
    json!({
        "id": e.id.0,
        "runId": e.run_id.to_string(),
        "jobId": e.job_id.to_string(),
        "key": e.key,
        "event": e.kind,
        "state": e.state.as_str(),
        "attempt": e.attempt,
        "at": e.at.timestamp_millis(),
        "detail": e.detail,
    })
}

/// One event as a frame. An event's `detail` is free-form (errors, reasons); any media URL of
/// the caller's in it leaves signed, as in every JSON answer.
async fn frame(state: &ApiState, caller: Caller, e: &Event) -> Bytes {
    let data = sign_text(state, caller, None, event_json(e).to_string()).await;
    Bytes::from(format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        e.id.0,
        serde_json::to_value(e.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "event".to_owned()),
    ))
}

/// The last frame of a stream whose credentials stopped being accepted: the reason, as the
/// body of a 401 would give it (a client reconnecting with the same credentials gets that 401).
fn lapsed_frame(reason: &str) -> Bytes {
    Bytes::from(format!(
        "event: unauthenticated\ndata: {}\n\n",
        json!({"code": ErrorCode::Unauthenticated.code(), "detail": reason})
    ))
}

/// Frames made for a client and not yet taken by it, at most: a client that stops reading
/// holds this many (beside what its connection buffers), not an ever-growing pile.
const SSE_QUEUE: usize = 16;

/// How long a stream waits for a client that takes none of its frames while its queue is full
/// before it ends: the client stopped reading (a frozen tab, a dead connection the kernel has
/// not noticed), and the stream's follower of the database goes. Its place among the streams
/// stays taken until the connection closes (see [`pumped`]).
const STALLED_GRACE: Duration = Duration::from_secs(30);

/// `stream` while the credentials of `req` are accepted: once they are not (a revoked key, an
/// expired token; see `lapse`), an `unauthenticated` frame and the end. It also ends when the
/// server starts to stop, so the drain does not wait for it (the client reconnects with
/// `Last-Event-ID` to a server that runs). The stream's place among the streams (`permit`)
/// goes with the response body, not with `stream`: see [`pumped`].
fn while_accepted<S>(
    state: Arc<ApiState>,
    req: &HttpRequest,
    caller: Caller,
    permit: StreamPermit,
    stream: S,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static
where
    S: Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
{
    let credentials = Credentials::of(req);
    let until = req.extensions().get::<Until>().and_then(|u| u.0);
    let lapse = lapsed(state.clone(), credentials, caller, until);
    pumped(state.stopping(), lapse, stream, STALLED_GRACE, permit)
}

/// The frames of `stream`, made by a task of their own into a small queue the response body
/// reads: actix polls a body only while the client takes what it wrote, so a stream polled
/// from the body alone would never see `lapse` or `stopping` for a client that stopped
/// reading, and would hold its place until the client went away. The task ends the stream
/// when `stopping` or `lapse` resolves (with an `unauthenticated` frame for the latter), and
/// when the queue stays full for `grace` (ending `stream` frees what it holds, such as its
/// follower of the database).
///
/// `held` (the stream's place among the streams) lives as long as the body does, not the
/// task: a client that stops reading keeps its connection (actix has no write deadline; only
/// the kernel cuts off a peer that takes nothing, after `http.dead_peer_timeout`), so the
/// place stays taken until the connection goes. Otherwise a client could hold ever more
/// stalled connections, taking a new place every `grace`.
fn pumped<S, H>(
    stopping: impl std::future::Future<Output = ()> + 'static,
    lapse: impl std::future::Future<Output = String> + 'static,
    stream: S,
    grace: Duration,
    held: H,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static
where
    S: Stream<Item = Result<Bytes, actix_web::Error>> + 'static,
    H: 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(SSE_QUEUE);
    actix_web::rt::spawn(async move {
        tokio::pin!(lapse);
        tokio::pin!(stream);
        tokio::pin!(stopping);
        loop {
            // A place for the next frame first: a client that takes nothing for `grace`
            // (or went away) ends the stream.
            let place = tokio::select! {
                () = &mut stopping => return,
                reason = &mut lapse => {
                    // Full: the client is not reading, and gets the end without the reason.
                    let _ = tx.try_send(Ok(lapsed_frame(&reason)));
                    return;
                }
                place = tokio::time::timeout(grace, tx.reserve()) => match place {
                    Ok(Ok(place)) => place,
                    Ok(Err(_)) | Err(_) => return,
                },
            };
            tokio::select! {
                () = &mut stopping => return,
                reason = &mut lapse => {
                    place.send(Ok(lapsed_frame(&reason)));
                    return;
                }
                () = tx.closed() => return,
                item = stream.next() => match item {
                    Some(item) => place.send(item),
                    None => return,
                },
            }
        }
    });
    futures::stream::unfold((rx, held), |(mut rx, held)| async move {
        let item = rx.recv().await?;
        Some((item, (rx, held)))
    })
}

fn end_frame(view: &JobView) -> Bytes {
    Bytes::from(format!(
        "event: end\ndata: {}\n\n",
        json!({"jobId": view.id.to_string(), "status": view.coarse_status().as_str()})
    ))
}

#[utoipa::path(
    get,
    path = "/jobs/{job_id}/events",
    tag = "Jobs",
    summary = "A job's events as Server-Sent Events",
    params(
        doc::JobPath,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, description = "Replay after this event."),
        ("after" = Option<i64>, Query, minimum = -9223372036854775808_i64, maximum = 9223372036854775807_i64, description = "Same as Last-Event-ID."),
    ),
    responses(
        (status = 200, description = "`text/event-stream`; ends with an `end` event when the job settles.", body = inline(doc::ServerSentEvent), content_type = "text/event-stream"),
        (status = 404, description = "No such job.", body = doc::Error),
        doc::Malformed,
        doc::Invalid,
    )
)]
pub(crate) async fn events(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    path: web::Path<String>,
    query: Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = job_id(&path)?;
    let app = state.app().clone();
    // Refused before the stream starts: a job that is not the caller's is a 404.
    let view = app.job(&caller, id).await?;
    let permit = state.realtime.open_stream(caller.user)?;
    let after = header_text(req.headers(), "last-event-id")
        .and_then(|v| v.trim().parse().ok())
        .or(query.after)
        .map(EventId);
    let progress = state
        .realtime
        .follow(app, caller, id, after, Arc::new(view));
    let state = state.into_inner();
    let signing = state.clone();
    let stream = async_stream::stream! {
        tokio::pin!(progress);
        loop {
            let next = tokio::time::timeout(KEEPALIVE, progress.next()).await;
            match next {
                Err(_) => yield Ok::<Bytes, actix_web::Error>(Bytes::from_static(b": keep-alive\n\n")),
                Ok(Some(Ok(Progress::Events(events, _)))) => {
                    for e in &events {
                        yield Ok(frame(&signing, caller, e).await);
                    }
                }
                // A settled run may still be resumed; a client reconnects to follow that.
                Ok(Some(Ok(Progress::End(view)))) => {
                    yield Ok(end_frame(&view));
                    return;
                }
                Ok(Some(Err(AppError::NotFound { .. }))) | Ok(None) => return,
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %Chain(&e), "following a job failed");
                    return;
                }
            }
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(while_accepted(state, &req, caller, permit, stream)))
}

fn version_frame(kind: &str, drama: &DramaId, version: i64) -> Bytes {
    Bytes::from(format!(
        "id: {version}\nevent: {kind}\ndata: {}\n\n",
        json!({"dramaId": drama, "version": version, "deleted": kind == "deleted"})
    ))
}

/// `GET /dramas/{id}/events`: `current` with the version now, `changed` with each newer
/// version (written by any process), `deleted` last. A client that reconnects re-reads the
/// drama if the `current` version differs from what it has.
#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/events",
    tag = "Dramas",
    summary = "A drama's versions as Server-Sent Events",
    params(
        ("drama_id" = String, Path, description = "Drama id."),
    ),
    responses(
        (status = 200, description = "`text/event-stream`: `current` with the version now, then `changed` with every newer version written by any process, then `deleted` when the drama is deleted. Each event's data is `{dramaId, version, deleted}`.", body = inline(doc::ServerSentEvent), content_type = "text/event-stream"),
        doc::NoSuchDrama,
    )
)]
pub(crate) async fn drama_events(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::drama_id(&path)?;
    let app = state.app().clone();
    // Listen first, then read: a change between the two is seen, not lost.
    let mut changes = state.realtime.drama_changes(&app).await;
    let current = app.get_drama(&caller, None, &id).await?;
    let permit = state.realtime.open_stream(caller.user)?;
    let state = state.into_inner();
    let stream = async_stream::stream! {
        let mut last = current.version;
        yield Ok::<Bytes, actix_web::Error>(version_frame("current", &id, last));
        loop {
            let next = tokio::time::timeout(KEEPALIVE, changes.recv()).await;
            let change = match next {
                Err(_) => {
                    yield Ok(Bytes::from_static(b": keep-alive\n\n"));
                    continue;
                }
                Ok(Ok(c)) if c.drama_id == id && App::may_follow(&caller, &c) => c,
                Ok(Ok(_)) => continue,
                Ok(Err(RecvError::Lagged(_))) => {
                    // Notices were dropped: the stored drama says where it is now.
                    match app.get_drama(&caller, None, &id).await {
                        Ok(now) if now.version > last => {
                            last = now.version;
                            yield Ok(version_frame("changed", &id, last));
                        }
                        Ok(_) => {}
                        Err(AppError::NotFound { .. }) => {
                            yield Ok(version_frame("deleted", &id, last));
                            return;
                        }
                        Err(e) => {
                            tracing::warn!(error = %Chain(&e), "reading a followed drama failed");
                        }
                    }
                    continue;
                }
                Ok(Err(RecvError::Closed)) => return,
            };
            if change.deleted {
                yield Ok(version_frame("deleted", &id, change.version));
                return;
            }
            if change.version > last {
                last = change.version;
                yield Ok(version_frame("changed", &id, last));
            }
        }
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/event-stream"))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(while_accepted(state, &req, caller, permit, stream)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use drama_app::jobs::{EventKind, JobId, JobState, RunId};
    use drama_app::{App, Ports};
    use drama_domain::UserId;

    use super::*;

    /// Sets its flag when dropped.
    struct Flag(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Endless frames, setting `dropped` once the stream is dropped.
    fn endless(
        dropped: &Arc<std::sync::atomic::AtomicBool>,
    ) -> impl Stream<Item = Result<Bytes, actix_web::Error>> + 'static {
        let flag = Flag(dropped.clone());
        futures::stream::repeat_with(move || {
            let _held = &flag;
            Ok(Bytes::from_static(b"data: x\n\n"))
        })
    }

    /// Waits up to 5 s for `flag`.
    async fn set_soon(flag: &std::sync::atomic::AtomicBool) -> bool {
        for _ in 0..100 {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A client that takes no frame (the body is never polled, as actix does not poll it
    /// while the client does not read): the stream still ends at shutdown, at the end of its
    /// credentials, and once its queue stayed full for the grace period. What the body holds
    /// (the stream's place) stays until the body itself is dropped.
    #[actix_web::test]
    async fn a_stream_whose_client_stopped_reading_still_ends() {
        let never = || std::future::pending::<()>();
        let long = Duration::from_secs(3600);

        let dropped = Arc::default();
        let stop = tokio_util::sync::CancellationToken::new();
        let body = pumped(
            stop.clone().cancelled_owned(),
            std::future::pending::<String>(),
            endless(&dropped),
            long,
            (),
        );
        stop.cancel();
        assert!(set_soon(&dropped).await, "the stream outlived the shutdown");
        drop(body);

        let dropped = Arc::default();
        let lapse = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            "API key revoked".to_owned()
        };
        let body = pumped(never(), lapse, endless(&dropped), long, ());
        assert!(
            set_soon(&dropped).await,
            "the stream outlived its credentials"
        );
        drop(body);

        let dropped = Arc::default();
        let released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let body = pumped(
            never(),
            std::future::pending::<String>(),
            endless(&dropped),
            Duration::from_millis(200),
            Flag(released.clone()),
        );
        assert!(set_soon(&dropped).await, "a stalled stream did not end");
        // The task is done; the body, which actix drops only with the connection, is not.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !released.load(std::sync::atomic::Ordering::SeqCst),
            "the place went before the body did"
        );
        drop(body);
        assert!(released.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn media_urls_in_an_event_leave_signed() {
        let assets = Arc::new(drama_assets::MemoryStore::default());
        let (ports, _, _) = Ports::memory(assets, drama_ai::AiProviders::offline(0));
        let app = App::new(ports).with_public_base_url("http://api.test");
        let state = ApiState::new(app, crate::HttpSettings::default());
        let me = UserId::random();
        let raw = format!("http://api.test/media/{me}/d/clips/s1.mp4");
        let event = Event {
            id: EventId(7),
            run_id: RunId::new(),
            job_id: JobId::new(),
            key: "video:s1".to_owned(),
            kind: EventKind::Failed,
            state: JobState::Failed,
            attempt: 1,
            at: chrono::Utc::now(),
            detail: json!({"error": format!("cannot read {raw}")}),
        };
        let text =
            String::from_utf8(frame(&state, Caller::user(me), &event).await.to_vec()).unwrap();
        assert!(text.starts_with("id: 7\nevent: failed\ndata: "), "{text}");
        assert!(!text.contains("/media/"), "{text}");
        assert!(
            text.contains(&format!("/files/{me}/d/clips/s1.mp4?expires=")) && text.contains("sig="),
            "{text}"
        );
        let other = String::from_utf8(
            frame(&state, Caller::user(UserId::random()), &event)
                .await
                .to_vec(),
        )
        .unwrap();
        assert!(
            other.contains(&raw),
            "another user's URL stays as it is: {other}"
        );
    }
}
