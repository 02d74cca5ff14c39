//! From a drama to a job graph.
//!
//! Every generation target (portrait, audition, cover, storyboard, clip, episode video, and
//! the scenes of an episode that has none yet) is a task. A task is *stale* when its asset has
//! no object, or the object was made from other inputs (prompt, references, model) than the
//! current ones; it is *dirty* when it is stale, forced, or something it needs is dirty. A
//! plan holds the dirty tasks of the requested scope plus the dirty tasks they need, each
//! after the tasks it needs, under a group per character and per episode.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use drama_ai::{CallKind, CostTable, ModelInfo};
use drama_dal::{AssetObject, Entity};
use drama_domain::{Asset, AssetId, AssetKind, Drama, EpisodeId, SceneId};
use drama_jobs::{Expansion, NodeSpec};
use serde_json::Value;

use super::hash::{Inputs, input_hash};
use super::spec::{ScenesTask, kind};
use crate::AppError;

mod layout;

/// What part of a drama to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Everything.
    Drama,
    /// One episode (its scenes if missing, storyboards, clips, video).
    Episode(EpisodeId),
    /// One scene (storyboard and clip).
    Scene(SceneId),
    /// One asset.
    Asset(AssetId),
}

/// The models whose identity is part of every input hash.
#[derive(Debug, Clone)]
pub struct Models {
    /// Makes portraits, storyboards and covers.
    pub image: ModelInfo,
    /// Makes clips and auditions.
    pub video: ModelInfo,
    /// Writes scenes.
    pub script: ModelInfo,
    /// The script model name requested (for scene-writing tasks).
    pub script_name: Option<String>,
    /// Price offline calls as if a real provider made them (demos and tests of credits).
    pub price_offline: bool,
    /// The script model's per-token prices when its calls are billed by usage, as they are
    /// when the run is submitted: written into each script task, so a task settles at the
    /// rates its hold was taken under, whatever the configuration when it completes.
    pub token_prices: Option<drama_ai::TokenPrices>,
}

pub(crate) fn model_tag(m: &ModelInfo) -> String {
    format!("{}/{}", m.provider.as_str(), m.model)
}

/// A job graph's nodes and what they cost.
#[derive(Debug, Clone, Default)]
pub struct Planned {
    /// Groups and tasks, parents before children, each task after what it needs.
    pub nodes: Vec<NodeSpec>,
    /// Sum of the tasks' costs, in tokens.
    pub cost: i64,
    /// Number of tasks (groups excluded).
    pub tasks: usize,
}

#[derive(Debug, Clone)]
struct Task {
    key: String,
    kind: &'static str,
    class: &'static str,
    group: Option<(String, String)>,
    upstream: Vec<String>,
    payload: Value,
    cost: i64,
    hint: Duration,
    stale: bool,
    episode: Option<EpisodeId>,
    scene: Option<SceneId>,
    asset: Option<AssetId>,
}

impl Task {
    /// The task as a node of a graph under `parent`, with `payload`, after those of its
    /// upstream tasks that `in_graph` says are in the same graph.
    fn node(
        &self,
        payload: Value,
        parent: Option<&String>,
        in_graph: impl Fn(&str) -> bool,
    ) -> NodeSpec {
        let node = NodeSpec::task(self.key.clone(), self.kind, payload)
            .class(self.class)
            .cost(self.cost)
            .duration_hint(self.hint)
            .after(
                self.upstream
                    .iter()
                    .filter(|u| in_graph(u.as_str()))
                    .cloned(),
            );
        match parent {
            Some(group) => node.parent(group.clone()),
            None => node,
        }
    }
}

/// Builds plans for one drama.
pub struct Planner<'a> {
    drama: &'a Drama,
    tasks: Vec<Task>,
    index: HashMap<String, usize>,
    /// Written into the scene writers' payloads ([`Models::token_prices`]).
    token_prices: Option<drama_ai::TokenPrices>,
}

fn media_key(kind: &str, asset: &str) -> String {
    format!("{kind}:{asset}")
}

struct Context<'a> {
    objects: &'a HashMap<AssetId, AssetObject>,
    costs: &'a CostTable,
    price_offline: bool,
}

