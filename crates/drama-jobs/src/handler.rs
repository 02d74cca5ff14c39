//! Handlers: what runs a task of a kind, what it sees, and how it reports back.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drama_domain::{Backoff, Jitter};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::error::JobError;
use crate::graph::Expansion;
use crate::ids::{Fence, JobId, RunId};
use crate::store::{ClaimedJob, JobStore};

/// The checkpoint field that keeps a task's charge ([`JobContext::keep_charge`]).
pub const CHARGE_KEPT: &str = "charge_kept";

/// Whether a checkpoint keeps its task's charge: the task is not refunded whatever it ends in.
pub fn charge_kept(checkpoint: &Value) -> bool {
    checkpoint.get(CHARGE_KEPT) == Some(&Value::Bool(true))
}

/// How a handler's attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; `result` is stored and passed to dependents. An expansion adds nodes to the run
    /// atomically with the completion.
    Success {
        /// The result.
        result: Value,
        /// Nodes and edges to add.
        expansion: Option<Expansion>,
    },
    /// Failed in a way that may pass on another attempt (network error, 5xx): retried with
    /// exponential backoff while attempts remain.
    Retry {
        /// What went wrong.
        error: String,
    },
    /// Try again after `delay` (at most [`MAX_DEFER`](crate::core::MAX_DEFER)) without using
    /// an attempt (HTTP 429, Retry-After), unless the task was deferred
    /// [`FREE_DEFERRALS`](crate::core::FREE_DEFERRALS) times in a row already. With
    /// `throttle_class`, no task of the same resource class starts before then either.
    RetryAfter {
        /// When to try again.
        delay: Duration,
        /// Why.
        reason: String,
        /// Whether the whole resource class waits.
        throttle_class: bool,
    },
    /// Failed for good (bad input, refused content): dependents are skipped.
    Permanent {
        /// What went wrong.
        error: String,
    },
    /// Stopped because the cancellation token fired. The task ends cancelled, unless a resume
    /// withdrew the cancellation meanwhile: then it runs again.
    Cancelled {
        /// Why.
        reason: String,
    },
    /// The handler completed the task itself inside its own database transaction (under
    /// [`JobContext::fence`]), together with its own writes. The worker only checks that the
    /// task is no longer running under this attempt.
    CommittedExternally,
}

impl Outcome {
    /// Success with a result.
    pub fn success(result: Value) -> Self {
        Self::Success {
            result,
            expansion: None,
        }
    }

    /// Success that also adds nodes to the run.
    pub fn success_with(result: Value, expansion: Expansion) -> Self {
        Self::Success {
            result,
            expansion: Some(expansion),
        }
    }

    /// A retryable failure.
    pub fn retry(error: impl fmt::Display) -> Self {
        Self::Retry {
            error: error.to_string(),
        }
    }

    /// Retry after `delay` without using an attempt.
    pub fn retry_after(delay: Duration, reason: impl fmt::Display) -> Self {
        Self::RetryAfter {
            delay,
            reason: reason.to_string(),
            throttle_class: false,
        }
    }

    /// Retry after `delay` without using an attempt, and hold back the whole resource class.
    pub fn throttle(delay: Duration, reason: impl fmt::Display) -> Self {
        Self::RetryAfter {
            delay,
            reason: reason.to_string(),
            throttle_class: true,
        }
    }

    /// A permanent failure.
    pub fn fail(error: impl fmt::Display) -> Self {
        Self::Permanent {
            error: error.to_string(),
        }
    }

    /// Stopped on cancellation.
    pub fn cancelled(reason: impl fmt::Display) -> Self {
        Self::Cancelled {
            reason: reason.to_string(),
        }
    }

    /// Completed in the handler's own transaction.
    pub fn committed_externally() -> Self {
        Self::CommittedExternally
    }
}

/// Saves checkpoints for a context (the worker's store behind a trait object).
pub(crate) trait CheckpointSink: Send + Sync {
    fn save(&self, fence: Fence, value: Value) -> BoxFuture<'static, Result<(), JobError>>;
}

