//! Starting work: improve, critique, generate (drama, episode, scene, asset), audition,
//! cover, portrait and stitching. Long work answers 202 with a job to follow; the old
//! server's synchronous routes (portrait, cover) still answer with the result.

use actix_web::{HttpResponse, web};
use drama_app::pipeline::{Scope, Started, Target, Waited};
use drama_app::store::Entity;
use drama_app::{AppError, Caller};
use drama_domain::{AssetId, CharacterId, DomainError, EpisodeId, SceneId};
use serde::Deserialize;
use serde_json::{Value, json};

use super::nested::find_character;
use super::openapi::schemas as doc;
use super::{drama_id, load_drama, path_id};
use crate::endpoint::endpoint;
use crate::error::{ApiError, ErrorCode};
use crate::state::{ApiState, Auth};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/dramas/{d}/improve").post(improve))
        .service(endpoint("/dramas/{d}/generate").post(generate_drama))
        .service(endpoint("/dramas/{d}/critic").post(critic))
        .service(endpoint("/dramas/{d}/critique").post(critique))
        .service(
            endpoint("/dramas/{d}/characters/{c}/audition")
                .get(get_audition)
                .post(audition),
        )
        .service(endpoint("/dramas/{d}/characters/{c}/generate").post(portrait))
        .service(
            endpoint("/dramas/{d}/cover_photo")
                .get(get_cover)
                .post(cover),
        )
        .service(endpoint("/dramas/{d}/episodes/{e}/generate").post(generate_episode))
        .service(endpoint("/dramas/{d}/episodes/{e}/stitch").post(stitch))
        .service(endpoint("/dramas/{d}/episodes/{e}/scenes/{s}/generate").post(generate_scene))
        .service(
            endpoint("/dramas/{d}/episodes/{e}/scenes/{s}/assets/{a}/generate")
                .post(generate_asset),
        );
}

/// Where a client follows a job.
pub(crate) fn job_url(state: &ApiState, started: &Started) -> String {
    format!(
        "{}/dramas/{}/jobs/{}",
        state.app().public_base_url(),
        started.drama_id,
        started.job_id
    )
}

/// 202 with the old server's `JobResponse`.
pub(crate) fn accepted(state: &ApiState, started: &Started, what: &str) -> HttpResponse {
    accepted_body(
        started,
        json!({
            "dramaId": started.drama_id,
            "jobId": started.job_id.to_string(),
            "status": "pending",
            "message": format!("{what} Check status at: {}", job_url(state, started)),
        }),
    )
}

/// 202 with `body`; a repeat of an earlier request with the same `Idempotency-Key` says so
/// in `Idempotent-Replayed: true` (the body is the first answer's).
pub(crate) fn accepted_body(started: &Started, body: serde_json::Value) -> HttpResponse {
    let mut response = HttpResponse::Accepted();
    if started.replayed {
        response.insert_header(("Idempotent-Replayed", "true"));
    }
    response.json(body)
}

/// Optional JSON body: `{}`, `null` or nothing is the same as no options (a Dart client's
/// `jsonEncode(null)` sends `null` for "no options").
pub(super) fn options<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.trim_ascii().is_empty() || body.trim_ascii() == b"null" {
        return Ok(T::default());
    }
    let mut input = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut input).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        ApiError::validation(&DomainError::field(field, e.inner().to_string()), "body")
    })
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub(crate) struct GenerateOptions {
    /// Regenerate even what is up to date.
    #[serde(default)]
    force: bool,
    /// Most tokens the run may spend: tasks that would go past it are cancelled (and refunded) instead of started.
    #[serde(default, deserialize_with = "drama_domain::lax::option_int")]
    #[schema(minimum = 1, maximum = 9223372036854775807_i64)]
    budget: Option<i64>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImproveRequest {
    /// What to change (not blank).
    #[schema(min_length = 1, max_length = 20000, pattern = r"\S")]
    feedback: String,
    /// Write the rewrite as a new drama with this id.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.-]+$")]
    new_drama_id: Option<String>,
    model: Option<String>,
}

#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/improve",
    tag = "Generation",
    summary = "Write an improved copy under a new id",
    params(doc::DramaPath, doc::Idempotent),
    request_body = doc::ImproveRequest,
    responses(
        (status = 202, description = "Improvement started.", body = doc::ImproveResponse),
        (status = 402, description = "Not enough tokens.", body = doc::Error),
        doc::NoSuchDrama,
        (status = 409, description = "The new id is taken.", body = doc::Error),
        doc::StartRefused,
    )
)]
async fn improve(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    let request: ImproveRequest = drama_domain::DomainError::parse_json(&body)
        .map_err(|e| ApiError::validation(&e, "body"))?;
    let started = state
        .app()
        .improve_drama(
            &caller,
            &id,
            &request.feedback,
            request.new_drama_id,
            request.model,
        )
        .await?;
    Ok(accepted_body(
        &started,
        json!({
        "originalId": id,
        "improvedId": started.drama_id,
        "jobId": started.job_id.to_string(),
        "status": "pending",
        "message": format!(
            "Drama improvement job queued. Check status at: {}",
            job_url(&state, &started)
        ),
        }),
    ))
}