/// The provider a call is priced as: offline calls are free unless pricing asks otherwise.
pub(crate) fn priced(provider: drama_ai::Provider, price_offline: bool) -> drama_ai::Provider {
    if price_offline && provider == drama_ai::Provider::Offline {
        drama_ai::Provider::Gemini
    } else {
        provider
    }
}

/// What storyboards and clips for `scenes` newly written scenes, `clip_seconds` of video in
/// all, cost at the prices [`Planner::scene_expansion`] gives the tasks it adds (one
/// storyboard and one clip per written scene; video is priced per second).
pub(crate) fn written_scenes_cost(
    models: &Models,
    costs: &CostTable,
    scenes: usize,
    clip_seconds: u32,
) -> i64 {
    let objects = HashMap::new();
    let cx = Context {
        objects: &objects,
        costs,
        price_offline: models.price_offline,
    };
    let storyboards = i64::try_from(scenes)
        .unwrap_or(i64::MAX)
        .saturating_mul(cx.cost(CallKind::Image, &models.image, 0));
    storyboards.saturating_add(cx.cost(CallKind::Video, &models.video, clip_seconds))
}

impl Context<'_> {
    fn checksum(&self, asset: &str) -> Option<&str> {
        self.objects
            .iter()
            .find(|(id, _)| id.as_str() == asset)
            .and_then(|(_, o)| o.checksum.as_deref())
    }

    /// Whether `asset` must be made again for these inputs.
    fn stale(
        &self,
        kind: &str,
        asset: &Asset,
        model: &ModelInfo,
        refs: &[String],
        prompt: &str,
    ) -> bool {
        let Some(object) = self.objects.get(&asset.id) else {
            return true;
        };
        if asset.url.is_none() {
            return true;
        }
        let checksums: Option<Vec<&str>> = refs.iter().map(|r| self.checksum(r)).collect();
        let Some(checksums) = checksums else {
            return true;
        };
        let expected = input_hash(&Inputs {
            kind,
            prompt,
            model: &model_tag(model),
            references: &checksums,
            duration: asset.duration.map(i64::from),
        });
        object.input_hash.as_deref() != Some(expected.as_str())
    }

    fn cost(&self, call: CallKind, model: &ModelInfo, seconds: u32) -> i64 {
        i64::from(
            self.costs
                .estimate(call, priced(model.provider, self.price_offline), seconds),
        )
    }
}

fn primary_image(assets: &[Asset]) -> Option<&Asset> {
    assets.iter().find(|a| a.kind == AssetKind::Image)
}

fn payload(task: &impl serde::Serialize) -> Result<Value, AppError> {
    serde_json::to_value(task).map_err(|e| AppError::Internal(Box::new(e)))
}

impl<'a> Planner<'a> {
    fn in_scope(&self, task: &Task, scope: &Scope) -> bool {
        match scope {
            Scope::Drama => true,
            Scope::Episode(e) => task.episode.as_ref() == Some(e),
            Scope::Scene(s) => task.scene.as_ref() == Some(s),
            Scope::Asset(a) => task.asset.as_ref() == Some(a),
        }
    }

    /// The keys of the dirty tasks of `scope` and of the dirty tasks they need.
    fn select(&self, scope: &Scope, force: bool) -> Result<Vec<usize>, AppError> {
        let mut in_scope_any = false;
        let mut dirty = vec![false; self.tasks.len()];
        for (i, t) in self.tasks.iter().enumerate() {
            let scoped = self.in_scope(t, scope);
            in_scope_any |= scoped;
            dirty[i] = (force && scoped)
                || t.stale
                || t.upstream
                    .iter()
                    .any(|u| self.index.get(u).is_some_and(|&j| dirty[j]));
        }
        if !in_scope_any {
            return Err(match scope {
                Scope::Drama => return Ok(Vec::new()),
                Scope::Episode(e) => AppError::not_found(Entity::Episode, e),
                Scope::Scene(s) => AppError::not_found(Entity::Scene, s),
                Scope::Asset(a) => AppError::not_found(Entity::Asset, a),
            });
        }
        let mut chosen: HashSet<usize> = HashSet::new();
        let mut stack: Vec<usize> = self
            .tasks
            .iter()
            .enumerate()
            .filter(|(i, t)| dirty[*i] && self.in_scope(t, scope))
            .map(|(i, _)| i)
            .collect();
        while let Some(i) = stack.pop() {
            if chosen.insert(i) {
                for u in &self.tasks[i].upstream {
                    if let Some(&j) = self.index.get(u)
                        && dirty[j]
                    {
                        stack.push(j);
                    }
                }
            }
        }
        let mut order: Vec<usize> = chosen.into_iter().collect();
        order.sort_unstable();
        Ok(order)
    }

