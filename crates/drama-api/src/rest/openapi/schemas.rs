//! The schemas of the bodies the handlers build field by field (`json!`), and the names every
//! `#[utoipa::path]` refers to (`doc::Drama`, `doc::Error` …): the domain's and the app's wire
//! types are re-exported here so one module lists every schema of the document.
//!
//! A struct here must list the fields its handler writes, with the same names and JSON types;
//! `required = false` marks fields the document has never promised.

// These types are never built: only their derived schemas are read.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::marker::PhantomData;

use serde_json::Value;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

pub(crate) use super::super::generate::{GenerateOptions, ImproveRequest, ModelOptions};
pub(crate) use super::super::keys::CreateKey as NewApiKey;
pub(crate) use super::super::runs::EstimateRequest;
pub(crate) use crate::console::signin::Exchange as SignInCode;
pub(crate) use drama_app::Pricing;
pub(crate) use drama_domain::{
    Asset, AssetPatch, Character, CharacterPatch, Drama, DramaPatch, EpisodePatch, ScenePatch,
};

/// An error answer.
#[derive(ToSchema)]
pub(crate) struct Error {
    /// A message, or `{error, message, code}` for missing entities and other object details.
    #[schema(schema_with = error_detail)]
    detail: Value,
    /// Stable machine code: not_found, unauthenticated, validation_failed, already_exists, version_conflict, insufficient_tokens, rate_limited, too_large, precondition_failed, unavailable, internal, …
    code: String,
}

/// `detail` is text, or an object for missing entities and the like.
fn error_detail() -> RefOr<Schema> {
    let object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("error", ObjectBuilder::new().schema_type(Type::String))
        .property("message", ObjectBuilder::new().schema_type(Type::String))
        .property("code", ObjectBuilder::new().schema_type(Type::String));
    OneOfBuilder::new()
        .description(Some(
            "A message, or `{error, message, code}` for missing entities and other object details.",
        ))
        .item(ObjectBuilder::new().schema_type(Type::String))
        .item(object)
        .into()
}

/// A 422 answer: each rule the input breaks.
#[derive(ToSchema)]
pub(crate) struct ValidationError {
    #[schema(required = false, inline)]
    detail: Vec<FieldError>,
    #[schema(required = false)]
    code: String,
}

/// One broken rule.
#[derive(ToSchema)]
struct FieldError {
    #[schema(required = false)]
    r#type: String,
    #[schema(required = false, value_type = Vec<Value>)]
    loc: Vec<Value>,
    #[schema(required = false)]
    msg: String,
    #[schema(required = false)]
    field: String,
}

/// `GET /health`.
#[derive(ToSchema)]
pub(crate) struct Health {
    #[schema(required = false)]
    status: String,
    #[schema(required = false)]
    timestamp: String,
    #[schema(required = false)]
    version: String,
}

/// A page of `GET /dramas`.
#[derive(ToSchema)]
pub(crate) struct DramaList {
    #[schema(required = false)]
    dramas: Vec<drama_domain::DramaSummary>,
    cursor: Option<String>,
}

/// `GET /dramas`: the summaries, or with `view=overview` the overview.
pub(crate) struct DramaPage;

impl utoipa::PartialSchema for DramaPage {
    fn schema() -> RefOr<Schema> {
        // Either page matches a body of the other (no field is required), so `anyOf`.
        utoipa::openapi::schema::AnyOfBuilder::new()
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "DramaList",
            )))
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                "DramaOverview",
            )))
            .into()
    }
}

impl ToSchema for DramaPage {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((DramaList::name().into(), DramaList::schema()));
        DramaList::schemas(schemas);
        schemas.push((DramaOverview::name().into(), DramaOverview::schema()));
        DramaOverview::schemas(schemas);
    }
}

/// `POST /dramas` as JSON: a premise to write from, or a complete drama to store.
#[derive(ToSchema)]
#[serde(untagged)]
pub(crate) enum CreateDrama {
    Premise(PremiseRequest),
    Stored { drama: Drama },
}

