//! Characters, episodes, scenes and scene assets of a drama: reads and PATCHes.

use actix_web::{HttpRequest, HttpResponse, web};
use drama_app::store::{Entity, StoredDrama};
use drama_domain::{
    AssetId, AssetOwner, AssetPatch, CharacterId, CharacterPatch, Drama, EntityPatch, EpisodeId,
    EpisodePatch, Scene, SceneId, ScenePatch,
};
use serde_json::json;

use super::openapi::schemas as doc;
use super::{drama_id, patch_body, path_id, with_etag};
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

async fn load(
    state: &ApiState,
    caller: &drama_app::Caller,
    raw: &str,
) -> Result<StoredDrama, ApiError> {
    Ok(state.app().get_drama(caller, None, &drama_id(raw)?).await?)
}

fn find_scene<'a>(drama: &'a Drama, episode: &str, scene: &str) -> Result<&'a Scene, ApiError> {
    let ep = drama
        .episode(episode)
        .ok_or_else(|| ApiError::not_found(Entity::Episode, episode))?;
    ep.scenes
        .iter()
        .find(|s| s.id.as_str() == scene)
        .ok_or_else(|| ApiError::not_found(Entity::Scene, scene))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/characters",
    tag = "Parts of a drama",
    summary = "List a drama's characters",
    params(
        doc::DramaPath,
    ),
    responses(
        (status = 200, description = "`{\"characters\": […]}`"),
        (status = 404, description = "A parent is missing.", body = doc::Error),
    )
)]
async fn characters(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let stored = load(&state, &caller, &path).await?;
    Ok(with_etag(
        stored.version,
        &json!({"characters": stored.drama.characters}),
    ))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/characters/{character_id}",
    tag = "Parts of a drama",
    summary = "Read one of the characters",
    params(doc::CharacterPath,),
    responses(doc::PartRead)
)]
async fn character(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, c) = path.into_inner();
    let stored = load(&state, &caller, &d).await?;
    let character = stored
        .drama
        .character(&c)
        .ok_or_else(|| ApiError::not_found(Entity::Character, &c))?;
    Ok(with_etag(stored.version, character))
}

#[utoipa::path(
    patch,
    path = "/dramas/{drama_id}/characters/{character_id}",
    tag = "Parts of a drama",
    summary = "Change one of the characters",
    params(
        doc::CharacterPath,
        ("If-Match" = Option<String>, Header, nullable = false, pattern = "^(\\*|(W/)?\"[0-9]{1,18}\"|[0-9]{1,18})$", description = "The drama version the change is based on (the `ETag` of a read); a stale one is 409."),
    ),
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
    let (patch, expected) = patch_body(req.headers(), &body, |body| {
        Ok(EntityPatch::Character {
            id: character.clone(),
            changes: CharacterPatch::from_value(body)?,
        })
    })?;
    let stored = state.app().patch(&caller, &drama, &patch, expected).await?;
    let updated = stored
        .drama
        .character(character.as_str())
        .ok_or_else(|| ApiError::not_found(Entity::Character, &c))?;
    Ok(with_etag(stored.version, updated))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes",
    tag = "Parts of a drama",
    summary = "List a drama's episodes",
    params(
        doc::DramaPath,
    ),
    responses(
        (status = 200, description = "`{\"episodes\": […]}`"),
        (status = 404, description = "A parent is missing.", body = doc::Error),
    )
)]
async fn episodes(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let stored = load(&state, &caller, &path).await?;
    Ok(with_etag(
        stored.version,
        &json!({"episodes": stored.drama.episodes}),
    ))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}",
    tag = "Parts of a drama",
    summary = "Read one of the episodes",
    params(doc::EpisodePath,),
    responses(doc::PartRead)
)]
async fn episode(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e) = path.into_inner();
    let stored = load(&state, &caller, &d).await?;
    let episode = stored
        .drama
        .episode(&e)
        .ok_or_else(|| ApiError::not_found(Entity::Episode, &e))?;
    Ok(with_etag(stored.version, episode))
}

