//! The rules a drama satisfies before anything stores it.

use std::collections::HashMap;

use crate::error::{DomainError, FieldError};
use crate::model::{
    Asset, AssetKind, Character, Drama, Episode, STORYBOARD_MAX_CHARACTERS, Scene, VIDEO_DURATIONS,
};

/// Collects problems with their paths while walking a drama.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    fn non_empty(&mut self, path: &str, field: &str, value: &str) {
        if value.trim().is_empty() {
            self.errors.push(FieldError::new(
                format!("{path}{field}"),
                "must not be empty",
            ));
        }
    }

    fn unique<'a>(
        &mut self,
        seen: &mut HashMap<&'a str, String>,
        what: &str,
        id: &'a str,
        path: String,
    ) {
        if let Some(first) = seen.get(id) {
            self.errors.push(FieldError::new(
                format!("{path}.id"),
                format!("duplicate {what} id {id:?} (first used at {first})"),
            ));
        } else {
            seen.insert(id, path);
        }
    }

    fn asset(&mut self, path: &str, asset: &Asset, in_scene: bool) {
        self.non_empty(path, ".prompt", &asset.prompt);
        if asset.kind == AssetKind::Video
            && let Some(d) = asset.duration
            && !VIDEO_DURATIONS.contains(&d)
        {
            self.errors.push(FieldError::new(
                format!("{path}.duration"),
                format!("a video lasts 10 or 15 seconds, got {d}"),
            ));
        }
        if in_scene
            && asset.kind == AssetKind::Image
            && asset.depends_on.len() > STORYBOARD_MAX_CHARACTERS
        {
            self.errors.push(FieldError::new(
                format!("{path}.depends_on"),
                format!(
                    "a storyboard references at most {STORYBOARD_MAX_CHARACTERS} characters, got {}",
                    asset.depends_on.len()
                ),
            ));
        }
    }
}

impl Drama {
    /// Checks every rule of the model (see the crate README).
    ///
    /// # Errors
    /// A [`DomainError`] listing every violation with its field path.
    pub fn validate(&self) -> Result<(), DomainError> {
        let mut c = Checker::default();
        match serde_json::to_value(self) {
            Ok(doc) => c.errors.extend(crate::text::find_nul(&doc)),
            Err(e) => c.errors.push(FieldError::new("", e.to_string())),
        }
        c.non_empty("", "title", &self.title);
        c.non_empty("", "description", &self.description);
        c.non_empty("", "premise", &self.premise);

        let mut characters = HashMap::new();
        let mut episodes = HashMap::new();
        let mut scenes = HashMap::new();
        let mut assets = HashMap::new();

        for (i, a) in self.assets.iter().enumerate() {
            let path = format!("assets[{i}]");
            c.unique(&mut assets, "asset", a.id.as_str(), path.clone());
            c.asset(&path, a, false);
        }
        for (i, ch) in self.characters.iter().enumerate() {
            let path = format!("characters[{i}]");
            c.unique(&mut characters, "character", ch.id.as_str(), path.clone());
            check_character(&mut c, &path, ch, &mut assets);
        }
        for (i, ep) in self.episodes.iter().enumerate() {
            let path = format!("episodes[{i}]");
            c.unique(&mut episodes, "episode", ep.id.as_str(), path.clone());
            check_episode(&mut c, &path, ep, &mut scenes, &mut assets);
        }
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError { errors: c.errors })
        }
    }
}

fn check_character<'a>(
    c: &mut Checker,
    path: &str,
    ch: &'a Character,
    assets: &mut HashMap<&'a str, String>,
) {
    c.non_empty(path, ".name", &ch.name);
    c.non_empty(path, ".description", &ch.description);
    c.non_empty(path, ".gender", &ch.gender);
    for (j, a) in ch.assets.iter().enumerate() {
        let apath = format!("{path}.assets[{j}]");
        c.unique(assets, "asset", a.id.as_str(), apath.clone());
        c.asset(&apath, a, false);
    }
}

fn check_episode<'a>(
    c: &mut Checker,
    path: &str,
    ep: &'a Episode,
    scenes: &mut HashMap<&'a str, String>,
    assets: &mut HashMap<&'a str, String>,
) {
    c.non_empty(path, ".title", &ep.title);
    c.non_empty(path, ".description", &ep.description);
    for (j, a) in ep.assets.iter().enumerate() {
        let apath = format!("{path}.assets[{j}]");
        c.unique(assets, "asset", a.id.as_str(), apath.clone());
        c.asset(&apath, a, false);
    }
    for (k, sc) in ep.scenes.iter().enumerate() {
        let spath = format!("{path}.scenes[{k}]");
        c.unique(scenes, "scene", sc.id.as_str(), spath.clone());
        check_scene(c, &spath, sc, assets);
    }
}

fn check_scene<'a>(
    c: &mut Checker,
    path: &str,
    sc: &'a Scene,
    assets: &mut HashMap<&'a str, String>,
) {
    c.non_empty(path, ".description", &sc.description);
    for (j, a) in sc.assets.iter().enumerate() {
        let apath = format!("{path}.assets[{j}]");
        c.unique(assets, "asset", a.id.as_str(), apath.clone());
        c.asset(&apath, a, true);
    }
}
