//! Starting and following generation runs.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use drama_ai::{AiError, CallKind};
use drama_assets::{AssetError, Category, MediaType, ObjectKey, Scope as KeyScope, keys};
use drama_dal::{Entity, GenerationError, StoredDrama};
use drama_domain::{Backoff, DomainError, DramaId, UserId};
use drama_jobs::{Graph, JobError, JobId, NodeSpec, RunFilter, RunSpec};
use rand::Rng as _;
use rand::distr::Alphanumeric;
use serde_json::json;

use super::plan::Models;
use super::spec::{CritiqueTask, DramaTask, ImproveSpec, class, kind};
use crate::once::Once;
use crate::{App, AppError, Caller};

/// How to generate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenerateOptions {
    /// Regenerate even what is up to date.
    pub force: bool,
    /// Most tokens the run may spend; tasks past it are cancelled and refunded.
    pub budget: Option<i64>,
}

/// A started run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// The run (its root job).
    pub job_id: JobId,
    /// The drama it is about.
    pub drama_id: DramaId,
    /// The answer to an earlier request with the same idempotency key (nothing new started
    /// or charged).
    pub replayed: bool,
}

/// What a synchronous use case (portrait, cover) answers: the drama once its run is done, or
/// the run when it could not finish inside the caller's wait (nothing is charged twice: the
/// run goes on and the client follows it).
#[derive(Debug, Clone)]
pub enum Waited {
    /// The run completed; the drama as it is now.
    Done(Box<StoredDrama>),
    /// The run is still going.
    Running(Started),
}

/// An image uploaded with a premise.
#[derive(Debug, Clone)]
pub struct ReferenceUpload {
    /// The bytes.
    pub bytes: Bytes,
    /// Declared MIME type, if any.
    pub content_type: Option<String>,
}

/// `POST /dramas` with a premise.
#[derive(Debug, Clone, Default)]
pub struct PremiseRequest {
    /// What the drama is about.
    pub premise: String,
    /// The id to give it (default: generated).
    pub id: Option<String>,
    /// Script model name (default `gemini-3-pro-preview`).
    pub model: Option<String>,
    /// A reference image.
    pub reference: Option<ReferenceUpload>,
}

/// Pauses between looks at a run a caller waits for: 20 ms, doubling up to half a second.
pub(super) const SETTLE_POLL: Backoff =
    Backoff::doubling(Duration::from_millis(20), Duration::from_millis(500));

/// The answer for a drama id that is taken, by a stored drama or a run writing one.
fn id_taken(id: &DramaId) -> AppError {
    AppError::AlreadyExists {
        entity: Entity::Drama,
        id: id.to_string(),
    }
}

/// Maps an engine error.
pub(crate) fn job_error(e: JobError) -> AppError {
    match e {
        JobError::NotFound(id) => AppError::not_found(Entity::Job, id),
        JobError::Unavailable(m) => AppError::Unavailable(m),
        JobError::InvalidGraph(g) => AppError::Internal(Box::new(g)),
        other => AppError::Internal(Box::new(other)),
    }
}

pub(crate) fn generation_error(e: GenerationError) -> AppError {
    match e {
        GenerationError::Repo(r) => r.into(),
        GenerationError::Jobs(j) => job_error(j),
        GenerationError::FenceLost => AppError::Unavailable("lease lost".to_owned()),
    }
}

fn model_error(e: AiError) -> AppError {
    match e {
        AiError::UnknownModel { .. } | AiError::NotConfigured { .. } => {
            AppError::Invalid(DomainError::field("model", e.to_string()))
        }
        other => AppError::Unavailable(other.to_string()),
    }
}

fn generated_drama_id() -> String {
    let suffix: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(12)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect();
    format!("drama_{suffix}")
}

/// Why a premise's reference image cannot be used, when it is a still image in a format the
/// image models do not read: an iPhone's HEIC (or HEIF, AVIF), whatever type it was declared
/// as, or any other image type declared (`image/tiff`). The old server stored any file and
/// never used it, and its clients send the photos they are given, so such a request is
/// accepted: the image is not stored (the store keeps only what it can type) and the reason
/// goes into the written drama's `metadata.reference_image_dropped`. What is not an image at
/// all (whatever image type it was declared as), or not what its declared type says, is
/// still refused (`store_reference`).
fn unusable_reference(upload: &ReferenceUpload) -> Option<String> {
    let declared = upload
        .content_type
        .as_deref()
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .filter(|t| !t.is_empty() && t != "application/octet-stream");
    let an_image = declared.as_deref().is_none_or(|t| t.starts_with("image/"));
    let format = match MediaType::unaccepted_image(&upload.bytes) {
        Some(name) if an_image => name.to_owned(),
        _ => match &declared {
            Some(t)
                if t.starts_with("image/")
                    && MediaType::from_mime(t).is_err()
                    && looks_like_an_image(&upload.bytes) =>
            {
                t.clone()
            }
            _ => return None,
        },
    };
    Some(format!(
        "a {format} image is not one the image models read (PNG, JPEG, WebP or GIF); the \
         drama was written without it"
    ))
}

