//! Audio assets across an import: an old file cannot hold them (the old model refuses any
//! asset kind but image and video, and the export leaves them out), so the stored drama's stay.

use drama_domain::{Asset, AssetId, AssetKind, Drama};

/// Puts the audio assets of `stored` that `file` lacks back into `file`, each after the asset
/// it followed in `stored` (so a file that is `stored` without its audio compares equal), on
/// the entities `file` still has. Answers how many were put back.
pub(super) fn carry_audio(stored: &Drama, file: &mut Drama) -> usize {
    let mut carried = carry_audio_of(&stored.assets, &mut file.assets);
    for character in &mut file.characters {
        if let Some(was) = stored.characters.iter().find(|c| c.id == character.id) {
            carried += carry_audio_of(&was.assets, &mut character.assets);
        }
    }
    for episode in &mut file.episodes {
        let Some(was) = stored.episodes.iter().find(|e| e.id == episode.id) else {
            continue;
        };
        carried += carry_audio_of(&was.assets, &mut episode.assets);
        for scene in &mut episode.scenes {
            if let Some(was) = was.scenes.iter().find(|s| s.id == scene.id) {
                carried += carry_audio_of(&was.assets, &mut scene.assets);
            }
        }
    }
    carried
}

fn carry_audio_of(stored: &[Asset], file: &mut Vec<Asset>) -> usize {
    let mut carried = 0;
    let mut after: Option<&AssetId> = None;
    for asset in stored {
        let present = file.iter().any(|a| a.id == asset.id);
        if asset.kind == AssetKind::Audio && !present {
            let at = after
                .and_then(|prev| file.iter().position(|a| &a.id == prev))
                .map_or(0, |i| i + 1);
            file.insert(at, asset.clone());
            carried += 1;
            after = Some(&asset.id);
        } else if present {
            after = Some(&asset.id);
        }
    }
    carried
}