#[derive(Deserialize, Default, utoipa::ToSchema)]
pub(crate) struct ModelOptions {
    model: Option<String>,
}

/// `POST /dramas/{id}/critic`: the old server's name for [`critique`].
#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/critic",
    tag = "Generation",
    summary = "Critique a drama (`critique` is an alias)",
    params(doc::DramaPath, doc::Idempotent),
    request_body = inline(doc::ModelOptions),
    responses(doc::CritiqueStarted)
)]
async fn critic(
    state: web::Data<ApiState>,
    auth: Auth,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    critique(state, auth, path, body).await
}

#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/critique",
    tag = "Generation",
    summary = "Critique a drama (`critique` is an alias)",
    params(doc::DramaPath, doc::Idempotent),
    request_body = inline(doc::ModelOptions),
    responses(doc::CritiqueStarted)
)]
async fn critique(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    let request: ModelOptions = options(&body)?;
    let started = state
        .app()
        .critique_drama(&caller, &id, request.model)
        .await?;
    Ok(accepted_body(
        &started,
        json!({
        "dramaId": id,
        "jobId": started.job_id.to_string(),
        "status": "pending",
        "message": format!(
            "Drama critique job queued. Check status and retrieve feedback at: {}",
            job_url(&state, &started)
        ),
        }),
    ))
}

/// Starts generating what `target` names. The part is looked up by the app, after a keyed
/// repeat was answered: a repeat replays the first run even when the part is gone since.
async fn run_generate(
    state: &ApiState,
    caller: &Caller,
    raw_drama: &str,
    target: Target,
    body: &[u8],
    what: &str,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(raw_drama)?;
    let options: GenerateOptions = options(body)?;
    let started = state
        .app()
        .generate_target(
            caller,
            &id,
            target,
            drama_app::pipeline::GenerateOptions {
                force: options.force,
                budget: options.budget,
            },
        )
        .await?;
    Ok(accepted(state, &started, what))
}

#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/generate",
    tag = "Generation",
    summary = "Generate every missing or out-of-date asset of a drama",
    params(doc::DramaPath, doc::Idempotent),
    request_body(content = Option<doc::GenerateOptions>),
    responses(doc::GenerationStarted)
)]
async fn generate_drama(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    run_generate(
        &state,
        &caller,
        &path,
        Target::Scope(Scope::Drama),
        &body,
        "Drama asset generation DAG queued.",
    )
    .await
}

#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/episodes/{episode_id}/generate",
    tag = "Generation",
    summary = "Generate one episode (scenes first when it has none)",
    params(doc::EpisodePath, doc::Idempotent),
    request_body(content = Option<doc::GenerateOptions>),
    responses(doc::GenerationStarted)
)]
async fn generate_episode(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (d, e) = path.into_inner();
    let episode: EpisodeId = path_id(&e, Entity::Episode)?;
    run_generate(
        &state,
        &caller,
        &d,
        Target::Scope(Scope::Episode(episode)),
        &body,
        "Episode asset generation queued.",
    )
    .await
}

