//! Turns a model's JSON answer into domain types and checks the drama rules.
//!
//! Every check returns the full list of problems in words a model can act on; the script model
//! sends them back once as a repair request, then gives up with
//! [`crate::AiError::SchemaViolation`].
// Reading a model's answer serves the provider clients only; without them (cargo feature
// `providers`) only the episode-count rules are in use.
#![cfg_attr(not(feature = "providers"), allow(dead_code, unused_imports))]

use std::collections::HashSet;

use drama_domain::{
    Asset, AssetId, AssetKind, Character, CharacterId, DomainError, Drama, DramaId, Episode,
    EpisodeId, STORYBOARD_MAX_CHARACTERS, Scene, SceneId,
};

use crate::lite::{DramaLite, EpisodeScenesLite};

/// Most episodes a premise may ask for.
pub const MAX_EPISODES: u32 = 30;
/// Episodes written when the premise names no count: at least…
pub const DEFAULT_MIN_EPISODES: u32 = 2;
/// …and at most.
pub const DEFAULT_MAX_EPISODES: u32 = 3;
/// Most scenes one episode may have.
pub const MAX_SCENES_PER_EPISODE: usize = 8;
/// The lengths, in seconds, a written scene's clip may have.
pub const CLIP_SECONDS: [u32; 2] = [10, 15];
/// Most characters a drama may have.
pub const MAX_CHARACTERS: usize = 10;

/// The episode count a text asks for ("5 episodes", "one episode", "3-episode"), if any.
pub fn requested_episode_count(text: &str) -> Option<u32> {
    requested_count(text, "episode", |n| u32::try_from(n).ok())
}

/// The first count of `noun` a text asks for ("5 episodes", "one character", "3-episode") that
/// `accept` takes, in figures or as a word up to twelve.
pub(crate) fn requested_count<T>(
    text: &str,
    noun: &str,
    accept: impl Fn(usize) -> Option<T>,
) -> Option<T> {
    const WORDS: [&str; 13] = [
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
        "eleven", "twelve",
    ];
    let plural = format!("{noun}s");
    let lower = text.to_lowercase();
    let tokens: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric()))
        .filter(|t| !t.is_empty())
        .collect();
    tokens.windows(2).find_map(|pair| {
        let [number, said] = pair else { return None };
        if *said != noun && *said != plural {
            return None;
        }
        number
            .parse::<usize>()
            .ok()
            .or_else(|| WORDS.iter().position(|w| w == number))
            .and_then(&accept)
    })
}

/// A scene as the models write it: a storyboard (a still showing the characters `cast`) and
/// the clip animated from it, which depends on the storyboard.
pub(crate) fn storyboarded_scene(
    id: SceneId,
    description: String,
    cast: Vec<String>,
    board: (AssetId, String),
    clip: (AssetId, String),
    duration: Option<i32>,
) -> Scene {
    let (board_id, board_prompt) = board;
    let (clip_id, clip_prompt) = clip;
    Scene {
        id,
        description,
        image_url: None,
        video_url: None,
        assets: vec![
            Asset {
                id: board_id.clone(),
                kind: AssetKind::Image,
                depends_on: cast,
                prompt: board_prompt,
                duration: None,
                url: None,
                metadata: None,
            },
            Asset {
                id: clip_id,
                kind: AssetKind::Video,
                depends_on: vec![board_id.into_inner()],
                prompt: clip_prompt,
                duration,
                url: None,
                metadata: None,
            },
        ],
        metadata: None,
    }
}

/// How many episodes a drama written from `premise` must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpisodeCount {
    /// Exactly this many (the premise or feedback said so).
    Exactly(u32),
    /// The model chooses within this range.
    Between(u32, u32),
}

impl EpisodeCount {
    /// For a drama rewritten from `feedback`: the count the feedback asks for, else the one
    /// its premise asks for.
    ///
    /// # Errors
    /// `InvalidRequest` for empty feedback, or a count [`from_texts`](Self::from_texts)
    /// refuses.
    pub(crate) fn for_improvement(drama: &Drama, feedback: &str) -> Result<Self, crate::AiError> {
        if feedback.trim().is_empty() {
            return Err(crate::AiError::InvalidRequest(
                "the feedback is empty".to_owned(),
            ));
        }
        Self::from_texts(&[&drama.premise, feedback]).map_err(crate::AiError::InvalidRequest)
    }

