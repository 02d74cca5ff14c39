use actix_multipart::Multipart;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use drama_app::pipeline::{PremiseRequest, ReferenceUpload};
use drama_app::store::{Cursor, PageRequest};
use drama_domain::{Drama, DramaPatch, EntityPatch};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Value, json};

use super::generate::{accepted, premise_fields};
use super::openapi::schemas as doc;
use super::query::Query;
use super::streaming::FormBudget;
use super::upload_guard::timed_form;
use super::{commit, drama_id, json_body, patch_body, read_part};
use crate::endpoint::endpoint;
use crate::error::{ApiError, ErrorCode};
use crate::headers::header_text;
use crate::state::{ApiState, Auth};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(endpoint("/dramas").get(list).post(create))
        .service(
            endpoint("/dramas/{drama_id}")
                .get(get)
                .patch(patch)
                .delete(delete),
        );
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<u32>,
    cursor: Option<String>,
    /// `overview`: each drama with its counts, last change and latest run.
    view: Option<String>,
}

/// `GET /dramas?limit&cursor`: summaries, newest first, with an opaque keyset cursor.
#[utoipa::path(
    get,
    path = "/dramas",
    tag = "Dramas",
    summary = "List the caller's dramas, newest first",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size, 1–1000 (default 100)."),
        ("cursor" = Option<String>, Query, description = "Opaque cursor from the previous page; digits alone are read as an offset (the old server's cursor)."),
        ("view" = inline(Option<doc::DramaView>), Query, description = "`overview`: each drama with its counts, last change and latest run (schema `DramaOverview`) instead of the summaries; `limit` is then at most 100."),
    ),
    responses(
        (status = 200, description = "A page of summaries.", body = inline(doc::DramaPage)),
        doc::Invalid,
    )
)]
async fn list(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = query.limit.unwrap_or(100);
    let cursor = query.cursor.as_deref().filter(|c| !c.is_empty());
    // The old server's cursor was the decimal offset of the next page, which clients kept or
    // computed; ours never consists of digits alone, so such a cursor is read as an offset.
    let request = match cursor.map(|c| (c, c.bytes().all(|b| b.is_ascii_digit()))) {
        Some((offset, true)) => PageRequest {
            limit,
            after: None,
            offset: offset.parse().map_err(|_| {
                ApiError::validation(
                    &drama_domain::DomainError::field("cursor", "an offset too large"),
                    "query",
                )
            })?,
        },
        Some((cursor, false)) => PageRequest {
            limit,
            after: Some(
                Cursor::decode(cursor).map_err(|e| ApiError::from(drama_app::AppError::from(e)))?,
            ),
            offset: 0,
        },
        None => PageRequest::first(limit),
    };
    match query.view.as_deref() {
        None | Some("") => {}
        Some("overview") => return super::overview::page(&state, &caller, &request).await,
        Some(other) => {
            return Err(ApiError::validation(
                &drama_domain::DomainError::field(
                    "view",
                    format!("must be `overview` or absent, got `{other}`"),
                ),
                "query",
            ));
        }
    }
    let page = state.app().list_summaries(&caller, None, &request).await?;
    Ok(HttpResponse::Ok().json(json!({
        "dramas": page.items,
        "cursor": page.next.map(|c| c.encode()),
    })))
}

