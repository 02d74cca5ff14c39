//! Laying out every task of a drama: which asset each task makes, from which references, at
//! what price, and whether its object is stale. Kept apart from the parent module, which
//! chooses the tasks a run takes from this layout and turns them into graph nodes.

use std::collections::HashMap;
use std::time::Duration;

use drama_ai::{CallKind, CostTable, ModelInfo};
use drama_dal::{AssetObject, EntityUrl};
use drama_domain::{
    Asset, AssetId, AssetKind, Character, Drama, Episode, EpisodeId, STORYBOARD_MAX_CHARACTERS,
    Scene, SceneId,
};
use serde_json::Value;

use super::{Context, Models, Planner, Task, media_key, payload, stitch_model, storyboard};
use crate::AppError;
use crate::pipeline::spec::{MediaTask, StitchTask, class, kind};

/// Most reference images a cover gets (its main characters' portraits).
const COVER_REFERENCES: usize = 4;

/// How one media asset is made: its task kind and resource class, the provider call and
/// model, the assets it references (made by tasks of `upstream_kind`), where its URL goes,
/// the seconds of video it is priced at and the duration it asks for.
struct Media<'m> {
    kind: &'static str,
    class: &'static str,
    call: CallKind,
    model: &'m ModelInfo,
    refs: Vec<String>,
    upstream_kind: &'static str,
    target: EntityUrl,
    seconds: u32,
    duration: Option<i64>,
}

impl<'m> Media<'m> {
    /// `asset` made by a task of `kind` with `call` (an image or a video) from `refs`, which
    /// tasks of `upstream_kind` make. A video is priced at the asset's duration (10 seconds
    /// when it names none).
    fn new(
        asset: &Asset,
        call: CallKind,
        kind: &'static str,
        models: &'m Models,
        refs: Vec<String>,
        upstream_kind: &'static str,
        target: EntityUrl,
    ) -> Self {
        let (class, model, seconds) = match call {
            CallKind::Video => (
                class::VIDEO,
                &models.video,
                u32::try_from(asset.duration.unwrap_or(10)).unwrap_or(10),
            ),
            _ => (class::IMAGE, &models.image, 0),
        };
        Self {
            kind,
            class,
            call,
            model,
            refs,
            upstream_kind,
            target,
            seconds,
            duration: asset.duration.map(i64::from),
        }
    }
}

/// What every task's layout reads: the stored objects and the prices (`cx`), the models, and
/// each character's portrait by character id.
struct Inputs<'a> {
    cx: Context<'a>,
    models: &'a Models,
    portrait_of: HashMap<&'a str, &'a Asset>,
}

/// A task's group (key, label), episode and scene.
type Placement = (Option<(String, String)>, Option<EpisodeId>, Option<SceneId>);

/// The group (key, label) of an episode's tasks.
fn episode_group(e: &Episode) -> Option<(String, String)> {
    Some((format!("episode:{}", e.id), format!("Episode {}", e.title)))
}

/// The clips that become an episode's scene videos, which its stitch waits for: their task
/// keys and asset ids.
#[derive(Default)]
struct SceneVideos {
    keys: Vec<String>,
    ids: Vec<String>,
}

impl<'a> Planner<'a> {
    /// Lays out every task of `drama` (which must already have its generation targets, see
    /// `ensure_assets`), judging staleness against `objects`.
    ///
    /// # Errors
    /// `Internal` only if a payload cannot be serialised.
    pub fn new(
        drama: &'a Drama,
        objects: &'a HashMap<AssetId, AssetObject>,
        models: &'a Models,
        costs: &'a CostTable,
    ) -> Result<Self, AppError> {
        let at = Inputs {
            cx: Context {
                objects,
                costs,
                price_offline: models.price_offline,
            },
            models,
            portrait_of: drama
                .characters
                .iter()
                .filter_map(|c| c.portrait().map(|a| (c.id.as_str(), a)))
                .collect(),
        };
        let mut planner = Self {
            drama,
            tasks: Vec::new(),
            index: HashMap::new(),
            token_prices: models.token_prices,
        };
        for c in &drama.characters {
            planner.add_character(&at, c)?;
        }
        if let Some(cover) = drama.cover() {
            planner.add_cover(&at, cover)?;
        }
        for e in &drama.episodes {
            planner.add_episode(&at, e)?;
        }
        Ok(planner)
    }

