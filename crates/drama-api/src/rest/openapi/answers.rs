//! Answers and path parameters that several operations share, one type each, so that an
//! operation's `#[utoipa::path]` names them instead of repeating their lists. Documentation
//! only: handlers answer through `ApiError` and their own bodies, never through these types.

#![allow(dead_code)]

use super::schemas::{Error, JobResponse, JobStatusRecord, ValidationError};

/// The answers of a PATCH of one part of a drama (a character, an episode, a scene, an asset).
#[derive(utoipa::IntoResponses)]
pub(crate) enum PartPatched {
    /// The part as committed.
    #[response(status = 200, description = "The entity.")]
    Changed,
    /// The drama, the part or what it is addressed through does not exist.
    #[response(status = 404, description = "Missing.")]
    Missing(Error),
    /// `If-Match` or `version` names a version the drama has left.
    #[response(status = 409, description = "Stale version.")]
    Stale(Error),
    /// A field breaks a rule.
    #[response(
        status = 422,
        description = "The input breaks a rule; `detail` lists each field."
    )]
    Invalid(ValidationError),
    /// Not JSON, or a malformed header or path.
    #[response(
        status = 400,
        description = "The request cannot be understood: a body that is not JSON, a malformed header or path."
    )]
    Malformed(Error),
    /// The body is too large.
    #[response(status = 413, description = "The body is above its limit.")]
    TooLarge(Error),
}

/// The answers of a read of one part of a drama.
#[derive(utoipa::IntoResponses)]
pub(crate) enum PartRead {
    /// The part.
    #[response(status = 200, description = "The entity.")]
    Found,
    /// The drama, the part or what it is addressed through does not exist.
    #[response(status = 404, description = "Missing (the detail names which part).")]
    Missing(Error),
}

/// The path of a drama.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct DramaPath {
    /// Drama id (1–128 of A-Z a-z 0-9 _ . -).
    drama_id: String,
}

/// The path of a character.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct CharacterPath {
    /// Drama id (1–128 of A-Z a-z 0-9 _ . -).
    drama_id: String,
    /// Character id.
    character_id: String,
}

/// The path of an episode.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct EpisodePath {
    /// Drama id (1–128 of A-Z a-z 0-9 _ . -).
    drama_id: String,
    /// Episode id.
    episode_id: String,
}

/// The path of a scene.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ScenePath {
    /// Drama id (1–128 of A-Z a-z 0-9 _ . -).
    drama_id: String,
    /// Episode id.
    episode_id: String,
    /// Scene id (unique within the drama).
    scene_id: String,
}

/// The answers of a generation started with a body (options, a budget).
#[derive(utoipa::IntoResponses)]
pub(crate) enum GenerationStarted {
    /// The run was accepted.
    #[response(status = 202, description = "Generation started.")]
    Started(JobResponse),
    /// The caller cannot pay the estimate.
    #[response(status = 402, description = "Not enough tokens; nothing started.")]
    Unpaid(Error),
    /// The drama or the part does not exist.
    #[response(status = 404, description = "Missing drama or part.")]
    Missing(Error),
    /// Not JSON, or a malformed header or path.
    #[response(
        status = 400,
        description = "The request cannot be understood: a body that is not JSON, a malformed header or path."
    )]
    Malformed(Error),
    /// The body is too large.
    #[response(status = 413, description = "The body is above its limit.")]
    TooLarge(Error),
    /// A field breaks a rule.
    #[response(
        status = 422,
        description = "The input breaks a rule; `detail` lists each field."
    )]
    Invalid(ValidationError),
    /// A quota is reached.
    #[response(
        status = 403,
        description = "A per-user quota would be exceeded (`quota_exceeded`: dramas held, bytes stored or runs in progress); nothing was done."
    )]
    OverQuota(Error),
}

/// The answers of a generation started without a body (the old server's routes).
#[derive(utoipa::IntoResponses)]
pub(crate) enum GenerationStartedBare {
    /// The run was accepted.
    #[response(status = 202, description = "Generation started.")]
    Started(JobResponse),
    /// The caller cannot pay the estimate.
    #[response(status = 402, description = "Not enough tokens; nothing started.")]
    Unpaid(Error),
    /// The drama or the part does not exist.
    #[response(status = 404, description = "Missing drama or part.")]
    Missing(Error),
    /// A malformed header or path.
    #[response(
        status = 400,
        description = "The request cannot be understood: a body that is not JSON, a malformed header or path."
    )]
    Malformed(Error),
    /// The idempotency key is malformed or was used for another request.
    #[response(
        status = 422,
        description = "The input breaks a rule (an `Idempotency-Key` that is malformed or was used for a different request); `detail` lists each field."
    )]
    Invalid(ValidationError),
    /// A quota is reached.
    #[response(
        status = 403,
        description = "A per-user quota would be exceeded (`quota_exceeded`: dramas held, bytes stored or runs in progress); nothing was done."
    )]
    OverQuota(Error),
}