/// `POST /dramas`: a premise (JSON or multipart with a reference image) starts a generation
/// job (202); `{"drama": {…}}` stores a complete drama (201).
#[utoipa::path(
    post,
    path = "/dramas",
    tag = "Dramas",
    summary = "Create a drama",
    description = "Three forms, as the old server: `{\"premise\", \"id\"?, \"model\"?}` starts a generation job (202); multipart with `premise`, `id`, `model` and a `reference_image` file does the same with a reference; `{\"drama\": {…}}` stores a complete drama (201).",
    params(doc::Idempotent),
    request_body(content(
        (inline(doc::CreateDrama) = "application/json"),
        (inline(doc::PremiseForm) = "multipart/form-data"),
    )),
    responses(
        (status = 201, description = "The stored drama.", body = doc::Drama),
        (status = 202, description = "Generation started.", body = doc::JobResponse),
        (status = 400, description = "Neither form, or not JSON.", body = doc::Error),
        (status = 402, description = "Not enough tokens.", body = doc::Error),
        (status = 409, description = "The id is taken.", body = doc::Error),
        (status = 413, description = "Body too large.", body = doc::Error),
        doc::Invalid,
        doc::OverQuota,
    )
)]
async fn create(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let multipart = header_text(req.headers(), "content-type")
        .is_some_and(|v| v.contains("multipart/form-data"));
    if multipart {
        // A form is held in memory (up to FORM_LIMIT) while it arrives, for up to the upload
        // time limit: before a byte of it is read, a form announced larger than it could be
        // is refused, and it takes one of the user's upload slots, as a library upload does
        // (a service caller, which acts for many users, takes none).
        if let Some(length) = header_text(req.headers(), "content-length")
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|length| *length > FORM_LIMIT as u64)
        {
            return Err(ApiError::message(
                ErrorCode::TooLarge,
                format!("The form is too large: {length} bytes, the limit is {FORM_LIMIT}"),
            ));
        }
        let _permit = state.uploads.enter_for(&caller)?;
        // The request deadline does not cover a multipart body (a slow client's reference
        // image); the upload's own limits do, so a body that trickles or stalls cannot hold
        // the handler and its connection for ever.
        let (form, expiry) = timed_form(&req, payload, &state.settings);
        let request = premise_form(form)
            .await
            .map_err(|e| expiry.error().unwrap_or(e))?;
        return start_premise(&state, &caller, request).await;
    }
    let body = read_limited(payload, state.settings.json_limit).await?;
    let body = json_body(&body)?;
    if let Some((premise, id, model)) = premise_fields(&body)? {
        return start_premise(
            &state,
            &caller,
            PremiseRequest {
                premise,
                id,
                model,
                reference: None,
            },
        )
        .await;
    }
    match body {
        Value::Object(mut map) if map.contains_key("drama") => {
            super::drama_metadata_are_objects(&map["drama"])?;
            let drama = Drama::from_value(map.remove("drama").unwrap_or(Value::Null))
                .map_err(|e| ApiError::validation(&e.within("drama"), "body"))?;
            let stored = state.app().create_drama(&caller, &drama).await?;
            Ok(HttpResponse::Created()
                .insert_header(("ETag", format!("\"{}\"", stored.version)))
                .json(&stored.drama))
        }
        _ => Err(ApiError::message(
            ErrorCode::BadRequest,
            "Must provide either 'premise' (async mode) or 'drama' (sync mode)",
        )),
    }
}

async fn start_premise(
    state: &ApiState,
    caller: &drama_app::Caller,
    request: PremiseRequest,
) -> Result<HttpResponse, ApiError> {
    if request.premise.trim().is_empty() {
        return Err(ApiError::validation(
            &drama_domain::DomainError::field("premise", "must not be empty"),
            "body",
        ));
    }
    let started = state.app().create_from_premise(caller, request).await?;
    Ok(accepted(state, &started, "Drama generation job queued."))
}

