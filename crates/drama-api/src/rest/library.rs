//! `/asset-library/*`: uploads into named projects (the old server's routes 32–36).

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use drama_app::{
    AppError, Caller, LIBRARY_PAGE_DEFAULT, LIBRARY_PAGE_MAX, LibraryItem, LibraryQuery,
    LibraryTag, LibraryType, LibraryUpload,
};
use drama_domain::{DomainError, UserId};
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::openapi::schemas as doc;
use super::query::Query;
use super::streaming::{FormBudget, object_response, spool_channel};
use super::upload_guard::timed_form;
use crate::endpoint::endpoint;
use crate::error::ApiError;
use crate::media_links::NamedOwners;
use crate::state::{ApiState, Auth, named_owner};

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    // `list` is registered before `{asset_id}` so that it is never taken for an id.
    cfg.service(endpoint("/asset-library/list").get(list))
        .service(endpoint("/asset-library/upload").post(upload))
        .service(endpoint("/asset-library/{asset_id}/metadata").get(metadata))
        .service(
            endpoint("/asset-library/{asset_id}")
                .get(download)
                .delete(delete),
        );
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    ApiError::validation(&DomainError::field(field, message.into()), "query")
}

/// A `user_id` argument counts only for service callers ([`named_owner`]: the old default
/// `10000` is `LEGACY_USER_ID`); from anyone else it is ignored. The user named is recorded
/// for the answer's media URLs ([`NamedOwners`]).
fn owner_arg(
    state: &ApiState,
    req: &HttpRequest,
    caller: &Caller,
    user_id: Option<&str>,
) -> Result<Option<UserId>, ApiError> {
    let owner = named_owner(caller, user_id, state.legacy_user)
        .map_err(|u| invalid("user_id", format!("{u:?} is not a user id")))?;
    if let Some(user) = owner {
        NamedOwners::of(req).name(user);
    }
    Ok(owner)
}

#[derive(Deserialize)]
struct ListQuery {
    user_id: Option<String>,
    project_name: Option<String>,
    asset_type: Option<String>,
    tag: Option<String>,
    /// Read as text so that a value that is not a number is refused naming `limit`.
    limit: Option<String>,
    cursor: Option<String>,
}

/// `GET /asset-library/list`: one page of a project's upload records, in key order (upload
/// order for uploads stored by this server); `total` counts the page's items, as the old
/// server counted its one answer.
#[utoipa::path(
    get,
    path = "/asset-library/list",
    tag = "Asset library",
    summary = "List a project's uploads, one page at a time",
    params(
        ("user_id" = Option<String>, Query, description = "Another owner (service callers only)."),
        ("project_name" = String, Query, min_length = 1, description = "Project."),
        ("asset_type" = inline(Option<doc::LibraryType>), Query, description = "image, video or text."),
        ("tag" = inline(Option<doc::LibraryTag>), Query, description = "character, storyboard or clip."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Most items in the page, 1–1000 (default 1000). With `asset_type` or `tag` a page may hold fewer (even none) while `cursor` is not null: a page reads at most 1,000 records (and about 8 MB of them)."),
        ("cursor" = Option<String>, Query, description = "The `cursor` answered with the previous page; absent for the first page."),
    ),
    responses(
        (status = 200, description = "`{assets, total, cursor, user_id, project_name}`: `total` is the number of items in `assets`; `cursor` reads the next page and is null on the last."),
        (status = 400, description = "Missing project or bad filter.", body = doc::Error),
        (status = 422, description = "The input breaks a rule (`limit` outside 1–1000 or not a number, a `cursor` this server did not answer); `detail` lists each field.", body = doc::ValidationError),
    )
)]
async fn list(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let project = query
        .project_name
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| ApiError::bad_request("project_name is required"))?;
    let asset_type = query
        .asset_type
        .as_deref()
        .map(LibraryType::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string().replace("asset_type: ", "")))?;
    let tag = query
        .tag
        .as_deref()
        .map(LibraryTag::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e.to_string().replace("tag: ", "")))?;
    let limit = match query.limit.as_deref() {
        None => LIBRARY_PAGE_DEFAULT,
        Some(text) => text.parse().map_err(|_| {
            invalid(
                "limit",
                format!("must be a whole number from 1 to {LIBRARY_PAGE_MAX}, got {text:?}"),
            )
        })?,
    };
    let owner = owner_arg(&state, &req, &caller, query.user_id.as_deref())?;
    let page = state
        .app()
        .library_list(
            &caller,
            owner,
            &LibraryQuery {
                project,
                asset_type,
                tag,
                limit,
                cursor: query.cursor.as_deref(),
            },
        )
        .await
        .map_err(|e| match e {
            // Everything this use case checks came in the query string.
            AppError::Invalid(d) => ApiError::validation(&d, "query"),
            other => other.into(),
        })?;
    Ok(HttpResponse::Ok().json(json!({
        "total": page.items.len(),
        "assets": page.items,
        "cursor": page.next,
        // The argument as given, else the old server's default, as the old server answered:
        // old clients compare it with what they sent, and the owner it resolved to (the
        // caller, or the user `10000` maps to) is not the caller's to learn.
        "user_id": query.user_id.as_deref().unwrap_or(drama_domain::OLD_DEFAULT_OWNER),
        "project_name": project,
    })))
}

