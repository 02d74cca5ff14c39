//! Answers and path parameters that several operations share, one type each, so that an
//! operation's `#[utoipa::path]` names them instead of repeating their lists. Documentation
//! only: handlers answer through `ApiError` and their own bodies, never through these types.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::marker::PhantomData;

use utoipa::IntoResponses;
use utoipa::openapi::{RefOr, Response};

use super::schemas::{Error, JobResponse, JobStatusRecord, ValidationError};

// One answer each, for operations that list their answers one by one: naming the type instead
// of repeating the tuple keeps the wording of an answer the same wherever it is given.

/// Not JSON, or a malformed header or path.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "The request cannot be understood: a body that is not JSON, a malformed header or path."
)]
pub(crate) struct Malformed(Error);

/// The body is too large.
#[derive(utoipa::IntoResponses)]
#[response(status = 413, description = "The body is above its limit.")]
pub(crate) struct TooLarge(Error);

/// A field breaks a rule.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 422,
    description = "The input breaks a rule; `detail` lists each field."
)]
pub(crate) struct Invalid(ValidationError);

/// The `Idempotency-Key` of a request without a body is malformed or was used for another
/// request.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 422,
    description = "The input breaks a rule (an `Idempotency-Key` that is malformed or was used for a different request); `detail` lists each field."
)]
pub(crate) struct KeyRefused(ValidationError);

/// A quota is reached.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 403,
    description = "A per-user quota would be exceeded (`quota_exceeded`: dramas held, bytes stored or runs in progress); nothing was done."
)]
pub(crate) struct OverQuota(Error);

/// A range that starts past the end of the object.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 416,
    description = "The range starts past the end; `Content-Range: bytes */{size}`."
)]
pub(crate) struct RangePastEnd(Error);

/// A conditional read of the current version.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 304,
    description = "`If-None-Match` names the current `ETag`."
)]
pub(crate) struct NotModified;

/// The drama named in the path does not exist, or is not the caller's.
#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "No such drama.")]
pub(crate) struct NoSuchDrama(Error);

/// The drama or the part a list is read from does not exist.
#[derive(utoipa::IntoResponses)]
#[response(status = 404, description = "A parent is missing.")]
pub(crate) struct ParentMissing(Error);

/// The answers of `A` and those of `B`, so that an operation's answers can name a shared set
/// (e.g. [`BodyRefused`]) beside its own instead of repeating the set's variants. The
/// document lists an operation's answers by status whatever the order they are named in.
pub(crate) struct Both<A, B>(PhantomData<(A, B)>);

impl<A: IntoResponses, B: IntoResponses> IntoResponses for Both<A, B> {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        let mut answers = A::responses();
        answers.extend(B::responses());
        answers
    }
}

/// The refusals of a request whose JSON body cannot be taken.
pub(crate) type BodyRefused = Both<Malformed, Both<TooLarge, Invalid>>;

/// The refusals of a paid start with a body: its body's, and a quota.
pub(crate) type StartRefused = Both<BodyRefused, OverQuota>;

/// The refusals of a paid start without a body (the old server's routes): a malformed path,
/// an `Idempotency-Key` refused, a quota.
pub(crate) type BareStartRefused = Both<Malformed, Both<KeyRefused, OverQuota>>;

/// A PATCH of one part of a drama, when it is taken.
#[derive(utoipa::IntoResponses)]
pub(crate) enum PartChanged {
    /// The part as committed.
    #[response(status = 200, description = "The entity.")]
    Changed,
    /// The drama, the part or what it is addressed through does not exist.
    #[response(status = 404, description = "Missing.")]
    Missing(Error),
    /// `If-Match` or `version` names a version the drama has left.
    #[response(status = 409, description = "Stale version.")]
    Stale(Error),
}

/// The answers of a PATCH of one part of a drama (a character, an episode, a scene, an asset).
pub(crate) type PartPatched = Both<PartChanged, BodyRefused>;

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

/// A generation started, or refused for what it starts.
#[derive(utoipa::IntoResponses)]
pub(crate) enum Generation {
    /// The run was accepted.
    #[response(status = 202, description = "Generation started.")]
    Started(JobResponse),
    /// The caller cannot pay the estimate.
    #[response(status = 402, description = "Not enough tokens; nothing started.")]
    Unpaid(Error),
    /// The drama or the part does not exist.
    #[response(status = 404, description = "Missing drama or part.")]
    Missing(Error),
}

/// The answers of a generation started with a body (options, a budget).
pub(crate) type GenerationStarted = Both<Generation, StartRefused>;

/// The answers of a generation started without a body (the old server's routes).
pub(crate) type GenerationStartedBare = Both<Generation, BareStartRefused>;

/// A critique started (`critic` and its alias `critique`), or its drama missing.
#[derive(utoipa::IntoResponses)]
pub(crate) enum Critique {
    /// The run was accepted.
    #[response(
        status = 202,
        description = "Critique started; the job's result is `{\"feedback\": …}`."
    )]
    Started(JobResponse),
    /// The drama does not exist.
    #[response(status = 404, description = "No such drama.")]
    Missing(Error),
}

/// The answers of a critique started.
pub(crate) type CritiqueStarted = Both<Critique, StartRefused>;

/// A job of the caller after a change, or no such job.
#[derive(utoipa::IntoResponses)]
#[expect(
    clippy::large_enum_variant,
    reason = "never built: the type only describes the answers"
)]
pub(crate) enum JobFound {
    /// The job after the change.
    #[response(status = 200, description = "The job.")]
    Changed(JobStatusRecord),
    /// Not a job of the caller.
    #[response(status = 404, description = "No such job.")]
    Missing(Error),
}

/// The answers of a cancel of a job.
pub(crate) type JobChanged = Both<JobFound, Malformed>;

/// The refusals of a resume: those of a paid start, as a settled run resumed is a run
/// started again.
#[derive(utoipa::IntoResponses)]
pub(crate) enum ResumeRefused {
    /// The caller cannot pay for what would be re-queued.
    #[response(status = 402, description = "Not enough tokens; nothing re-queued.")]
    Unpaid(Error),
    /// The run and storage quotas apply, and the drama quota to a run that has still to
    /// write its new drama.
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

/// The answers of a resume of a job: a cancel's, and the refusals of a paid start.
pub(crate) type JobResumed = Both<JobChanged, ResumeRefused>;

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
    #[param(min_length = 1)]
    project_name: String,
    /// image, video or text.
    #[param(inline)]
    asset_type: super::schemas::LibraryType,
}
