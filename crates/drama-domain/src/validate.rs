//! The rules a drama satisfies before anything stores it.

use std::collections::HashMap;

use crate::error::{DomainError, FieldError};
use crate::model::{
    Asset, AssetKind, Character, Drama, Episode, MAX_ASSETS_PER_PART, MAX_CHARACTERS, MAX_EPISODES,
    MAX_PARTS, MAX_SCENES_PER_EPISODE, STORYBOARD_MAX_CHARACTERS, VIDEO_DURATIONS,
};

/// Collects problems with their paths while walking a drama.
#[derive(Default)]
struct Checker {
    errors: Vec<FieldError>,
}

impl Checker {
    /// At most `max` items of a list at `path`.
    fn at_most(&mut self, path: &str, what: &str, found: usize, max: usize) {
        if found > max {
            self.errors.push(FieldError::new(
                path,
                format!("holds {found} {what}; at most {max} are allowed"),
            ));
        }
    }

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

    /// The assets of the part at `path` (the drama's own at `""`): ids unique across the
    /// drama (`seen`), and each asset's own rules.
    fn assets<'a>(
        &mut self,
        path: &str,
        list: &'a [Asset],
        seen: &mut HashMap<&'a str, String>,
        in_scene: bool,
    ) {
        for (j, a) in list.iter().enumerate() {
            let apath = if path.is_empty() {
                format!("assets[{j}]")
            } else {
                format!("{path}.assets[{j}]")
            };
            self.unique(seen, "asset", a.id.as_str(), apath.clone());
            self.asset(&apath, a, in_scene);
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
        // Checked here, not only by the database, so the refusal names the field.
        if asset.kind != AssetKind::Video
            && let Some(d) = asset.duration
            && d <= 0
        {
            self.errors.push(FieldError::new(
                format!("{path}.duration"),
                format!("a duration is a positive number of seconds or null, got {d}"),
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
    /// Characters, episodes, scenes and assets together.
    pub fn part_count(&self) -> usize {
        let assets = self.assets.len()
            + self
                .characters
                .iter()
                .map(|c| c.assets.len())
                .sum::<usize>()
            + self
                .episodes
                .iter()
                .map(|e| {
                    e.assets.len()
                        + e.scenes.len()
                        + e.scenes.iter().map(|s| s.assets.len()).sum::<usize>()
                })
                .sum::<usize>();
        self.characters.len() + self.episodes.len() + assets
    }

    /// Checks the size bounds of a drama a client sends ([`MAX_CHARACTERS`], [`MAX_EPISODES`],
    /// [`MAX_SCENES_PER_EPISODE`], [`MAX_ASSETS_PER_PART`], [`MAX_PARTS`]), naming the list
    /// over its bound. Not part of [`Drama::validate`]: a drama the models extend, or one
    /// imported from the old server, is not refused for its size after the work is paid for.
    ///
    /// # Errors
    /// A [`DomainError`] listing every list over its bound.
    pub fn check_size(&self) -> Result<(), DomainError> {
        let mut c = Checker::default();
        let assets = |c: &mut Checker, path: String, found: usize| {
            c.at_most(&path, "assets", found, MAX_ASSETS_PER_PART);
        };
        c.at_most(
            "characters",
            "characters",
            self.characters.len(),
            MAX_CHARACTERS,
        );
        c.at_most("episodes", "episodes", self.episodes.len(), MAX_EPISODES);
        assets(&mut c, "assets".to_owned(), self.assets.len());
        for (i, ch) in self.characters.iter().enumerate() {
            assets(&mut c, format!("characters[{i}].assets"), ch.assets.len());
        }
        for (i, ep) in self.episodes.iter().enumerate() {
            assets(&mut c, format!("episodes[{i}].assets"), ep.assets.len());
            let scenes = format!("episodes[{i}].scenes");
            c.at_most(&scenes, "scenes", ep.scenes.len(), MAX_SCENES_PER_EPISODE);
            for (k, sc) in ep.scenes.iter().enumerate() {
                assets(&mut c, format!("{scenes}[{k}].assets"), sc.assets.len());
            }
        }
        c.at_most("", "parts", self.part_count(), MAX_PARTS);
        if c.errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError { errors: c.errors })
        }
    }

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

        c.assets("", &self.assets, &mut assets, false);
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
    c.assets(path, &ch.assets, assets, false);
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
    c.assets(path, &ep.assets, assets, false);
    for (k, sc) in ep.scenes.iter().enumerate() {
        let spath = format!("{path}.scenes[{k}]");
        c.unique(scenes, "scene", sc.id.as_str(), spath.clone());
        c.non_empty(&spath, ".description", &sc.description);
        c.assets(&spath, &sc.assets, assets, true);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::model::{Drama, MAX_ASSETS_PER_PART, MAX_PARTS, MAX_SCENES_PER_EPISODE};

    fn drama(episodes: Vec<Value>) -> Value {
        json!({"id": "d", "title": "T", "description": "D", "premise": "P",
               "characters": [], "episodes": episodes})
    }

    fn scenes(prefix: &str, n: usize, assets: usize) -> Vec<Value> {
        (0..n)
            .map(|i| {
                let assets: Vec<Value> = (0..assets)
                    .map(|j| json!({"id": format!("{prefix}s{i}a{j}"), "kind": "image", "prompt": "p"}))
                    .collect();
                json!({"id": format!("{prefix}s{i}"), "description": "x", "assets": assets})
            })
            .collect()
    }

    fn episode(id: &str, scenes: Vec<Value>) -> Value {
        json!({"id": id, "title": "E", "description": "E", "scenes": scenes})
    }

    fn fields(doc: Value) -> Vec<(String, String)> {
        // Every drama here is valid; only its size may be refused.
        match Drama::from_value(doc).unwrap().check_size() {
            Ok(()) => Vec::new(),
            Err(e) => e.errors.into_iter().map(|f| (f.field, f.message)).collect(),
        }
    }

    #[test]
    fn a_duration_that_is_not_positive_is_refused_with_its_field() {
        let doc = json!({"id": "d", "title": "T", "description": "D", "premise": "P",
            "characters": [], "episodes": [episode("e0", vec![json!({"id": "s", "description": "x",
                "assets": [{"id": "i", "kind": "image", "prompt": "p", "duration": 0},
                           {"id": "a", "kind": "audio", "prompt": "p", "duration": 5}]})])]});
        let e = Drama::from_value(doc).unwrap_err();
        let found: Vec<(String, String)> =
            e.errors.into_iter().map(|f| (f.field, f.message)).collect();
        assert_eq!(
            found,
            vec![(
                "episodes[0].scenes[0].assets[0].duration".to_owned(),
                "a duration is a positive number of seconds or null, got 0".to_owned()
            )]
        );
    }

    #[test]
    fn a_drama_holds_a_bounded_number_of_parts_and_the_error_names_the_list() {
        // At the bounds: accepted.
        let full = drama(vec![episode("e0", scenes("e0", MAX_SCENES_PER_EPISODE, 1))]);
        assert_eq!(fields(full), Vec::new());

        let over = drama(vec![episode(
            "e0",
            scenes("e0", MAX_SCENES_PER_EPISODE + 1, 0),
        )]);
        assert_eq!(
            fields(over),
            vec![(
                "episodes[0].scenes".to_owned(),
                format!(
                    "holds {} scenes; at most {MAX_SCENES_PER_EPISODE} are allowed",
                    MAX_SCENES_PER_EPISODE + 1
                )
            )]
        );

        let mut one = scenes("e0", 1, MAX_ASSETS_PER_PART + 1);
        let over = drama(vec![episode("e0", std::mem::take(&mut one))]);
        assert_eq!(fields(over)[0].0, "episodes[0].scenes[0].assets");

        // Every list within its bound, the whole over MAX_PARTS.
        let per_episode = MAX_SCENES_PER_EPISODE * (1 + 20);
        let episodes: Vec<Value> = (0..MAX_PARTS / per_episode + 1)
            .map(|e| {
                episode(
                    &format!("e{e}"),
                    scenes(&format!("e{e}"), MAX_SCENES_PER_EPISODE, 20),
                )
            })
            .collect();
        let errors = fields(drama(episodes));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].0, "");
        assert!(
            errors[0].1.contains(&format!("at most {MAX_PARTS}")),
            "{errors:?}"
        );
    }
}
