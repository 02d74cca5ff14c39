//! The job handlers: each turns one node of a run into provider calls, stored objects and,
//! in one transaction with the job's completion, the rows that point at them.

use std::collections::HashMap;
use std::time::Duration;

use drama_ai::{
    AiError, DramaRequest, Generated, ImageKind, ImageRequest, ModelInfo, ReferenceImage,
    ScriptModel,
};
use drama_assets::{Category, MediaType, ObjectKey, Scope as KeyScope, keys};
use drama_dal::{DramaWrite, GenerationError, RepoError, ScriptCompletion};
use drama_domain::{AssetId, AssetKind, Drama, DramaId, EpisodeId, UserId};
use drama_jobs::{Expansion, HandlerOptions, JobContext, Outcome, Registry};
use serde_json::{Value, json};

use super::hash::{Inputs, checksum, input_hash};
use super::normalize::ensure_assets;
use super::plan::{Planner, model_tag, stitch_model};
use super::product::{hash_parts, written_script};
use super::spec::{CritiqueTask, DramaTask, MediaTask, ScenesTask, StitchTask, kind};
use super::stitch;
use crate::App;

use timeouts::HandlerTimeouts;
use usage::{scenes_price, usage_price};

/// Maps a provider error onto the engine's retry semantics.
fn ai_outcome(e: &AiError) -> Outcome {
    if let Some(delay) = e.retry_after() {
        return Outcome::throttle(delay, e);
    }
    if e.is_retryable() {
        Outcome::retry(e)
    } else {
        Outcome::fail(e)
    }
}

pub(super) fn repo_outcome(e: &RepoError) -> Outcome {
    if e.is_retryable() {
        Outcome::retry(e)
    } else {
        Outcome::fail(e)
    }
}

pub(super) fn generation_outcome(e: &GenerationError) -> Outcome {
    match e {
        // The task was retaken by another worker; whatever is answered here is ignored.
        GenerationError::FenceLost => Outcome::fail("the lease was lost"),
        GenerationError::Repo(r) => repo_outcome(r),
        GenerationError::Jobs(j) => Outcome::retry(j),
    }
}

/// The key of a stored object that a task of `owner`'s drama `drama` reads, once it is known
/// to belong there. The database refuses such keys on every write; a row written behind the
/// server's back (by hand, by a restored backup, by an older version) must still not make the
/// server read, and hand out, another user's object.
pub(crate) fn readable_key(key: &str, owner: UserId, drama: &DramaId) -> Result<ObjectKey, String> {
    if !drama_domain::storage_key_belongs(key, owner, drama) {
        tracing::error!(object.key = %key, drama.id = %drama, "a stored key lies outside its owner's prefix; not reading it");
        return Err(format!(
            "the stored object {key} does not belong to drama {drama}; it is not read"
        ));
    }
    ObjectKey::parse(key.to_owned()).map_err(|e| e.to_string())
}

/// `?` for handler steps: the error becomes the outcome.
macro_rules! step {
    ($e:expr, $map:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return $map(&e),
        }
    };
}

/// `?` for steps whose error already is the outcome to answer.
macro_rules! outcome {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(outcome) => return outcome,
        }
    };
}

mod timeouts;
mod usage;
mod video;

/// Runs a paid provider call (an image, a script) unless the job was cancelled before it
/// starts. Once the request is out, a cancellation does not abandon it: the provider bills the
/// call whatever we do with its answer, so the answer is awaited, its product saved and the
/// task completed — and charged, where abandoning it ended the task cancelled and refunded the
/// user for work the operator had paid for. The engine keeps a completion that follows a
/// cancellation and still cancels what depends on the task. A handler timeout or a worker
/// shutdown past its grace period drops the whole handler, this call included, as before.
///
/// A cancellation that comes while the call waits to try again (a backoff, a 429's
/// `Retry-After`) stops it before the next try is sent ([`drama_ai::cancellable`]): the
/// tries so far failed, so nothing was produced, and the task ends cancelled and refunded.
async fn ai_call<T>(
    ctx: &JobContext,
    call: impl Future<Output = Result<T, AiError>>,
) -> Result<T, Outcome> {
    if ctx.is_cancelled() {
        return Err(Outcome::cancelled("cancelled"));
    }
    cancellable_call(ctx, call).await.map_err(|e| {
        if ctx.is_cancelled() {
            Outcome::cancelled("cancelled")
        } else {
            ai_outcome(&e)
        }
    })
}