    /// The graph nodes for `scope`.
    ///
    /// # Errors
    /// `NotFound` when the scope names a part the drama does not have; `Internal` if a
    /// payload cannot be serialised.
    pub fn plan(&self, scope: &Scope, force: bool) -> Result<Planned, AppError> {
        let chosen = self.select(scope, force)?;
        let chosen_keys: HashSet<&str> =
            chosen.iter().map(|&i| self.tasks[i].key.as_str()).collect();
        let portraits_in_run: Vec<String> = self
            .drama
            .characters
            .iter()
            .filter(|c| {
                primary_image(&c.assets).is_some_and(|a| {
                    chosen_keys.contains(media_key(kind::PORTRAIT, a.id.as_str()).as_str())
                })
            })
            .map(|c| c.id.to_string())
            .collect();
        let mut planned = Planned::default();
        let mut groups_added = HashSet::new();
        for &i in &chosen {
            let t = &self.tasks[i];
            if let Some((group, _)) = &t.group
                && groups_added.insert(group.clone())
            {
                planned
                    .nodes
                    .push(NodeSpec::group(group.clone(), kind::GROUP));
            }
        }
        for &i in &chosen {
            let t = &self.tasks[i];
            let payload = if t.kind == kind::WRITE_SCENES {
                let episode = t
                    .episode
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let stitch = self.tasks.iter().find(|s| {
                    s.kind == kind::STITCH
                        && s.episode == t.episode
                        && chosen_keys.contains(s.key.as_str())
                });
                payload(&ScenesTask {
                    drama: self.drama.id.to_string(),
                    episode,
                    model: None,
                    token_prices: self.token_prices,
                    portraits_in_run: portraits_in_run.clone(),
                    stitch: stitch.map(|s| s.key.clone()),
                    group: t.group.as_ref().map(|(g, _)| g.clone()),
                })?
            } else {
                t.payload.clone()
            };
            let node = t.node(payload, t.group.as_ref().map(|(g, _)| g), |u| {
                chosen_keys.contains(u)
            });
            planned.cost += t.cost;
            planned.tasks += 1;
            planned.nodes.push(node);
        }
        Ok(planned)
    }

    /// The expansion a scene-writing task adds once `episode`'s scenes exist: their
    /// storyboards and clips (after the portraits generated in the same run), and the
    /// episode's stitch task waiting for the new clips.
    ///
    /// # Errors
    /// `NotFound` (episode); `Internal` (payload).
    pub fn scene_expansion(
        &self,
        episode: &EpisodeId,
        spec: &ScenesTask,
    ) -> Result<(Expansion, i64), AppError> {
        let mut expansion = Expansion::new();
        let mut cost = 0;
        let in_run: HashSet<String> = self
            .drama
            .characters
            .iter()
            .filter(|c| spec.portraits_in_run.iter().any(|p| p == c.id.as_str()))
            .filter_map(|c| {
                primary_image(&c.assets).map(|a| media_key(kind::PORTRAIT, a.id.as_str()))
            })
            .collect();
        let new: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|t| t.episode.as_ref() == Some(episode) && t.scene.is_some())
            .collect();
        if new.is_empty() && self.drama.episode(episode.as_str()).is_none() {
            return Err(AppError::not_found(Entity::Episode, episode));
        }
        let new_keys: HashSet<&str> = new.iter().map(|t| t.key.as_str()).collect();
        for t in &new {
            let node = t.node(t.payload.clone(), spec.group.as_ref(), |u| {
                new_keys.contains(u) || in_run.contains(u)
            });
            cost += t.cost;
            expansion = expansion.with(node);
            if t.kind == kind::CLIP
                && let Some(stitch) = &spec.stitch
            {
                expansion = expansion.add_dependency(stitch.clone(), t.key.clone());
            }
        }
        Ok((expansion, cost))
    }
}