#[derive(Deserialize)]
struct ItemQuery {
    user_id: Option<String>,
    project_name: Option<String>,
    asset_type: Option<String>,
}

fn item(
    state: &ApiState,
    req: &HttpRequest,
    caller: &Caller,
    asset_id: String,
    q: &ItemQuery,
) -> Result<(Option<UserId>, LibraryItem), ApiError> {
    let (Some(project), Some(asset_type)) = (
        q.project_name.as_deref().filter(|p| !p.is_empty()),
        q.asset_type.as_deref().filter(|t| !t.is_empty()),
    ) else {
        return Err(ApiError::bad_request(
            "project_name and asset_type are required",
        ));
    };
    let asset_type = LibraryType::parse(asset_type)
        .map_err(|e| ApiError::bad_request(e.to_string().replace("asset_type: ", "")))?;
    Ok((
        owner_arg(state, req, caller, q.user_id.as_deref())?,
        LibraryItem {
            project: project.to_owned(),
            asset_type,
            asset_id,
        },
    ))
}

#[utoipa::path(
    get,
    path = "/asset-library/{asset_id}/metadata",
    tag = "Asset library",
    summary = "An upload's record",
    params(doc::UploadPath, doc::LibraryItem),
    responses(
        (status = 200, description = "The record."),
        (status = 404, description = "No such upload.", body = doc::Error),
        doc::Invalid,
        (status = 400, description = "`project_name` or `asset_type` missing, or an unknown `asset_type`.", body = doc::Error),
    )
)]
async fn metadata(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    path: web::Path<String>,
    query: Query<ItemQuery>,
) -> Result<HttpResponse, ApiError> {
    let (owner, item) = item(&state, &req, &caller, path.into_inner(), &query)?;
    let record = state.app().library_metadata(&caller, owner, &item).await?;
    Ok(HttpResponse::Ok().json(record))
}

#[utoipa::path(
    get,
    path = "/asset-library/{asset_id}",
    tag = "Asset library",
    summary = "Download an upload",
    params(doc::UploadPath, doc::LibraryItem),
    responses(
        (status = 200, description = "The bytes, with their type."),
        (status = 400, description = "Missing project or type.", body = doc::Error),
        (status = 404, description = "No such upload.", body = doc::Error),
        doc::Invalid,
    )
)]
async fn download(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    path: web::Path<String>,
    query: Query<ItemQuery>,
) -> Result<HttpResponse, ApiError> {
    let (owner, item) = item(&state, &req, &caller, path.into_inner(), &query)?;
    let object = state.app().library_download(&caller, owner, &item).await?;
    Ok(object_response(object))
}