#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/generate",
    tag = "Generation",
    summary = "Generate one scene's storyboard and clip",
    params(doc::ScenePath, doc::Idempotent),
    request_body(content = Option<doc::GenerateOptions>),
    responses(doc::GenerationStarted)
)]
async fn generate_scene(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s) = path.into_inner();
    let episode: EpisodeId = path_id(&e, Entity::Episode)?;
    let scene: SceneId = path_id(&s, Entity::Scene)?;
    run_generate(
        &state,
        &caller,
        &d,
        Target::Scene { episode, scene },
        &body,
        "Scene asset generation queued.",
    )
    .await
}

#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}/generate",
    tag = "Generation",
    summary = "Generate one asset again",
    params(doc::AssetPath, doc::Idempotent),
    responses(doc::GenerationStartedBare)
)]
async fn generate_asset(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s, a) = path.into_inner();
    let episode: EpisodeId = path_id(&e, Entity::Episode)?;
    let scene: SceneId = path_id(&s, Entity::Scene)?;
    let asset: AssetId = path_id(&a, Entity::Asset)?;
    // A single asset is generated again whenever it is asked for; the body may still say so.
    let _: GenerateOptions = options(&body)?;
    let target = Target::SceneAsset {
        episode,
        scene,
        asset,
    };
    let started = state
        .app()
        .generate_target(
            &caller,
            &drama_id(&d)?,
            target,
            drama_app::pipeline::GenerateOptions {
                force: true,
                budget: None,
            },
        )
        .await?;
    Ok(accepted(&state, &started, "Asset generation queued."))
}

#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/episodes/{episode_id}/stitch",
    tag = "Generation",
    summary = "Stitch an episode's clips into its video",
    params(doc::EpisodePath, doc::Idempotent),
    responses(
        (status = 202, description = "Stitching started.", body = doc::JobResponse),
        (status = 402, description = "Not enough tokens; nothing started.", body = doc::Error),
        (status = 404, description = "Missing drama or part.", body = doc::Error),
        doc::BareStartRefused,
    )
)]
async fn stitch(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e) = path.into_inner();
    let episode: EpisodeId = path_id(&e, Entity::Episode)?;
    let started = state
        .app()
        .stitch_episode(&caller, &drama_id(&d)?, &episode)
        .await?;
    Ok(accepted(&state, &started, "Episode stitching queued."))
}

#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/characters/{character_id}/audition",
    tag = "Generation",
    summary = "Generate a character's audition video",
    params(doc::CharacterPath, doc::Idempotent),
    responses(doc::GenerationStartedBare)
)]
async fn audition(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, c) = path.into_inner();
    let character: CharacterId = path_id(&c, Entity::Character)?;
    let started = state
        .app()
        .audition(&caller, &drama_id(&d)?, &character)
        .await?;
    Ok(accepted(
        &state,
        &started,
        "Character audition video generation queued.",
    ))
}

/// `GET …/audition`: the character's audition asset.
#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/characters/{character_id}/audition",
    tag = "Generation",
    summary = "Read a character's audition asset",
    params(doc::CharacterPath),
    responses(
        (status = 200, description = "The asset.", body = doc::Asset),
        (status = 404, description = "No audition yet.", body = doc::Error),
    )
)]
async fn get_audition(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, c) = path.into_inner();
    let stored = load_drama(&state, &caller, &d).await?;
    let audition = find_character(&stored.drama, &c)?
        .audition()
        .filter(|a| a.url.is_some())
        .ok_or_else(|| {
            ApiError::object(
                ErrorCode::NotFound,
                "Audition video not found",
                format!("Audition video for character {c} not found"),
            )
        })?;
    Ok(HttpResponse::Ok().json(audition))
}