impl Planner<'_> {
    /// What follows a freshly written drama, as the old server did: every character's
    /// portrait, then the cover (after the main characters' portraits). Other assets wait for
    /// a `generate` request.
    ///
    /// # Errors
    /// `Internal` (payload).
    pub fn first_images(&self) -> Result<(Expansion, i64), AppError> {
        let primary: HashSet<String> = self
            .drama
            .characters
            .iter()
            .filter_map(|c| {
                primary_image(&c.assets).map(|a| media_key(kind::PORTRAIT, a.id.as_str()))
            })
            .collect();
        let chosen: Vec<&Task> = self
            .tasks
            .iter()
            .filter(|t| primary.contains(&t.key) || t.kind == kind::COVER)
            .collect();
        let keys: HashSet<&str> = chosen.iter().map(|t| t.key.as_str()).collect();
        let mut expansion = Expansion::new();
        let mut groups = HashSet::new();
        let mut cost = 0;
        for t in &chosen {
            if let Some((group, _)) = &t.group
                && groups.insert(group.clone())
            {
                expansion = expansion.with(NodeSpec::group(group.clone(), kind::GROUP));
            }
        }
        for t in chosen {
            let node = t.node(t.payload.clone(), t.group.as_ref().map(|(g, _)| g), |u| {
                keys.contains(u)
            });
            cost += t.cost;
            expansion = expansion.with(node);
        }
        Ok((expansion, cost))
    }
}

/// Stitching is local work; its inputs are the clips themselves.
pub(crate) fn stitch_model() -> ModelInfo {
    ModelInfo::new(drama_ai::Provider::Offline, "ffmpeg-concat")
}

#[cfg(test)]
mod tests {
    use drama_ai::Provider;
    use drama_testkit::builders::drama as build;

    use super::*;
    use crate::pipeline::normalize::ensure_assets;
    use crate::pipeline::spec::{MediaTask, class};

    fn models() -> Models {
        Models {
            image: ModelInfo::new(Provider::NanoBanana, "img"),
            video: ModelInfo::new(Provider::Sora, "vid"),
            script: ModelInfo::new(Provider::Gemini, "txt"),
            script_name: None,
            price_offline: false,
            token_prices: None,
        }
    }

    fn normalized(chars: usize, eps: usize, scenes: usize) -> Drama {
        let mut d = build("d", chars, eps, scenes);
        ensure_assets(&mut d).unwrap();
        d
    }

    fn keys(p: &Planned) -> Vec<String> {
        p.nodes.iter().map(|n| n.key.clone()).collect()
    }

    /// Objects made from exactly the current inputs, as after a full run.
    fn objects_for(d: &Drama, models: &Models) -> HashMap<AssetId, AssetObject> {
        let mut objects = HashMap::new();
        // Two passes: hashes need the references' checksums.
        for _ in 0..2 {
            let costs = CostTable::default();
            let planner = Planner::new(d, &objects, models, &costs).unwrap();
            let mut next = objects.clone();
            for t in &planner.tasks {
                let Some(asset) = &t.asset else { continue };
                let task: MediaTask = match serde_json::from_value(t.payload.clone()) {
                    Ok(m) => m,
                    Err(_) => {
                        let refs: Vec<String> = d
                            .episodes
                            .iter()
                            .filter(|e| e.assets.iter().any(|a| &a.id == asset))
                            .flat_map(|e| e.scenes.iter())
                            .filter_map(|s| s.assets.iter().find(|a| a.kind == AssetKind::Video))
                            .map(|a| a.id.to_string())
                            .collect();
                        let sums: Vec<String> = refs.iter().map(|r| format!("sum-{r}")).collect();
                        let sums: Vec<&str> = sums.iter().map(String::as_str).collect();
                        let prompt = d
                            .episodes
                            .iter()
                            .flat_map(|e| e.assets.iter())
                            .find(|a| &a.id == asset)
                            .unwrap()
                            .prompt
                            .clone();
                        next.insert(
                            asset.clone(),
                            object(asset, kind::STITCH, &prompt, &stitch_model(), &sums, None),
                        );
                        continue;
                    }
                };
                let model = if t.class == class::VIDEO {
                    &models.video
                } else {
                    &models.image
                };
                let sums: Vec<String> =
                    task.references.iter().map(|r| format!("sum-{r}")).collect();
                let sums: Vec<&str> = sums.iter().map(String::as_str).collect();
                next.insert(
                    asset.clone(),
                    object(asset, t.kind, &task.prompt, model, &sums, task.duration),
                );
            }
            objects = next;
        }
        objects
    }