    /// A character's images (the primary portrait from its prompt alone, the others from the
    /// primary) and auditions (from one of its images), under the character's group.
    fn add_character(&mut self, at: &Inputs<'_>, c: &Character) -> Result<(), AppError> {
        let group = Some((
            format!("character:{}", c.id),
            format!("Character {}", c.name),
        ));
        let primary = c.portrait().map(|a| a.id.clone());
        for a in &c.assets {
            let is_primary = primary.as_ref() == Some(&a.id);
            let media = match a.kind {
                AssetKind::Image => {
                    let refs = if is_primary {
                        Vec::new()
                    } else {
                        primary.iter().map(ToString::to_string).collect()
                    };
                    let target = if is_primary {
                        EntityUrl::Character(c.id.clone())
                    } else {
                        EntityUrl::None
                    };
                    Media::new(
                        a,
                        CallKind::Image,
                        kind::PORTRAIT,
                        at.models,
                        refs,
                        kind::PORTRAIT,
                        target,
                    )
                }
                AssetKind::Video => {
                    let refs: Vec<String> = a
                        .depends_on
                        .iter()
                        .filter(|d| {
                            c.assets
                                .iter()
                                .any(|x| x.kind == AssetKind::Image && x.id.as_str() == d.as_str())
                        })
                        .cloned()
                        .chain(primary.iter().map(ToString::to_string))
                        .take(1)
                        .collect();
                    let target = EntityUrl::None;
                    Media::new(
                        a,
                        CallKind::Video,
                        kind::AUDITION,
                        at.models,
                        refs,
                        kind::PORTRAIT,
                        target,
                    )
                }
                AssetKind::Audio => continue,
            };
            let place = (group.clone(), None, None);
            self.push_media(&at.cx, a, media, c.name.clone(), place)?;
        }
        Ok(())
    }

    /// The drama's cover, made from the portraits of its main characters.
    fn add_cover(&mut self, at: &Inputs<'_>, cover: &Asset) -> Result<(), AppError> {
        let refs: Vec<String> = self
            .drama
            .characters
            .iter()
            .filter(|c| c.main)
            .filter_map(|c| at.portrait_of.get(c.id.as_str()).map(|a| a.id.to_string()))
            .take(COVER_REFERENCES)
            .collect();
        let media = Media {
            // The cover asks for no duration whatever its asset says.
            duration: None,
            ..Media::new(
                cover,
                CallKind::Image,
                kind::COVER,
                at.models,
                refs,
                kind::PORTRAIT,
                EntityUrl::Drama,
            )
        };
        self.push_media(
            &at.cx,
            cover,
            media,
            self.drama.title.clone(),
            (None, None, None),
        )?;
        Ok(())
    }

    /// An episode under its group: the writing of its scenes when it has none, each scene's
    /// storyboards and clips, and its stitched video after its clips.
    fn add_episode(&mut self, at: &Inputs<'_>, e: &Episode) -> Result<(), AppError> {
        let group = episode_group(e);
        let mut videos = SceneVideos::default();
        if e.scenes.is_empty() {
            self.push(Task {
                key: format!("scenes:{}", e.id),
                kind: kind::WRITE_SCENES,
                class: class::SCRIPT,
                group: group.clone(),
                upstream: Vec::new(),
                payload: Value::Null,
                cost: at
                    .cx
                    .cost(CallKind::WriteEpisodeScenes, &at.models.script, 0),
                hint: Duration::from_secs(20),
                stale: true,
                episode: Some(e.id.clone()),
                scene: None,
                asset: None,
            });
        }
        for s in &e.scenes {
            self.add_scene(at, e, s, &mut videos)?;
        }
        if let Some(video) = e.assets.iter().find(|a| a.kind == AssetKind::Video) {
            self.add_stitch(&at.cx, e, video, videos)?;
        }
        Ok(())
    }