/// Reads a body up to `limit` bytes (413 beyond).
async fn read_limited(mut payload: web::Payload, limit: usize) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the body failed: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::message(
                ErrorCode::TooLarge,
                format!("Request body is too large; the limit is {limit} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Largest reference image accepted with a premise.
const REFERENCE_LIMIT: usize = 20 * 1024 * 1024;
/// Largest text field of the form (`premise`, `id`, `model`): a premise of 20,000 characters
/// is at most 80 KB of UTF-8, so this bound refuses nothing the text limits would accept.
const FORM_TEXT_LIMIT: usize = 256 * 1024;
/// Most bytes a whole form may carry, parts the server ignores included.
const FORM_LIMIT: usize = REFERENCE_LIMIT + 1024 * 1024;

/// The multipart form of a premise: `premise`, `id`, `model`, `reference_image`.
///
/// Each part is held to its own bound while it streams in (the image to
/// [`REFERENCE_LIMIT`], text to [`FORM_TEXT_LIMIT`]), parts the server does not read are
/// counted but not kept, and the whole form to [`FORM_LIMIT`] and
/// [`FORM_PARTS`](super::streaming::FORM_PARTS) parts, so no form
/// costs more memory than one image and a little text.
async fn premise_form(mut form: Multipart) -> Result<PremiseRequest, ApiError> {
    let mut request = PremiseRequest::default();
    let mut premise = None;
    let mut budget = FormBudget::new(FORM_LIMIT);
    while let Some(field) = form.next().await {
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        budget.part()?;
        let name = field.name().unwrap_or_default().to_owned();
        let content_type = field.content_type().map(ToString::to_string);
        let has_file = field
            .content_disposition()
            .and_then(|d| d.get_filename())
            .is_some_and(|f| !f.is_empty());
        let (keep, limit) = match name.as_str() {
            "reference_image" => (true, REFERENCE_LIMIT),
            "premise" | "id" | "model" => (true, FORM_TEXT_LIMIT),
            _ => (false, FORM_LIMIT),
        };
        let value = budget.read(&mut field, &name, limit, keep).await?;
        let text = || String::from_utf8_lossy(&value).trim().to_owned();
        match name.as_str() {
            "premise" => premise = Some(text()).filter(|p| !p.is_empty()),
            "id" => request.id = Some(text()).filter(|p| !p.is_empty()),
            "model" => request.model = Some(text()).filter(|p| !p.is_empty()),
            "reference_image" if has_file && !value.is_empty() => {
                request.reference = Some(ReferenceUpload {
                    bytes: value.freeze(),
                    content_type,
                });
            }
            _ => {}
        }
    }
    request.premise = premise
        .ok_or_else(|| ApiError::bad_request("Field 'premise' is required in multipart request"))?;
    Ok(request)
}

/// `GET /dramas/{id}`.
#[utoipa::path(
    get,
    path = "/dramas/{drama_id}",
    tag = "Dramas",
    summary = "Read a drama with every part",
    params(doc::DramaPath),
    responses(
        (status = 200, description = "The drama; `ETag` carries its version.", body = doc::Drama),
        (status = 404, description = "No such drama of the caller.", body = doc::Error),
    )
)]
async fn get(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    read_part(&state, &caller, &path, |drama| Ok(drama)).await
}

/// `PATCH /dramas/{id}`: title, description, premise, metadata.
#[utoipa::path(
    patch,
    path = "/dramas/{drama_id}",
    tag = "Dramas",
    summary = "Change a drama's title, description, premise or metadata",
    params(doc::DramaPath, doc::IfMatch),
    request_body = doc::DramaPatch,
    responses(
        (status = 200, description = "The drama.", body = doc::Drama),
        doc::NoSuchDrama,
        (status = 409, description = "Stale version.", body = doc::Error),
        doc::BodyRefused,
    )
)]
async fn patch(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    let patch = patch_body(req.headers(), &body, |body| {
        DramaPatch::from_value(body).map(EntityPatch::Drama)
    })?;
    commit(&state, &caller, &id, patch, |drama| Ok(drama)).await
}

/// `DELETE /dramas/{id}`: the drama, its rows and its objects.
#[utoipa::path(
    delete,
    path = "/dramas/{drama_id}",
    tag = "Dramas",
    summary = "Delete a drama, its parts and its stored objects",
    params(doc::DramaPath),
    responses(
        (status = 200, description = "`{\"success\": true}`"),
        doc::NoSuchDrama,
        doc::Malformed,
    )
)]
async fn delete(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = drama_id(&path)?;
    state.app().delete_drama(&caller, &id).await?;
    Ok(HttpResponse::Ok().json(json!({"success": true})))
}
