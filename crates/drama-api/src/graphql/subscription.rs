//! `jobProgress` over WebSocket (`graphql-transport-ws`, or the legacy `graphql-ws` when the
//! client asks for it). Browsers cannot set headers on a WebSocket, so the credentials come
//! in the `connection_init` payload: `{"authorization": "Bearer …"}` (or `"x-api-key"`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use drama_app::pipeline::wire_status;
use drama_app::{App, AppError};
use drama_dal::{DramaChange, Entity};
use drama_domain::DramaId;
use drama_jobs::{EventId, JobId};
use futures::Stream;
use juniper::{FieldError, ScalarValue, Variables, graphql_object, graphql_subscription};
use juniper_graphql_ws::ConnectionConfig;
use tokio::sync::broadcast::error::RecvError;

use super::context::Ctx;
use super::error::{GqlError, bad_input};
use super::schema::Drama;
use crate::state::ApiState;

/// One step of a job's progress.
pub struct JobEvent {
    id: i64,
    job_id: String,
    key: String,
    event: String,
    state: String,
    status: String,
    at: String,
}

#[graphql_object(context = Ctx)]
impl JobEvent {
    /// The event's id (monotonic; resume after it with `after`).
    fn event_id(&self) -> String {
        self.id.to_string()
    }
    /// The job the event is about (the run or one of its nodes).
    fn job_id(&self) -> &str {
        &self.job_id
    }
    /// That node's key within its run.
    fn key(&self) -> &str {
        &self.key
    }
    /// What happened: submitted, started, completed, failed, retrying, …
    fn event(&self) -> &str {
        &self.event
    }
    /// The node's engine state after the event.
    fn state(&self) -> &str {
        &self.state
    }
    /// The followed job's wire status when the event was delivered (the run's final events
    /// carry its final status).
    fn status(&self) -> &str {
        &self.status
    }
    /// When, as an ISO-8601 timestamp.
    fn at(&self) -> &str {
        &self.at
    }
}

type JobEventStream = Pin<Box<dyn Stream<Item = Result<JobEvent, FieldError>> + Send>>;

/// A drama's new state: which version is current, or that it is gone.
pub struct DramaChanged {
    drama_id: DramaId,
    version: i64,
    deleted: bool,
}

#[graphql_object(context = Ctx)]
impl DramaChanged {
    /// The drama.
    fn drama_id(&self) -> &str {
        self.drama_id.as_str()
    }
    /// Its version now (its last one, when deleted).
    fn version(&self) -> i32 {
        i32::try_from(self.version).unwrap_or(i32::MAX)
    }
    /// Whether it was deleted (the last event of the subscription).
    fn deleted(&self) -> bool {
        self.deleted
    }
    /// The drama as it is when this field is resolved; null once deleted.
    async fn drama(&self, ctx: &Ctx) -> Result<Option<Drama>, GqlError> {
        if self.deleted {
            return Ok(None);
        }
        match ctx.app.get_drama(&ctx.caller, None, &self.drama_id).await {
            Ok(stored) => {
                ctx.jobs.want([stored.drama.id.clone()]);
                Ok(Some(Drama::new(stored)))
            }
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(GqlError(e)),
        }
    }
}

type DramaChangedStream = Pin<Box<dyn Stream<Item = Result<DramaChanged, FieldError>> + Send>>;

/// Appends every logged event after `last` to `batch`, advancing `last`.
async fn drain(
    app: &drama_app::App,
    caller: &drama_app::Caller,
    id: JobId,
    last: &mut Option<EventId>,
    batch: &mut Vec<drama_jobs::Event>,
) -> Result<(), FieldError> {
    loop {
        let events = app
            .job_events(caller, id, *last, 500)
            .await
            .map_err(|e| juniper::IntoFieldError::into_field_error(GqlError(e)))?;
        let Some(newest) = events.last() else {
            return Ok(());
        };
        *last = Some(newest.id);
        batch.extend(events);
    }
}

/// Live operations.
pub struct Subscription;