/// [`ai_call`] for a script call: an answer the provider billed that cannot be used (it
/// breaks the drama rules, or was cut off, also after the repair request) fails the task with
/// its charge kept ([`charged_failure`]), where a plain failure would refund a paid call.
async fn script_call<T>(
    ctx: &JobContext,
    call: impl Future<Output = Result<T, AiError>>,
) -> Result<T, Outcome> {
    if ctx.is_cancelled() {
        return Err(Outcome::cancelled("cancelled"));
    }
    match cancellable_call(ctx, call).await {
        Ok(v) => Ok(v),
        Err(e @ (AiError::SchemaViolation { .. } | AiError::Truncated { .. })) => {
            Err(charged_failure(ctx, e).await)
        }
        Err(_) if ctx.is_cancelled() => Err(Outcome::cancelled("cancelled")),
        Err(e) => Err(ai_outcome(&e)),
    }
}

/// Fails a script task whose paid call answered what cannot be stored (output that breaks
/// the rules or the bounds of a drama), keeping its charge: the provider billed the call, so
/// the user pays it as a completed call, and a resume does not call the model again for free
/// ([`written_script`]). A store that cannot record it now makes the attempt try again (the
/// next one reuses the checkpointed answer instead of calling the provider).
pub(super) async fn charged_failure(ctx: &JobContext, error: impl std::fmt::Display) -> Outcome {
    match ctx.keep_charge().await {
        Ok(()) => Outcome::fail(error),
        Err(e) if e.is_fence_lost() => Outcome::fail("the lease was lost"),
        Err(e) => Outcome::retry(format!("{error} (its charge could not be recorded: {e})")),
    }
}

/// `call` under the job's cancellation: no retry of it is sent once the job is cancelled.
async fn cancellable_call<T>(
    ctx: &JobContext,
    call: impl Future<Output = Result<T, AiError>>,
) -> Result<T, AiError> {
    drama_ai::cancellable(ctx.cancellation().clone(), call).await
}

/// What both media handlers start from.
struct MediaInputs {
    task: MediaTask,
    references: Vec<ReferenceImage>,
    hash: String,
}

fn category(kind: &str) -> Category {
    match kind {
        kind::PORTRAIT => Category::Portraits,
        kind::AUDITION => Category::Auditions,
        kind::STORYBOARD => Category::Storyboards,
        kind::CLIP => Category::Clips,
        kind::COVER => Category::Covers,
        _ => Category::Episodes,
    }
}

fn image_kind(kind: &str) -> ImageKind {
    match kind {
        kind::PORTRAIT => ImageKind::Portrait,
        kind::COVER => ImageKind::Cover,
        _ => ImageKind::Storyboard,
    }
}

/// Keys are unique per object (the asset id plus the start of the content hash), so a key
/// being swept is never one being written.
pub(super) fn object_key(
    owner: UserId,
    drama: &DramaId,
    kind: &str,
    asset: &str,
    sum: &str,
    media: MediaType,
) -> Result<ObjectKey, String> {
    let scope = KeyScope::drama(drama).map_err(|e| e.to_string())?;
    let digest = sum.trim_start_matches("sha256:");
    let stem: String = asset.chars().take(110).collect();
    let name = format!("{stem}-{}", &digest[..digest.len().min(12)]);
    keys::asset_key(owner, &scope, category(kind), &name, media).map_err(|e| e.to_string())
}