/// A premise to write a drama from.
#[derive(ToSchema)]
pub(crate) struct PremiseRequest {
    /// The premise (not blank).
    #[schema(min_length = 1, max_length = 20000, pattern = r"\S")]
    premise: String,
    /// The new drama's id (default, or `null`: generated).
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9_.-]+$")]
    id: Option<String>,
    /// gemini-3-pro-preview (default), gpt-5.1 or another gpt-*, or offline. `null`: the default.
    model: Option<String>,
}

/// `POST /dramas` as a form: a premise with a reference image.
pub(crate) type PremiseForm = Closed<PremiseFormParts>;

/// The parts of [`PremiseForm`].
#[derive(ToSchema)]
pub(crate) struct PremiseFormParts {
    #[schema(min_length = 1, max_length = 20000, pattern = r"\S")]
    premise: String,
    #[schema(
        required = false,
        min_length = 1,
        max_length = 128,
        pattern = "^[A-Za-z0-9_.-]+$"
    )]
    id: String,
    #[schema(required = false)]
    model: String,
    #[schema(required = false, format = Binary)]
    reference_image: String,
}

/// A run started (202).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobResponse {
    #[schema(required = false)]
    drama_id: String,
    #[schema(required = false)]
    job_id: String,
    #[schema(required = false)]
    status: String,
    #[schema(required = false)]
    message: String,
}

/// An improvement started (202).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImproveResponse {
    #[schema(required = false)]
    original_id: String,
    #[schema(required = false)]
    improved_id: String,
    #[schema(required = false)]
    job_id: String,
    #[schema(required = false)]
    status: String,
    #[schema(required = false)]
    message: String,
}

/// Coarse job status.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
enum JobStatus {
    Pending,
    Processing,
    Completed,
    Failed,
    Cancelled,
}

/// A job: the old server's `JobStatusRecord` with the engine's facts.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JobStatusRecord {
    #[schema(required = false)]
    job_id: String,
    #[schema(required = false)]
    r#type: String,
    #[schema(required = false, inline)]
    status: JobStatus,
    drama_id: Option<String>,
    /// Milliseconds since the epoch.
    #[schema(required = false)]
    created_at: i64,
    started_at: Option<i64>,
    completed_at: Option<i64>,
    error: Option<String>,
    #[schema(value_type = Option<Object>)]
    result: Option<Value>,
    #[schema(required = false)]
    kind: String,
    #[schema(required = false)]
    key: String,
    #[schema(required = false)]
    state: String,
    parent_job_id: Option<String>,
    #[schema(required = false)]
    run_id: String,
    #[schema(required = false)]
    attempts: i64,
    #[schema(required = false, value_type = Object)]
    counts: Value,
    #[schema(required = false, value_type = Object)]
    cost: Value,
    #[schema(required = false, no_recursion)]
    children: Vec<JobStatusRecord>,
}

/// An API key of the caller, never with its secret.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApiKey {
    #[schema(required = false)]
    id: String,
    #[schema(required = false)]
    name: String,
    /// The public part: the key reads `dk_<prefix>_…`.
    #[schema(required = false)]
    prefix: String,
    #[schema(required = false)]
    scopes: Vec<String>,
    /// Milliseconds since the epoch.
    #[schema(required = false)]
    created_at: i64,
    last_used_at: Option<i64>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
    /// The key whose caller made this one (null: made with a session token or by the
    /// operator). Revoking that key revokes this one, and the keys made with it.
    made_by: Option<String>,
    /// Neither revoked nor expired.
    #[schema(required = false)]
    active: bool,
}

/// `GET /api-keys`.
#[derive(ToSchema)]
pub(crate) struct ApiKeyList {
    #[schema(required = false)]
    keys: Vec<ApiKey>,
}

/// A key just made: its listing and, once, its secret.
#[derive(ToSchema)]
pub(crate) struct CreatedApiKey {
    #[serde(flatten)]
    listed: ApiKey,
    /// The whole key; shown only in this answer.
    #[schema(required = false)]
    key: String,
}

/// What a node of a run is.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
enum NodeType {
    Run,
    Group,
    Task,
}