/// Whether `bytes` begin an image: one the store types, one of the ISO still-image formats it
/// does not accept, or another common still-image format (TIFF, BMP, ICO, PSD, JPEG XL, JPEG
/// 2000, SVG). A PDF declared `image/tiff` is not one, and is refused as the bytes it is.
fn looks_like_an_image(bytes: &[u8]) -> bool {
    const SIGNATURES: [&[u8]; 9] = [
        b"II*\0",
        b"MM\0*",
        b"BM",
        b"\0\0\x01\0",
        b"8BPS",
        b"\xFF\x0A",
        b"\0\0\0\x0CJXL \r\n\x87\n",
        b"\0\0\0\x0CjP  \r\n\x87\n",
        b"\xFF\x4F\xFF\x51",
    ];
    let head = &bytes[..bytes.len().min(drama_assets::SNIFF_LEN)];
    MediaType::detect(head).is_some_and(|m| m.kind() == drama_assets::MediaKind::Image)
        || MediaType::unaccepted_image(head).is_some()
        || SIGNATURES.iter().any(|s| head.starts_with(s))
        || String::from_utf8_lossy(head)
            .to_ascii_lowercase()
            .contains("<svg")
}

/// An asset error about a premise's reference image, named for the form's `reference_image`
/// part: the conversion of asset errors names an upload `file`, the asset library's field.
fn refused_reference(e: AssetError) -> AppError {
    match AppError::from(e) {
        AppError::Invalid(mut refused) => {
            for error in &mut refused.errors {
                if error.field == "file" {
                    "reference_image".clone_into(&mut error.field);
                }
            }
            AppError::Invalid(refused)
        }
        other => other,
    }
}

impl App {
    /// The models that generate right now (their identity is part of every input hash).
    pub(crate) fn models(&self, script_name: Option<String>) -> Models {
        let script = self
            .ai
            .script_model(script_name.as_deref())
            .map(|m| m.model())
            .unwrap_or_else(|_| drama_ai::ModelInfo::new(drama_ai::Provider::Offline, "offline"));
        let token_prices = self.token_prices(&script, script_name.as_deref());
        Models {
            image: self.ai.image_model().model(),
            video: self.ai.video_model().model(),
            script,
            script_name,
            price_offline: self.price_offline,
            token_prices,
        }
    }

    /// The per-token prices a script task submitted now settles at: the model's, when its
    /// calls are billed at all (the offline writer is not, unless pricing says so).
    fn token_prices(
        &self,
        script: &drama_ai::ModelInfo,
        name: Option<&str>,
    ) -> Option<drama_ai::TokenPrices> {
        if super::plan::priced(script.provider, self.price_offline) == drama_ai::Provider::Offline {
            return None;
        }
        self.ai.catalog().resolve(name).ok()?.token_prices
    }

    /// The token prices for a single script task of the model named `name`.
    fn script_token_prices(&self, name: Option<&str>) -> Option<drama_ai::TokenPrices> {
        let script = self.ai.script_model(name).ok()?.model();
        self.token_prices(&script, name)
    }

    /// What calls of a run writing with `models.script` cost.
    pub(crate) fn costs(&self, models: &Models) -> drama_ai::CostTable {
        self.ai.cost_table(models.script_name.as_deref())
    }

    fn script_cost(&self, call: CallKind, name: Option<&str>) -> Result<i64, AppError> {
        let model = self.ai.script_model(name).map_err(model_error)?;
        Ok(i64::from(self.ai.cost_table(name).estimate(
            call,
            super::plan::priced(model.model().provider, self.price_offline),
            0,
        )))
    }

