//! The in-memory twin of the generation port: the pipeline's atomic writes (submissions with
//! their charge, completions with the drama write, refunds, resumes) over a [`MemoryStore`]
//! and a [`MemoryJobStore`]. It lives here rather than next to `MemoryStore` in drama-dal
//! because it yields to the runtime and logs, which the repository layer does not do.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use drama_dal::{
    Applied, CreditMove, CreditReason, DramaRepository as _, DramaWrite, EntityUrl, GeneratedAsset,
    GenerationError, GenerationStore, MemoryStore, OrphanRepository as _, Refund, RepoError,
    ResumeCharged, ScriptCompletion, UserRepository as _,
};
use drama_domain::{AssetId, Drama, DramaId, EpisodeId, Scene, UserId};
use drama_jobs::core::{Finish, FinishKind};
use drama_jobs::{Expansion, Fence, Graph, JobError, JobId, JobStore, MemoryJobStore, Submitted};
use serde_json::Value;

/// The pipeline's writes on the in-memory stores (tests, embedded mode). Each method applies
/// its domain write and then the job transition; the two are not one transaction as in
/// PostgreSQL, which a single process without crashes does not need.
pub struct MemoryGeneration {
    store: Arc<MemoryStore>,
    jobs: Arc<MemoryJobStore>,
}

impl MemoryGeneration {
    /// Writes on these stores.
    pub fn new(store: Arc<MemoryStore>, jobs: Arc<MemoryJobStore>) -> Self {
        Self { store, jobs }
    }