/// `POST …/characters/{c}/generate`: the portrait, synchronously; answers the character, or
/// 202 with the run when it cannot finish inside the request deadline (a client that retried
/// after a timeout would pay twice; this one follows the run instead).
#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/characters/{character_id}/generate",
    tag = "Generation",
    summary = "Generate a character's portrait now (synchronous)",
    params(doc::CharacterPath, doc::Idempotent),
    responses(
        (status = 200, description = "The character.", body = doc::Character),
        (status = 404, description = "Missing.", body = doc::Error),
        (status = 402, description = "Not enough tokens.", body = doc::Error),
        (status = 500, description = "The generation failed (`generation_failed`); `detail` carries the provider's reason (a refused prompt can be edited).", body = doc::Error),
        doc::BareStartRefused,
    )
)]
async fn portrait(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, c) = path.into_inner();
    let character: CharacterId = path_id(&c, Entity::Character)?;
    let waited = state
        .app()
        .portrait_now(&caller, &drama_id(&d)?, &character)
        .await
        .map_err(|e| match e {
            // The old server's shape for this route.
            AppError::GenerationFailed(reason) => ApiError::object(
                ErrorCode::GenerationFailed,
                "Image generation failed",
                reason,
            ),
            other => other.into(),
        })?;
    let stored = match waited {
        Waited::Done(stored) => stored,
        Waited::Running(started) => {
            return Ok(accepted(
                &state,
                &started,
                "The portrait is still being generated.",
            ));
        }
    };
    Ok(HttpResponse::Ok().json(find_character(&stored.drama, &c)?))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/cover_photo",
    tag = "Generation",
    summary = "The cover's url",
    params(doc::DramaPath),
    responses(
        (status = 200, description = "`{\"url\": …}`"),
        (status = 404, description = "No drama, or no cover yet.", body = doc::Error),
    )
)]
async fn get_cover(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    let stored = match state.app().get_drama(&caller, None, &id).await {
        Ok(s) => s,
        Err(drama_app::AppError::NotFound { .. }) => {
            return Err(ApiError::message(
                ErrorCode::NotFound,
                format!("Drama {id} not found"),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    match stored.drama.url {
        Some(url) => Ok(HttpResponse::Ok().json(json!({ "url": url }))),
        None => Err(ApiError::message(
            ErrorCode::NotFound,
            format!(
                "Cover photo not generated yet. Call POST /dramas/{id}/cover_photo to generate it."
            ),
        )),
    }
}

/// `POST …/cover_photo`: the cover, synchronously; answers the drama, or 202 with the run
/// when it cannot finish inside the request deadline.
#[utoipa::path(
    post,
    path = "/dramas/{drama_id}/cover_photo",
    tag = "Generation",
    summary = "Generate the cover now (synchronous)",
    params(doc::DramaPath, doc::Idempotent),
    responses(
        (status = 200, description = "The drama.", body = doc::Drama),
        (status = 400, description = "No main character, or one lacks a portrait.", body = doc::Error),
        doc::NoSuchDrama,
        (status = 500, description = "The generation failed (`generation_failed`); `detail` carries the provider's reason (a refused prompt can be edited).", body = doc::Error),
        doc::KeyRefused,
        doc::OverQuota,
    )
)]
async fn cover(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    let stored = match state.app().cover_now(&caller, &id).await {
        Err(drama_app::AppError::NotFound {
            entity: Entity::Drama,
            ..
        }) => {
            return Err(ApiError::message(
                ErrorCode::NotFound,
                format!("Drama {id} not found"),
            ));
        }
        other => other?,
    };
    match stored {
        Waited::Done(stored) => Ok(HttpResponse::Ok().json(&stored.drama)),
        Waited::Running(started) => Ok(accepted(
            &state,
            &started,
            "The cover photo is still being generated.",
        )),
    }
}

/// The body of a premise request, in any of its three forms: `None` when it has no
/// `premise` or a `null` one (another form of `POST /dramas`); 422 naming the field when
/// `premise`, `id` or `model` is there but not text (the old server took a body with a
/// `premise` key for a premise request whatever the rest held).
pub(crate) type PremiseFields = (String, Option<String>, Option<String>);

pub(crate) fn premise_fields(body: &Value) -> Result<Option<PremiseFields>, ApiError> {
    let premise = match body.get("premise") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ApiError::validation(
                &DomainError::field("premise", "must be a string"),
                "body",
            ));
        }
    };
    let text = |k: &str| match body.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone()).filter(|s| !s.is_empty())),
        Some(_) => Err(ApiError::validation(
            &DomainError::field(k, "must be a string"),
            "body",
        )),
    };
    Ok(Some((premise.to_owned(), text("id")?, text("model")?)))
}