    /// A scene's storyboards (from the portraits of the characters they show) and clips (from
    /// a storyboard), under the episode's group; the clip that becomes the scene's video is
    /// added to `videos` for the episode's stitch.
    fn add_scene(
        &mut self,
        at: &Inputs<'_>,
        e: &Episode,
        s: &Scene,
        videos: &mut SceneVideos,
    ) -> Result<(), AppError> {
        let group = episode_group(e);
        let storyboard = storyboard(s);
        for a in &s.assets {
            let media = match a.kind {
                AssetKind::Image => {
                    let refs: Vec<String> = a
                        .depends_on
                        .iter()
                        .filter_map(|d| at.portrait_of.get(d.as_str()).map(|p| p.id.to_string()))
                        .take(STORYBOARD_MAX_CHARACTERS)
                        .collect();
                    let target = if storyboard.map(|b| &b.id) == Some(&a.id) {
                        EntityUrl::SceneImage(s.id.clone())
                    } else {
                        EntityUrl::None
                    };
                    Media::new(
                        a,
                        CallKind::Image,
                        kind::STORYBOARD,
                        at.models,
                        refs,
                        kind::PORTRAIT,
                        target,
                    )
                }
                AssetKind::Video => {
                    let explicit = a.depends_on.iter().find(|d| {
                        s.assets
                            .iter()
                            .any(|x| x.kind == AssetKind::Image && x.id.as_str() == d.as_str())
                    });
                    let refs: Vec<String> = explicit
                        .cloned()
                        .or_else(|| storyboard.map(|b| b.id.to_string()))
                        .into_iter()
                        .collect();
                    let first_clip = s
                        .assets
                        .iter()
                        .find(|x| x.kind == AssetKind::Video)
                        .map(|x| &x.id);
                    let target = if first_clip == Some(&a.id) {
                        videos.keys.push(media_key(kind::CLIP, a.id.as_str()));
                        videos.ids.push(a.id.to_string());
                        EntityUrl::SceneVideo(s.id.clone())
                    } else {
                        EntityUrl::None
                    };
                    Media::new(
                        a,
                        CallKind::Video,
                        kind::CLIP,
                        at.models,
                        refs,
                        kind::STORYBOARD,
                        target,
                    )
                }
                AssetKind::Audio => continue,
            };
            let label = format!("{} · {}", e.title, s.id);
            let place = (group.clone(), Some(e.id.clone()), Some(s.id.clone()));
            self.push_media(&at.cx, a, media, label, place)?;
        }
        Ok(())
    }

    /// The episode's video, stitched from its scenes' clips (or, for an episode without
    /// scenes yet, after the task that writes them).
    fn add_stitch(
        &mut self,
        cx: &Context<'_>,
        e: &Episode,
        video: &Asset,
        videos: SceneVideos,
    ) -> Result<(), AppError> {
        let upstream = if e.scenes.is_empty() {
            vec![format!("scenes:{}", e.id)]
        } else {
            videos.keys
        };
        let stale = e.scenes.is_empty()
            || cx.stale(
                kind::STITCH,
                video,
                &stitch_model(),
                &videos.ids,
                &video.prompt,
            );
        let task = StitchTask {
            drama: self.drama.id.to_string(),
            episode: e.id.to_string(),
            asset: video.id.to_string(),
        };
        self.push(Task {
            key: media_key(kind::STITCH, video.id.as_str()),
            kind: kind::STITCH,
            class: class::STITCH,
            group: episode_group(e),
            upstream,
            payload: payload(&task)?,
            cost: 0,
            hint: Duration::from_secs(3),
            stale,
            episode: Some(e.id.clone()),
            scene: None,
            asset: Some(video.id.clone()),
        });
        Ok(())
    }

    fn push(&mut self, task: Task) {
        self.index.insert(task.key.clone(), self.tasks.len());
        self.tasks.push(task);
    }

    /// Adds the task that makes `asset` as `media` says, under its group, episode and scene.
    fn push_media(
        &mut self,
        cx: &Context<'_>,
        asset: &Asset,
        media: Media<'_>,
        label: String,
        (group, episode, scene): Placement,
    ) -> Result<(), AppError> {
        let upstream = media
            .refs
            .iter()
            .map(|r| media_key(media.upstream_kind, r))
            .collect();
        let stale = cx.stale(media.kind, asset, media.model, &media.refs, &asset.prompt);
        let task = MediaTask {
            drama: self.drama.id.to_string(),
            asset: asset.id.to_string(),
            prompt: asset.prompt.clone(),
            label,
            references: media.refs,
            duration: media.duration,
            target: media.target,
        };
        self.push(Task {
            key: media_key(media.kind, asset.id.as_str()),
            kind: media.kind,
            class: media.class,
            group,
            upstream,
            payload: payload(&task)?,
            cost: cx.cost(media.call, media.model, media.seconds),
            hint: hint(media.call),
            stale,
            episode,
            scene,
            asset: Some(asset.id.clone()),
        });
        Ok(())
    }
}

fn hint(call: CallKind) -> Duration {
    match call {
        CallKind::Video => Duration::from_secs(8),
        CallKind::Image => Duration::from_secs(2),
        _ => Duration::from_secs(10),
    }
}