/// Every node of a run and its dependency edges.
#[derive(ToSchema)]
pub(crate) struct RunGraph {
    #[schema(required = false)]
    run: JobStatusRecord,
    #[schema(required = false, inline)]
    nodes: Vec<RunNode>,
    #[schema(required = false, inline)]
    edges: Vec<RunEdge>,
}

/// A node of a run.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct RunNode {
    #[schema(required = false)]
    id: String,
    #[schema(required = false)]
    key: String,
    #[schema(required = false)]
    kind: String,
    #[schema(required = false, inline)]
    node_type: NodeType,
    #[schema(required = false)]
    r#type: String,
    parent_id: Option<String>,
    /// Engine state: waiting, ready, running, completed, failed, skipped, cancelled.
    #[schema(required = false)]
    state: String,
    #[schema(required = false)]
    status: String,
    #[schema(required = false)]
    resource_class: String,
    #[schema(required = false)]
    attempts: i64,
    #[schema(required = false)]
    max_attempts: i64,
    #[schema(required = false)]
    cost: i64,
    /// Keys of the tasks it waits for.
    #[schema(required = false)]
    dependencies: Vec<String>,
    error: Option<String>,
    #[schema(required = false)]
    cancel_requested: bool,
    provider_task_id: Option<String>,
    asset_id: Option<String>,
    url: Option<String>,
    #[schema(value_type = Option<Object>)]
    counts: Option<Value>,
    #[schema(required = false)]
    created_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    run_after: Option<i64>,
    #[schema(required = false)]
    updated_at: i64,
}

/// A dependency edge.
#[derive(ToSchema)]
struct RunEdge {
    /// The prerequisite.
    #[schema(required = false)]
    from: String,
    /// The task that waits for it.
    #[schema(required = false)]
    to: String,
}

/// What a generation would cost (`POST /dramas/{id}/estimate`).
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Estimate {
    #[schema(required = false)]
    drama_id: String,
    #[schema(required = false)]
    tasks: i64,
    /// Credits the matching generate call would debit now.
    #[schema(required = false)]
    cost: i64,
    /// cost plus the storyboards and clips of the scenes the run is expected to write (the drama's own scenes per episode and clip length where it has scenes, else 4 scenes of 12.5 s on average).
    #[schema(required = false)]
    expected_cost: i64,
    /// cost plus the storyboards and clips of the most scenes a writer may write (8 per episode, 15 s clips): the most the run can debit.
    #[schema(required = false)]
    max_cost: i64,
    /// Episodes without scenes whose scenes the run writes.
    #[schema(required = false)]
    episodes_to_write: i64,
    /// Scenes the run is expected to write, in all.
    #[schema(required = false)]
    scenes_to_write: i64,
    /// Scenes expected per written episode.
    #[schema(required = false)]
    scenes_per_episode: i64,
    #[schema(required = false, inline)]
    by_kind: BTreeMap<String, KindCost>,
}

/// Tasks and credits of one kind of task.
#[derive(ToSchema)]
struct KindCost {
    #[schema(required = false)]
    tasks: i64,
    #[schema(required = false)]
    cost: i64,
}

/// A page of `GET /dramas?view=overview`.
#[derive(ToSchema)]
pub(crate) struct DramaOverview {
    #[schema(required = false, inline)]
    dramas: Vec<OverviewItem>,
    cursor: Option<String>,
}

/// One drama of the overview.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct OverviewItem {
    #[schema(required = false)]
    id: String,
    #[schema(required = false)]
    title: String,
    #[schema(required = false)]
    description: String,
    url: Option<String>,
    #[schema(required = false)]
    version: i64,
    #[schema(required = false)]
    created_at: i64,
    #[schema(required = false)]
    updated_at: i64,
    #[schema(required = false)]
    characters: i64,
    #[schema(required = false)]
    episodes: i64,
    #[schema(required = false)]
    scenes: i64,
    #[schema(inline)]
    latest_run: Option<LatestRun>,
}

/// The newest run of a drama in the overview.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
struct LatestRun {
    #[schema(required = false)]
    job_id: String,
    #[schema(required = false)]
    kind: String,
    #[schema(required = false)]
    r#type: String,
    #[schema(required = false)]
    status: String,
    #[schema(required = false)]
    state: String,
    #[schema(required = false)]
    created_at: i64,
    total: Option<i64>,
    completed: Option<i64>,
}

