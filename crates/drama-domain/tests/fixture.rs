//! The legacy fixture and the peer's REST shapes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drama_domain::{AssetKind, Drama};
use serde_json::{Value, json};

const FIXTURE: &str = include_str!("../../../fixtures/legacy-r2/corgi_musk_v5.json");

#[test]
fn legacy_fixture_parses_and_serialises_back_to_the_same_structure() {
    let drama = Drama::from_json(FIXTURE.as_bytes()).expect("fixture is a valid drama");
    assert_eq!(drama.id.as_str(), "corgi_musk_v5");
    assert_eq!(drama.characters.len(), 5);
    assert_eq!(drama.episodes.len(), 3);
    let scenes: usize = drama.episodes.iter().map(|e| e.scenes.len()).sum();
    assert_eq!(scenes, 16);
    assert!(
        drama
            .characters
            .iter()
            .all(|c| c.voice_description.is_empty())
    );

    // The only difference is the documented default for the missing `voice_description`.
    let mut expected: Value = serde_json::from_str(FIXTURE).unwrap();
    for c in expected["characters"].as_array_mut().unwrap() {
        c.as_object_mut()
            .unwrap()
            .insert("voice_description".into(), json!(""));
    }
    assert_eq!(serde_json::to_value(&drama).unwrap(), expected);
}

#[test]
fn serialisation_keeps_nulls_and_the_peer_field_order() {
    let drama = Drama::from_json(
        br#"{"id":"d1","title":"t","description":"d","premise":"p","extra":1,
             "characters":[{"id":"c1","name":"n","description":"x","gender":"m","voice_description":"v","main":true}],
             "episodes":[{"id":"e1","title":"t","description":"d","scenes":[{"id":"s1","description":"sd",
               "assets":[{"id":"a1","kind":"image","depends_on":["c1"],"prompt":"p"}]}]}]}"#,
    )
    .unwrap();
    let text = serde_json::to_string(&drama).unwrap();
    assert_eq!(
        text,
        r#"{"id":"d1","title":"t","description":"d","premise":"p","url":null,"characters":[{"id":"c1","name":"n","description":"x","gender":"m","voice_description":"v","main":true,"url":null,"premise_url":null,"assets":[],"metadata":null}],"episodes":[{"id":"e1","title":"t","description":"d","premise":null,"url":null,"scenes":[{"id":"s1","description":"sd","image_url":null,"video_url":null,"assets":[{"id":"a1","kind":"image","depends_on":["c1"],"prompt":"p","duration":null,"url":null,"metadata":null}],"metadata":null}],"assets":[],"metadata":null}],"assets":[],"metadata":null}"#
    );
}

fn base() -> Value {
    json!({"id":"d1","title":"t","description":"d","premise":"p",
           "characters":[{"id":"c1","name":"n","description":"x","gender":"f"}],
           "episodes":[{"id":"e1","title":"t","description":"d","scenes":[{"id":"s1","description":"sd",
             "assets":[{"id":"a1","kind":"image","depends_on":["c1"],"prompt":"p"},
                       {"id":"a2","kind":"video","depends_on":["a1"],"prompt":"p","duration":10}]}]}]})
}

fn error_field(v: Value) -> String {
    Drama::from_value(v).unwrap_err().first_field().to_owned()
}

#[test]
fn invalid_ids_name_their_field() {
    let mut v = base();
    v["episodes"][0]["scenes"][0]["id"] = json!("s 1");
    assert_eq!(error_field(v), "episodes[0].scenes[0].id");
    let mut v = base();
    v["id"] = json!("");
    assert_eq!(error_field(v), "id");
    let mut v = base();
    v["characters"][0]["id"] = json!("x".repeat(129));
    assert_eq!(error_field(v), "characters[0].id");
}

#[test]
fn missing_required_fields_name_their_field() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("title");
    let e = Drama::from_value(v).unwrap_err();
    assert_eq!(e.first_field(), "title");
    assert!(e.to_string().contains("missing field `title`"), "{e}");
    let mut v = base();
    v["characters"][0].as_object_mut().unwrap().remove("name");
    assert_eq!(error_field(v), "characters[0].name");
    let mut v = base();
    v["episodes"][0]["scenes"][0]["description"] = json!("   ");
    assert_eq!(error_field(v), "episodes[0].scenes[0].description");
}

#[test]
fn unknown_asset_kinds_are_rejected() {
    let mut v = base();
    v["episodes"][0]["scenes"][0]["assets"][0]["kind"] = json!("hologram");
    assert_eq!(error_field(v), "episodes[0].scenes[0].assets[0].kind");
    let mut v = base();
    v["episodes"][0]["scenes"][0]["assets"][0]["kind"] = json!("audio");
    let d = Drama::from_value(v).unwrap();
    assert_eq!(d.episodes[0].scenes[0].assets[0].kind, AssetKind::Audio);
}

#[test]
fn video_durations_and_storyboard_references_are_bounded() {
    let mut v = base();
    v["episodes"][0]["scenes"][0]["assets"][1]["duration"] = json!(12);
    assert_eq!(error_field(v), "episodes[0].scenes[0].assets[1].duration");
    let mut v = base();
    v["episodes"][0]["scenes"][0]["assets"][0]["depends_on"] = json!(["a", "b", "c", "d"]);
    assert_eq!(error_field(v), "episodes[0].scenes[0].assets[0].depends_on");
    let mut v = base();
    v["episodes"][0]["scenes"][0]["assets"][1]["duration"] = json!(15);
    assert!(Drama::from_value(v).is_ok());
}

#[test]
fn duplicate_ids_within_a_drama_are_rejected() {
    let mut v = base();
    v["episodes"][0]["scenes"][0]["assets"][1]["id"] = json!("a1");
    let e = Drama::from_value(v).unwrap_err();
    assert_eq!(e.first_field(), "episodes[0].scenes[0].assets[1].id");
    assert!(e.to_string().contains("duplicate asset id"), "{e}");
    let mut v = base();
    let scene = v["episodes"][0]["scenes"][0].clone();
    v["episodes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"id":"e2","title":"t","description":"d","scenes":[scene]}));
    let e = Drama::from_value(v).unwrap_err();
    assert_eq!(e.first_field(), "episodes[1].scenes[0].id");
}

#[test]
fn every_violation_is_reported() {
    let mut v = base();
    v["title"] = json!("");
    v["premise"] = json!("");
    let e = Drama::from_value(v).unwrap_err();
    let fields: Vec<_> = e.errors.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["title", "premise"]);
}

#[test]
fn nul_characters_are_refused_wherever_they_are() {
    let mut v = base();
    v["episodes"][0]["scenes"][0]["description"] = json!("a\u{0}b");
    assert_eq!(error_field(v), "episodes[0].scenes[0].description");
    let mut v = base();
    v["metadata"] = json!({"k": ["ok", "bad\u{0}"]});
    assert_eq!(error_field(v), "metadata.k[1]");
}