#[graphql_subscription(context = Ctx)]
impl Subscription {
    /// A drama's current version at once, then every change to it, from any process, until
    /// it is deleted. Select `drama { … }` to receive its content with each change.
    async fn drama_changed(ctx: &Ctx, id: String) -> Result<DramaChangedStream, FieldError> {
        let not_found = || {
            juniper::IntoFieldError::into_field_error(GqlError(AppError::not_found(
                Entity::Drama,
                &id,
            )))
        };
        let drama_id: DramaId = id.parse().map_err(|_| not_found())?;
        let (app, caller) = (ctx.app.clone(), ctx.caller);
        // Listen first, then read: a change between the two is seen, not lost.
        let mut changes = ctx.realtime.drama_changes(&app).await;
        let current = app
            .get_drama(&caller, None, &drama_id)
            .await
            .map_err(|e| juniper::IntoFieldError::into_field_error(GqlError(e)))?;
        let stream = async_stream::stream! {
            let mut last = current.version;
            yield Ok(DramaChanged { drama_id: drama_id.clone(), version: last, deleted: false });
            loop {
                let change = match changes.recv().await {
                    Ok(c) if c.drama_id == drama_id && App::may_follow(&caller, &c) => c,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        // Notices were dropped: the stored drama says where it is now.
                        match app.get_drama(&caller, None, &drama_id).await {
                            Ok(now) => DramaChange {
                                drama_id: drama_id.clone(),
                                owner: now.owner,
                                version: now.version,
                                deleted: false,
                            },
                            Err(AppError::NotFound { .. }) => DramaChange {
                                drama_id: drama_id.clone(),
                                owner: caller.user,
                                version: last,
                                deleted: true,
                            },
                            Err(e) => {
                                yield Err(juniper::IntoFieldError::into_field_error(GqlError(e)));
                                return;
                            }
                        }
                    }
                    Err(RecvError::Closed) => return,
                };
                if change.deleted {
                    yield Ok(DramaChanged { drama_id: drama_id.clone(), version: change.version, deleted: true });
                    return;
                }
                if change.version > last {
                    last = change.version;
                    yield Ok(DramaChanged { drama_id: drama_id.clone(), version: last, deleted: false });
                }
            }
        };
        Ok(Box::pin(stream))
    }

    /// The events of a job (a run or any node of one) after `after`, then live until it
    /// settles. Progress made by workers in any process arrives here.
    async fn job_progress(
        ctx: &Ctx,
        job_id: String,
        after: Option<String>,
    ) -> Result<JobEventStream, FieldError> {
        let id: JobId = job_id
            .parse()
            .map_err(|_| bad_input(format!("jobId {job_id:?} is not a job id")))?;
        let mut last = after
            .map(|a| a.parse::<i64>().map(EventId))
            .transpose()
            .map_err(|_| bad_input("after must be an event id"))?;
        let (app, caller) = (ctx.app.clone(), ctx.caller);
        let run = app
            .job(&caller, id)
            .await
            .map_err(|e| juniper::IntoFieldError::into_field_error(GqlError(e)))?
            .run_id;
        let mut notifications = ctx.realtime.subscribe(&app).await;
        let stream = async_stream::stream! {
            loop {
                // Events first, then the status they are stamped with: a status read before
                // the events would call the run's final events "processing".
                let mut batch = Vec::new();
                if let Err(e) = drain(&app, &caller, id, &mut last, &mut batch).await {
                    yield Err(e);
                    return;
                }
                let view = match app.job(&caller, id).await {
                    Ok(view) => view,
                    Err(e) => {
                        yield Err(juniper::IntoFieldError::into_field_error(GqlError(e)));
                        return;
                    }
                };
                let settled = view.state.is_settled();
                // Events appended between the read above and the status belong to this batch.
                if settled
                    && let Err(e) = drain(&app, &caller, id, &mut last, &mut batch).await
                {
                    yield Err(e);
                    return;
                }
                let status = wire_status(&view).as_str();
                for e in batch {
                    yield Ok(JobEvent {
                        id: e.id.0,
                        job_id: e.job_id.to_string(),
                        key: e.key.clone(),
                        event: serde_json::to_value(e.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
                        state: e.state.as_str().to_owned(),
                        status: status.to_owned(),
                        at: e.at.to_rfc3339(),
                    });
                }
                if settled {
                    return;
                }
                let wait = tokio::time::sleep(Duration::from_secs(2));
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        n = notifications.recv() => match n {
                            Ok(n) if n.run_id != run => continue,
                            Ok(_) | Err(RecvError::Lagged(_)) => break,
                            Err(RecvError::Closed) => { (&mut wait).await; break; }
                        },
                        () = &mut wait => break,
                    }
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

fn credential<S: ScalarValue>(params: &Variables<S>, name: &str) -> Option<String> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| {
            v.as_scalar()
                .and_then(ScalarValue::try_as_str)
                .map(str::to_owned)
        })
}

/// Why a WebSocket was not accepted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

/// `GET /subscriptions`: the GraphQL WebSocket endpoint.
pub(crate) async fn websocket(
    state: web::Data<ApiState>,
    req: HttpRequest,
    stream: web::Payload,
) -> Result<HttpResponse, actix_web::Error> {
    let state: Arc<ApiState> = state.into_inner();
    let schema = state.schema.clone();
    let init = move |params: Variables| async move {
        let authorization = credential(&params, "authorization");
        let api_key = credential(&params, "x-api-key");
        let caller = state
            .auth
            .authenticate(authorization.as_deref(), api_key.as_deref())
            .await
            .map_err(|e| Refused(e.to_string()))?;
        let ctx = Ctx::new(state.app().clone(), caller, state.realtime.clone());
        Ok::<_, Refused>(
            ConnectionConfig::new(ctx)
                .with_keep_alive_interval(Duration::from_secs(15))
                // The protocol does not oblige clients to ping (most do not by default); with
                // a timeout, every subscription longer than it would be cut off. A vanished
                // client is noticed when a keep-alive write fails.
                .with_keep_alive_timeout(Duration::ZERO)
                .with_max_in_flight_operations(16),
        )
    };
    juniper_actix::subscriptions::ws_handler(req, stream, schema, init).await
}