    /// From a premise (and, for improvements, the feedback, which wins).
    ///
    /// # Errors
    /// A message when the text asks for 0 or more than [`MAX_EPISODES`] episodes.
    pub fn from_texts(texts: &[&str]) -> Result<Self, String> {
        match texts.iter().rev().find_map(|t| requested_episode_count(t)) {
            Some(0) => Err("the premise asks for 0 episodes".to_owned()),
            Some(n) if n > MAX_EPISODES => Err(format!(
                "the premise asks for {n} episodes; at most {MAX_EPISODES} are supported"
            )),
            Some(n) => Ok(Self::Exactly(n)),
            None => Ok(Self::Between(DEFAULT_MIN_EPISODES, DEFAULT_MAX_EPISODES)),
        }
    }

    /// Whether `n` episodes satisfy it.
    pub fn accepts(self, n: usize) -> bool {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        match self {
            Self::Exactly(want) => n == want,
            // A model may stretch the default range a little; the premise did not insist.
            Self::Between(_, _) => (1..=MAX_EPISODES).contains(&n),
        }
    }

    /// For prompts: "exactly 5 episodes" / "2-3 episodes".
    pub fn describe(self) -> String {
        match self {
            Self::Exactly(1) => "exactly 1 episode".to_owned(),
            Self::Exactly(n) => format!("exactly {n} episodes"),
            Self::Between(a, b) => format!("{a}-{b} episodes"),
        }
    }
}

fn parse_id<T>(
    raw: &str,
    path: &str,
    parse: impl Fn(String) -> Result<T, drama_domain::ClientIdError>,
    problems: &mut Vec<String>,
) -> Option<T> {
    match parse(raw.to_owned()) {
        Ok(id) => Some(id),
        Err(e) => {
            problems.push(format!("{path} {raw:?} is not a valid id: {e}"));
            None
        }
    }
}

fn domain_problems(e: &DomainError) -> Vec<String> {
    e.errors.iter().map(ToString::to_string).collect()
}

/// Parses a model's drama JSON, converts it and checks every rule.
///
/// # Errors
/// Every problem found, as sentences.
pub(crate) fn drama_from_json(
    json: &str,
    drama_id: &DramaId,
    premise: &str,
    episodes: EpisodeCount,
) -> Result<Drama, Vec<String>> {
    let lite: DramaLite =
        DomainError::parse_json(json.as_bytes()).map_err(|e| domain_problems(&e))?;
    let mut problems = Vec::new();

    let mains: Vec<&str> = lite
        .characters
        .iter()
        .filter(|c| c.main)
        .map(|c| c.id.as_str())
        .collect();
    if lite.characters.is_empty() {
        problems.push("characters is empty: write 1-2 main characters and supporting ones".into());
    } else if mains.is_empty() || mains.len() > 2 {
        problems.push(format!(
            "{} characters have main=true ({}); exactly 1 or 2 must",
            mains.len(),
            mains.join(", ")
        ));
    }
    if lite.characters.len() > MAX_CHARACTERS {
        problems.push(format!(
            "{} characters; write at most {MAX_CHARACTERS}",
            lite.characters.len()
        ));
    }
    if !episodes.accepts(lite.episodes.len()) {
        problems.push(format!(
            "{} episodes were written; the premise asks for {}",
            lite.episodes.len(),
            episodes.describe()
        ));
    }
    for (i, c) in lite.characters.iter().enumerate() {
        if c.voice_description.trim().is_empty() {
            problems.push(format!("characters[{i}].voice_description is empty"));
        }
    }

    let characters: Vec<Character> = lite
        .characters
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let id = parse_id(
                &c.id,
                &format!("characters[{i}].id"),
                CharacterId::parse,
                &mut problems,
            )?;
            Some(Character {
                id,
                name: c.name.trim().to_owned(),
                description: c.description.trim().to_owned(),
                gender: c.gender.trim().to_owned(),
                voice_description: c.voice_description.trim().to_owned(),
                main: c.main,
                url: None,
                premise_url: c.premise_url.clone().filter(|u| !u.trim().is_empty()),
                assets: Vec::new(),
                metadata: None,
            })
        })
        .collect();
    let episodes: Vec<Episode> = lite
        .episodes
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let id = parse_id(
                &e.id,
                &format!("episodes[{i}].id"),
                EpisodeId::parse,
                &mut problems,
            )?;
            Some(Episode {
                id,
                title: e.title.trim().to_owned(),
                description: e.description.trim().to_owned(),
                premise: None,
                url: None,
                scenes: Vec::new(),
                assets: Vec::new(),
                metadata: None,
            })
        })
        .collect();
    let drama = Drama {
        id: drama_id.clone(),
        title: lite.title.trim().to_owned(),
        description: lite.description.trim().to_owned(),
        premise: premise.to_owned(),
        url: None,
        characters,
        episodes,
        assets: Vec::new(),
        metadata: None,
    };
    if let Err(e) = drama.validate() {
        problems.extend(domain_problems(&e));
    }
    if problems.is_empty() {
        Ok(drama)
    } else {
        Err(problems)
    }
}

