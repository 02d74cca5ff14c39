//! Characters, episodes, scenes and scene assets of a drama: reads and PATCHes.

use actix_web::{HttpRequest, HttpResponse, web};
use drama_app::Caller;
use drama_app::store::Entity;
use drama_domain::{
    Asset, AssetId, AssetOwner, AssetPatch, Character, CharacterId, CharacterPatch, Drama,
    EntityPatch, Episode, EpisodeId, EpisodePatch, Scene, SceneId, ScenePatch,
};
use serde_json::json;

use super::openapi::schemas as doc;
use super::{commit, drama_id, load_drama, patch_body, path_id, read_part, with_etag};
use crate::endpoint::endpoint;
use crate::error::ApiError;
use crate::state::{ApiState, Auth};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/dramas/{d}/characters").get(characters))
        .service(
            endpoint("/dramas/{d}/characters/{c}")
                .get(character)
                .patch(patch_character),
        )
        .service(endpoint("/dramas/{d}/episodes").get(episodes))
        .service(
            endpoint("/dramas/{d}/episodes/{e}")
                .get(episode)
                .patch(patch_episode),
        )
        .service(endpoint("/dramas/{d}/episodes/{e}/scenes").get(scenes))
        .service(
            endpoint("/dramas/{d}/episodes/{e}/scenes/{s}")
                .get(scene)
                .patch(patch_scene),
        )
        .service(endpoint("/dramas/{d}/episodes/{e}/scenes/{s}/assets").get(scene_assets))
        .service(
            endpoint("/dramas/{d}/episodes/{e}/scenes/{s}/assets/{a}")
                .get(scene_asset)
                .patch(patch_scene_asset),
        );
}

pub(super) fn find_character<'a>(drama: &'a Drama, id: &str) -> Result<&'a Character, ApiError> {
    drama
        .character(id)
        .ok_or_else(|| ApiError::not_found(Entity::Character, id))
}

pub(super) fn find_episode<'a>(drama: &'a Drama, id: &str) -> Result<&'a Episode, ApiError> {
    drama
        .episode(id)
        .ok_or_else(|| ApiError::not_found(Entity::Episode, id))
}

/// The scene `scene` of the episode `episode` (404 naming whichever is missing).
pub(super) fn find_scene<'a>(
    drama: &'a Drama,
    episode: &str,
    scene: &str,
) -> Result<&'a Scene, ApiError> {
    find_episode(drama, episode)?
        .scenes
        .iter()
        .find(|s| s.id.as_str() == scene)
        .ok_or_else(|| ApiError::not_found(Entity::Scene, scene))
}

/// The asset `asset` of a scene (404 naming whichever part is missing).
pub(super) fn find_asset<'a>(
    drama: &'a Drama,
    episode: &str,
    scene: &str,
    asset: &str,
) -> Result<&'a Asset, ApiError> {
    find_scene(drama, episode, scene)?
        .assets
        .iter()
        .find(|x| x.id.as_str() == asset)
        .ok_or_else(|| ApiError::not_found(Entity::Asset, asset))
}

/// A list of the parts of the caller's drama, answered as `{key: […]}` with the drama's version
/// as its ETag. The list goes through a JSON value, as the answers of these routes always have.
async fn read_list<T: serde::Serialize>(
    state: &ApiState,
    caller: &Caller,
    raw: &str,
    key: &str,
    list: impl for<'d> FnOnce(&'d Drama) -> Result<&'d [T], ApiError>,
) -> Result<HttpResponse, ApiError> {
    let stored = load_drama(state, caller, raw).await?;
    let items = list(&stored.drama)?;
    Ok(with_etag(stored.version, &json!({ key: items })))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/characters",
    tag = "Parts of a drama",
    summary = "List a drama's characters",
    params(doc::DramaPath),
    responses(
        (status = 200, description = "`{\"characters\": […]}`"),
        doc::ParentMissing,
    )
)]
async fn characters(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    read_list(&state, &caller, &path, "characters", |d| Ok(&d.characters)).await
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/characters/{character_id}",
    tag = "Parts of a drama",
    summary = "Read one of the characters",
    params(doc::CharacterPath),
    responses(doc::PartRead)
)]
async fn character(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, c) = path.into_inner();
    read_part(&state, &caller, &d, |drama| find_character(drama, &c)).await
}