impl App {
    /// Every handler of the pipeline, ready for a worker.
    ///
    /// A worker process builds it as it starts, which is when the scratch directories that
    /// killed stitches left behind are removed ([`stitch::remove_stale_scratch`]).
    pub fn registry(&self) -> Registry {
        stitch::remove_stale_scratch();
        let mut registry = Registry::new();
        let timeouts = HandlerTimeouts::from_settings(self.ai.settings());
        let image = [kind::PORTRAIT, kind::STORYBOARD, kind::COVER];
        self.handle(
            &mut registry,
            &image,
            timeouts.image,
            |app, ctx| async move { app.run_image(ctx).await },
        );
        self.handle(
            &mut registry,
            &[kind::CLIP, kind::AUDITION],
            timeouts.video,
            |app, ctx| async move { app.run_video(ctx).await },
        );
        self.handle(
            &mut registry,
            &[kind::STITCH],
            stitch::TIMEOUT,
            |app, ctx| async move { app.run_stitch(ctx).await },
        );
        self.handle(
            &mut registry,
            &[kind::WRITE_SCENES],
            timeouts.script,
            |app, ctx| async move { app.run_scenes(ctx).await },
        );
        self.handle(
            &mut registry,
            &[kind::WRITE_DRAMA],
            timeouts.script,
            |app, ctx| async move { app.run_write_drama(ctx).await },
        );
        self.handle(
            &mut registry,
            &[kind::CRITIQUE_DRAMA],
            timeouts.script,
            |app, ctx| async move { app.run_critique(ctx).await },
        );
        registry
    }

    /// Registers `run` for `kinds`, each attempt cut off after `timeout`.
    fn handle<F, Fut>(&self, registry: &mut Registry, kinds: &[&str], timeout: Duration, run: F)
    where
        F: Fn(App, JobContext) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Outcome> + Send + 'static,
    {
        let options = HandlerOptions {
            timeout: Some(timeout),
            ..HandlerOptions::default()
        };
        for kind in kinds {
            let (app, run) = (self.clone(), run.clone());
            registry.register_with(
                *kind,
                move |ctx: JobContext| run(app.clone(), ctx),
                options.clone(),
            );
        }
    }

    /// Loads the reference objects of a task: their images and checksums, in order.
    async fn references(
        &self,
        owner: UserId,
        drama: &DramaId,
        refs: &[String],
    ) -> Result<(Vec<ReferenceImage>, Vec<String>), Outcome> {
        if refs.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let objects = self
            .store
            .asset_objects(owner, drama)
            .await
            .map_err(|e| repo_outcome(&e))?;
        let mut images = Vec::new();
        let mut sums = Vec::new();
        for r in refs {
            let object = objects
                .iter()
                .find(|(id, _)| id.as_str() == r)
                .map(|(_, o)| o)
                .ok_or_else(|| Outcome::fail(format!("reference {r} has no generated object")))?;
            let key = readable_key(&object.storage_key, owner, drama)
                .map_err(|e| Outcome::fail(format!("reference {r}: {e}")))?;
            let (info, bytes) = self.assets.get_bytes(&key).await.map_err(|e| {
                if e.is_retryable() {
                    Outcome::retry(&e)
                } else {
                    Outcome::fail(format!("reference {r}: {e}"))
                }
            })?;
            let sum = info
                .checksum
                .or_else(|| object.checksum.clone())
                .unwrap_or_else(|| checksum(&bytes));
            let mut image = ReferenceImage::new(bytes, info.content_type);
            if let Ok(presigned) = self
                .assets
                .presign_get(&key, Duration::from_secs(3600))
                .await
            {
                image = image.with_url(presigned.url);
            }
            images.push(image);
            sums.push(sum);
        }
        Ok((images, sums))
    }