pub(crate) struct StoreSink<S>(pub Arc<S>);

impl<S: JobStore> CheckpointSink for StoreSink<S> {
    fn save(&self, fence: Fence, value: Value) -> BoxFuture<'static, Result<(), JobError>> {
        let store = self.0.clone();
        async move { store.checkpoint(&fence, &value).await }.boxed()
    }
}

/// What a handler sees of its task.
pub struct JobContext {
    job: ClaimedJob,
    cancel: CancellationToken,
    sink: Arc<dyn CheckpointSink>,
    last_checkpoint: Mutex<Option<Value>>,
}

impl fmt::Debug for JobContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobContext")
            .field("fence", &self.job.fence)
            .field("key", &self.job.key)
            .field("kind", &self.job.kind)
            .field("attempt", &self.job.attempt)
            .finish_non_exhaustive()
    }
}

impl JobContext {
    pub(crate) fn new(
        job: ClaimedJob,
        cancel: CancellationToken,
        sink: Arc<dyn CheckpointSink>,
    ) -> Self {
        let last = job.checkpoint.clone();
        Self {
            job,
            cancel,
            sink,
            last_checkpoint: Mutex::new(last),
        }
    }

    /// The claimed task as the store returned it.
    pub fn job(&self) -> &ClaimedJob {
        &self.job
    }

    /// The task's id.
    pub fn id(&self) -> JobId {
        self.job.fence.job_id
    }

    /// Its run.
    pub fn run_id(&self) -> RunId {
        self.job.fence.run_id
    }

    /// Its key.
    pub fn key(&self) -> &str {
        &self.job.key
    }

    /// Its kind.
    pub fn kind(&self) -> &str {
        &self.job.kind
    }

    /// Its payload.
    pub fn payload(&self) -> &Value {
        &self.job.payload
    }

