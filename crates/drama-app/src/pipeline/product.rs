//! A provider is paid once per task: what a handler made — the uploaded object, its checksum,
//! the hash of its inputs and the provider's usage, or a written script — is checkpointed
//! durably after it exists and before the completing transaction. A completing transaction
//! that fails for a transient reason (deadlock, serialization failure, lost connection) is
//! committed again with the same product; a later attempt of the same task commits the
//! checkpointed product when its inputs still hash the same (and, for an object, the bucket
//! still holds it) instead of calling the provider again. Genuine provider failures are not
//! products: they retry with backoff as before.

use std::time::Duration;

use bytes::Bytes;
use drama_ai::Generated;
use drama_assets::{MediaType, ObjectKey};
use drama_dal::{AssetObject, GeneratedAsset, GenerationError};
use drama_domain::{AssetId, Backoff, DramaId, UserId};
use drama_jobs::{JobContext, Outcome};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::handlers::{generation_outcome, object_key, readable_key, repo_outcome};
use super::hash::checksum;
use super::spec::MediaTask;
use crate::App;

/// The checkpoint field that holds a task's product (next to e.g. a video's `task_id`).
const PRODUCT: &str = "product";

/// How long a step after a paid call keeps trying, unless set otherwise, after passing failures before the attempt
/// gives up (and the next attempt, which pays the provider again unless the product was
/// checkpointed, takes over): a database failover or a read-only primary lasts 30–120 s, so
/// less than a minute and a half would hand most of them to a second paid call. The lease is
/// no limit: a handler whose lease was taken meanwhile finds its fence lost, which is not
/// passing, and stops at once.
pub(crate) const PAID_STEP_PATIENCE: Duration = Duration::from_secs(90);

/// Waits between tries: 50 ms before the second, doubled for each later one, at most 5 s.
const PAID_STEP_BACKOFF: Backoff =
    Backoff::doubling(Duration::from_millis(50), Duration::from_secs(5));

/// A stored object a media handler made, as checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Product {
    /// Hash of what the object was made from (prompt, references, model, duration).
    pub input_hash: String,
    /// Where the bytes are.
    pub storage_key: String,
    /// Their MIME type.
    pub content_type: String,
    /// Their length.
    pub size: u64,
    /// `sha256:<hex>` of the bytes.
    pub checksum: String,
    /// The provider's usage, recorded on the asset.
    pub usage: Value,
}

/// A script a handler wrote (a drama, an episode's scenes), as checkpointed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Written {
    /// Hash of what it was written from.
    pub input_hash: String,
    /// The written document.
    pub output: Value,
    /// The provider's usage.
    pub usage: Value,
}

