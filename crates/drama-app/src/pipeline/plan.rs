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
use drama_domain::{Asset, AssetId, AssetKind, Drama, EpisodeId, Scene, SceneId};
use drama_jobs::{Expansion, NodeSpec};
use serde_json::Value;

use super::hash::{Inputs, input_hash};
use super::spec::{ScenesTask, kind};
use crate::AppError;

mod held;
mod layout;

pub use held::Held;

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

#[cfg(test)]
impl Models {
    /// One model of each provider, priced as real calls, tokens at their call price.
    pub(crate) fn for_tests() -> Self {
        Self {
            image: ModelInfo::new(drama_ai::Provider::NanoBanana, "img"),
            video: ModelInfo::new(drama_ai::Provider::Sora, "vid"),
            script: ModelInfo::new(drama_ai::Provider::Gemini, "txt"),
            script_name: None,
            price_offline: false,
            token_prices: None,
        }
    }
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
    /// The active runs of the drama that make tasks this plan left out ([`Held`]), in plan
    /// order.
    pub held_by: Vec<drama_jobs::RunId>,
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

/// A scene's storyboard, the image whose URL becomes the scene's `image_url`: its first image.
/// (A character's portrait and the drama's cover are chosen by `Character::portrait` and
/// `Drama::cover`.)
fn storyboard(scene: &Scene) -> Option<&Asset> {
    scene.assets.iter().find(|a| a.kind == AssetKind::Image)
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
        self.plan_around(scope, force, &Held::default())
    }

    /// [`Planner::plan`] without the tasks that active runs of the drama are making
    /// (`held`; see [`Held`]).
    ///
    /// # Errors
    /// As [`Planner::plan`].
    pub fn plan_around(
        &self,
        scope: &Scope,
        force: bool,
        held: &Held,
    ) -> Result<Planned, AppError> {
        let (chosen, held_by) = self.leave_out_held(self.select(scope, force)?, scope, force, held);
        let chosen_keys: HashSet<&str> =
            chosen.iter().map(|&i| self.tasks[i].key.as_str()).collect();
        let portraits_in_run: Vec<String> = self
            .drama
            .characters
            .iter()
            .filter(|c| {
                c.portrait().is_some_and(|a| {
                    chosen_keys.contains(media_key(kind::PORTRAIT, a.id.as_str()).as_str())
                })
            })
            .map(|c| c.id.to_string())
            .collect();
        let mut planned = Planned {
            held_by,
            ..Planned::default()
        };
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
                c.portrait()
                    .map(|a| media_key(kind::PORTRAIT, a.id.as_str()))
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
                c.portrait()
                    .map(|a| media_key(kind::PORTRAIT, a.id.as_str()))
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
mod tests;