    /// Stores and pays for a run in one transaction. Under an idempotency key another request
    /// may have taken the key in the meantime; its answer is returned then.
    pub(super) async fn submit(
        &self,
        owner: UserId,
        cost: i64,
        mut graph: Graph,
        once: &Once,
    ) -> Result<Started, AppError> {
        // The run quota's check and the run's write take the user's turn (`admission`).
        let _turn = self.admission.user(owner).await;
        self.check_run_quota(owner).await?;
        // Every run but a critique stores media.
        if graph.run.kind != kind::CRITIQUE_DRAMA {
            self.check_bytes_quota(owner, 0).await?;
        }
        if let Some(key) = once.key() {
            graph.run.idempotency_key = Some(key.to_owned());
            once.mark(&mut graph.run.payload);
        }
        let submitted = self
            .generation
            .submit_charged(owner, cost, &graph)
            .await
            .map_err(generation_error)?;
        if !submitted.created {
            let run = self
                .jobs
                .job(submitted.run_id)
                .await
                .map_err(job_error)?
                .ok_or_else(|| AppError::Unavailable("the keyed run vanished".to_owned()))?;
            return once.replay(&run);
        }
        let subject = graph.run.subject.as_deref().unwrap_or_default();
        Ok(Started {
            job_id: submitted.run_id,
            drama_id: DramaId::parse(subject).map_err(|e| AppError::Internal(Box::new(e)))?,
            replayed: false,
        })
    }

    /// Refuses an id that a drama holds, or that a run still writing a drama under it
    /// (from a premise, or an improvement into a new id) will take. Without the second check
    /// a client could take the id while the script is being written, and the paid write would
    /// then fail (and be refunded) at its end. Ids are shared between users (docs/API.md), so
    /// anyone's run reserves its id, answered exactly as a taken id is.
    async fn ensure_free(&self, id: &DramaId) -> Result<(), AppError> {
        if self.store.id_taken(id).await? {
            return Err(id_taken(id));
        }
        self.ensure_not_being_written(id).await
    }

    /// Refuses an id a running generation is writing (see [`App::ensure_free`]). A write that
    /// stores the drama at once needs only this: the store itself refuses a taken id.
    pub(crate) async fn ensure_not_being_written(&self, id: &DramaId) -> Result<(), AppError> {
        if self.id_being_written(id).await? {
            return Err(id_taken(id));
        }
        Ok(())
    }

    async fn id_being_written(&self, id: &DramaId) -> Result<bool, AppError> {
        let active = self
            .jobs
            .list_runs(&RunFilter {
                owner: None,
                subject: Some(id.to_string()),
                active_only: true,
                limit: 20,
            })
            .await
            .map_err(job_error)?;
        Ok(active
            .iter()
            .any(|run| run.kind == kind::CREATE_DRAMA || run.kind == kind::IMPROVE_DRAMA))
    }