    fn object(
        asset: &AssetId,
        kind: &str,
        prompt: &str,
        model: &ModelInfo,
        refs: &[&str],
        duration: Option<i64>,
    ) -> AssetObject {
        AssetObject {
            storage_key: format!("k/{asset}"),
            content_type: "image/png".into(),
            size_bytes: 1,
            checksum: Some(format!("sum-{asset}")),
            input_hash: Some(input_hash(&Inputs {
                kind,
                prompt,
                model: &model_tag(model),
                references: refs,
                duration,
            })),
            usage: None,
        }
    }

    fn with_urls(mut d: Drama) -> Drama {
        for a in d
            .assets
            .iter_mut()
            .chain(d.characters.iter_mut().flat_map(|c| c.assets.iter_mut()))
            .chain(d.episodes.iter_mut().flat_map(|e| {
                e.assets
                    .iter_mut()
                    .chain(e.scenes.iter_mut().flat_map(|s| s.assets.iter_mut()))
            }))
        {
            a.url = Some("u".into());
        }
        d
    }

    #[test]
    fn a_fresh_drama_plans_everything_in_dependency_order() {
        let d = normalized(2, 1, 2);
        let (models, costs) = (models(), CostTable::default());
        let objects = HashMap::new();
        let plan = Planner::new(&d, &objects, &models, &costs)
            .unwrap()
            .plan(&Scope::Drama, false)
            .unwrap();
        // 2 portraits + 2 auditions + cover + 2×(storyboard + clip) + stitch.
        assert_eq!(plan.tasks, 10);
        let groups: Vec<_> = plan
            .nodes
            .iter()
            .filter(|n| n.kind == kind::GROUP)
            .map(|n| n.key.as_str())
            .collect();
        assert_eq!(groups, ["character:c0", "character:c1", "episode:e0"]);
        let node = |k: &str| plan.nodes.iter().find(|n| n.key == k).unwrap();
        assert_eq!(
            node("storyboard:e0-s0-img").dependencies,
            ["portrait:c0_portrait_front_halfbody"]
        );
        assert_eq!(
            node("clip:e0-s0-vid").dependencies,
            ["storyboard:e0-s0-img"]
        );
        assert_eq!(
            node("stitch:e0_episode_video").dependencies,
            ["clip:e0-s0-vid", "clip:e0-s1-vid"]
        );
        assert_eq!(
            node("audition:c1_audition_video").dependencies,
            ["portrait:c1_portrait_front_halfbody"]
        );
        let mut cover_deps = node("cover:d_cover").dependencies.clone();
        cover_deps.sort();
        assert_eq!(
            cover_deps,
            [
                "portrait:c0_portrait_front_halfbody",
                "portrait:c1_portrait_front_halfbody"
            ]
        );
        // 5 images × 4 + 4 videos × 10 s × 10.
        assert_eq!(plan.cost, 5 * 4 + 4 * 100);
    }

    #[test]
    fn nothing_changed_plans_nothing_and_an_edit_reruns_its_part() {
        let models = models();
        let d = with_urls(normalized(2, 1, 2));
        let objects = objects_for(&d, &models);
        let costs = CostTable::default();
        let plan = Planner::new(&d, &objects, &models, &costs)
            .unwrap()
            .plan(&Scope::Drama, false)
            .unwrap();
        assert_eq!(keys(&plan), Vec::<String>::new());

        let mut edited = d.clone();
        edited.episodes[0].scenes[1].assets[0].prompt = "new framing".into();
        let plan = Planner::new(&edited, &objects, &models, &costs)
            .unwrap()
            .plan(&Scope::Drama, false)
            .unwrap();
        assert_eq!(
            keys(&plan),
            [
                "episode:e0",
                "storyboard:e0-s1-img",
                "clip:e0-s1-vid",
                "stitch:e0_episode_video"
            ]
        );

        let plan = Planner::new(&d, &objects, &models, &costs)
            .unwrap()
            .plan(&Scope::Scene(SceneId::parse("e0-s0").unwrap()), true)
            .unwrap();
        assert_eq!(
            keys(&plan),
            ["episode:e0", "storyboard:e0-s0-img", "clip:e0-s0-vid"]
        );
    }

