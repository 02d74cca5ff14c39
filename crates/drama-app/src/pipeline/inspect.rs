//! Looking before leaping: what a generation would cost, and a page of dramas with what a
//! list needs to show (episode count, last change, the latest run).

use std::collections::{BTreeMap, HashMap};

use drama_ai::CostTable;
use drama_ai::validate::{CLIP_SECONDS, MAX_SCENES_PER_EPISODE};
use drama_dal::{Page, PageRequest, StoredDrama};
use drama_domain::{AssetKind, Drama, DramaId};
use drama_jobs::{JobView, NodeType, RunFilter};

use super::normalize::ensure_assets;
use super::plan::{Models, Planned, Planner, Scope, written_scenes_cost};
use super::spec::kind;
use super::usecases::job_error;
use crate::{App, AppError, Caller};

/// The runs read at once for a page of dramas; dramas whose latest run is older than these
/// are looked up one by one (at most a page of them).
const RECENT_RUNS: usize = 200;

/// Scenes expected of an episode when no episode of the drama has any yet: the middle of the
/// three to five the scene-writing prompt asks for.
pub const DEFAULT_SCENES_PER_EPISODE: usize = 4;

/// What a generation would do and cost, without starting it.
///
/// A run debits `cost` when it starts. Each episode it writes scenes for then adds a
/// storyboard and a clip per written scene and debits them too; how many scenes a model
/// writes is only known then, so that part is an expectation (`expected_cost`) with a bound
/// (`max_cost`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Estimate {
    /// Tasks that would run.
    pub tasks: usize,
    /// Credits that would be debited when it starts.
    pub cost: i64,
    /// `cost` plus the storyboards and clips of the scenes expected to be written.
    pub expected_cost: i64,
    /// `cost` plus the storyboards and clips of as many scenes as a writer may write, each
    /// with the longest clip: what the run can debit at most.
    pub max_cost: i64,
    /// Episodes the run writes scenes for.
    pub episodes_to_write: usize,
    /// Scenes expected to be written, in all.
    pub scenes_to_write: usize,
    /// Scenes expected per written episode: the drama's own average over the episodes that
    /// have scenes, else [`DEFAULT_SCENES_PER_EPISODE`]; never above the writer's cap.
    pub scenes_per_episode: usize,
    /// Per task kind (`portrait`, `clip`, …): how many and what they cost.
    pub by_kind: BTreeMap<String, KindEstimate>,
}

/// One task kind's share of an [`Estimate`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindEstimate {
    /// Tasks of the kind.
    pub tasks: usize,
    /// Their credits.
    pub cost: i64,
}

/// A drama as a list shows it.
#[derive(Debug, Clone)]
pub struct DramaOverview {
    /// The drama.
    pub stored: StoredDrama,
    /// Its newest run (creation, generation, critique…), if any.
    pub latest_run: Option<JobView>,
}

/// `planned`'s estimate, with what its scene-writing tasks will add priced as their
/// expansions will be (the same models and prices: a run's writers name no model).
pub(crate) fn estimate_of(
    drama: &Drama,
    planned: &Planned,
    models: &Models,
    costs: &CostTable,
) -> Estimate {
    let mut estimate = Estimate {
        tasks: planned.tasks,
        cost: planned.cost,
        ..Estimate::default()
    };
    for node in planned
        .nodes
        .iter()
        .filter(|n| n.node_type == NodeType::Task)
    {
        let entry = estimate.by_kind.entry(node.kind.clone()).or_default();
        entry.tasks += 1;
        entry.cost += node.cost;
        if node.kind == kind::WRITE_SCENES {
            estimate.episodes_to_write += 1;
        }
    }
    let (scenes, seconds) = expected_scenes(drama);
    let longest = CLIP_SECONDS.iter().copied().max().unwrap_or_default();
    let max_seconds = u32::try_from(MAX_SCENES_PER_EPISODE)
        .unwrap_or(u32::MAX)
        .saturating_mul(longest);
    let episodes = i64::try_from(estimate.episodes_to_write).unwrap_or(i64::MAX);
    let expected = written_scenes_cost(models, costs, scenes, seconds).saturating_mul(episodes);
    let most = written_scenes_cost(models, costs, MAX_SCENES_PER_EPISODE, max_seconds)
        .saturating_mul(episodes);
    estimate.scenes_per_episode = scenes;
    estimate.scenes_to_write = scenes * estimate.episodes_to_write;
    estimate.expected_cost = estimate.cost.saturating_add(expected);
    estimate.max_cost = estimate.cost.saturating_add(most);
    estimate
}