    async fn finish(&self, fence: &Fence, kind: FinishKind) -> Result<(), GenerationError> {
        let results = self
            .jobs
            .finish(vec![Finish {
                fence: *fence,
                kind,
            }])
            .await?;
        match results.into_iter().next() {
            Some(Err(e)) => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Applies `change` to the stored drama with optimistic retries; a change that answers
    /// `false` leaves the drama as it is, and so does `update`.
    async fn update(
        &self,
        owner: UserId,
        id: &DramaId,
        change: impl Fn(&mut Drama) -> Result<bool, RepoError>,
    ) -> Result<bool, RepoError> {
        for _ in 0..16 {
            let current = self.store.get_complete(owner, id).await?;
            let mut drama = current.drama;
            if !change(&mut drama)? {
                return Ok(false);
            }
            match self
                .store
                .save_complete(owner, &drama, Some(current.version))
                .await
            {
                Err(RepoError::VersionConflict { .. }) => tokio::task::yield_now().await,
                other => return other.map(|_| true),
            }
        }
        Err(RepoError::Unavailable(
            "the drama keeps changing".to_owned(),
        ))
    }

    /// Settles a token-priced task: its cost drops to `usage_price` when that is less, and
    /// the difference is credited back (a `usage_settle` row) before the store lets go.
    fn settle_usage(
        &self,
        owner: UserId,
        fence: &Fence,
        usage_price: Option<i64>,
    ) -> Result<(), GenerationError> {
        let Some(price) = usage_price else {
            return Ok(());
        };
        self.jobs.settle_paid(fence, price, |back| {
            self.store
                .move_credits_now(&CreditMove::usage_settle(owner, fence, back))
                .map(|_| ())
                .map_err(GenerationError::from)
        })?;
        Ok(())
    }

    /// The end of a script task's completion: settles its usage, pays for its expansion when
    /// the owner can, and completes the job with the expansion that was paid for.
    async fn settle_and_finish(
        &self,
        owner: UserId,
        fence: &Fence,
        completion: ScriptCompletion,
    ) -> Result<bool, GenerationError> {
        self.settle_usage(owner, fence, completion.usage_price)?;
        self.store.keep_objects(owner, &completion.kept_objects);
        let paid = self.pay_for_expansion(
            owner,
            fence,
            &completion.expansion,
            completion.expansion_cost,
        )?;
        self.finish(
            fence,
            FinishKind::Complete {
                result: with_applied(completion.result, paid),
                expansion: paid.then_some(completion.expansion),
            },
        )
        .await?;
        Ok(paid)
    }

    /// Debits an expansion's cost if the owner can pay; returns whether it was paid.
    fn pay_for_expansion(
        &self,
        owner: UserId,
        fence: &Fence,
        expansion: &Expansion,
        cost: i64,
    ) -> Result<bool, RepoError> {
        if expansion.is_empty() {
            return Ok(false);
        }
        let charge = CreditMove::expansion(owner, fence, cost);
        match self.store.move_credits_now(&charge) {
            Ok(_) => Ok(true),
            Err(RepoError::InsufficientTokens { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Whether a graph holds work. A run without tasks (nothing was out of date) moves no
/// credits and writes no ledger row: a 0-credit row per such request would let anyone grow
/// the ledger at their request rate.
fn has_tasks(graph: &Graph) -> bool {
    graph
        .nodes
        .iter()
        .any(|n| n.node_type == drama_jobs::NodeType::Task)
}

fn with_applied(mut result: Value, applied: bool) -> Value {
    if let Value::Object(map) = &mut result {
        map.insert("applied".to_owned(), Value::Bool(applied));
    }
    result
}

fn set_entity_url(drama: &mut Drama, target: &EntityUrl, url: &str) {
    let url = Some(url.to_owned());
    match target {
        EntityUrl::None => {}
        EntityUrl::Drama => drama.url = url,
        EntityUrl::Character(id) => {
            if let Some(c) = drama.characters.iter_mut().find(|c| &c.id == id) {
                c.url = url;
            }
        }
        EntityUrl::SceneImage(id) | EntityUrl::SceneVideo(id) => {
            let video = matches!(target, EntityUrl::SceneVideo(_));
            if let Some(s) = drama
                .episodes
                .iter_mut()
                .flat_map(|e| e.scenes.iter_mut())
                .find(|s| &s.id == id)
            {
                if video {
                    s.video_url = url;
                } else {
                    s.image_url = url;
                }
            }
        }
        EntityUrl::Episode(id) => {
            if let Some(e) = drama.episodes.iter_mut().find(|e| &e.id == id) {
                e.url = url;
            }
        }
    }
}

#[async_trait]
impl GenerationStore for MemoryGeneration {
    async fn asset_exists(
        &self,
        owner: UserId,
        drama: &DramaId,
        asset: &AssetId,
    ) -> Result<bool, GenerationError> {
        match self.store.get_complete(owner, drama).await {
            Ok(stored) => Ok(stored
                .drama
                .assets_with_owner()
                .any(|(_, a)| &a.id == asset)),
            Err(RepoError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    async fn submit_charged(
        &self,
        owner: UserId,
        cost: i64,
        graph: &Graph,
    ) -> Result<Submitted, GenerationError> {
        let available = self.store.get_user(owner).await?.tokens;
        if available < cost {
            // A keyed repeat answers with its paid run whatever the balance is now.
            if let Some(key) = &graph.run.idempotency_key
                && let Some(run) = self
                    .jobs
                    .keyed_run(graph.run.owner, key, Duration::MAX)
                    .await?
            {
                return Ok(Submitted {
                    run_id: run.run_id,
                    created: false,
                    ids: std::collections::BTreeMap::new(),
                });
            }
            return Err(RepoError::InsufficientTokens {
                balance: available,
                needed: cost,
            }
            .into());
        }
        let submitted = self.jobs.submit(graph).await?;
        if !submitted.created || !has_tasks(graph) {
            return Ok(submitted);
        }
        let charge = CreditMove::new(owner, -cost.max(0), CreditReason::RunCharge)
            .run(submitted.run_id.0)
            .note(graph.run.kind.clone());
        if let Err(e) = self.store.move_credits_now(&charge) {
            // Not one transaction here: take the unpaid run back as the rolled-back
            // transaction does on PostgreSQL. Its key goes first, so that a repeat cannot
            // answer with a run nobody paid for; then the run is cancelled, and the refund its
            // cancelled tasks would be due is taken, as nothing was paid to refund.
            if let Some(key) = &graph.run.idempotency_key {
                self.jobs
                    .keyed_run(graph.run.owner, key, Duration::ZERO)
                    .await?;
            }
            self.jobs
                .cancel(submitted.run_id, "the run could not be paid for")
                .await?;
            self.jobs.take_refund(submitted.run_id).await?;
            return Err(e.into());
        }
        Ok(submitted)
    }

    async fn complete_asset(
        &self,
        fence: &Fence,
        owner: UserId,
        drama: &DramaId,
        generated: &GeneratedAsset,
        result: Value,
    ) -> Result<Applied, GenerationError> {
        let attached = self
            .store
            .attach_asset_object(
                owner,
                drama,
                &generated.asset_id,
                &generated.url,
                &generated.object,
            )
            .await;
        let applied = match attached {
            Ok(_) => {
                let (target, url) = (&generated.entity_url, generated.url.as_str());
                match self
                    .update(owner, drama, |d| {
                        set_entity_url(d, target, url);
                        Ok(true)
                    })
                    .await
                {
                    Ok(_) => {
                        Applied::Recorded(self.store.get_complete(owner, drama).await?.version)
                    }
                    Err(RepoError::NotFound { .. }) => Applied::AssetGone,
                    Err(e) => return Err(e.into()),
                }
            }
            Err(RepoError::NotFound { .. }) => {
                self.store
                    .record_orphans(
                        owner,
                        drama,
                        std::slice::from_ref(&generated.object.storage_key),
                        "asset deleted during generation",
                    )
                    .await?;
                Applied::AssetGone
            }
            Err(e) => return Err(e.into()),
        };
        self.finish(
            fence,
            FinishKind::Complete {
                result: with_applied(result, applied != Applied::AssetGone),
                expansion: None,
            },
        )
        .await?;
        Ok(applied)
    }

    async fn complete_scenes(
        &self,
        fence: &Fence,
        owner: UserId,
        drama: &DramaId,
        episode: &EpisodeId,
        scenes: &[Scene],
        completion: ScriptCompletion,
    ) -> Result<bool, GenerationError> {
        let written = match self
            .update(owner, drama, |d| {
                // An episode deleted while the call ran has nothing to take the scenes.
                let Some(e) = d.episodes.iter_mut().find(|e| &e.id == episode) else {
                    return Ok(false);
                };
                // Scenes stored while the call ran (by the user, or by another run) stay.
                if !e.scenes.is_empty() {
                    return Ok(false);
                }
                e.scenes = scenes.to_vec();
                // Another episode's scenes stored meanwhile count against the bounds too.
                d.check_size()?;
                Ok(true)
            })
            .await
        {
            Ok(written) => written,
            // The drama was deleted while the call ran: the call was billed all the same, so
            // the task completes charged without writing (see the PostgreSQL store).
            Err(RepoError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        };
        let completion = if written {
            completion
        } else {
            ScriptCompletion {
                expansion: Expansion::new(),
                expansion_cost: 0,
                ..completion
            }
        };
        self.settle_and_finish(owner, fence, completion).await
    }

    async fn complete_drama(
        &self,
        fence: &Fence,
        owner: UserId,
        drama: &Drama,
        write: DramaWrite,
        completion: ScriptCompletion,
    ) -> Result<bool, GenerationError> {
        drama.check_size().map_err(RepoError::from)?;
        match write {
            DramaWrite::Create => {
                self.store.create(owner, drama).await?;
            }
            DramaWrite::Replace => {
                self.store.save_complete(owner, drama, None).await?;
            }
        }
        self.settle_and_finish(owner, fence, completion).await
    }

    async fn complete_script(
        &self,
        fence: &Fence,
        owner: UserId,
        usage_price: Option<i64>,
        result: Value,
    ) -> Result<(), GenerationError> {
        self.settle_usage(owner, fence, usage_price)?;
        self.finish(
            fence,
            FinishKind::Complete {
                result,
                expansion: None,
            },
        )
        .await
    }

    async fn settle_refunds(&self, limit: u32) -> Result<Vec<Refund>, GenerationError> {
        // Exactly the runs that owe: a list of the newest runs would never reach older ones.
        let runs = self.jobs.runs_owing_refunds(limit as usize);
        let mut refunds = Vec::new();
        for run in runs {
            let owner = UserId(run.owner);
            let due = run.costs.map_or(0, |c| c.refundable - c.refunded);
            if due == 0 {
                continue;
            }
            if due < 0 && self.store.get_user(owner).await?.tokens < -due {
                // Never forgiven and never taken below zero: the run stays due.
                tracing::warn!(user.id = %owner, run.id = %run.id, amount = due,
                    "claw-back refused: the balance cannot cover it");
                continue;
            }
            let amount = self.jobs.take_refund(run.id).await?;
            if amount == 0 {
                continue;
            }
            let reason = if amount > 0 {
                CreditReason::Refund
            } else {
                CreditReason::Clawback
            };
            self.store
                .move_credits_now(&CreditMove::new(owner, amount, reason).run(run.id.0))?;
            refunds.push(Refund { owner, amount });
        }
        Ok(refunds)
    }

    async fn resume_charged(
        &self,
        owner: UserId,
        job: JobId,
    ) -> Result<ResumeCharged, GenerationError> {
        let mut charged_run = None;
        let (queued, price) = self.jobs.resume_paid(job, |run, price| {
            charged_run = Some(run);
            if price <= 0 {
                return Ok::<(), GenerationError>(());
            }
            let charge = CreditMove::new(owner, -price, CreditReason::ResumeCharge).run(run.0);
            self.store.move_credits_now(&charge)?;
            Ok(())
        })?;
        let run = charged_run.ok_or(GenerationError::Jobs(JobError::NotFound(job)))?;
        Ok(ResumeCharged { run, queued, price })
    }
}