#[utoipa::path(
    patch,
    path = "/dramas/{drama_id}/episodes/{episode_id}",
    tag = "Parts of a drama",
    summary = "Change one of the episodes",
    params(
        doc::EpisodePath,
        ("If-Match" = Option<String>, Header, nullable = false, pattern = "^(\\*|(W/)?\"[0-9]{1,18}\"|[0-9]{1,18})$", description = "The drama version the change is based on (the `ETag` of a read); a stale one is 409."),
    ),
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
    let (patch, expected) = patch_body(req.headers(), &body, |body| {
        Ok(EntityPatch::Episode {
            id: episode.clone(),
            changes: EpisodePatch::from_value(body)?,
        })
    })?;
    let stored = state.app().patch(&caller, &drama, &patch, expected).await?;
    let updated = stored
        .drama
        .episode(episode.as_str())
        .ok_or_else(|| ApiError::not_found(Entity::Episode, &e))?;
    Ok(with_etag(stored.version, updated))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes",
    tag = "Parts of a drama",
    summary = "List a drama's scenes",
    params(
        doc::EpisodePath,
    ),
    responses(
        (status = 200, description = "`{\"scenes\": […]}`"),
        (status = 404, description = "A parent is missing.", body = doc::Error),
    )
)]
async fn scenes(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e) = path.into_inner();
    let stored = load(&state, &caller, &d).await?;
    let episode = stored
        .drama
        .episode(&e)
        .ok_or_else(|| ApiError::not_found(Entity::Episode, &e))?;
    Ok(with_etag(
        stored.version,
        &json!({"scenes": episode.scenes}),
    ))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}",
    tag = "Parts of a drama",
    summary = "Read one of the scenes",
    params(doc::ScenePath,),
    responses(doc::PartRead)
)]
async fn scene(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s) = path.into_inner();
    let stored = load(&state, &caller, &d).await?;
    let scene = find_scene(&stored.drama, &e, &s)?;
    Ok(with_etag(stored.version, scene))
}

#[utoipa::path(
    patch,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}",
    tag = "Parts of a drama",
    summary = "Change one of the scenes",
    params(
        doc::ScenePath,
        ("If-Match" = Option<String>, Header, nullable = false, pattern = "^(\\*|(W/)?\"[0-9]{1,18}\"|[0-9]{1,18})$", description = "The drama version the change is based on (the `ETag` of a read); a stale one is 409."),
    ),
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
    let (patch, expected) = patch_body(req.headers(), &body, |body| {
        Ok(EntityPatch::Scene {
            episode,
            id: scene,
            changes: ScenePatch::from_value(body)?,
        })
    })?;
    let stored = state.app().patch(&caller, &drama, &patch, expected).await?;
    let updated = find_scene(&stored.drama, &e, &s)?;
    Ok(with_etag(stored.version, updated))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets",
    tag = "Parts of a drama",
    summary = "List a drama's assets",
    params(
        doc::ScenePath,
    ),
    responses(
        (status = 200, description = "`{\"assets\": […]}`"),
        (status = 404, description = "A parent is missing.", body = doc::Error),
    )
)]
async fn scene_assets(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s) = path.into_inner();
    let stored = load(&state, &caller, &d).await?;
    let scene = find_scene(&stored.drama, &e, &s)?;
    Ok(with_etag(stored.version, &json!({"assets": scene.assets})))
}

#[utoipa::path(
    get,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}",
    tag = "Parts of a drama",
    summary = "Read one of the assets",
    params(
        doc::ScenePath,
        ("asset_id" = String, Path, description = "Asset id."),
    ),
    responses(doc::PartRead)
)]
async fn scene_asset(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<(String, String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (d, e, s, a) = path.into_inner();
    let stored = load(&state, &caller, &d).await?;
    let scene = find_scene(&stored.drama, &e, &s)?;
    let asset = scene
        .assets
        .iter()
        .find(|x| x.id.as_str() == a)
        .ok_or_else(|| ApiError::not_found(Entity::Asset, &a))?;
    Ok(with_etag(stored.version, asset))
}

#[utoipa::path(
    patch,
    path = "/dramas/{drama_id}/episodes/{episode_id}/scenes/{scene_id}/assets/{asset_id}",
    tag = "Parts of a drama",
    summary = "Change one of the assets",
    params(
        doc::ScenePath,
        ("asset_id" = String, Path, description = "Asset id."),
        ("If-Match" = Option<String>, Header, nullable = false, pattern = "^(\\*|(W/)?\"[0-9]{1,18}\"|[0-9]{1,18})$", description = "The drama version the change is based on (the `ETag` of a read); a stale one is 409."),
    ),
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
    let (patch, expected) = patch_body(req.headers(), &body, |body| {
        Ok(EntityPatch::Asset {
            owner: AssetOwner::Scene { episode, scene },
            id: asset.clone(),
            changes: AssetPatch::from_value(body)?,
        })
    })?;
    let stored = state.app().patch(&caller, &drama, &patch, expected).await?;
    let updated = find_scene(&stored.drama, &e, &s)?
        .assets
        .iter()
        .find(|x| x.id == asset)
        .ok_or_else(|| ApiError::not_found(Entity::Asset, &a))?;
    Ok(with_etag(stored.version, updated))
}