    /// Starts writing a drama from a premise; its portraits and cover follow in the same run.
    ///
    /// # Errors
    /// `Invalid` (premise, id, model, reference image); `AlreadyExists` (id);
    /// `InsufficientTokens`; `Unavailable`.
    #[tracing::instrument(skip_all)]
    pub async fn create_from_premise(
        &self,
        caller: &Caller,
        request: PremiseRequest,
    ) -> Result<Started, AppError> {
        if request.premise.trim().is_empty() {
            return Err(AppError::Invalid(DomainError::field(
                "premise",
                "must not be empty",
            )));
        }
        self.limits
            .check("premise", &request.premise)
            .map_err(AppError::Invalid)?;
        let (once, replay) = self
            .once(
                caller,
                kind::CREATE_DRAMA,
                // As the work sees them: an empty id or model is the same as none.
                &json!({
                    "premise": request.premise,
                    "id": request.id.as_deref().filter(|i| !i.is_empty()),
                    "model": request.model.as_deref().filter(|m| !m.is_empty()),
                    "reference": request.reference.as_ref().map(|r| json!({
                        "checksum": super::hash::checksum(&r.bytes),
                        "type": r.content_type,
                    })),
                }),
            )
            .await?;
        if let Some(started) = replay {
            return Ok(started);
        }
        let id = request
            .id
            .filter(|i| !i.is_empty())
            .unwrap_or_else(generated_drama_id);
        let drama_id = DramaId::parse(id)
            .map_err(|e| AppError::Invalid(DomainError::field("id", e.to_string())))?;
        let model = request.model.filter(|m| !m.is_empty());
        let cost = self.script_cost(CallKind::GenerateDrama, model.as_deref())?;
        // The id stays this request's from its check to the run that reserves it.
        let _id_turn = self.admission.id(&drama_id).await;
        self.ensure_free(&drama_id).await?;
        self.check_drama_quota(caller.user).await?;
        self.check_run_quota(caller.user).await?;
        let reference_dropped = request.reference.as_ref().and_then(unusable_reference);
        if let Some(why) = &reference_dropped {
            tracing::info!(drama.id = %drama_id, reason = %why, "reference image dropped");
        }
        let reference = request.reference.filter(|_| reference_dropped.is_none());
        let (reference_key, reference_url) = match reference {
            Some(upload) => {
                let size = upload.bytes.len() as u64;
                self.check_bytes_quota(caller.user, size).await?;
                let (key, url) = self.store_reference(caller.user, &drama_id, upload).await?;
                (Some(key), Some(url))
            }
            None => (None, None),
        };
        let task = DramaTask {
            drama: drama_id.to_string(),
            premise: request.premise,
            token_prices: self.script_token_prices(model.as_deref()),
            model,
            improve: None,
            reference_key: reference_key.as_ref().map(|k| k.as_str().to_owned()),
            reference_url,
            reference_dropped,
        };
        let started = async {
            let graph = Graph {
                run: RunSpec::new(kind::CREATE_DRAMA, caller.user.0)
                    .subject(drama_id.as_str())
                    .payload(json!({ "dramaId": drama_id })),
                nodes: vec![self.write_node(&drama_id, &task, cost)?],
            };
            self.submit(caller.user, cost, graph, &once).await
        }
        .await;
        // The image was stored before the charge so that the run can read it as soon as it
        // is queued. A refused request (no credits, a quota) or a repeat answered with an
        // earlier run started nothing that refers to it: it goes now, not to the user's
        // stored bytes. After an error that leaves the outcome open (the database went away,
        // perhaps after the run was committed) it stays recorded as an orphan: the sweeper
        // keeps it while a run names it and deletes it otherwise.
        let refused = match &started {
            Ok(s) => s.replayed,
            Err(AppError::Unavailable(_) | AppError::Internal(_)) => false,
            Err(_) => true,
        };
        if let Some(key) = &reference_key
            && refused
        {
            self.discard_reference(key).await;
        }
        started
    }

    fn write_node(&self, id: &DramaId, task: &DramaTask, cost: i64) -> Result<NodeSpec, AppError> {
        Ok(NodeSpec::task(
            format!("write:{id}"),
            kind::WRITE_DRAMA,
            serde_json::to_value(task).map_err(|e| AppError::Internal(Box::new(e)))?,
        )
        .class(class::SCRIPT)
        .cost(cost)
        .max_attempts(3)
        .duration_hint(Duration::from_secs(30)))
    }

    /// Stores a premise's reference image. Its key is recorded as an orphan first: the
    /// sweeper deletes it once no run refers to it any more unless the written drama took it
    /// off the list (`ScriptCompletion::kept_objects`), so the image of a run that failed or
    /// was cancelled does not stay forever, nor one left by a crash before the run was stored.
    async fn store_reference(
        &self,
        user: UserId,
        drama: &DramaId,
        upload: ReferenceUpload,
    ) -> Result<(ObjectKey, String), AppError> {
        let media = match upload
            .content_type
            .as_deref()
            .filter(|t| !t.is_empty() && *t != "application/octet-stream")
        {
            Some(t) => MediaType::from_mime(t).map_err(refused_reference)?,
            None => MediaType::detect(&upload.bytes).ok_or_else(|| {
                AppError::Invalid(DomainError::field(
                    "reference_image",
                    "not a recognised image",
                ))
            })?,
        };
        let scope = KeyScope::drama(drama)?;
        let name = uuid::Uuid::new_v4().to_string();
        let key = keys::asset_key(user, &scope, Category::References, &name, media)?;
        self.store
            .record_orphans(
                user,
                drama,
                &[key.as_str().to_owned()],
                "reference image of a drama being written",
            )
            .await?;
        self.assets
            .put_bytes(&key, upload.bytes, media.mime())
            .await
            .map_err(refused_reference)?;
        let url = self.object_url(&key);
        Ok((key, url))
    }

    /// Deletes a reference image no run refers to. If the bucket refuses now, the key stays
    /// recorded as an orphan and the sweeper deletes it later.
    async fn discard_reference(&self, key: &ObjectKey) {
        if let Err(e) = self.assets.delete(key).await {
            tracing::warn!(error = %e, object.key = %key.as_str(), "deleting an unused reference image failed; the sweeper retries");
        }
    }