/// Why credits moved.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
enum CreditReason {
    Opening,
    Grant,
    Adjustment,
    RunCharge,
    Expansion,
    ResumeCharge,
    Refund,
    Clawback,
    UsageSettle,
}

/// One movement of credits (the ledger is append-only).
#[derive(ToSchema)]
pub(crate) struct LedgerEntry {
    /// Grows in the order movements were applied.
    #[schema(required = false)]
    id: i64,
    /// Signed: positive gives, negative takes.
    #[schema(required = false)]
    amount: i64,
    #[schema(required = false)]
    balance_after: i64,
    #[schema(required = false, inline)]
    reason: CreditReason,
    run_id: Option<uuid::Uuid>,
    task_id: Option<uuid::Uuid>,
    note: Option<String>,
    #[schema(required = false)]
    created_at: chrono::DateTime<chrono::Utc>,
}

/// `GET /me`.
#[derive(ToSchema)]
pub(crate) struct Me {
    #[schema(required = false)]
    id: uuid::Uuid,
    email: Option<String>,
    display_name: Option<String>,
    /// The credit balance.
    #[schema(required = false)]
    tokens: i64,
    #[schema(required = false)]
    subscription_tier: String,
    /// Newest first.
    #[schema(required = false)]
    ledger: Vec<LedgerEntry>,
    #[schema(required = false)]
    limit: i64,
    #[schema(required = false)]
    offset: i64,
    /// The offset of the next page, null on the last.
    next_offset: Option<i64>,
}

/// One Server-Sent Event.
#[derive(ToSchema)]
pub(crate) struct ServerSentEvent {
    event: String,
    /// A JSON object.
    data: String,
    #[schema(required = false)]
    id: String,
}

/// `view` of `GET /dramas`.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DramaView {
    Overview,
}

/// `POST /asset-library/upload`.
pub(crate) type UploadForm = Closed<UploadFormParts>;

/// The parts of [`UploadForm`].
#[derive(ToSchema)]
pub(crate) struct UploadFormParts {
    #[schema(format = Binary)]
    file: String,
    #[schema(min_length = 1, max_length = 500)]
    project_name: String,
    #[schema(inline)]
    asset_type: LibraryType,
    #[schema(inline)]
    tag: LibraryTag,
    /// A JSON object kept in the record.
    #[schema(required = false)]
    metadata: String,
    #[schema(required = false)]
    user_id: String,
}

/// What a library item holds.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LibraryType {
    Image,
    Video,
    Text,
}

/// What a library item is for.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum LibraryTag {
    Character,
    Storyboard,
    Clip,
}

/// `POST /ui/sign-in` answered.
#[derive(ToSchema)]
pub(crate) struct SignInToken {
    #[schema(required = false)]
    token: String,
}

/// A form schema that admits only the parts `T` names (`additionalProperties: false`), which
/// the derive cannot state for a struct.
pub(crate) struct Closed<T>(PhantomData<T>);

impl<T: ToSchema> PartialSchema for Closed<T> {
    fn schema() -> RefOr<Schema> {
        match T::schema() {
            RefOr::T(Schema::Object(mut object)) => {
                object.additional_properties = Some(Box::new(
                    utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                ));
                RefOr::T(Schema::Object(object))
            }
            other => other,
        }
    }
}

impl<T: ToSchema> ToSchema for Closed<T> {}

// The answers and paths several operations share, kept beside these schemas.
pub(crate) use super::answers::{
    AssetPath, BareStartRefused, BodyRefused, CharacterPath, CritiqueStarted, DramaPath,
    EpisodePath, GenerationStarted, GenerationStartedBare, Idempotent, IfMatch, Invalid,
    JobChanged, JobPath, JobResumed, KeyRefused, LibraryItem, Malformed, NoSuchDrama, NotModified,
    ObjectPath, OverQuota, ParentMissing, PartPatched, PartRead, RangePastEnd, ScenePath,
    Signature, StartRefused, TooLarge, UploadPath,
};