/// The scenes an episode is expected to get and their seconds of clip in all: the drama's own
/// averages over its scenes (a clip without a duration counts as the planner prices it, 10 s),
/// else the default count with clips of the average allowed length.
fn expected_scenes(drama: &Drama) -> (usize, u32) {
    let written: Vec<_> = drama
        .episodes
        .iter()
        .filter(|e| !e.scenes.is_empty())
        .collect();
    let scenes: usize = written.iter().map(|e| e.scenes.len()).sum();
    if scenes == 0 {
        let count = DEFAULT_SCENES_PER_EPISODE.min(MAX_SCENES_PER_EPISODE);
        let total: u64 = CLIP_SECONDS.iter().copied().map(u64::from).sum();
        let seconds = rounded(wide(count) * total, wide(CLIP_SECONDS.len()));
        return (count, u32::try_from(seconds).unwrap_or(u32::MAX));
    }
    let seconds: u64 = written
        .iter()
        .flat_map(|e| e.scenes.iter())
        .map(|s| {
            s.assets
                .iter()
                .find(|a| a.kind == AssetKind::Video)
                .and_then(|a| a.duration)
                .and_then(|d| u64::try_from(d).ok())
                .unwrap_or(10)
        })
        .sum();
    let count = usize::try_from(rounded(wide(scenes), wide(written.len())))
        .unwrap_or(MAX_SCENES_PER_EPISODE)
        .clamp(1, MAX_SCENES_PER_EPISODE);
    let seconds = rounded(wide(count) * seconds, wide(scenes));
    (count, u32::try_from(seconds).unwrap_or(u32::MAX))
}