/// Parses a model's scenes JSON for episode `episode_id` of `drama` and checks every rule,
/// including that the drama stays valid with the scenes in place.
///
/// # Errors
/// Every problem found, as sentences.
pub(crate) fn scenes_from_json(
    json: &str,
    drama: &Drama,
    episode_id: &EpisodeId,
) -> Result<Vec<Scene>, Vec<String>> {
    let lite: EpisodeScenesLite =
        DomainError::parse_json(json.as_bytes()).map_err(|e| domain_problems(&e))?;
    let mut problems = Vec::new();
    if lite.scenes.is_empty() {
        problems.push("scenes is empty: write 3 to 5 scenes".to_owned());
    }
    if lite.scenes.len() > MAX_SCENES_PER_EPISODE {
        problems.push(format!(
            "{} scenes; write at most {MAX_SCENES_PER_EPISODE}",
            lite.scenes.len()
        ));
    }
    let character_ids: HashSet<&str> = drama.characters.iter().map(|c| c.id.as_str()).collect();
    // Ids used elsewhere in the drama (other episodes' scenes, all assets) must not be reused.
    let mut taken: HashSet<String> = drama
        .episodes
        .iter()
        .filter(|e| &e.id != episode_id)
        .flat_map(|e| e.scenes.iter().map(|s| s.id.as_str().to_owned()))
        .collect();
    let mut taken_assets: HashSet<String> = drama
        .assets_with_owner()
        .filter(|(owner, _)| {
            !matches!(owner, drama_domain::AssetOwner::Scene { episode, .. } if episode == episode_id)
        })
        .map(|(_, a)| a.id.as_str().to_owned())
        .collect();

    let mut scenes = Vec::new();
    for (i, s) in lite.scenes.iter().enumerate() {
        let path = format!("scenes[{i}]");
        if !taken.insert(s.id.clone()) {
            problems.push(format!("{path}.id {:?} is used twice", s.id));
        }
        for (what, id) in [("storyboard", &s.storyboard.id), ("clip", &s.clip.id)] {
            if !taken_assets.insert(id.clone()) {
                problems.push(format!("{path}.{what}.id {id:?} is used twice"));
            }
        }
        if s.storyboard.character_ids.len() > STORYBOARD_MAX_CHARACTERS {
            problems.push(format!(
                "{path}.storyboard.character_ids lists {} characters; at most {STORYBOARD_MAX_CHARACTERS}",
                s.storyboard.character_ids.len()
            ));
        }
        let mut seen_in_frame = HashSet::new();
        for cid in &s.storyboard.character_ids {
            if !character_ids.contains(cid.as_str()) {
                problems.push(format!(
                    "{path}.storyboard.character_ids names {cid:?}, which is not a character id (known: {})",
                    sorted(&character_ids)
                ));
            }
            if !seen_in_frame.insert(cid.as_str()) {
                problems.push(format!(
                    "{path}.storyboard.character_ids lists {cid:?} twice"
                ));
            }
        }
        if !CLIP_SECONDS
            .iter()
            .any(|&c| i64::from(c) == s.clip.duration)
        {
            problems.push(format!(
                "{path}.clip.duration is {}; a clip lasts 10 or 15 seconds",
                s.clip.duration
            ));
        }
        let scene_id = parse_id(&s.id, &format!("{path}.id"), SceneId::parse, &mut problems);
        let board_id = parse_id(
            &s.storyboard.id,
            &format!("{path}.storyboard.id"),
            AssetId::parse,
            &mut problems,
        );
        let clip_id = parse_id(
            &s.clip.id,
            &format!("{path}.clip.id"),
            AssetId::parse,
            &mut problems,
        );
        let (Some(scene_id), Some(board_id), Some(clip_id)) = (scene_id, board_id, clip_id) else {
            continue;
        };
        scenes.push(storyboarded_scene(
            scene_id,
            s.description.trim().to_owned(),
            s.storyboard.character_ids.clone(),
            (board_id, s.storyboard.prompt.trim().to_owned()),
            (clip_id, s.clip.prompt.trim().to_owned()),
            i32::try_from(s.clip.duration).ok(),
        ));
    }
    if problems.is_empty() {
        let mut with_scenes = drama.clone();
        if let Some(episode) = with_scenes
            .episodes
            .iter_mut()
            .find(|e| &e.id == episode_id)
        {
            episode.scenes = scenes.clone();
        }
        if let Err(e) = with_scenes.validate() {
            problems.extend(domain_problems(&e));
        }
    }
    if problems.is_empty() {
        Ok(scenes)
    } else {
        Err(problems)
    }
}