    /// What both media handlers start from: the task, its reference images and the hash of
    /// its inputs (`duration` says whether the task's duration is one of them). `Err` is the
    /// outcome to answer at once, the commit of the object an earlier attempt made from the
    /// same inputs included.
    async fn media_inputs(
        &self,
        ctx: &JobContext,
        model: &ModelInfo,
        duration: bool,
    ) -> Result<MediaInputs, Outcome> {
        let task: MediaTask = ctx.payload_as()?;
        let owner = UserId(ctx.owner());
        let drama = DramaId::parse(task.drama.as_str()).map_err(Outcome::fail)?;
        let (references, sums) = self.references(owner, &drama, &task.references).await?;
        let sum_refs: Vec<&str> = sums.iter().map(String::as_str).collect();
        let hash = input_hash(&Inputs {
            kind: ctx.kind(),
            prompt: &task.prompt,
            model: &model_tag(model),
            references: &sum_refs,
            duration: if duration { task.duration } else { None },
        });
        if let Some(product) = self.reusable_object(ctx, owner, &drama, &hash).await? {
            return Err(self.commit_object(ctx, &task, product).await);
        }
        // The asset may have gone since the run was planned (its drama deleted, a resumed run
        // of a deleted drama, its character removed): no paid call is made for it, and the
        // task fails before spending anything, so it is refunded. A task an earlier attempt
        // spent on (a product or a provider's task recorded) goes on and settles as before.
        if ctx.last_checkpoint().is_none() {
            let asset = AssetId::parse(task.asset.as_str()).map_err(Outcome::fail)?;
            let exists = self
                .generation
                .asset_exists(owner, &drama, &asset)
                .await
                .map_err(|e| generation_outcome(&e))?;
            if !exists {
                return Err(Outcome::fail(format!(
                    "asset {asset} of drama {drama} no longer exists; nothing was generated"
                )));
            }
        }
        Ok(MediaInputs {
            task,
            references,
            hash,
        })
    }

