use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use drama_app::jobs::JobId;
use drama_app::pipeline::{PremiseRequest, Scope, Started, Waited};
use drama_app::store::{Entity, StoredDrama};
use drama_app::{AppError, Caller, RequestKey};
use drama_domain::CharacterId;
use drama_domain::{self as domain, DramaId, DramaPatch, EntityPatch, UserId};
use juniper::{Executor, FieldResult, GraphQLInputObject, RootNode, graphql_object};

use super::context::Ctx;
use super::error::{GqlError, bad_input};
use super::jobs::Job;
use super::paging::{
    DRAMAS_PAGE, MAX_DRAMAS, MAX_SUMMARIES, SUMMARIES_PAGE, page_limit, read_pages, status_filter,
};
use super::subscription::Subscription;
use crate::error::ErrorCode;
use crate::state::named_owner;

/// The schema type.
pub type Schema = RootNode<Query, Mutation, Subscription>;

/// Deepest query accepted by default (`http.graphql.max_depth`): the introspection query of
/// graphql-js (what GraphiQL and the code generators of the old clients send) nests 14 levels
/// through its `TypeRef` fragment; the price (`limits`) is what bounds the cost of a query.
pub const MAX_DEPTH: usize = 16;
/// Most fields (after fragment expansion) in one document.
pub const MAX_FIELDS: usize = 2_000;
/// Builds the schema with the default depth limit.
pub fn schema() -> Schema {
    schema_with_depth(MAX_DEPTH)
}

