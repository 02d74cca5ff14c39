//! Making sure every part of a drama has the assets the pipeline generates into: a portrait
//! and an audition per character, a storyboard and a clip per scene, a video per episode and
//! a cover. Ids follow the old server's (`{character}_portrait_front_halfbody`,
//! `{character}_audition_video`, `{drama}_cover`).

use std::collections::HashSet;

use drama_domain::{Asset, AssetId, AssetKind, DomainError, Drama, MAX_ID_LEN};
use serde_json::json;
use sha2::{Digest as _, Sha256};

/// An id `base + suffix` of at most 128 characters that is not in `taken` (and is then taken).
pub(crate) fn derived_id(
    base: &str,
    suffix: &str,
    taken: &mut HashSet<String>,
) -> Result<AssetId, DomainError> {
    let mut candidate = if base.len() + suffix.len() <= MAX_ID_LEN {
        format!("{base}{suffix}")
    } else {
        let digest = hex::encode(&Sha256::digest(base.as_bytes())[..4]);
        let keep = MAX_ID_LEN - suffix.len() - digest.len() - 1;
        format!("{}-{digest}{suffix}", &base[..keep])
    };
    let mut n = 2;
    while taken.contains(&candidate) {
        let tail = format!("-{n}");
        let keep = candidate.len().min(MAX_ID_LEN - tail.len());
        candidate = format!("{}{tail}", &candidate[..keep]);
        n += 1;
    }
    taken.insert(candidate.clone());
    AssetId::parse(candidate.clone())
        .map_err(|e| DomainError::field("assets", format!("derived id {candidate:?}: {e}")))
}

fn asset(
    id: AssetId,
    kind: AssetKind,
    prompt: String,
    depends_on: Vec<String>,
    duration: Option<i32>,
    kind_tag: &str,
) -> Asset {
    Asset {
        id,
        kind,
        depends_on,
        prompt,
        duration,
        url: None,
        metadata: Some(json!({ "type": kind_tag })),
    }
}

/// Adds the missing generation targets; returns whether anything was added.
///
/// # Errors
/// A [`DomainError`] if a derived id were not a valid id (ids are built from valid ids).
pub fn ensure_assets(drama: &mut Drama) -> Result<bool, DomainError> {
    let mut taken: HashSet<String> = drama
        .assets_with_owner()
        .map(|(_, a)| a.id.to_string())
        .collect();
    let before = taken.len();

    let names: Vec<(String, String)> = drama
        .characters
        .iter()
        .map(|c| (c.id.to_string(), c.name.to_lowercase()))
        .collect();
    for c in &mut drama.characters {
        let portrait = match c.portrait() {
            Some(a) => a.id.to_string(),
            None => {
                let id = derived_id(c.id.as_str(), "_portrait_front_halfbody", &mut taken)?;
                let prompt = drama_ai::prompts::portrait(c);
                c.assets.insert(
                    0,
                    asset(
                        id.clone(),
                        AssetKind::Image,
                        prompt,
                        vec![],
                        None,
                        "character_portrait",
                    ),
                );
                id.to_string()
            }
        };
        if !c.assets.iter().any(|a| a.kind == AssetKind::Video) {
            let id = derived_id(c.id.as_str(), "_audition_video", &mut taken)?;
            let prompt = drama_ai::prompts::audition(c);
            c.assets.push(asset(
                id,
                AssetKind::Video,
                prompt,
                vec![portrait],
                Some(10),
                "character_audition",
            ));
        }
    }
    if drama.cover().is_none() {
        let id = derived_id(drama.id.as_str(), "_cover", &mut taken)?;
        let mains = drama
            .characters
            .iter()
            .filter(|c| c.main)
            .map(|c| c.id.to_string())
            .collect();
        let prompt = drama_ai::prompts::cover(drama);
        drama.assets.push(asset(
            id,
            AssetKind::Image,
            prompt,
            mains,
            None,
            "drama_cover",
        ));
    }
    for e in &mut drama.episodes {
        for s in &mut e.scenes {
            let storyboard = match s.assets.iter().find(|a| a.kind == AssetKind::Image) {
                Some(a) => a.id.to_string(),
                None => {
                    let id = derived_id(s.id.as_str(), "-storyboard", &mut taken)?;
                    let description = s.description.to_lowercase();
                    // The characters a hand-written scene names, as its references (at most 3).
                    let shown: Vec<String> = names
                        .iter()
                        .filter(|(_, name)| !name.is_empty() && description.contains(name.as_str()))
                        .map(|(id, _)| id.clone())
                        .take(drama_domain::STORYBOARD_MAX_CHARACTERS)
                        .collect();
                    s.assets.insert(
                        0,
                        asset(
                            id.clone(),
                            AssetKind::Image,
                            s.description.clone(),
                            shown,
                            None,
                            "scene_storyboard",
                        ),
                    );
                    id.to_string()
                }
            };
            if !s.assets.iter().any(|a| a.kind == AssetKind::Video) {
                let id = derived_id(s.id.as_str(), "-clip", &mut taken)?;
                s.assets.push(asset(
                    id,
                    AssetKind::Video,
                    s.description.clone(),
                    vec![storyboard],
                    Some(10),
                    "scene_video_clip",
                ));
            }
        }
        if !e.assets.iter().any(|a| a.kind == AssetKind::Video) {
            let id = derived_id(e.id.as_str(), "_episode_video", &mut taken)?;
            let prompt = format!("Episode \"{}\": its scene clips, in order.", e.title);
            e.assets.push(asset(
                id,
                AssetKind::Video,
                prompt,
                vec![],
                None,
                "episode_video",
            ));
        }
    }
    Ok(taken.len() != before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_ids_are_shortened_and_collisions_avoided() {
        let mut taken = HashSet::new();
        let long = "x".repeat(128);
        let a = derived_id(&long, "_cover", &mut taken).unwrap();
        assert!(a.as_str().len() <= 128);
        assert!(a.as_str().ends_with("_cover"));
        let b = derived_id(&long, "_cover", &mut taken).unwrap();
        assert_ne!(a, b);
        let c = derived_id("c1", "_portrait", &mut taken).unwrap();
        assert_eq!(c.as_str(), "c1_portrait");
    }

    #[test]
    fn every_part_gets_its_targets_once() {
        let mut d = drama_testkit::builders::drama("d1", 2, 1, 2);
        d.episodes[0].scenes[1].assets.clear();
        d.episodes[0].scenes[1].description = "Character 1 runs".into();
        assert!(ensure_assets(&mut d).unwrap());
        d.validate().unwrap();
        assert_eq!(d.characters[0].assets.len(), 2);
        assert_eq!(d.assets.len(), 1);
        assert_eq!(d.assets[0].depends_on, ["c0", "c1"]);
        let scene = &d.episodes[0].scenes[1];
        assert_eq!(scene.assets.len(), 2);
        assert_eq!(scene.assets[0].depends_on, ["c1"]);
        assert_eq!(d.episodes[0].assets.len(), 1);
        assert!(
            !ensure_assets(&mut d).unwrap(),
            "a second pass adds nothing"
        );
    }
}
