use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use drama_app::AppError;
use drama_dal::{PageRequest, StoredDrama};
use drama_domain::{self as domain, DramaId, DramaPatch, UserId};
use juniper::{EmptySubscription, FieldResult, GraphQLInputObject, RootNode, graphql_object};

use super::context::Ctx;
use super::error::{GqlError, bad_input};

/// The schema type.
pub type Schema = RootNode<Query, Mutation, EmptySubscription<Ctx>>;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most fields (after fragment expansion) in one document.
pub const MAX_FIELDS: usize = 2_000;
/// Largest page a list field returns.
const MAX_LIMIT: i32 = 100;

/// Builds the schema (once per process).
pub fn schema() -> Schema {
    Schema::new(Query, Mutation, EmptySubscription::new())
        .limit_depth(MAX_DEPTH)
        .limit_fields(MAX_FIELDS)
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn requested_owner(user_id: Option<&str>) -> FieldResult<Option<UserId>> {
    user_id
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<UserId>()
                .map_err(|_| bad_input(format!("userId {u:?} is not a user id")))
        })
        .transpose()
}

fn page_limit(limit: i32) -> FieldResult<u32> {
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad_input(format!(
            "limit must be between 1 and {MAX_LIMIT}, got {limit}"
        )));
    }
    Ok(limit.unsigned_abs())
}

/// A complete drama.
#[derive(Clone)]
pub struct Drama(Arc<StoredDrama>);

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
    /// The version for optimistic concurrency (send it back with updates).
    fn version(&self) -> i32 {
        i32::try_from(self.0.version).unwrap_or(i32::MAX)
    }
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

#[graphql_object(context = Ctx)]
impl Query {
    /// A drama of the caller, or null.
    async fn drama(ctx: &Ctx, id: String) -> Result<Option<Drama>, GqlError> {
        let Ok(id) = id.parse::<DramaId>() else {
            return Ok(None);
        };
        match ctx.app.get_drama(&ctx.caller, None, &id).await {
            Ok(stored) => Ok(Some(Drama(Arc::new(stored)))),
            Err(AppError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Summaries of the caller's dramas, newest first. `userId` is honoured for service
    /// callers only.
    async fn drama_summaries(
        ctx: &Ctx,
        #[graphql(default = 100)] limit: i32,
        user_id: Option<String>,
    ) -> FieldResult<Vec<DramaSummary>> {
        let owner = requested_owner(user_id.as_deref())?;
        let page = PageRequest::first(page_limit(limit)?);
        let page = ctx
            .app
            .list_summaries(&ctx.caller, owner, &page)
            .await
            .map_err(|e| juniper::IntoFieldError::into_field_error(GqlError(e)))?;
        Ok(page.items.into_iter().map(DramaSummary).collect())
    }

    /// The caller's complete dramas, newest first.
    async fn dramas(
        ctx: &Ctx,
        #[graphql(default = 100)] limit: i32,
        #[graphql(default = 0)] offset: i32,
    ) -> FieldResult<Vec<Drama>> {
        let offset = u32::try_from(offset).map_err(|_| bad_input("offset must not be negative"))?;
        let page = PageRequest {
            limit: page_limit(limit)?,
            after: None,
            offset,
        };
        let page = ctx
            .app
            .list_dramas(&ctx.caller, None, &page)
            .await
            .map_err(|e| juniper::IntoFieldError::into_field_error(GqlError(e)))?;
        Ok(page.items.into_iter().map(|d| Drama(Arc::new(d))).collect())
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
        let id = id
            .parse::<DramaId>()
            .map_err(|_| GqlError(AppError::not_found(drama_dal::Entity::Drama, &id)))?;
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
            .patch_drama(&ctx.caller, &id, &patch, version.map(i64::from))
            .await?;
        Ok(Drama(Arc::new(stored)))
    }

    /// Deletes a drama with its parts and stored objects.
    async fn delete_drama(ctx: &Ctx, id: String) -> Result<bool, GqlError> {
        let id = id
            .parse::<DramaId>()
            .map_err(|_| GqlError(AppError::not_found(drama_dal::Entity::Drama, &id)))?;
        ctx.app.delete_drama(&ctx.caller, &id).await?;
        Ok(true)
    }
}
