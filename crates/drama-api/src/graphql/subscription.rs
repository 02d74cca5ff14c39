//! The subscription root: `dramaChanged` and `jobProgress`, served over WebSocket by
//! `socket`.

use std::pin::Pin;
use std::sync::Arc;

use drama_app::jobs::{EventId, JobId};
use drama_app::store::{DramaChange, Entity};
use drama_app::{App, AppError};
use drama_domain::DramaId;
use futures::{Stream, StreamExt as _};
use juniper::{FieldError, graphql_object, graphql_subscription, graphql_value};
use tokio::sync::broadcast::error::RecvError;

use super::context::Ctx;
use super::error::{GqlError, bad_input};
use super::jobs::JobsLoader;
use super::schema::Drama;
use crate::error::ErrorCode;
use crate::follow::Progress;

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
    /// The loader this event's fields read jobs through: each event's own, so its jobs are
    /// read as they are when it is resolved, and the subscription's long-lived context does
    /// not accumulate what every event wanted.
    jobs: Arc<JobsLoader>,
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
                ctx.jobs.resolve_with(&self.jobs);
                self.jobs.want([stored.drama.id.clone()]);
                Ok(Some(Drama::new(stored)))
            }
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(GqlError(e)),
        }
    }
}

type DramaChangedStream = Pin<Box<dyn Stream<Item = Result<DramaChanged, FieldError>> + Send>>;

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
        let permit = open_stream(ctx)?;
        let budget = app.node_budget();
        let event = {
            let drama_id = drama_id.clone();
            move |version, deleted| DramaChanged {
                drama_id: drama_id.clone(),
                version,
                deleted,
                jobs: Arc::new(JobsLoader::new(budget)),
            }
        };
        let stream = async_stream::stream! {
            // Held as long as the subscription runs.
            let _permit = permit;
            let mut last = current.version;
            yield Ok(event(last, false));
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
                    yield Ok(event(change.version, true));
                    return;
                }
                if change.version > last {
                    last = change.version;
                    yield Ok(event(last, false));
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
        // Text that cannot be a job id names no job there is: not found, as REST answers it
        // in a path (and `dramaChanged` a drama id).
        let id: JobId = job_id.parse().map_err(|_| {
            juniper::IntoFieldError::into_field_error(GqlError(AppError::not_found(
                Entity::Job,
                &job_id,
            )))
        })?;
        let after = after
            .map(|a| a.parse::<i64>().map(EventId))
            .transpose()
            .map_err(|_| bad_input("after must be an event id"))?;
        let (app, caller) = (ctx.app.clone(), ctx.caller);
        let view = app
            .job(&caller, id)
            .await
            .map_err(|e| juniper::IntoFieldError::into_field_error(GqlError(e)))?;
        let permit = open_stream(ctx)?;
        let progress = ctx
            .realtime
            .follow(app, caller, id, after, std::sync::Arc::new(view));
        let stream = async_stream::stream! {
            // Held as long as the subscription runs.
            let _permit = permit;
            tokio::pin!(progress);
            while let Some(item) = progress.next().await {
                match item {
                    Ok(Progress::Events(events, view)) => {
                        let status = view.coarse_status().as_str();
                        for e in events {
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
                    }
                    Ok(Progress::End(_)) => return,
                    Err(e) => {
                        yield Err(juniper::IntoFieldError::into_field_error(GqlError(e)));
                        return;
                    }
                }
            }
        };
        Ok(Box::pin(stream))
    }
}

/// Counts a subscription against the stream caps (on its socket's place when that is free).
fn open_stream(ctx: &Ctx) -> Result<crate::realtime::SubscriptionPermit, FieldError> {
    ctx.realtime
        .open_subscription(ctx.caller.user, ctx.socket.as_ref())
        .map_err(|e| {
            // Numbers, as in REST's body and every other refusal's extensions.
            let limit = i32::try_from(e.limit).unwrap_or(i32::MAX);
            let retry = i32::try_from(e.retry_after()).unwrap_or(i32::MAX);
            FieldError::new(
                e.to_string(),
                graphql_value!({
                    "code": (ErrorCode::TooManyStreams.graphql()),
                    "scope": e.scope,
                    "limit": limit,
                    "retryAfter": retry,
                }),
            )
        })
}