#[utoipa::path(
    delete,
    path = "/asset-library/{asset_id}",
    tag = "Asset library",
    summary = "Delete an upload",
    params(doc::UploadPath, doc::LibraryItem),
    responses(
        (status = 200, description = "`{success, message}`"),
        (status = 404, description = "No such upload.", body = doc::Error),
        doc::Malformed,
        doc::Invalid,
    )
)]
async fn delete(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    path: web::Path<String>,
    query: Query<ItemQuery>,
) -> Result<HttpResponse, ApiError> {
    let (owner, item) = item(&state, &req, &caller, path.into_inner(), &query)?;
    state.app().library_delete(&caller, owner, &item).await?;
    Ok(HttpResponse::Ok().json(json!({"success": true, "message": "Asset deleted successfully"})))
}

/// Text fields of the upload form.
#[derive(Default)]
struct Form {
    user_id: Option<String>,
    project_name: Option<String>,
    asset_type: Option<String>,
    tag: Option<String>,
    metadata: Option<String>,
}

/// Largest text part of the upload form (`metadata` included).
const UPLOAD_TEXT_LIMIT: usize = 64 * 1024;
/// Most bytes of the upload form besides the file, parts the server ignores included.
const UPLOAD_TEXT_TOTAL: usize = 1024 * 1024;
/// What a form's length may hold besides the file: its text parts, and the boundaries and
/// headers of its parts. The file is at least the announced length less this, so a request
/// refused on its length could not have fitted.
const UPLOAD_FORM_SLACK: u64 = UPLOAD_TEXT_TOTAL as u64 + 64 * 1024;

impl Form {
    /// The text parts the server reads; others are counted but not kept.
    const FIELDS: [&'static str; 5] = ["user_id", "project_name", "asset_type", "tag", "metadata"];

    fn set(&mut self, name: &str, value: String) {
        match name {
            "user_id" => self.user_id = Some(value),
            "project_name" => self.project_name = Some(value),
            "asset_type" => self.asset_type = Some(value),
            "tag" => self.tag = Some(value),
            "metadata" => self.metadata = Some(value),
            _ => {}
        }
    }

    fn required(&self) -> Result<(String, LibraryType, LibraryTag), ApiError> {
        let mut missing = Vec::new();
        for (name, value) in [
            ("project_name", &self.project_name),
            ("asset_type", &self.asset_type),
            ("tag", &self.tag),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                missing.push(drama_domain::FieldError::new(name, "Field required"));
            }
        }
        if !missing.is_empty() {
            return Err(ApiError::validation(
                &DomainError { errors: missing },
                "body",
            ));
        }
        let asset_type = LibraryType::parse(self.asset_type.as_deref().unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.to_string().replace("asset_type: ", "")))?;
        let tag = LibraryTag::parse(self.tag.as_deref().unwrap_or_default())
            .map_err(|e| ApiError::bad_request(e.to_string().replace("tag: ", "")))?;
        Ok((
            self.project_name.clone().unwrap_or_default(),
            asset_type,
            tag,
        ))
    }

    fn metadata(&self) -> Result<Map<String, Value>, ApiError> {
        match self.metadata.as_deref().filter(|m| !m.trim().is_empty()) {
            None => Ok(Map::new()),
            Some(text) => match serde_json::from_str(text) {
                Ok(Value::Object(map)) => Ok(map),
                _ => Err(ApiError::validation(
                    &DomainError::field("metadata", "must be a JSON object"),
                    "body",
                )),
            },
        }
    }
}

/// The parts of an upload form: the text fields and the spooled file with its name and type.
type UploadParts = (
    Form,
    Option<(Option<String>, Option<String>, super::streaming::Spooled)>,
);