    /// What follows a written script: `expand` plans it on `drama` (nothing generated for it
    /// yet) with the task's script model.
    fn expansion_after(
        &self,
        drama: &Drama,
        model: Option<String>,
        expand: impl FnOnce(&Planner<'_>) -> Result<(Expansion, i64), crate::AppError>,
    ) -> Result<(Expansion, i64), Outcome> {
        let objects = HashMap::new();
        let models = self.models(model);
        let costs = self.costs(&models);
        let planner = Planner::new(drama, &objects, &models, &costs).map_err(Outcome::fail)?;
        expand(&planner).map_err(Outcome::fail)
    }

    async fn run_image(&self, ctx: JobContext) -> Outcome {
        let model = self.ai.image_model();
        let MediaInputs {
            task,
            references,
            hash,
        } = outcome!(self.media_inputs(&ctx, &model.model(), false).await);
        let request = ImageRequest {
            kind: image_kind(ctx.kind()),
            prompt: task.prompt.clone(),
            label: task.label.clone(),
            references,
        };
        let generated = outcome!(ai_call(&ctx, model.generate_image(&request)).await);
        let usage = serde_json::to_value(generated.usage).unwrap_or(Value::Null);
        let kind = ctx.kind().to_owned();
        self.store_result(
            &ctx,
            &task,
            &kind,
            generated.output.bytes,
            &generated.output.mime_type,
            hash,
            usage,
        )
        .await
    }

    async fn run_stitch(&self, ctx: JobContext) -> Outcome {
        let task: StitchTask = outcome!(ctx.payload_as());
        let owner = UserId(ctx.owner());
        let drama_id = step!(DramaId::parse(task.drama.as_str()), Outcome::fail);
        let stored = step!(
            self.store.get_complete(owner, &drama_id).await,
            repo_outcome
        );
        let objects = step!(
            self.store.asset_objects(owner, &drama_id).await,
            repo_outcome
        );
        let Some(episode) = stored.drama.episode(&task.episode) else {
            return Outcome::fail(format!("episode {} no longer exists", task.episode));
        };
        let mut clips = Vec::new();
        for scene in &episode.scenes {
            let Some(clip) = scene.assets.iter().find(|a| a.kind == AssetKind::Video) else {
                return Outcome::fail(format!("scene {} has no clip", scene.id));
            };
            let Some(object) = objects.get(&clip.id) else {
                return Outcome::fail(format!(
                    "the clip of scene {} has not been generated",
                    scene.id
                ));
            };
            clips.push(object.clone());
        }
        if clips.is_empty() {
            return Outcome::fail(format!("episode {} has no scenes to stitch", task.episode));
        }
        let mut files = Vec::new();
        for clip in &clips {
            let key = step!(
                readable_key(&clip.storage_key, owner, &drama_id),
                |e: &String| Outcome::fail(e)
            );
            let (_, bytes) = step!(
                self.assets.get_bytes(&key).await,
                |e: &drama_assets::AssetError| {
                    if e.is_retryable() {
                        Outcome::retry(e)
                    } else {
                        Outcome::fail(e)
                    }
                }
            );
            files.push(bytes);
        }
        let stitched = tokio::select! {
            r = stitch::concat(&self.ffmpeg, &files) => step!(r, |e: &stitch::StitchError| {
                if e.is_retryable() { Outcome::retry(e) } else { Outcome::fail(e) }
            }),
            () = ctx.cancellation().cancelled() => return Outcome::cancelled("cancelled"),
        };
        let sums: Vec<&str> = clips.iter().filter_map(|c| c.checksum.as_deref()).collect();
        let Some(video_asset) = episode.assets.iter().find(|a| a.id.as_str() == task.asset) else {
            return Outcome::fail(format!("asset {} no longer exists", task.asset));
        };
        let hash = input_hash(&Inputs {
            kind: kind::STITCH,
            prompt: &video_asset.prompt,
            model: &model_tag(&stitch_model()),
            references: &sums,
            duration: None,
        });
        let media = MediaTask {
            drama: task.drama.clone(),
            asset: task.asset.clone(),
            prompt: video_asset.prompt.clone(),
            label: episode.title.clone(),
            references: Vec::new(),
            duration: None,
            target: drama_dal::EntityUrl::Episode(episode.id.clone()),
        };
        let usage = json!({ "clips": clips.len() });
        self.store_result(
            &ctx,
            &media,
            kind::STITCH,
            stitched,
            "video/mp4",
            hash,
            usage,
        )
        .await
    }

    async fn run_scenes(&self, ctx: JobContext) -> Outcome {
        let spec: ScenesTask = outcome!(ctx.payload_as());
        let owner = UserId(ctx.owner());
        let drama_id = step!(DramaId::parse(spec.drama.as_str()), Outcome::fail);
        let episode_id = step!(EpisodeId::parse(spec.episode.as_str()), Outcome::fail);
        let stored = step!(
            self.store.get_complete(owner, &drama_id).await,
            repo_outcome
        );
        let mut drama = stored.drama;
        let Some(episode) = drama.episode(episode_id.as_str()) else {
            return Outcome::fail(format!("episode {episode_id} no longer exists"));
        };
        let mut usage = Value::Null;
        // The scenes this task's paid call wrote, when it wrote them (not kept from before).
        let mut written = None;
        // Scenes written by an earlier attempt (or by the user meanwhile) are kept.
        if episode.scenes.is_empty() {
            let script = step!(self.ai.script_model(spec.model.as_deref()), ai_outcome);
            // What the scenes are written from: the task, the model, the cast and the episode.
            let cast: Vec<&str> = drama.characters.iter().map(|c| c.id.as_str()).collect();
            let hash = hash_parts(&[
                ctx.kind(),
                &ctx.payload().to_string(),
                &model_tag(&script.model()),
                &cast.join("\n"),
                &episode.title,
                &episode.description,
                episode.premise.as_deref().unwrap_or_default(),
            ]);
            let (scenes, used) = outcome!(
                written_script(
                    &ctx,
                    hash,
                    script_call(&ctx, script.write_episode_scenes(&drama, &episode_id))
                )
                .await
            );
            usage = used;
            written = Some(json!({ "scenes": scenes }));
            if let Some(e) = drama.episodes.iter_mut().find(|e| e.id == episode_id) {
                e.scenes = scenes;
            }
        }
        let checked =
            ensure_assets(&mut drama).and_then(|_| self.check_written(&drama, written.as_ref()));
        if let Err(e) = checked {
            let error = format!("the written scenes are invalid: {e}");
            return match written {
                Some(_) => charged_failure(&ctx, error).await,
                None => Outcome::fail(error),
            };
        }
        let (expansion, cost) =
            outcome!(self.expansion_after(&drama, spec.model.clone(), |planner| {
                planner.scene_expansion(&episode_id, &spec)
            }));
        let Some(episode) = drama.episode(episode_id.as_str()) else {
            return Outcome::fail(format!("episode {episode_id} no longer exists"));
        };
        let completion = ScriptCompletion {
            usage_price: scenes_price(&ctx, spec.token_prices, &usage, written.is_some()),
            expansion,
            expansion_cost: cost,
            result: json!({ "episodeId": episode_id, "scenes": episode.scenes.len(), "usage": usage }),
            kept_objects: Vec::new(),
        };
        let fence = ctx.fence();
        match self
            .commit_retrying(|| {
                self.generation.complete_scenes(
                    &fence,
                    owner,
                    &drama_id,
                    &episode_id,
                    &episode.scenes,
                    completion.clone(),
                )
            })
            .await
        {
            Ok(_) => Outcome::committed_externally(),
            // The drama changed while the scenes were written, so that with them it breaks a
            // rule (its size): the call was made and billed all the same.
            Err(GenerationError::Repo(RepoError::Invalid(e))) if written.is_some() => {
                charged_failure(&ctx, format!("the written scenes are invalid: {e}")).await
            }
            Err(e) => generation_outcome(&e),
        }
    }

    /// Checks a drama a model wrote, or extended with `written` (its new part, as JSON): the
    /// rules of the model, the bounds of a drama's size, and the bounds of client text on what
    /// was written, so that generation grows no drama past what a client may send.
    fn check_written(
        &self,
        drama: &Drama,
        written: Option<&Value>,
    ) -> Result<(), drama_domain::DomainError> {
        drama.validate()?;
        drama.check_size()?;
        match written {
            Some(doc) => self.limits.check_document(doc),
            None => Ok(()),
        }
    }

    async fn run_write_drama(&self, ctx: JobContext) -> Outcome {
        let spec: DramaTask = outcome!(ctx.payload_as());
        let owner = UserId(ctx.owner());
        let drama_id = step!(DramaId::parse(spec.drama.as_str()), Outcome::fail);
        // A drama stored under the id since the run was admitted (it was settled meanwhile,
        // or written past the API) makes the write fail at its commit: fail before paying.
        if step!(self.store.id_taken(&drama_id).await, repo_outcome) {
            return Outcome::fail(format!("drama id {drama_id} is taken"));
        }
        let script = step!(self.ai.script_model(spec.model.as_deref()), ai_outcome);
        let hash = hash_parts(&[
            ctx.kind(),
            &ctx.payload().to_string(),
            &model_tag(&script.model()),
        ]);
        let (mut drama, usage): (Drama, Value) = outcome!(
            written_script(
                &ctx,
                hash,
                self.write_drama(&ctx, &spec, &drama_id, script.as_ref())
            )
            .await
        );
        drama.id = drama_id.clone();
        let reference = [
            ("reference_image_url", &spec.reference_url),
            ("reference_image_dropped", &spec.reference_dropped),
        ];
        for (key, value) in reference {
            if let Some(value) = value {
                let mut metadata = drama.metadata.take().unwrap_or_else(|| json!({}));
                if let Value::Object(map) = &mut metadata {
                    map.insert(key.to_owned(), Value::String(value.clone()));
                }
                drama.metadata = Some(metadata);
            }
        }
        let checked = ensure_assets(&mut drama).and_then(|_| {
            let doc = serde_json::to_value(&drama).unwrap_or(Value::Null);
            self.check_written(&drama, Some(&doc))
        });
        if let Err(e) = checked {
            return charged_failure(&ctx, format!("the written drama is invalid: {e}")).await;
        }
        let (expansion, cost) =
            outcome!(
                self.expansion_after(&drama, spec.model.clone(), |planner| planner.first_images())
            );
        let completion = ScriptCompletion {
            usage_price: usage_price(spec.token_prices, &usage),
            expansion,
            expansion_cost: cost,
            result: json!({ "dramaId": drama_id, "usage": usage }),
            // The drama keeps its reference image; a run that never writes it leaves the
            // image recorded as an orphan (`App::create_from_premise`).
            kept_objects: spec.reference_key.iter().cloned().collect(),
        };
        let fence = ctx.fence();
        match self
            .commit_retrying(|| {
                self.generation.complete_drama(
                    &fence,
                    owner,
                    &drama,
                    DramaWrite::Create,
                    completion.clone(),
                )
            })
            .await
        {
            Ok(_) => Outcome::committed_externally(),
            Err(GenerationError::Repo(RepoError::AlreadyExists { .. })) => Outcome::fail(format!(
                "drama id {drama_id} was taken while the drama was being written"
            )),
            Err(GenerationError::Repo(RepoError::Invalid(e))) => {
                charged_failure(&ctx, format!("the written drama is invalid: {e}")).await
            }
            Err(e) => generation_outcome(&e),
        }
    }

    /// Calls the script model for a drama task: a new drama from the premise, or an improved
    /// copy of the original.
    async fn write_drama(
        &self,
        ctx: &JobContext,
        spec: &DramaTask,
        drama_id: &DramaId,
        script: &dyn ScriptModel,
    ) -> Result<Generated<Drama>, Outcome> {
        let owner = UserId(ctx.owner());
        match &spec.improve {
            Some(improve) => {
                let original_id =
                    DramaId::parse(improve.original.as_str()).map_err(Outcome::fail)?;
                let original = match self.store.get_complete(owner, &original_id).await {
                    Ok(o) => o.drama,
                    Err(RepoError::NotFound { .. }) => {
                        return Err(Outcome::fail(format!(
                            "Original drama {original_id} not found"
                        )));
                    }
                    Err(e) => return Err(repo_outcome(&e)),
                };
                script_call(
                    ctx,
                    script.improve_drama(&original, &improve.feedback, drama_id),
                )
                .await
            }
            None => {
                let mut request = DramaRequest::new(drama_id.clone(), spec.premise.clone());
                if let Some(key) = &spec.reference_key
                    && let Ok(key) = readable_key(key, owner, drama_id)
                    && let Ok((info, bytes)) = self.assets.get_bytes(&key).await
                {
                    request
                        .references
                        .push(ReferenceImage::new(bytes, info.content_type));
                }
                script_call(ctx, script.generate_drama(&request)).await
            }
        }
    }

    async fn run_critique(&self, ctx: JobContext) -> Outcome {
        let spec: CritiqueTask = outcome!(ctx.payload_as());
        let owner = UserId(ctx.owner());
        let drama_id = step!(DramaId::parse(spec.drama.as_str()), Outcome::fail);
        let drama = step!(
            self.store.get_complete(owner, &drama_id).await,
            repo_outcome
        )
        .drama;
        let script = step!(self.ai.script_model(spec.model.as_deref()), ai_outcome);
        let hash = hash_parts(&[
            ctx.kind(),
            &ctx.payload().to_string(),
            &model_tag(&script.model()),
            &serde_json::to_string(&drama).unwrap_or_default(),
        ]);
        let (feedback, usage): (String, Value) = outcome!(
            written_script(&ctx, hash, script_call(&ctx, script.critique_drama(&drama))).await
        );
        let usage_price = usage_price(spec.token_prices, &usage);
        let result = json!({ "feedback": feedback, "usage": usage });
        let fence = ctx.fence();
        match self
            .commit_retrying(|| {
                self.generation
                    .complete_script(&fence, owner, usage_price, result.clone())
            })
            .await
        {
            Ok(()) => Outcome::committed_externally(),
            Err(e) => generation_outcome(&e),
        }
    }
}