    #[test]
    fn scopes_take_only_their_part_plus_what_is_missing_upstream() {
        let models = models();
        let costs = CostTable::default();
        let mut d = with_urls(normalized(2, 2, 1));
        let objects = objects_for(&d, &models);
        // The portrait of c0 is gone: an episode's storyboards need it first.
        d.characters[0].assets[0].url = None;
        let planner = Planner::new(&d, &objects, &models, &costs).unwrap();
        let plan = planner
            .plan(&Scope::Episode(EpisodeId::parse("e1").unwrap()), false)
            .unwrap();
        assert_eq!(
            keys(&plan),
            [
                "character:c0",
                "episode:e1",
                "portrait:c0_portrait_front_halfbody",
                "storyboard:e1-s0-img",
                "clip:e1-s0-vid",
                "stitch:e1_episode_video"
            ]
        );
        let plan = planner
            .plan(&Scope::Asset(AssetId::parse("e0-s0-vid").unwrap()), true)
            .unwrap();
        assert_eq!(
            keys(&plan),
            [
                "character:c0",
                "episode:e0",
                "portrait:c0_portrait_front_halfbody",
                "storyboard:e0-s0-img",
                "clip:e0-s0-vid"
            ]
        );
        assert!(matches!(
            planner.plan(&Scope::Episode(EpisodeId::parse("e9").unwrap()), false),
            Err(AppError::NotFound { .. })
        ));
    }

    #[test]
    fn an_episode_without_scenes_gets_a_writer_and_an_expansion() {
        let models = models();
        let costs = CostTable::default();
        let mut d = normalized(2, 1, 0);
        let objects = HashMap::new();
        let plan = Planner::new(&d, &objects, &models, &costs)
            .unwrap()
            .plan(&Scope::Drama, false)
            .unwrap();
        let writer = plan.nodes.iter().find(|n| n.key == "scenes:e0").unwrap();
        let spec: ScenesTask = serde_json::from_value(writer.payload.clone()).unwrap();
        assert_eq!(spec.stitch.as_deref(), Some("stitch:e0_episode_video"));
        assert_eq!(spec.portraits_in_run, ["c0", "c1"]);
        let stitch = plan
            .nodes
            .iter()
            .find(|n| n.key == "stitch:e0_episode_video")
            .unwrap();
        assert_eq!(stitch.dependencies, ["scenes:e0"]);

        // The writer's scenes arrive; the expansion plans their storyboards and clips.
        let written = build("d", 2, 1, 2);
        d.episodes[0].scenes = written.episodes[0].scenes.clone();
        ensure_assets(&mut d).unwrap();
        let planner = Planner::new(&d, &objects, &models, &costs).unwrap();
        let (expansion, cost) = planner
            .scene_expansion(&EpisodeId::parse("e0").unwrap(), &spec)
            .unwrap();
        let added: Vec<_> = expansion.nodes.iter().map(|n| n.key.as_str()).collect();
        assert_eq!(
            added,
            [
                "storyboard:e0-s0-img",
                "clip:e0-s0-vid",
                "storyboard:e0-s1-img",
                "clip:e0-s1-vid"
            ]
        );
        assert_eq!(
            expansion.nodes[0].dependencies,
            ["portrait:c0_portrait_front_halfbody"]
        );
        assert_eq!(expansion.nodes[0].parent.as_deref(), Some("episode:e0"));
        assert_eq!(
            expansion.edges,
            [
                (
                    "stitch:e0_episode_video".to_owned(),
                    "clip:e0-s0-vid".to_owned()
                ),
                (
                    "stitch:e0_episode_video".to_owned(),
                    "clip:e0-s1-vid".to_owned()
                )
            ]
        );
        assert_eq!(cost, 2 * 4 + 2 * 100);
    }
}
