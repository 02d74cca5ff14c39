//! Idempotency keys across an upgrade: an earlier build named an audition, portrait, cover or
//! stitch in a keyed run's fingerprint by the asset it resolved to (`Asset(<id>)`). A repeat
//! of that request with its key replays the run, and charges nothing, instead of refusing the
//! key as used for a different request (and the client paying again under a new one).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use drama_ai::AiProviders;
use drama_app::pipeline::normalize::ensure_assets;
use drama_app::pipeline::spec::kind;
use drama_app::pipeline::{GenerateOptions, Scope, Target};
use drama_app::{App, AppError, Caller, RequestKey};
use drama_dal::{DramaRepository as _, UserRepository as _};
use drama_domain::{AssetKind, CharacterId, Drama, DramaId, EpisodeId};
use drama_jobs::{Graph, JobStore as _, NodeSpec, RunSpec};
use drama_testkit::pg::ScratchDb;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use support::{migrated, pg_ports, user_with};

mod support;

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The asset the earlier build resolved `target` to in `drama`.
fn asset_of(drama: &Drama, target: &Target) -> String {
    let asset = match target {
        Target::Audition(c) => drama.character(c.as_str()).unwrap().audition(),
        Target::Portrait(c) => drama.character(c.as_str()).unwrap().portrait(),
        Target::Cover => drama.cover(),
        Target::Stitch(e) => drama
            .episode(e.as_str())
            .unwrap()
            .assets
            .iter()
            .find(|a| a.kind == AssetKind::Video),
        _ => None,
    };
    format!("{:?}", Scope::Asset(asset.unwrap().id.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_the_earlier_build_recorded_for_a_part_replays_its_run() {
    let db = ScratchDb::create("former_keys").await;
    let pool = migrated(&db, 8, "").await;
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let (ports, pg, jobs) = pg_ports(&pool, assets, AiProviders::offline(7));
    let app = App::new(ports).with_offline_pricing(true);
    let user = user_with(&*pg, 100_000).await;
    // The drama as the earlier build left it: its generation targets added and saved.
    let mut drama = drama_testkit::builders::drama("d", 3, 1, 2);
    ensure_assets(&mut drama).unwrap();
    pg.create(user, &drama).await.unwrap();
    let id = DramaId::parse("d").unwrap();
    let options = GenerateOptions {
        force: true,
        budget: None,
    };
    let c = |s: &str| CharacterId::parse(s).unwrap();
    let targets = [
        Target::Audition(c("c0")),
        Target::Portrait(c("c1")),
        Target::Cover,
        Target::Stitch(EpisodeId::parse("e0").unwrap()),
    ];

    let mut wrong = Vec::new();
    for (n, target) in targets.iter().enumerate() {
        // The keyed run, as the earlier build wrote it (and charged for it).
        let key = format!("former-{n}");
        let scope = asset_of(&drama, target);
        let inputs = json!({"dramaId": id, "scope": scope, "force": true, "budget": null});
        let fingerprint = sha256(format!("{}\0{inputs}", kind::GENERATE).as_bytes());
        let mut payload = inputs.clone();
        payload["requestFingerprint"] = json!(fingerprint);
        let run = jobs
            .submit(
                &Graph::new(
                    RunSpec::new(kind::GENERATE, user.0)
                        .subject("d")
                        .idempotency_key(sha256(key.as_bytes()))
                        .payload(payload),
                )
                .with(NodeSpec::task("t", kind::PORTRAIT, json!({}))),
            )
            .await
            .unwrap();
        let tokens = pg.get_user(user).await.unwrap().tokens;

        let mut caller = Caller::user(user);
        caller.request = Some(RequestKey::parse(&key).unwrap());
        match app
            .generate_target(&caller, &id, target.clone(), options)
            .await
        {
            Ok(started) if started.job_id == run.run_id && started.replayed => {}
            other => wrong.push(format!("{target:?}: {other:?}")),
        }
        assert_eq!(
            pg.get_user(user).await.unwrap().tokens,
            tokens,
            "{target:?}"
        );
    }
    assert!(wrong.is_empty(), "{wrong:#?}");

    // The key of one part still names only that part: another part under it is refused.
    let mut caller = Caller::user(user);
    caller.request = Some(RequestKey::parse("former-0").unwrap());
    let other = app
        .generate_target(&caller, &id, Target::Audition(c("c2")), options)
        .await;
    assert!(matches!(other, Err(AppError::Invalid(_))), "{other:?}");
}