/// Builds the schema (once per process) refusing documents nested deeper than `max_depth`.
pub fn schema_with_depth(max_depth: usize) -> Schema {
    Schema::new(Query, Mutation, Subscription)
        .limit_depth(max_depth)
        .limit_fields(MAX_FIELDS)
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The owner a `userId` argument names, for service callers (the old clients' `10000` is
/// `LEGACY_USER_ID`); anyone else's is ignored, as on REST ([`named_owner`]). The user named
/// is recorded for the answer's media URLs.
fn requested_owner(ctx: &Ctx, user_id: Option<&str>) -> FieldResult<Option<UserId>> {
    let owner = named_owner(&ctx.caller, user_id, ctx.legacy_user)
        .map_err(|u| bad_input(format!("userId {u:?} is not a user id")))?;
    if let Some(user) = owner {
        ctx.named.name(user);
    }
    Ok(owner)
}

/// A complete drama.
#[derive(Clone)]
pub struct Drama(Arc<StoredDrama>);

impl Drama {
    /// The GraphQL view of a stored drama.
    pub(crate) fn new(stored: StoredDrama) -> Self {
        Self(Arc::new(stored))
    }
}

/// A character of a drama.
pub struct Character {
    drama: Arc<StoredDrama>,
    index: usize,
}

/// An episode of a drama.
pub struct Episode {
    drama: Arc<StoredDrama>,
    index: usize,
}

/// A scene of an episode.
pub struct Scene {
    drama: Arc<StoredDrama>,
    episode: usize,
    index: usize,
}

impl Character {
    fn get(&self) -> &domain::Character {
        &self.drama.drama.characters[self.index]
    }
}

impl Episode {
    fn get(&self) -> &domain::Episode {
        &self.drama.drama.episodes[self.index]
    }
}

impl Scene {
    fn get(&self) -> &domain::Scene {
        &self.drama.drama.episodes[self.episode].scenes[self.index]
    }
}

#[graphql_object(context = Ctx)]
impl Drama {
    fn id(&self) -> &str {
        self.0.drama.id.as_str()
    }
    fn title(&self) -> &str {
        &self.0.drama.title
    }
    fn description(&self) -> &str {
        &self.0.drama.description
    }
    fn premise(&self) -> &str {
        &self.0.drama.premise
    }
    fn url(&self) -> Option<&str> {
        self.0.drama.url.as_deref()
    }
    fn characters(&self) -> Vec<Character> {
        (0..self.0.drama.characters.len())
            .map(|index| Character {
                drama: self.0.clone(),
                index,
            })
            .collect()
    }
    fn episodes(&self) -> Vec<Episode> {
        (0..self.0.drama.episodes.len())
            .map(|index| Episode {
                drama: self.0.clone(),
                index,
            })
            .collect()
    }
    /// The cover image's url (same as `url`).
    fn cover_photo(&self) -> Option<&str> {
        self.0.drama.url.as_deref()
    }
    /// Every job of the drama (runs, groups and tasks), newest first.
    async fn jobs(&self, ctx: &Ctx) -> Result<Vec<Job>, GqlError> {
        let loader = ctx.jobs.get();
        let all = loader.of(ctx, &self.0.drama.id).await?;
        loader.serve(all.iter())
    }
    /// The version for optimistic concurrency (send it back with updates).
    fn version(&self) -> i32 {
        i32::try_from(self.0.version).unwrap_or(i32::MAX)
    }
}

/// The jobs of a drama whose asset is one of `assets` or whose key is one of `keys`.
async fn jobs_about(
    ctx: &Ctx,
    drama: &StoredDrama,
    assets: &[&domain::Asset],
    keys: &[String],
) -> Result<Vec<Job>, GqlError> {
    let loader = ctx.jobs.get();
    let all = loader.of(ctx, &drama.drama.id).await?;
    let about: Vec<&Job> = all
        .iter()
        .filter(|j| {
            j.asset()
                .is_some_and(|a| assets.iter().any(|x| x.id.as_str() == a))
                || keys.iter().any(|k| k == j.node_key())
        })
        .collect();
    loader.serve(about.into_iter())
}

#[graphql_object(context = Ctx)]
impl Character {
    fn id(&self) -> &str {
        self.get().id.as_str()
    }
    fn name(&self) -> &str {
        &self.get().name
    }
    fn description(&self) -> &str {
        &self.get().description
    }
    fn gender(&self) -> &str {
        &self.get().gender
    }
    fn voice_description(&self) -> &str {
        &self.get().voice_description
    }
    fn main(&self) -> bool {
        self.get().main
    }
    fn url(&self) -> Option<&str> {
        self.get().url.as_deref()
    }
    /// The jobs that make this character's assets.
    async fn jobs(&self, ctx: &Ctx) -> Result<Vec<Job>, GqlError> {
        let c = self.get();
        let assets: Vec<&domain::Asset> = c.assets.iter().collect();
        jobs_about(ctx, &self.drama, &assets, &[format!("character:{}", c.id)]).await
    }
}

#[graphql_object(context = Ctx)]
impl Episode {
    fn id(&self) -> &str {
        self.get().id.as_str()
    }
    fn title(&self) -> &str {
        &self.get().title
    }
    fn description(&self) -> &str {
        &self.get().description
    }
    fn url(&self) -> Option<&str> {
        self.get().url.as_deref()
    }
    fn scenes(&self) -> Vec<Scene> {
        (0..self.get().scenes.len())
            .map(|index| Scene {
                drama: self.drama.clone(),
                episode: self.index,
                index,
            })
            .collect()
    }
    /// The jobs of this episode: its group, scene writing, its scenes' assets and stitching.
    async fn jobs(&self, ctx: &Ctx) -> Result<Vec<Job>, GqlError> {
        let e = self.get();
        let assets: Vec<&domain::Asset> = e
            .assets
            .iter()
            .chain(e.scenes.iter().flat_map(|s| s.assets.iter()))
            .collect();
        let keys = [format!("episode:{}", e.id), format!("scenes:{}", e.id)];
        jobs_about(ctx, &self.drama, &assets, &keys).await
    }
}

#[graphql_object(context = Ctx)]
impl Scene {
    fn id(&self) -> &str {
        self.get().id.as_str()
    }
    fn description(&self) -> &str {
        &self.get().description
    }
    fn image_url(&self) -> Option<&str> {
        self.get().image_url.as_deref()
    }
    fn video_url(&self) -> Option<&str> {
        self.get().video_url.as_deref()
    }
    /// The jobs that make this scene's storyboard and clip.
    async fn jobs(&self, ctx: &Ctx) -> Result<Vec<Job>, GqlError> {
        let assets: Vec<&domain::Asset> = self.get().assets.iter().collect();
        jobs_about(ctx, &self.drama, &assets, &[]).await
    }
}

/// The list view of a drama.
pub struct DramaSummary(domain::DramaSummary);

#[graphql_object(context = Ctx)]
impl DramaSummary {
    fn id(&self) -> &str {
        self.0.id.as_str()
    }
    fn title(&self) -> &str {
        &self.0.title
    }
    fn description(&self) -> &str {
        &self.0.description
    }
    fn premise(&self) -> &str {
        &self.0.premise
    }
    fn url(&self) -> Option<&str> {
        self.0.url.as_deref()
    }
    fn created_at(&self) -> String {
        timestamp(self.0.created_at)
    }
    fn updated_at(&self) -> String {
        timestamp(self.0.updated_at)
    }
}

/// Read operations.
pub struct Query;

#[graphql_object(context = Ctx, scalar = juniper::DefaultScalarValue)]
impl Query {
    /// The signed-in user: balance and credit movements.
    async fn me(ctx: &Ctx) -> Result<super::account::Me, GqlError> {
        Ok(super::account::Me(ctx.app.me(&ctx.caller).await?))
    }

    /// A drama of the caller, or null.
    async fn drama(ctx: &Ctx, id: String) -> Result<Option<Drama>, GqlError> {
        let Ok(id) = id.parse::<DramaId>() else {
            return Ok(None);
        };
        match ctx.app.get_drama(&ctx.caller, None, &id).await {
            Ok(stored) => {
                ctx.jobs.get().want([stored.drama.id.clone()]);
                Ok(Some(Drama(Arc::new(stored))))
            }
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Summaries of the caller's dramas, newest first. `userId` is honoured for service
    /// callers only. At most 5,000 are served; a larger `limit` is served as 5,000.
    async fn drama_summaries(
        ctx: &Ctx,
        executor: &Executor<'_, '_, Ctx>,
        #[graphql(default = 100)] limit: i32,
        user_id: Option<String>,
    ) -> FieldResult<Vec<DramaSummary>> {
        let key = executor.look_ahead().field_name().to_owned();
        let owner = requested_owner(ctx, user_id.as_deref())?;
        let Some(wanted) = page_limit(limit, MAX_SUMMARIES)? else {
            return Ok(Vec::new());
        };
        let (items, more) = read_pages(wanted, SUMMARIES_PAGE, 0, |page| async move {
            ctx.app.list_summaries(&ctx.caller, owner, &page).await
        })
        .await
        .map_err(|e| juniper::IntoFieldError::into_field_error(GqlError(e)))?;
        ctx.note_truncation(&key, limit, items.len(), more && limit > MAX_SUMMARIES);
        Ok(items.into_iter().map(DramaSummary).collect())
    }

    /// The caller's complete dramas, newest first. At most 500 are served; a larger `limit`
    /// is served as 500.
    async fn dramas(
        ctx: &Ctx,
        executor: &Executor<'_, '_, Ctx>,
        #[graphql(default = 100)] limit: i32,
        #[graphql(default = 0)] offset: i32,
    ) -> FieldResult<Vec<Drama>> {
        let key = executor.look_ahead().field_name().to_owned();
        let offset = u32::try_from(offset).map_err(|_| bad_input("offset must not be negative"))?;
        let Some(wanted) = page_limit(limit, MAX_DRAMAS)? else {
            return Ok(Vec::new());
        };
        let (items, more) = read_pages(wanted, DRAMAS_PAGE, offset, |page| async move {
            ctx.app.list_dramas(&ctx.caller, None, &page).await
        })
        .await
        .map_err(|e| juniper::IntoFieldError::into_field_error(GqlError(e)))?;
        ctx.note_truncation(&key, limit, items.len(), more && limit > MAX_DRAMAS);
        ctx.jobs
            .get()
            .want(items.iter().map(|d| d.drama.id.clone()));
        Ok(items.into_iter().map(|d| Drama(Arc::new(d))).collect())
    }

    /// The script models a request may name and what calls cost (as `GET /models`).
    fn models(ctx: &Ctx) -> super::pricing::Pricing {
        super::pricing::Pricing(ctx.app.pricing())
    }

    /// What generating the drama (or the narrowest part named: asset, scene, episode) would
    /// start and debit now, and what the scenes it writes are expected to add.
    async fn estimate(
        ctx: &Ctx,
        drama_id: String,
        episode_id: Option<String>,
        scene_id: Option<String>,
        asset_id: Option<String>,
        force: Option<bool>,
    ) -> Result<super::pricing::Estimate, GqlError> {
        let id = parse_drama(&drama_id)?;
        let scope = match (asset_id, scene_id, episode_id) {
            (Some(a), _, _) => Scope::Asset(part_id(Entity::Asset, &a)?),
            (None, Some(s), _) => Scope::Scene(part_id(Entity::Scene, &s)?),
            (None, None, Some(e)) => Scope::Episode(part_id(Entity::Episode, &e)?),
            (None, None, None) => Scope::Drama,
        };
        let estimate = ctx
            .app
            .estimate(&ctx.caller, &id, scope, force.unwrap_or(false))
            .await?;
        Ok(super::pricing::Estimate(estimate))
    }

    /// A job of the caller, or null.
    async fn job(ctx: &Ctx, id: String) -> Result<Option<Job>, GqlError> {
        let Ok(id) = id.parse::<JobId>() else {
            return Ok(None);
        };
        match ctx.app.job(&ctx.caller, id).await {
            Ok(view) => Ok(Some(Job::new(view))),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every job of a drama (runs, groups and tasks), newest first, optionally only those with
    /// a status (`pending`, `processing`, `completed`, `failed`, `cancelled`; `running` is
    /// read as `processing`).
    async fn jobs(
        ctx: &Ctx,
        drama_id: String,
        status: Option<String>,
    ) -> Result<Vec<Job>, GqlError> {
        let Ok(id) = drama_id.parse::<DramaId>() else {
            return Ok(Vec::new());
        };
        // Through the request's loader: a drama asked for again (an alias, a nested field)
        // is read once, and every read counts against the request's job nodes; what each
        // field serves counts too, since every alias copies the list into the answer.
        let loader = ctx.jobs.get();
        let jobs = loader.of(ctx, &id).await?;
        match status.map(status_filter) {
            None => loader.serve(jobs.iter()),
            Some(wanted) => {
                let picked: Vec<&Job> = jobs.iter().filter(|j| j.status_str() == wanted).collect();
                loader.serve(picked.into_iter())
            }
        }
    }
}

/// Changes to a drama's own fields; absent fields stay as they are.
#[derive(GraphQLInputObject)]
pub struct DramaUpdateInput {
    /// New title.
    title: Option<String>,
    /// New logline.
    description: Option<String>,
    /// New premise.
    premise: Option<String>,
}

/// Write operations.
pub struct Mutation;

#[graphql_object(context = Ctx)]
impl Mutation {
    /// Updates a drama's title, description or premise. With `version`, a stale version is a
    /// CONFLICT error and nothing changes.
    async fn update_drama(
        ctx: &Ctx,
        id: String,
        input: DramaUpdateInput,
        version: Option<i32>,
    ) -> Result<Drama, GqlError> {
        let id = parse_drama(&id)?;
        let mut body = serde_json::Map::new();
        for (key, value) in [
            ("title", input.title),
            ("description", input.description),
            ("premise", input.premise),
        ] {
            if let Some(v) = value {
                body.insert(key.to_owned(), serde_json::Value::String(v));
            }
        }
        let patch = DramaPatch::from_value(serde_json::Value::Object(body))
            .map_err(|e| GqlError(AppError::Invalid(e)))?;
        let stored = ctx
            .app
            .patch(
                &ctx.caller,
                &id,
                &EntityPatch::Drama(patch),
                version.map(i64::from),
            )
            .await?;
        Ok(Drama(Arc::new(stored)))
    }

    /// Deletes a drama with its parts and stored objects.
    async fn delete_drama(ctx: &Ctx, id: String) -> Result<bool, GqlError> {
        let id = parse_drama(&id)?;
        ctx.app.delete_drama(&ctx.caller, &id).await?;
        Ok(true)
    }

    /// Starts writing a drama from a premise (its portraits and cover follow).
    async fn create_drama(
        ctx: &Ctx,
        premise: String,
        id: Option<String>,
        model: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<JobAccepted, GqlError> {
        let caller = keyed(ctx, idempotency_key)?;
        let request = PremiseRequest {
            premise,
            id,
            model,
            reference: None,
        };
        let started = ctx.app.create_from_premise(&caller, request).await?;
        Ok(JobAccepted::new(
            ctx,
            started,
            "Drama generation job queued.",
        ))
    }

    /// Starts writing an improved copy of a drama under a new id.
    async fn improve_drama(
        ctx: &Ctx,
        id: String,
        feedback: String,
        new_drama_id: Option<String>,
        model: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<JobAccepted, GqlError> {
        let id = parse_drama(&id)?;
        let caller = keyed(ctx, idempotency_key)?;
        let started = ctx
            .app
            .improve_drama(&caller, &id, &feedback, new_drama_id, model)
            .await?;
        Ok(JobAccepted::new(
            ctx,
            started,
            "Drama improvement job queued.",
        ))
    }

    /// Starts a critique; the job's result carries the feedback.
    async fn critique_drama(
        ctx: &Ctx,
        id: String,
        model: Option<String>,
        idempotency_key: Option<String>,
    ) -> Result<JobAccepted, GqlError> {
        let id = parse_drama(&id)?;
        let caller = keyed(ctx, idempotency_key)?;
        let started = ctx.app.critique_drama(&caller, &id, model).await?;
        Ok(JobAccepted::new(ctx, started, "Drama critique job queued."))
    }

    /// Generates every asset of a drama that is missing or out of date (`force`: all). A
    /// `budget` caps the tokens the run may spend.
    async fn generate_drama(
        ctx: &Ctx,
        id: String,
        force: Option<bool>,
        budget: Option<i32>,
        idempotency_key: Option<String>,
    ) -> Result<Job, GqlError> {
        let id = parse_drama(&id)?;
        let caller = keyed(ctx, idempotency_key)?;
        generate_scope(ctx, &caller, &id, Scope::Drama, force, budget).await
    }

    /// Generates one episode (writing its scenes first when it has none).
    async fn generate_episode(
        ctx: &Ctx,
        drama_id: String,
        episode_id: String,
        force: Option<bool>,
        budget: Option<i32>,
        idempotency_key: Option<String>,
    ) -> Result<Job, GqlError> {
        let id = parse_drama(&drama_id)?;
        let caller = keyed(ctx, idempotency_key)?;
        let episode = part_id(Entity::Episode, &episode_id)?;
        generate_scope(ctx, &caller, &id, Scope::Episode(episode), force, budget).await
    }

    /// Generates one scene's storyboard and clip.
    async fn generate_scene(
        ctx: &Ctx,
        drama_id: String,
        scene_id: String,
        force: Option<bool>,
        budget: Option<i32>,
        idempotency_key: Option<String>,
    ) -> Result<Job, GqlError> {
        let id = parse_drama(&drama_id)?;
        let caller = keyed(ctx, idempotency_key)?;
        let scene = part_id(Entity::Scene, &scene_id)?;
        generate_scope(ctx, &caller, &id, Scope::Scene(scene), force, budget).await
    }

    /// Generates one asset again.
    async fn generate_asset(
        ctx: &Ctx,
        drama_id: String,
        asset_id: String,
        idempotency_key: Option<String>,
    ) -> Result<Job, GqlError> {
        let id = parse_drama(&drama_id)?;
        let caller = keyed(ctx, idempotency_key)?;
        let asset = part_id(Entity::Asset, &asset_id)?;
        let started = ctx
            .app
            .generate(&caller, &id, Scope::Asset(asset), true)
            .await?;
        started_job(ctx, started).await
    }

    /// Cancels a job (a run or a subtree).
    async fn cancel_job(ctx: &Ctx, id: String) -> Result<Job, GqlError> {
        Ok(Job::new(
            ctx.app.cancel_job(&ctx.caller, parse_job(&id)?).await?,
        ))
    }

    /// Resumes what failed, was skipped or was cancelled in a job. A run that settled counts
    /// as a run started again for the quotas (`QUOTA_EXCEEDED`: nothing re-queued).
    async fn resume_job(ctx: &Ctx, id: String) -> Result<Job, GqlError> {
        Ok(Job::new(
            ctx.app.resume_job(&ctx.caller, parse_job(&id)?).await?,
        ))
    }

    /// Generates a character's portrait and answers with the character (null when the drama
    /// or character does not exist), as the old server did. `userId` counts for service
    /// callers only.
    async fn generate_character_image(
        ctx: &Ctx,
        drama_id: String,
        character_id: String,
        user_id: Option<String>,
        idempotency_key: Option<String>,
    ) -> FieldResult<Option<Character>> {
        let caller = keyed(ctx, idempotency_key)
            .map_err(juniper::IntoFieldError::into_field_error)?
            .acting_for(requested_owner(ctx, user_id.as_deref())?);
        let (Ok(id), Ok(character)) = (
            drama_id.parse::<DramaId>(),
            CharacterId::parse(character_id.clone()),
        ) else {
            return Ok(None);
        };
        match ctx.app.portrait_now(&caller, &id, &character).await {
            Ok(Waited::Running(started)) => Err(still_running(&started)),
            Ok(Waited::Done(stored)) => {
                let stored = Arc::new(*stored);
                let index = stored
                    .drama
                    .characters
                    .iter()
                    .position(|c| c.id == character);
                Ok(index.map(|index| Character {
                    drama: stored.clone(),
                    index,
                }))
            }
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(juniper::IntoFieldError::into_field_error(GqlError(e))),
        }
    }

    /// Generates the cover and answers with the drama (null when it does not exist).
    async fn generate_cover_photo(
        ctx: &Ctx,
        drama_id: String,
        user_id: Option<String>,
        idempotency_key: Option<String>,
    ) -> FieldResult<Option<Drama>> {
        let caller = keyed(ctx, idempotency_key)
            .map_err(juniper::IntoFieldError::into_field_error)?
            .acting_for(requested_owner(ctx, user_id.as_deref())?);
        let Ok(id) = drama_id.parse::<DramaId>() else {
            return Ok(None);
        };
        match ctx.app.cover_now(&caller, &id).await {
            Ok(Waited::Running(started)) => Err(still_running(&started)),
            Ok(Waited::Done(stored)) => Ok(Some(Drama(Arc::new(*stored)))),
            Err(AppError::NotFound {
                entity: Entity::Drama,
                ..
            }) => Ok(None),
            Err(e) => Err(juniper::IntoFieldError::into_field_error(GqlError(e))),
        }
    }
}

/// A synchronous mutation whose run outlived the request deadline: the run goes on (and is
/// not charged again); the error carries its id so the client follows it instead of retrying.
fn still_running(started: &Started) -> juniper::FieldError {
    let job = started.job_id.to_string();
    juniper::FieldError::new(
        format!("The run {job} is still going; follow it with job(id) or jobProgress."),
        juniper::graphql_value!({ "code": (ErrorCode::StillRunning.graphql()), "jobId": job }),
    )
}

/// The caller naming this mutation with `idempotencyKey`: a repeat returns the first answer
/// and charges nothing. Only the argument counts: one document may hold several mutations,
/// and one request header cannot name each of them.
fn keyed(ctx: &Ctx, key: Option<String>) -> Result<Caller, GqlError> {
    let key = key.map(|k| RequestKey::parse(&k)).transpose()?;
    Ok(ctx.caller.keyed(key))
}

/// The id of a drama, a part of one or a job from an argument: text that cannot be such an id
/// names nothing there is, so it is answered as not found (as REST answers it in a path).
fn part_id<T: std::str::FromStr>(entity: Entity, id: &str) -> Result<T, GqlError> {
    id.parse()
        .map_err(|_| GqlError(AppError::not_found(entity, id)))
}

fn parse_drama(id: &str) -> Result<DramaId, GqlError> {
    part_id(Entity::Drama, id)
}

fn parse_job(id: &str) -> Result<JobId, GqlError> {
    part_id(Entity::Job, id)
}

async fn started_job(ctx: &Ctx, started: Started) -> Result<Job, GqlError> {
    Ok(Job::new(ctx.app.job(&ctx.caller, started.job_id).await?))
}

async fn generate_scope(
    ctx: &Ctx,
    caller: &Caller,
    id: &DramaId,
    scope: Scope,
    force: Option<bool>,
    budget: Option<i32>,
) -> Result<Job, GqlError> {
    let options = drama_app::pipeline::GenerateOptions {
        force: force.unwrap_or(false),
        budget: budget.map(i64::from),
    };
    started_job(
        ctx,
        ctx.app.generate_with(caller, id, scope, options).await?,
    )
    .await
}

/// A job that was accepted (the REST `JobResponse`).
pub struct JobAccepted {
    drama_id: String,
    job_id: String,
    message: String,
}

impl JobAccepted {
    fn new(ctx: &Ctx, started: Started, what: &str) -> Self {
        Self {
            message: format!(
                "{what} Check status at: {}/dramas/{}/jobs/{}",
                ctx.app.public_base_url(),
                started.drama_id,
                started.job_id
            ),
            drama_id: started.drama_id.to_string(),
            job_id: started.job_id.to_string(),
        }
    }
}

#[graphql_object(context = Ctx)]
impl JobAccepted {
    fn drama_id(&self) -> &str {
        &self.drama_id
    }
    fn job_id(&self) -> &str {
        &self.job_id
    }
    fn status(&self) -> &str {
        "pending"
    }
    fn message(&self) -> &str {
        &self.message
    }
}