fn wide(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// `n / d` rounded to the nearest whole number (halves up).
fn rounded(n: u64, d: u64) -> u64 {
    n.saturating_mul(2).saturating_add(d) / d.saturating_mul(2).max(1)
}

impl App {
    /// What [`App::generate_with`] would run and debit for the same scope and `force`, computed
    /// by the same planner, without writing anything.
    ///
    /// # Errors
    /// `NotFound` (drama or scope); `Unavailable`.
    #[tracing::instrument(skip_all, fields(drama.id = %id, ?scope, force))]
    pub async fn estimate(
        &self,
        caller: &Caller,
        id: &DramaId,
        scope: Scope,
        force: bool,
    ) -> Result<Estimate, AppError> {
        let owner = caller.user;
        let mut drama = self.store.get_complete(owner, id).await?.drama;
        // The targets a run would add first; added here only in memory.
        ensure_assets(&mut drama)?;
        let objects = self.store.asset_objects(owner, id).await?;
        let models = self.models(None);
        let costs = self.costs(&models);
        // Without what the drama's active runs are making: the request would leave it out.
        let held = self.held_work(owner, id).await?;
        let planned =
            Planner::new(&drama, &objects, &models, &costs)?.plan_around(&scope, force, &held)?;
        Ok(estimate_of(&drama, &planned, &models, &costs))
    }

    /// A page of the caller's dramas (newest change first) with each one's latest run.
    /// Costs one drama query and, usually, one run query for the whole page.
    ///
    /// # Errors
    /// `Invalid` (limit, cursor); `Unavailable`.
    #[tracing::instrument(skip_all)]
    pub async fn drama_overview(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<DramaOverview>, AppError> {
        let dramas = self.store.list_complete(caller.user, page).await?;
        let recent = self
            .jobs
            .list_runs(&RunFilter {
                owner: Some(caller.user.0),
                subject: None,
                active_only: false,
                limit: RECENT_RUNS,
            })
            .await
            .map_err(job_error)?;
        let exhaustive = recent.len() < RECENT_RUNS;
        let mut latest: HashMap<String, JobView> = HashMap::new();
        for run in recent {
            if let Some(subject) = run.subject.clone() {
                // Newest first: the first run seen for a subject is its latest.
                latest.entry(subject).or_insert(run);
            }
        }
        let mut items = Vec::with_capacity(dramas.items.len());
        for stored in dramas.items {
            let latest_run = match latest.remove(stored.drama.id.as_str()) {
                Some(run) => Some(run),
                None if exhaustive => None,
                None => self
                    .jobs
                    .list_runs(&RunFilter {
                        owner: Some(caller.user.0),
                        subject: Some(stored.drama.id.to_string()),
                        active_only: false,
                        limit: 1,
                    })
                    .await
                    .map_err(job_error)?
                    .into_iter()
                    .next(),
            };
            items.push(DramaOverview { stored, latest_run });
        }
        Ok(Page {
            items,
            next: dramas.next,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use drama_ai::{OfflineProvider, ScriptModel as _};
    use drama_domain::EpisodeId;
    use drama_testkit::builders::drama as build;

    use super::*;
    use crate::pipeline::spec::ScenesTask;

    /// A seed for which the offline writer gives each episode of `build("d", 2, 2, 0)` four
    /// scenes of 50 s of clips in all: the default expectation (checked below, not assumed).
    const SEED: u64 = 30;

    fn normalized(mut d: Drama) -> Drama {
        ensure_assets(&mut d).unwrap();
        d
    }

    #[tokio::test]
    async fn expected_cost_is_what_a_run_debits_when_the_writer_writes_the_expected_scenes() {
        let (models, costs) = (Models::for_tests(), CostTable::default());
        let objects = HashMap::new();
        let mut drama = normalized(build("d", 2, 2, 0));
        let planned = Planner::new(&drama, &objects, &models, &costs)
            .unwrap()
            .plan(&Scope::Drama, false)
            .unwrap();
        let estimate = estimate_of(&drama, &planned, &models, &costs);
        assert_eq!(estimate.episodes_to_write, 2);
        assert_eq!(estimate.scenes_per_episode, DEFAULT_SCENES_PER_EPISODE);
        assert_eq!(estimate.scenes_to_write, 8);
        // Per episode: 4 storyboards × 4 + 50 s of clips × 10.
        assert_eq!(
            estimate.expected_cost,
            estimate.cost + 2 * (4 * 4 + 50 * 10)
        );
        // Per episode at most: 8 storyboards × 4 + 8 clips × 15 s × 10.
        assert_eq!(estimate.max_cost, estimate.cost + 2 * (8 * 4 + 8 * 15 * 10));

        // The run: its start debits `cost`; each writer then writes (in plan order, each
        // seeing the scenes written before) and debits the expansion the handler computes.
        let mut debited = planned.cost;
        let writer = OfflineProvider::new(SEED);
        for node in planned
            .nodes
            .iter()
            .filter(|n| n.kind == kind::WRITE_SCENES)
        {
            let spec: ScenesTask = serde_json::from_value(node.payload.clone()).unwrap();
            let episode = EpisodeId::parse(spec.episode.clone()).unwrap();
            let scenes = writer
                .write_episode_scenes(&drama, &episode)
                .await
                .unwrap()
                .output;
            assert_eq!(scenes.len(), estimate.scenes_per_episode, "{episode}");
            let seconds: i32 = scenes
                .iter()
                .filter_map(|s| s.assets.iter().find(|a| a.kind == AssetKind::Video))
                .filter_map(|a| a.duration)
                .sum();
            assert_eq!(seconds, 50, "{episode}");
            drama
                .episodes
                .iter_mut()
                .find(|e| e.id == episode)
                .unwrap()
                .scenes = scenes;
            ensure_assets(&mut drama).unwrap();
            let (_, cost) = Planner::new(&drama, &objects, &models, &costs)
                .unwrap()
                .scene_expansion(&episode, &spec)
                .unwrap();
            debited += cost;
        }
        assert_eq!(debited, estimate.expected_cost);
        assert!(debited <= estimate.max_cost);
    }

    #[test]
    fn the_dramas_own_scenes_set_the_expectation_within_the_cap() {
        let (models, costs) = (Models::for_tests(), CostTable::default());
        let objects = HashMap::new();
        let estimate = |d: &Drama| {
            let planned = Planner::new(d, &objects, &models, &costs)
                .unwrap()
                .plan(&Scope::Drama, false)
                .unwrap();
            estimate_of(d, &planned, &models, &costs)
        };

        // e0 has 3 scenes (10 s, 15 s, 15 s), e1 none: e1 is expected to get 3 with 40 s.
        let mut d = build("d", 2, 2, 3);
        d.episodes[1].scenes.clear();
        d.episodes[0].scenes[1].assets[1].duration = Some(15);
        d.episodes[0].scenes[2].assets[1].duration = Some(15);
        let d = normalized(d);
        let e = estimate(&d);
        assert_eq!((e.episodes_to_write, e.scenes_per_episode), (1, 3));
        assert_eq!(e.expected_cost, e.cost + 3 * 4 + 40 * 10);

        // A long hand-written episode does not raise the expectation above the cap.
        let mut d = build("d", 2, 2, 12);
        d.episodes[1].scenes.clear();
        let e = estimate(&normalized(d));
        assert_eq!(e.scenes_per_episode, MAX_SCENES_PER_EPISODE);
        assert_eq!(e.expected_cost, e.cost + 8 * 4 + 80 * 10);

        // Nothing to write: all three say the same.
        let e = estimate(&normalized(build("d", 2, 1, 2)));
        assert_eq!(e.episodes_to_write, 0);
        assert_eq!(e.scenes_to_write, 0);
        assert_eq!((e.expected_cost, e.max_cost), (e.cost, e.cost));
    }
}