/// `sha256:<hex>` of the parts, each length-prefixed.
pub(super) fn hash_parts(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    h.update(drama_ai::PROMPT_VERSION.as_bytes());
    for part in parts {
        h.update(part.len().to_le_bytes());
        h.update(part.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

impl App {
    /// Runs a completing transaction, and again — with the same product, never a new provider
    /// call — after a passing failure, for up to the paid-step patience
    /// ([`PAID_STEP_PATIENCE`] unless set with [`App::with_paid_step_patience`]).
    pub(super) async fn commit_retrying<T, F, Fut>(&self, commit: F) -> Result<T, GenerationError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, GenerationError>>,
    {
        self.after_paid_call(
            "the completing transaction",
            |e| matches!(e, GenerationError::Repo(r) if r.is_retryable()),
            commit,
        )
        .await
    }

    /// Runs a step that follows a paid provider call (recording the object's key, uploading
    /// the bytes, committing), and again after a passing failure, with backoff, for up to the
    /// paid-step patience. Handing such a failure to the job engine instead would retry the
    /// whole handler and pay the provider a second time for what it already made.
    pub(super) async fn after_paid_call<T, E, F, Fut>(
        &self,
        step: &str,
        retryable: impl Fn(&E) -> bool,
        run: F,
    ) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        retry_within(
            step,
            PAID_STEP_BACKOFF,
            self.paid_step_patience,
            retryable,
            run,
        )
        .await
    }
}

/// [`after_paid_call`] with its schedule and patience given: tries `run` until it succeeds,
/// fails in a way `retryable` does not pass, or the next pause would end past `patience`.
async fn retry_within<T, E, F, Fut>(
    step: &str,
    backoff: Backoff,
    patience: Duration,
    retryable: impl Fn(&E) -> bool,
    mut run: F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut attempt: u32 = 1;
    loop {
        match run().await {
            Err(e) if retryable(&e) => {
                let pause = backoff.delay(attempt - 1);
                if started.elapsed() + pause > patience {
                    tracing::warn!(error = %e, attempt, step, "a step after the provider call kept failing; this attempt gives up");
                    return Err(e);
                }
                tracing::warn!(error = %e, attempt, step, "a step after the provider call failed; doing it again with the same product");
                tokio::time::sleep(pause).await;
                attempt = attempt.saturating_add(1);
            }
            other => return other,
        }
    }
}

/// The checkpoint with `value` under [`PRODUCT`], keeping what else it holds (a video's
/// provider task id).
fn with_product(ctx: &JobContext, value: Value) -> Value {
    let mut checkpoint = ctx
        .last_checkpoint()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if let Value::Object(map) = &mut checkpoint {
        map.insert(PRODUCT.to_owned(), value);
    }
    checkpoint
}

/// Saves a product; a lost lease stops the attempt, any other failure only costs the
/// shortcut of a later attempt (the commit is still tried).
async fn save(ctx: &JobContext, value: Value) -> Result<(), Outcome> {
    match ctx.checkpoint(with_product(ctx, value)).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_fence_lost() => Err(Outcome::fail("the lease was lost")),
        Err(e) => {
            tracing::warn!(error = %e, job.id = %ctx.id(), "the product could not be checkpointed; committing it anyway");
            Ok(())
        }
    }
}

/// The product checkpointed by an earlier attempt, if any and if it parses.
fn checkpointed<T: for<'de> Deserialize<'de>>(ctx: &JobContext) -> Option<T> {
    let value = ctx.last_checkpoint()?.get(PRODUCT)?.clone();
    serde_json::from_value(value).ok()
}

/// A script written by an earlier attempt of this task from the same inputs.
fn reusable_script(ctx: &JobContext, input_hash: &str) -> Option<Written> {
    checkpointed::<Written>(ctx).filter(|w| w.input_hash == input_hash)
}

/// The usage of the script call an earlier attempt of this task made (checkpointed, from
/// whatever inputs): the provider billed it even when its script is not used.
pub(super) fn earlier_script_usage(ctx: &JobContext) -> Option<Value> {
    checkpointed::<Written>(ctx).map(|w| w.usage)
}

/// Checkpoints a written script before its completing transaction.
async fn save_script(ctx: &JobContext, written: &Written) -> Result<(), Outcome> {
    save(ctx, json!(written)).await
}

/// The script a task's inputs (hashed to `input_hash`) are written into, with the provider's
/// usage: the one an earlier attempt checkpointed, or else what `write` makes, checkpointed
/// before it is returned.
pub(super) async fn written_script<T, F>(
    ctx: &JobContext,
    input_hash: String,
    write: F,
) -> Result<(T, Value), Outcome>
where
    T: Serialize + DeserializeOwned,
    F: Future<Output = Result<Generated<T>, Outcome>>,
{
    let reused = reusable_script(ctx, &input_hash)
        .and_then(|w| Some((serde_json::from_value(w.output).ok()?, w.usage)));
    if let Some(found) = reused {
        return Ok(found);
    }
    // The task's paid call was made and answered what could not be used, and it was charged
    // (not refunded): another call here would be one the user does not pay for.
    if ctx.charge_kept() {
        return Err(Outcome::fail(
            "an earlier attempt's model call answered a script that could not be used and was \
             charged; this task does not call the model again (start a new request)",
        ));
    }
    let generated = write.await?;
    let usage = serde_json::to_value(generated.usage).unwrap_or(Value::Null);
    let product = Written {
        input_hash,
        output: serde_json::to_value(&generated.output).unwrap_or(Value::Null),
        usage: usage.clone(),
    };
    save_script(ctx, &product).await?;
    Ok((generated.output, usage))
}

impl App {
    /// The object an earlier attempt of this task made from the same inputs, when the bucket
    /// still holds it with the checksum and size recorded.
    pub(super) async fn reusable_object(
        &self,
        ctx: &JobContext,
        owner: UserId,
        drama: &DramaId,
        input_hash: &str,
    ) -> Result<Option<Product>, Outcome> {
        let Some(product) = checkpointed::<Product>(ctx) else {
            return Ok(None);
        };
        if product.input_hash != input_hash {
            return Ok(None);
        }
        let Ok(key) = readable_key(&product.storage_key, owner, drama) else {
            return Ok(None);
        };
        match self.assets.head(&key).await {
            Ok(info)
                if info.size == product.size
                    && info
                        .checksum
                        .as_ref()
                        .is_none_or(|c| *c == product.checksum) =>
            {
                tracing::info!(object.key = %key, job.id = %ctx.id(), "committing the object an earlier attempt made");
                Ok(Some(product))
            }
            Ok(_) | Err(drama_assets::AssetError::NotFound { .. }) => Ok(None),
            Err(e) if e.is_retryable() => Err(Outcome::retry(e)),
            Err(_) => Ok(None),
        }
    }

    /// Stores generated bytes, checkpoints them as the task's product and commits them with
    /// the job's completion.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn store_result(
        &self,
        ctx: &JobContext,
        task: &MediaTask,
        kind: &str,
        bytes: Bytes,
        mime: &str,
        input_hash: String,
        usage: Value,
    ) -> Outcome {
        let owner = UserId(ctx.owner());
        let drama = match DramaId::parse(task.drama.as_str()) {
            Ok(d) => d,
            Err(e) => return Outcome::fail(e),
        };
        let media = match MediaType::from_mime(mime) {
            Ok(m) => m,
            Err(e) => return Outcome::fail(e),
        };
        let sum = checksum(&bytes);
        let key = match object_key(owner, &drama, kind, &task.asset, &sum, media) {
            Ok(k) => k,
            Err(e) => return Outcome::fail(e),
        };
        // Recorded before the object exists, so that a crash between the two never leaks it;
        // attaching the object takes the key off the list in the same transaction.
        let keys = [key.as_str().to_owned()];
        let recorded = self
            .after_paid_call(
                "recording the object's key",
                drama_dal::RepoError::is_retryable,
                || {
                    self.store
                        .record_orphans(owner, &drama, &keys, "generation in progress")
                },
            )
            .await;
        if let Err(e) = recorded {
            return repo_outcome(&e);
        }
        // `Bytes` clones share the buffer: a repeated upload sends the same bytes.
        let stored = self
            .after_paid_call(
                "uploading the object",
                drama_assets::AssetError::is_retryable,
                || self.assets.put_bytes(&key, bytes.clone(), media.mime()),
            )
            .await;
        let info = match stored {
            Ok(info) => info,
            Err(e) if e.is_retryable() => return Outcome::retry(e),
            Err(e) => return Outcome::fail(e),
        };
        let product = Product {
            input_hash,
            storage_key: key.as_str().to_owned(),
            content_type: info.content_type,
            size: info.size,
            checksum: sum,
            usage,
        };
        if let Err(outcome) = save(ctx, json!(product)).await {
            return outcome;
        }
        self.commit_object(ctx, task, product).await
    }

    /// Records a stored object on its asset and completes the job, in one transaction that is
    /// retried as such.
    pub(super) async fn commit_object(
        &self,
        ctx: &JobContext,
        task: &MediaTask,
        product: Product,
    ) -> Outcome {
        let owner = UserId(ctx.owner());
        let (drama, asset_id) = match (
            DramaId::parse(task.drama.as_str()),
            AssetId::parse(task.asset.as_str()),
        ) {
            (Ok(d), Ok(a)) => (d, a),
            (Err(e), _) | (_, Err(e)) => return Outcome::fail(e),
        };
        let key = match ObjectKey::parse(product.storage_key.clone()) {
            Ok(k) => k,
            Err(e) => return Outcome::fail(e),
        };
        let url = self.object_url(&key);
        let result = json!({
            "assetId": task.asset, "url": url, "storageKey": key.as_str(),
            "contentType": product.content_type, "size": product.size,
            "checksum": product.checksum,
        });
        let generated = GeneratedAsset {
            asset_id,
            url,
            object: AssetObject {
                storage_key: product.storage_key,
                content_type: product.content_type,
                size_bytes: i64::try_from(product.size).unwrap_or(i64::MAX),
                checksum: Some(product.checksum),
                input_hash: Some(product.input_hash),
                usage: Some(product.usage),
            },
            entity_url: task.target.clone(),
        };
        let fence = ctx.fence();
        match self
            .commit_retrying(|| {
                self.generation
                    .complete_asset(&fence, owner, &drama, &generated, result.clone())
            })
            .await
        {
            Ok(_) => Outcome::committed_externally(),
            Err(e) => generation_outcome(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const QUICK: Backoff = Backoff::doubling(Duration::from_millis(1), Duration::from_millis(2));

    /// Fails `failures` times with a passing error, then succeeds.
    async fn flaky(calls: &AtomicU32, failures: u32) -> Result<u32, String> {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n <= failures {
            Err(format!("passing failure {n}"))
        } else {
            Ok(n)
        }
    }

    #[tokio::test]
    async fn a_step_outlasts_a_failure_longer_than_a_few_tries() {
        // Thirty failures in a row (a failover's worth, at any pace): the step is still
        // done by this attempt, not handed to a next attempt that would pay again.
        let calls = AtomicU32::new(0);
        let done = retry_within(
            "test",
            QUICK,
            Duration::from_secs(60),
            |_| true,
            || flaky(&calls, 30),
        )
        .await;
        assert_eq!(done, Ok(31));
    }

    #[tokio::test]
    async fn a_step_gives_up_after_its_patience_and_at_once_on_a_lasting_failure() {
        let calls = AtomicU32::new(0);
        let given_up = retry_within(
            "test",
            QUICK,
            Duration::from_millis(50),
            |_| true,
            || flaky(&calls, u32::MAX),
        )
        .await;
        assert!(given_up.is_err());
        assert!(calls.load(Ordering::SeqCst) > 1);
        let lasting = AtomicU32::new(0);
        let refused = retry_within(
            "test",
            QUICK,
            Duration::from_secs(60),
            |_| false,
            || flaky(&lasting, u32::MAX),
        )
        .await;
        assert_eq!(refused, Err("passing failure 1".to_owned()));
        assert_eq!(lasting.load(Ordering::SeqCst), 1);
    }
}