fn sorted(ids: &HashSet<&str>) -> String {
    let mut v: Vec<&str> = ids.iter().copied().collect();
    v.sort_unstable();
    v.join(", ")
}

/// Checks scenes written by any model (the offline one included) against the scene rules.
///
/// # Errors
/// Every problem found.
pub fn check_scenes(
    drama: &Drama,
    episode_id: &EpisodeId,
    scenes: &[Scene],
) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    for (i, s) in scenes.iter().enumerate() {
        let images: Vec<&Asset> = s
            .assets
            .iter()
            .filter(|a| a.kind == AssetKind::Image)
            .collect();
        let videos: Vec<&Asset> = s
            .assets
            .iter()
            .filter(|a| a.kind == AssetKind::Video)
            .collect();
        if images.len() != 1 || videos.len() != 1 || s.assets.len() != 2 {
            problems.push(format!(
                "scenes[{i}] has {} images and {} videos; exactly one of each",
                images.len(),
                videos.len()
            ));
            continue;
        }
        for cid in &images[0].depends_on {
            if drama.character(cid).is_none() {
                problems.push(format!(
                    "scenes[{i}] storyboard depends on unknown character {cid:?}"
                ));
            }
        }
        if videos[0].depends_on != [images[0].id.as_str().to_owned()] {
            problems.push(format!(
                "scenes[{i}] clip must depend on exactly its storyboard"
            ));
        }
        if !matches!(videos[0].duration, Some(10 | 15)) {
            problems.push(format!("scenes[{i}] clip duration must be 10 or 15"));
        }
    }
    let mut with_scenes = drama.clone();
    match with_scenes
        .episodes
        .iter_mut()
        .find(|e| &e.id == episode_id)
    {
        Some(episode) => episode.scenes = scenes.to_vec(),
        None => problems.push(format!("the drama has no episode {episode_id}")),
    }
    if let Err(e) = with_scenes.validate() {
        problems.extend(domain_problems(&e));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_episode_count_in_words_and_digits() {
        assert_eq!(requested_episode_count("A heist in 5 episodes."), Some(5));
        assert_eq!(
            requested_episode_count("one episode and 1 character"),
            Some(1)
        );
        assert_eq!(requested_episode_count("a 3-episode arc"), Some(3));
        assert_eq!(requested_episode_count("Twelve Episodes of fun"), Some(12));
        assert_eq!(requested_episode_count("an episode about cats"), None);
        assert_eq!(requested_episode_count("5 characters"), None);
    }

    #[test]
    fn feedback_count_wins_over_the_premise() {
        assert_eq!(
            EpisodeCount::from_texts(&["in 5 episodes", "make it 2 episodes"]),
            Ok(EpisodeCount::Exactly(2))
        );
        assert!(EpisodeCount::from_texts(&["in 99 episodes"]).is_err());
        assert!(EpisodeCount::from_texts(&["in 0 episodes"]).is_err());
    }
}