/// Reads an upload form: the file is spooled up to `limit`; the budget bounds the rest.
async fn read_upload(mut form_data: Multipart, limit: u64) -> Result<UploadParts, ApiError> {
    let mut form = Form::default();
    let mut file = None;
    let mut budget = FormBudget::new(UPLOAD_TEXT_TOTAL);
    while let Some(field) = form_data.next().await {
        let mut field =
            field.map_err(|e| ApiError::bad_request(format!("malformed multipart body: {e}")))?;
        budget.part()?;
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            // Refused before it is read: a second file would be spooled only to be dropped.
            if file.is_some() {
                return Err(ApiError::validation(
                    &DomainError::field("file", "only one file may be uploaded at a time"),
                    "body",
                ));
            }
            let filename = field
                .content_disposition()
                .and_then(|d| d.get_filename())
                .map(str::to_owned);
            let content_type = field.content_type().map(ToString::to_string);
            let spooled = spool_channel(&mut field, limit).await?;
            file = Some((filename, content_type, spooled));
        } else {
            let keep = Form::FIELDS.contains(&name.as_str());
            let limit = if keep {
                UPLOAD_TEXT_LIMIT
            } else {
                UPLOAD_TEXT_TOTAL
            };
            let value = budget.read(&mut field, &name, limit, keep).await?;
            if keep {
                form.set(&name, String::from_utf8_lossy(&value).into_owned());
            }
        }
    }
    Ok((form, file))
}

/// `POST /asset-library/upload` (multipart): the file is streamed to the store; text fields
/// may come before or after it.
#[utoipa::path(
    post,
    path = "/asset-library/upload",
    tag = "Asset library",
    summary = "Upload a file (streamed)",
    request_body(content = inline(doc::UploadForm), content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "`{asset_id, asset_type, tag, r2_key, public_url, created_at}`"),
        (status = 413, description = "Too large: the file past the upload limit, a text part past 64 KB (naming it), the text parts past 1 MB together, or more than 16 parts.", body = doc::Error),
        (status = 422, description = "The input breaks a rule (a second `file` part among them); `detail` lists each field.", body = doc::ValidationError),
        doc::Malformed,
        (status = 403, description = "A per-user quota would be exceeded (`quota_exceeded`: bytes or objects stored); nothing was done. Checked before the body is read, with `Content-Length` (less 1,088 KiB for the other parts) when it is sent, and again with the file's size.", body = doc::Error),
        (status = 408, description = "The body sent nothing for `http.upload_idle_timeout` seconds, or took longer than `http.upload_timeout` (`request_timeout`); nothing was stored.", body = doc::Error),
    )
)]
async fn upload(
    state: web::Data<ApiState>,
    Auth(caller): Auth,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // Refused before a byte of the body is read: one upload more than the user's cap, and a
    // user without room for what the request announces (or already at the byte or object
    // quota). A service caller names its user inside the form, so it is checked after; nor
    // does it take a slot of the per-user cap: it uploads for many users, who would otherwise
    // share its two slots (one user's stalled upload holding up everyone's). Its uploads are
    // bounded by the time limits below.
    let _permit = state.uploads.enter_for(&caller)?;
    if !caller.service {
        let announced = crate::headers::header_text(req.headers(), header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|length| length.saturating_sub(UPLOAD_FORM_SLACK));
        state
            .app()
            .library_upload_admit(&caller, None, announced)
            .await?;
    }
    let settings = &state.settings;
    let (form_data, expiry) = timed_form(&req, payload, settings);
    // A body that stalled fails inside the parser; its answer says which bound it passed.
    // The spool file, if any, is gone with the failed read.
    let (form, file) = read_upload(form_data, settings.upload_limit)
        .await
        .map_err(|e| expiry.error().unwrap_or(e))?;
    let (project, asset_type, tag) = form.required()?;
    let Some((filename, content_type, spooled)) = file else {
        return Err(ApiError::validation(
            &DomainError::field("file", "Field required"),
            "body",
        ));
    };
    let owner = owner_arg(&state, &req, &caller, form.user_id.as_deref())?;
    let metadata = form.metadata()?;
    let record = state
        .app()
        .library_upload(
            &caller,
            owner,
            LibraryUpload {
                project,
                asset_type,
                tag,
                filename,
                content_type,
                metadata,
                size_hint: Some(spooled.len),
                body: spooled.into_stream(),
            },
        )
        .await?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "asset_id": record["asset_id"],
            "asset_type": record["asset_type"],
            "tag": record["tag"],
            "r2_key": record["r2_key"],
            "public_url": record["public_url"],
            "created_at": record["created_at"],
        })))
}