/// The answers of a critique started (`critic` and its alias `critique`).
#[derive(utoipa::IntoResponses)]
pub(crate) enum CritiqueStarted {
    /// The run was accepted.
    #[response(
        status = 202,
        description = "Critique started; the job's result is `{\"feedback\": …}`."
    )]
    Started(JobResponse),
    /// The drama does not exist.
    #[response(status = 404, description = "No such drama.")]
    Missing(Error),
    /// A field breaks a rule.
    #[response(
        status = 422,
        description = "The input breaks a rule; `detail` lists each field."
    )]
    Invalid(ValidationError),
    /// Not JSON, or a malformed header or path.
    #[response(
        status = 400,
        description = "The request cannot be understood: a body that is not JSON, a malformed header or path."
    )]
    Malformed(Error),
    /// The body is too large.
    #[response(status = 413, description = "The body is above its limit.")]
    TooLarge(Error),
    /// A quota is reached.
    #[response(
        status = 403,
        description = "A per-user quota would be exceeded (`quota_exceeded`: dramas held, bytes stored or runs in progress); nothing was done."
    )]
    OverQuota(Error),
}

/// The answers of a resume of a job: a cancel's, and the refusals of a paid start.
#[derive(utoipa::IntoResponses)]
#[expect(
    clippy::large_enum_variant,
    reason = "never built: the type only describes the answers"
)]
pub(crate) enum JobResumed {
    /// The job after the change.
    #[response(status = 200, description = "The job.")]
    Changed(JobStatusRecord),
    /// Not a job of the caller.
    #[response(status = 404, description = "No such job.")]
    Missing(Error),
    /// A malformed path.
    #[response(
        status = 400,
        description = "The request cannot be understood: a body that is not JSON, a malformed header or path."
    )]
    Malformed(Error),
    /// The caller cannot pay for what would be re-queued.
    #[response(status = 402, description = "Not enough tokens; nothing re-queued.")]
    Unpaid(Error),
    /// A settled run resumed is a run started again: the run and storage quotas apply, and
    /// the drama quota to a run that has still to write its new drama.
    #[response(
        status = 403,
        description = "A per-user quota would be exceeded (`quota_exceeded`: dramas, bytes stored or runs in progress); nothing was re-queued."
    )]
    OverQuota(Error),
    /// The run would write a new drama under an id another run is writing now.
    #[response(
        status = 409,
        description = "The drama id the run writes is being written by another run (`already_exists`); nothing was re-queued."
    )]
    IdTaken(Error),
}

/// The answers of a cancel of a job.
#[derive(utoipa::IntoResponses)]
#[expect(
    clippy::large_enum_variant,
    reason = "never built: the type only describes the answers"
)]
pub(crate) enum JobChanged {
    /// The job after the change.
    #[response(status = 200, description = "The job.")]
    Changed(JobStatusRecord),
    /// Not a job of the caller.
    #[response(status = 404, description = "No such job.")]
    Missing(Error),
    /// A malformed path.
    #[response(
        status = 400,
        description = "The request cannot be understood: a body that is not JSON, a malformed header or path."
    )]
    Malformed(Error),
}

/// The path of a job.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct JobPath {
    /// Job id (UUID).
    job_id: String,
}

/// The path of an asset of a scene.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct AssetPath {
    /// Drama id (1–128 of A-Z a-z 0-9 _ . -).
    drama_id: String,
    /// Episode id.
    episode_id: String,
    /// Scene id (unique within the drama).
    scene_id: String,
    /// Asset id.
    asset_id: String,
}

/// The `Idempotency-Key` header of a paid request (stated once in the document, under
/// `components/parameters`, by `Shared`).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct Idempotent {
    /// Names this paid request (1-255 visible ASCII characters, e.g. a UUID). Repeating it with the same key within 24 hours returns the first answer (with `Idempotent-Replayed: true`) and charges nothing; the same key with a different request is refused with 422.
    #[param(
        rename = "Idempotency-Key",
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[!-~]+$"
    )]
    idempotency_key: Option<String>,
}

/// The `If-Match` header of a PATCH.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub(crate) struct IfMatch {
    /// The drama version the change is based on (the `ETag` of a read); a stale one is 409.
    #[param(
        rename = "If-Match",
        nullable = false,
        pattern = "^(\\*|(W/)?\"[0-9]{1,18}\"|[0-9]{1,18})$"
    )]
    if_match: Option<String>,
}

/// The path of an object.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ObjectPath {
    /// Object key.
    key: String,
}

/// The signature of a `/files/` URL.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct Signature {
    /// Expiry (unix seconds).
    expires: String,
    /// Signature.
    sig: String,
}

/// The path of an upload of the asset library.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct UploadPath {
    /// Asset id.
    asset_id: String,
}

/// What names an upload of the asset library besides its id.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LibraryItem {
    /// Another owner (service callers only).
    user_id: Option<String>,
    /// Project.
    #[param(min_length = 1, pattern = "[A-Za-z0-9]")]
    project_name: String,
    /// image, video or text.
    #[param(inline)]
    asset_type: super::schemas::LibraryType,
}
