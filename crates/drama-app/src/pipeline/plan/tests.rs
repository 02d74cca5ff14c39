//! The planner's tests: layouts, selection by scope and staleness, expansions.

use drama_testkit::builders::drama as build;

use super::*;
use crate::pipeline::normalize::ensure_assets;
use crate::pipeline::spec::{MediaTask, class};
use drama_dal::EntityUrl;

fn normalized(chars: usize, eps: usize, scenes: usize) -> Drama {
    let mut d = build("d", chars, eps, scenes);
    ensure_assets(&mut d).unwrap();
    d
}

fn keys(p: &Planned) -> Vec<String> {
    p.nodes.iter().map(|n| n.key.clone()).collect()
}

/// The plan of the whole drama `d` before anything was made.
fn fresh_plan(d: &Drama) -> Planned {
    let (models, costs) = (Models::for_tests(), CostTable::default());
    Planner::new(d, &HashMap::new(), &models, &costs)
        .unwrap()
        .plan(&Scope::Drama, false)
        .unwrap()
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
            let sums: Vec<String> = task.references.iter().map(|r| format!("sum-{r}")).collect();
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
    let plan = fresh_plan(&normalized(2, 1, 2));
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

/// A drama as the old server left it: a client's image before the portrait it appended,
/// and a client's drama image before its cover.
fn with_marked_images_last() -> Drama {
    let mut d = build("d", 2, 1, 1);
    let image = |id: &str, prompt: &str, metadata: Value| {
        serde_json::from_value::<Asset>(serde_json::json!({
            "id": id, "kind": "image", "prompt": prompt, "url": format!("https://old/{id}.png"),
            "metadata": metadata,
        }))
        .unwrap()
    };
    d.characters[1].assets = vec![
        image("c1_sheet", "expression sheet", Value::Null),
        image(
            "c1_portrait_front_halfbody",
            "portrait",
            serde_json::json!({"type": "character_portrait"}),
        ),
    ];
    d.characters[1].url = Some("https://old/c1_portrait_front_halfbody.png".into());
    d.assets = vec![
        image("d_poster", "poster sketch", Value::Null),
        image(
            "d_cover",
            "cover",
            serde_json::json!({"type": "drama_cover"}),
        ),
    ];
    d.episodes[0].scenes[0].assets[0].depends_on = vec!["c1".into()];
    ensure_assets(&mut d).unwrap();
    d
}

#[test]
fn the_marked_portrait_and_cover_are_primary_not_the_first_images() {
    let d = with_marked_images_last();
    let c1 = d.character("c1").unwrap();
    assert_eq!(c1.assets.len(), 3, "no second portrait is added");
    assert_eq!(c1.assets[2].depends_on, ["c1_portrait_front_halfbody"]);
    assert_eq!(d.assets.len(), 2, "no second cover is added");

    let plan = fresh_plan(&d);
    let node = |k: &str| {
        let n = plan.nodes.iter().find(|n| n.key == k);
        n.unwrap_or_else(|| panic!("no {k} in {:?}", keys(&plan)))
    };
    let media = |k: &str| serde_json::from_value::<MediaTask>(node(k).payload.clone()).unwrap();

    // The portrait is made from its prompt and becomes the character's face ...
    let portrait = media("portrait:c1_portrait_front_halfbody");
    assert_eq!(portrait.prompt, "portrait");
    assert!(portrait.references.is_empty());
    assert_eq!(
        portrait.target,
        EntityUrl::Character(drama_domain::CharacterId::parse("c1").unwrap())
    );
    assert!(
        node("portrait:c1_portrait_front_halfbody")
            .dependencies
            .is_empty()
    );
    // ... the sheet is made from it and changes nothing else.
    let sheet = media("portrait:c1_sheet");
    assert_eq!(sheet.references, ["c1_portrait_front_halfbody"]);
    assert_eq!(sheet.target, EntityUrl::None);
    assert_eq!(
        node("portrait:c1_sheet").dependencies,
        ["portrait:c1_portrait_front_halfbody"]
    );
    // What shows the character is made from the portrait.
    for shows in ["audition:c1_audition_video", "storyboard:e0-s0-img"] {
        assert_eq!(
            node(shows).dependencies,
            ["portrait:c1_portrait_front_halfbody"],
            "{shows}"
        );
    }
    assert_eq!(
        media("storyboard:e0-s0-img").references,
        ["c1_portrait_front_halfbody"]
    );
    let cover = media("cover:d_cover");
    assert_eq!(cover.prompt, "cover");
    assert_eq!(cover.target, EntityUrl::Drama);
    assert!(
        cover
            .references
            .contains(&"c1_portrait_front_halfbody".to_owned()),
        "{:?}",
        cover.references
    );
    assert!(
        !keys(&plan).iter().any(|k| k.contains("d_poster")),
        "{:?}",
        keys(&plan)
    );
}

#[test]
fn nothing_changed_plans_nothing_and_an_edit_reruns_its_part() {
    let models = Models::for_tests();
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
    let models = Models::for_tests();
    let costs = CostTable::default();
    let mut d = with_urls(normalized(2, 2, 1));
    let objects = objects_for(&d, &models);
    // The portrait of c0 is gone: an episode's storyboards need it first.
    d.characters[0].assets[0].url = None;
    let planner = Planner::new(&d, &objects, &models, &costs).unwrap();
    let planned = |scope: Scope, force: bool| keys(&planner.plan(&scope, force).unwrap());
    assert_eq!(
        planned(Scope::Episode(EpisodeId::parse("e1").unwrap()), false),
        [
            "character:c0",
            "episode:e1",
            "portrait:c0_portrait_front_halfbody",
            "storyboard:e1-s0-img",
            "clip:e1-s0-vid",
            "stitch:e1_episode_video"
        ]
    );
    assert_eq!(
        planned(Scope::Asset(AssetId::parse("e0-s0-vid").unwrap()), true),
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
    let models = Models::for_tests();
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