#[utoipa::path(
    patch,
    path = "/dramas/{drama_id}/characters/{character_id}",
    tag = "Parts of a drama",
    summary = "Change one of the characters",
    params(doc::CharacterPath, doc::IfMatch),
    request_body = doc::CharacterPatch,
    responses(doc::PartPatched)
)]
async fn patch_character(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (d, c) = path.into_inner();
    let (drama, character): (_, CharacterId) = (drama_id(&d)?, path_id(&c, Entity::Character)?);
    let patch = patch_body(req.headers(), &body, |body| {
        Ok(EntityPatch::Character {
            id: character,
            changes: CharacterPatch::from_value(body)?,
        })
    })?;
    commit(&state, &caller, &drama, patch, |d| find_character(d, &c)).await
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes",
    tag = "Parts of a drama",
    summary = "List a drama's episodes",
    params(doc::DramaPath),
    responses(
        (status = 200, description = "`{\"episodes\": […]}`"),
        doc::ParentMissing,
    )
)]
async fn episodes(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    read_list(&state, &caller, &path, "episodes", |d| Ok(&d.episodes)).await
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}",
    tag = "Parts of a drama",
    summary = "Read one of the episodes",
    params(doc::EpisodePath),
    responses(doc::PartRead)
)]
async fn episode(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e) = path.into_inner();
    read_part(&state, &caller, &d, |drama| find_episode(drama, &e)).await
}

#[utoipa::path(
    patch,
    path = "/dramas/{drama_id}/episodes/{episode_id}",
    tag = "Parts of a drama",
    summary = "Change one of the episodes",
    params(doc::EpisodePath, doc::IfMatch),
    request_body = doc::EpisodePatch,
    responses(doc::PartPatched)
)]
async fn patch_episode(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (d, e) = path.into_inner();
    let (drama, episode): (_, EpisodeId) = (drama_id(&d)?, path_id(&e, Entity::Episode)?);
    let patch = patch_body(req.headers(), &body, |body| {
        Ok(EntityPatch::Episode {
            id: episode,
            changes: EpisodePatch::from_value(body)?,
        })
    })?;
    commit(&state, &caller, &drama, patch, |d| find_episode(d, &e)).await
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes",
    tag = "Parts of a drama",
    summary = "List a drama's scenes",
    params(doc::EpisodePath),
    responses(
        (status = 200, description = "`{\"scenes\": […]}`"),
        doc::ParentMissing,
    )
)]
async fn scenes(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e) = path.into_inner();
    read_list(&state, &caller, &d, "scenes", |drama| {
        Ok(&find_episode(drama, &e)?.scenes)
    })
    .await
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}",
    tag = "Parts of a drama",
    summary = "Read one of the scenes",
    params(doc::ScenePath),
    responses(doc::PartRead)
)]
async fn scene(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s) = path.into_inner();
    read_part(&state, &caller, &d, |drama| find_scene(drama, &e, &s)).await
}

#[utoipa::path(
    patch,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}",
    tag = "Parts of a drama",
    summary = "Change one of the scenes",
    params(doc::ScenePath, doc::IfMatch),
    request_body = doc::ScenePatch,
    responses(doc::PartPatched)
)]
async fn patch_scene(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s) = path.into_inner();
    let drama = drama_id(&d)?;
    let episode: EpisodeId = path_id(&e, Entity::Episode)?;
    let scene: SceneId = path_id(&s, Entity::Scene)?;
    let patch = patch_body(req.headers(), &body, |body| {
        Ok(EntityPatch::Scene {
            episode,
            id: scene,
            changes: ScenePatch::from_value(body)?,
        })
    })?;
    commit(&state, &caller, &drama, patch, |d| find_scene(d, &e, &s)).await
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets",
    tag = "Parts of a drama",
    summary = "List a drama's assets",
    params(doc::ScenePath),
    responses(
        (status = 200, description = "`{\"assets\": […]}`"),
        doc::ParentMissing,
    )
)]
async fn scene_assets(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s) = path.into_inner();
    read_list(&state, &caller, &d, "assets", |drama| {
        Ok(&find_scene(drama, &e, &s)?.assets)
    })
    .await
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}",
    tag = "Parts of a drama",
    summary = "Read one of the assets",
    params(doc::AssetPath),
    responses(doc::PartRead)
)]
async fn scene_asset(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s, a) = path.into_inner();
    read_part(&state, &caller, &d, |drama| find_asset(drama, &e, &s, &a)).await
}

#[utoipa::path(
    patch,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}",
    tag = "Parts of a drama",
    summary = "Change one of the assets",
    params(doc::AssetPath, doc::IfMatch),
    request_body = doc::AssetPatch,
    responses(doc::PartPatched)
)]
async fn patch_scene_asset(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String, String)>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s, a) = path.into_inner();
    let drama = drama_id(&d)?;
    let episode: EpisodeId = path_id(&e, Entity::Episode)?;
    let scene: SceneId = path_id(&s, Entity::Scene)?;
    let asset: AssetId = path_id(&a, Entity::Asset)?;
    let patch = patch_body(req.headers(), &body, |body| {
        Ok(EntityPatch::Asset {
            owner: AssetOwner::Scene { episode, scene },
            id: asset,
            changes: AssetPatch::from_value(body)?,
        })
    })?;
    commit(&state, &caller, &drama, patch, |d| {
        find_asset(d, &e, &s, &a)
    })
    .await
}