    /// The payload as `T`.
    ///
    /// # Errors
    /// A permanent-failure outcome naming the decoding problem, ready to return.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T, Outcome> {
        serde_json::from_value(self.job.payload.clone())
            .map_err(|e| Outcome::fail(format!("payload of {} is invalid: {e}", self.job.key)))
    }

    /// This attempt's number (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.job.attempt
    }

    /// Attempts allowed.
    pub fn max_attempts(&self) -> u32 {
        self.job.max_attempts
    }

    /// The run's owner.
    pub fn owner(&self) -> Uuid {
        self.job.owner
    }

    /// The run's subject.
    pub fn subject(&self) -> Option<&str> {
        self.job.subject.as_deref()
    }

    /// The fence to complete the task under inside the handler's own transaction.
    pub fn fence(&self) -> Fence {
        self.job.fence
    }

    /// Results of the task's dependencies, by key.
    pub fn dependencies(&self) -> &BTreeMap<String, Value> {
        &self.job.dependencies
    }

    /// The result of the dependency `key`.
    pub fn dependency(&self, key: &str) -> Option<&Value> {
        self.job.dependencies.get(key)
    }

    /// Fires when the task (or a group above it) is cancelled, when the handler's timeout
    /// passes, when the worker shuts down past its grace period, or when the worker lost its
    /// lease. Long handlers should watch it and return [`Outcome::cancelled`].
    pub fn cancellation(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Whether the token fired.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// The last checkpoint saved by this or an earlier attempt.
    pub fn last_checkpoint(&self) -> Option<Value> {
        self.last_checkpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Saves `value` durably, fenced by this attempt; a later attempt (after a crash) finds it
    /// in [`JobContext::last_checkpoint`]. Save what lets a retry resume instead of redoing
    /// paid work, e.g. a provider's task id right after submitting.
    ///
    /// A task with a checkpoint counts as spent: failing or cancelling it no longer refunds
    /// its cost. `Value::Null` clears the checkpoint (the provider's work ended without a
    /// product, so the next attempt starts over, and a failure or a cancellation refunds).
    ///
    /// # Errors
    /// [`JobError::FenceLost`] when this attempt lost its lease (stop working);
    /// [`JobError::Unavailable`] when the store cannot be reached.
    pub async fn checkpoint(&self, value: Value) -> Result<(), JobError> {
        self.sink.save(self.job.fence, value.clone()).await?;
        *self
            .last_checkpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (!value.is_null()).then_some(value);
        Ok(())
    }

    /// Keeps the task's charge: its provider call was made and billed, and what it answered
    /// cannot be used (output that breaks the rules, cut short), so failing the task must not
    /// refund it. Recorded in the checkpoint (what it held stays), so it holds for every later
    /// state of the task, a resumed attempt's included.
    ///
    /// # Errors
    /// As [`JobContext::checkpoint`].
    pub async fn keep_charge(&self) -> Result<(), JobError> {
        let mut checkpoint = match self.last_checkpoint() {
            Some(Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        checkpoint.insert(CHARGE_KEPT.to_owned(), Value::Bool(true));
        self.checkpoint(Value::Object(checkpoint)).await
    }

    /// Whether an attempt of this task kept its charge ([`JobContext::keep_charge`]).
    pub fn charge_kept(&self) -> bool {
        self.last_checkpoint().as_ref().is_some_and(charge_kept)
    }
}

/// Runs tasks of one kind.
///
/// Handlers must be idempotent: a task runs at least once, and more than once when a worker
/// dies (or loses its lease) after doing the work but before its completion commits. Use
/// checkpoints for external side effects and write results keyed by the task, so that a
/// second run overwrites instead of duplicating.
pub trait Handler: Send + Sync + 'static {
    /// Runs one attempt.
    fn run(&self, ctx: JobContext) -> impl Future<Output = Outcome> + Send;
}

impl<F, Fut> Handler for F
where
    F: Fn(JobContext) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    fn run(&self, ctx: JobContext) -> impl Future<Output = Outcome> + Send {
        self(ctx)
    }
}

pub(crate) trait DynHandler: Send + Sync {
    fn call(self: Arc<Self>, ctx: JobContext) -> BoxFuture<'static, Outcome>;
}

struct Boxed<H>(H);

impl<H: Handler> DynHandler for Boxed<H> {
    fn call(self: Arc<Self>, ctx: JobContext) -> BoxFuture<'static, Outcome> {
        async move { self.0.run(ctx).await }.boxed()
    }
}

/// The backoff of retries when neither the kind nor the worker sets another: 2 s doubling to
/// 10 minutes, spread ±25 % so that retries of many tasks do not arrive together.
pub const DEFAULT_RETRY: Backoff = Backoff {
    initial: Duration::from_secs(2),
    max: Duration::from_secs(600),
    multiplier: 2.0,
    jitter: Jitter::Around(0.25),
};

/// Per-kind settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HandlerOptions {
    /// Attempts running longer are cancelled and count as retryable failures.
    pub timeout: Option<Duration>,
    /// Backoff for this kind (the worker's default otherwise).
    pub retry: Option<Backoff>,
}

#[derive(Clone)]
pub(crate) struct Registered {
    pub handler: Arc<dyn DynHandler>,
    pub options: HandlerOptions,
}

/// Handlers by kind.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Registered>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.kinds())
            .finish()
    }
}

impl Registry {
    /// No handlers.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `handler` for `kind` (replacing an earlier one).
    pub fn register(&mut self, kind: impl Into<String>, handler: impl Handler) -> &mut Self {
        self.register_with(kind, handler, HandlerOptions::default())
    }

    /// Registers `handler` for `kind` with options.
    pub fn register_with(
        &mut self,
        kind: impl Into<String>,
        handler: impl Handler,
        options: HandlerOptions,
    ) -> &mut Self {
        self.handlers.insert(
            kind.into(),
            Registered {
                handler: Arc::new(Boxed(handler)),
                options,
            },
        );
        self
    }

    /// The registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&Registered> {
        self.handlers.get(kind)
    }
}
