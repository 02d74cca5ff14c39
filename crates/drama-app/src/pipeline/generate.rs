//! Starting the generation of a drama's assets: planned from the stored drama and its
//! objects, without what the drama's active runs are making already (`plan::Held`).

use drama_dal::RepoError;
use drama_domain::{DomainError, DramaId, UserId};
use drama_jobs::{Graph, RunSpec};
use serde_json::json;

use super::normalize::ensure_assets;
use super::one_part::Target;
use super::plan::{Planner, Scope};
use super::spec::kind;
use super::usecases::{GenerateOptions, Started};
use crate::{App, AppError, Caller};

impl App {
    /// Plans and starts the generation of a drama's assets (all of them, or a scope),
    /// skipping those whose inputs did not change unless `force`. The run's estimated cost is
    /// debited when it starts and refunded for work that fails, is skipped or cancelled.
    ///
    /// # Errors
    /// `NotFound` (drama or scope); `InsufficientTokens` (nothing started); `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %id, ?scope, force))]
    pub async fn generate(
        &self,
        caller: &Caller,
        id: &DramaId,
        scope: Scope,
        force: bool,
    ) -> Result<Started, AppError> {
        self.generate_with(
            caller,
            id,
            scope,
            GenerateOptions {
                force,
                budget: None,
            },
        )
        .await
    }

    /// [`App::generate`] with every option: `budget` caps what the run may spend, tasks that
    /// would go past it are cancelled (and refunded) instead of started.
    ///
    /// # Errors
    /// `NotFound`; `Invalid` for a budget below 1; `InsufficientTokens`.
    pub async fn generate_with(
        &self,
        caller: &Caller,
        id: &DramaId,
        scope: Scope,
        options: GenerateOptions,
    ) -> Result<Started, AppError> {
        self.generate_target(caller, id, Target::Scope(scope), options)
            .await
    }

    /// Plans and starts the generation of what `target` names. A keyed repeat is answered
    /// first, from the request alone: nothing of the drama is read or written for it, so a
    /// part deleted or edited since the first request does not change its answer.
    ///
    /// # Errors
    /// `NotFound` (drama or part); `Precondition` (a cover without portraits); `Invalid` for a
    /// budget below 1; `InsufficientTokens`.
    #[tracing::instrument(skip_all, fields(drama.id = %id, ?target))]
    pub async fn generate_target(
        &self,
        caller: &Caller,
        id: &DramaId,
        target: Target,
        options: GenerateOptions,
    ) -> Result<Started, AppError> {
        let GenerateOptions { force, budget } = options;
        if let Some(b) = budget
            && b < 1
        {
            return Err(AppError::Invalid(DomainError::field(
                "budget",
                format!("must be at least 1 token, got {b}"),
            )));
        }
        let owner = caller.user;
        let (once, found) = self
            .once_run(
                caller,
                kind::GENERATE,
                &json!({
                    "dramaId": id, "scope": target.named(), "force": force, "budget": budget,
                }),
            )
            .await?;
        if let Some(run) = found {
            return self
                .replay_part(owner, id, &target, options, &once, &run)
                .await;
        }
        // From the read of the active runs to the submit, in the drama's turn: two requests
        // of one drama (in this process) cannot both miss the other's run and pay twice. Not
        // in the user's, a stripe shared with other users and held only to check and write
        // (`submit`): the reads and the plan grow with the drama and its active runs.
        let _turn = self.admission.drama(owner, id).await;
        let drama = self.prepare(owner, id).await?;
        let (scope, shown) = target.resolve(&drama, id)?;
        let objects = self.store.asset_objects(owner, id).await?;
        let models = self.models(None);
        let costs = self.costs(&models);
        let planner = Planner::new(&drama, &objects, &models, &costs)?;
        let held = self.held_work(owner, id).await?;
        let planned = planner.plan_around(&scope, force, &held)?;
        let mut payload = json!({
            "dramaId": id, "scope": format!("{scope:?}"), "force": force, "budget": budget,
        });
        if let (Some(payload), serde_json::Value::Object(shown)) = (payload.as_object_mut(), shown)
        {
            payload.extend(shown);
        }
        let mut run = RunSpec::new(kind::GENERATE, owner.0)
            .subject(id.as_str())
            .payload(payload);
        if let Some(b) = budget {
            run = run.budget(b);
        }
        let graph = Graph {
            run,
            nodes: planned.nodes,
        };
        tracing::info!(
            tasks = planned.tasks,
            cost = planned.cost,
            held_by = planned.held_by.len(),
            "generation planned"
        );
        // Everything out of date is being made by an active run of the drama already: that
        // run is the answer (for a keyed request too, whose key is then not taken), and no
        // run, charge or ledger row is added.
        if planned.tasks == 0
            && let Some(&run) = planned.held_by.first()
        {
            return Ok(Started {
                job_id: run,
                drama_id: id.clone(),
                replayed: false,
            });
        }
        // Nothing out of date: the drama's newest run, when it too found nothing to do, is the
        // answer, so repeated requests add no run (and no ledger row) each. A keyed request
        // still gets its own run, which its repeats replay.
        if planned.tasks == 0
            && once.key().is_none()
            && let Some(run) = self.latest_empty_run(owner, id).await?
        {
            return Ok(Started {
                job_id: run,
                drama_id: id.clone(),
                replayed: false,
            });
        }
        self.submit(owner, planned.cost, graph, &once).await
    }

    /// The drama with every generation target in place (added and saved when missing).
    pub(super) async fn prepare(
        &self,
        owner: UserId,
        id: &DramaId,
    ) -> Result<drama_domain::Drama, AppError> {
        for _ in 0..3 {
            let stored = self.store.get_complete(owner, id).await?;
            let mut drama = stored.drama;
            let added = ensure_assets(&mut drama)?;
            // The parts generation adds (a portrait per character, a storyboard and a clip
            // per scene, …) count against the bounds of a drama's size like any other.
            drama.check_size()?;
            if !added {
                return Ok(drama);
            }
            match self
                .store
                .save_complete(owner, &drama, Some(stored.version))
                .await
            {
                Ok(_) => return Ok(drama),
                Err(RepoError::VersionConflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Unavailable(
            "the drama keeps changing; try again".to_owned(),
        ))
    }
}
