//! Valid dramas of any size, and the legacy fixture.

use drama_domain::Drama;
use serde_json::{Value, json};

/// The legacy drama file from the old bucket (`fixtures/legacy-r2/corgi_musk_v5.json`).
pub const LEGACY_FIXTURE: &str = include_str!("../../../fixtures/legacy-r2/corgi_musk_v5.json");

/// The legacy fixture as a drama.
pub fn fixture_drama() -> Drama {
    Drama::from_json(LEGACY_FIXTURE.as_bytes()).expect("the fixture is a valid drama")
}

/// A drama with `characters` characters and `episodes` episodes of `scenes` scenes each; every
/// scene has a storyboard (showing the first character) and a clip.
pub fn drama_json(id: &str, characters: usize, episodes: usize, scenes: usize) -> Value {
    let chars: Vec<Value> = (0..characters)
        .map(|i| {
            json!({"id": format!("c{i}"), "name": format!("Character {i}"),
                   "description": format!("Description of character {i}"), "gender": "female",
                   "voice_description": "warm, low, unhurried", "main": i < 2})
        })
        .collect();
    let eps: Vec<Value> = (0..episodes)
        .map(|e| {
            let scenes: Vec<Value> = (0..scenes)
                .map(|s| {
                    let sid = format!("e{e}-s{s}");
                    let deps = if characters > 0 {
                        json!(["c0"])
                    } else {
                        json!([])
                    };
                    json!({"id": sid, "description": format!("Scene {s} of episode {e}"),
                           "assets": [
                             {"id": format!("{sid}-img"), "kind": "image", "depends_on": deps,
                              "prompt": format!("storyboard {sid}")},
                             {"id": format!("{sid}-vid"), "kind": "video",
                              "depends_on": [format!("{sid}-img")], "prompt": format!("clip {sid}"),
                              "duration": 10}]})
                })
                .collect();
            json!({"id": format!("e{e}"), "title": format!("Episode {e}"),
                   "description": format!("Arc of episode {e}"), "scenes": scenes})
        })
        .collect();
    json!({"id": id, "title": format!("Drama {id}"), "description": "A test drama",
           "premise": "Two friends build a rocket", "characters": chars, "episodes": eps})
}

/// [`drama_json`] as a drama.
pub fn drama(id: &str, characters: usize, episodes: usize, scenes: usize) -> Drama {
    Drama::from_value(drama_json(id, characters, episodes, scenes))
        .expect("builder output is valid")
}

/// A small drama: 2 characters, 1 episode with 2 scenes.
pub fn small_drama(id: &str) -> Drama {
    drama(id, 2, 1, 2)
}