    /// Starts writing an improved copy of a drama under a new id (default
    /// `{id}_improved_{epoch millis}`); its portraits and cover follow.
    ///
    /// # Errors
    /// `NotFound` (original); `Invalid`; `AlreadyExists` (new id); `InsufficientTokens`.
    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    pub async fn improve_drama(
        &self,
        caller: &Caller,
        id: &DramaId,
        feedback: &str,
        new_id: Option<String>,
        model: Option<String>,
    ) -> Result<Started, AppError> {
        if feedback.trim().is_empty() {
            return Err(AppError::Invalid(DomainError::field(
                "feedback",
                "must not be empty",
            )));
        }
        self.limits
            .check("feedback", feedback)
            .map_err(AppError::Invalid)?;
        let (once, replay) = self
            .once(
                caller,
                kind::IMPROVE_DRAMA,
                &json!({
                    "dramaId": id,
                    "feedback": feedback,
                    "newId": new_id.as_deref().filter(|n| !n.is_empty()),
                    "model": model.as_deref().filter(|m| !m.is_empty()),
                }),
            )
            .await?;
        if let Some(started) = replay {
            return Ok(started);
        }
        let original = self.store.get_complete(caller.user, id).await?;
        let improved = new_id.filter(|n| !n.is_empty()).unwrap_or_else(|| {
            let suffix = format!("_improved_{}", Utc::now().timestamp_millis());
            let keep = drama_domain::MAX_ID_LEN
                .saturating_sub(suffix.len())
                .min(id.as_str().len());
            format!("{}{suffix}", &id.as_str()[..keep])
        });
        let improved = DramaId::parse(improved)
            .map_err(|e| AppError::Invalid(DomainError::field("newDramaId", e.to_string())))?;
        let model = model.filter(|m| !m.is_empty());
        let cost = self.script_cost(CallKind::ImproveDrama, model.as_deref())?;
        let _id_turn = self.admission.id(&improved).await;
        self.ensure_free(&improved).await?;
        self.check_drama_quota(caller.user).await?;
        let task = DramaTask {
            drama: improved.to_string(),
            premise: original.drama.premise,
            token_prices: self.script_token_prices(model.as_deref()),
            model,
            improve: Some(ImproveSpec {
                original: id.to_string(),
                feedback: feedback.to_owned(),
            }),
            reference_key: None,
            reference_url: None,
            reference_dropped: None,
        };
        let graph = Graph {
            run: RunSpec::new(kind::IMPROVE_DRAMA, caller.user.0)
                .subject(improved.as_str())
                .payload(json!({ "originalId": id, "dramaId": improved })),
            nodes: vec![self.write_node(&improved, &task, cost)?],
        };
        self.submit(caller.user, cost, graph, &once).await
    }

    /// Starts a critique of a drama; the job's result is `{"feedback": …}`.
    ///
    /// # Errors
    /// `NotFound`; `Invalid` (model); `InsufficientTokens`.
    #[tracing::instrument(skip_all, fields(drama.id = %id))]
    pub async fn critique_drama(
        &self,
        caller: &Caller,
        id: &DramaId,
        model: Option<String>,
    ) -> Result<Started, AppError> {
        let (once, replay) = self
            .once(
                caller,
                kind::CRITIQUE_DRAMA,
                &json!({ "dramaId": id, "model": model.as_deref().filter(|m| !m.is_empty()) }),
            )
            .await?;
        if let Some(started) = replay {
            return Ok(started);
        }
        self.store.get_complete(caller.user, id).await?;
        let model = model.filter(|m| !m.is_empty());
        let cost = self.script_cost(CallKind::CritiqueDrama, model.as_deref())?;
        let task = CritiqueTask {
            drama: id.to_string(),
            token_prices: self.script_token_prices(model.as_deref()),
            model,
        };
        let node = NodeSpec::task(
            format!("critique:{id}"),
            kind::CRITIQUE_DRAMA,
            serde_json::to_value(&task).map_err(|e| AppError::Internal(Box::new(e)))?,
        )
        .class(class::SCRIPT)
        .cost(cost)
        .duration_hint(Duration::from_secs(20));
        let graph = Graph {
            run: RunSpec::new(kind::CRITIQUE_DRAMA, caller.user.0)
                .subject(id.as_str())
                .payload(json!({ "dramaId": id })),
            nodes: vec![node],
        };
        self.submit(caller.user, cost, graph, &once).await
    }

    /// Checks that `value` names a known script model.
    ///
    /// # Errors
    /// `Invalid` naming `model`.
    pub fn check_model(&self, model: Option<&str>) -> Result<(), AppError> {
        self.ai.script_model(model).map(|_| ()).map_err(model_error)
    }
}
