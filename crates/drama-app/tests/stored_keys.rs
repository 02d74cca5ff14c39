//! Stored keys on PostgreSQL: a key of another user that got into a row behind the server's
//! back (triggers off, as a restore or a hand edit could) is never read by a handler, and the
//! sweeper never deletes another owner's object.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use drama_ai::AiProviders;
use drama_app::{App, Caller};
use drama_assets::{AssetStore as _, ObjectKey};
use drama_dal::{AssetObject, DramaRepository as _, OrphanRepository as _};
use drama_domain::{Drama, DramaId, EpisodeId, UserId};
use drama_jobs::{JobState, Worker, WorkerConfig, WorkerHandle};
use drama_postgres::PgStore;
use drama_postgres::jobs::PgJobStore;
use drama_testkit::pg::ScratchDb;
use support::{migrated, pg_ports, user_with};

mod support;

struct World {
    db: ScratchDb,
    pool: sqlx::PgPool,
    store: Arc<PgStore>,
    jobs: Arc<PgJobStore>,
    assets: Arc<drama_assets::MemoryStore>,
    app: App,
    alice: UserId,
    bob: UserId,
}

async fn world(name: &str) -> World {
    let db = ScratchDb::create(name).await;
    let pool = migrated(&db, 8, "").await;
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let (ports, store, jobs) = pg_ports(&pool, assets.clone(), AiProviders::offline(7));
    let app = App::new(ports);
    let mut users = Vec::new();
    for _ in 0..2 {
        users.push(user_with(&*store, 1000).await);
    }
    World {
        db,
        pool,
        store,
        jobs,
        assets,
        app,
        alice: users[0],
        bob: users[1],
    }
}

impl World {
    /// Alice's drama `alices`: one character, one episode of one scene.
    async fn alices_drama(&self) -> Drama {
        let d = drama_testkit::builders::drama("alices", 1, 1, 1);
        self.store.create(self.alice, &d).await.unwrap();
        d
    }

    /// A worker on the job store, polling every 20 ms.
    async fn start_worker(&self) -> WorkerHandle<PgJobStore> {
        let config = WorkerConfig {
            poll_interval: Duration::from_millis(20),
            ..WorkerConfig::default()
        };
        Worker::start(self.jobs.clone(), self.app.registry(), config)
            .await
            .unwrap()
    }

    /// The stored URL of the first episode of `owner`'s drama `id`.
    async fn first_episode_url(&self, owner: UserId, id: &DramaId) -> Option<String> {
        let stored = self.store.get_complete(owner, id).await.unwrap();
        stored.drama.episodes[0].url.clone()
    }

    /// Makes every recorded orphan two hours old, old enough for the sweeper.
    async fn age_orphans(&self) {
        sqlx::query("update public.orphaned_objects set recorded_at = now() - interval '2 hours'")
            .execute(&self.pool)
            .await
            .unwrap();
    }

    /// Closes the pool and drops the scratch database.
    async fn drop_database(self) {
        self.pool.close().await;
        self.db.drop_it().await;
    }
}

/// Stores `bytes` (of no particular type) under `key` and returns its record.
async fn put(w: &World, key: &str, bytes: &'static [u8]) -> AssetObject {
    let mime = "application/octet-stream";
    let object = ObjectKey::parse(key).unwrap();
    w.assets
        .put_bytes(&object, Bytes::from_static(bytes), mime)
        .await
        .unwrap();
    AssetObject {
        storage_key: key.to_owned(),
        content_type: mime.to_owned(),
        size_bytes: bytes.len() as i64,
        checksum: None,
        input_hash: None,
        usage: None,
    }
}

/// Points Alice's asset at `key` the way only someone bypassing the triggers could.
async fn behind_the_servers_back(w: &World, asset: &str, key: &str) {
    let mut conn = w.pool.acquire().await.unwrap();
    sqlx::query("set session_replication_role = replica")
        .execute(&mut *conn)
        .await
        .unwrap();
    let changed = sqlx::query(
        "update public.assets set storage_key = $1 where drama_id = 'alices' and id = $2",
    )
    .bind(key)
    .bind(asset)
    .execute(&mut *conn)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(changed, 1);
    // A new version, so that no cache keeps serving the old row.
    sqlx::query("update public.dramas set version = version + 1 where id = 'alices'")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("set session_replication_role = origin")
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// Waits for a run to settle and answers the error of its first failed node, if any.
async fn settle(w: &World, caller: &Caller, run: drama_jobs::JobId) -> Option<String> {
    for _ in 0..3000 {
        let tree = w.app.run_tree(caller, run).await.unwrap();
        if tree.nodes[0].state.is_settled() {
            return tree
                .nodes
                .iter()
                .filter(|n| n.state == JobState::Failed)
                .find_map(|n| n.error.clone());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {run} did not settle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_key_slipped_into_a_row_is_never_read() {
    let w = world("stored_keys_read").await;
    let (alice, bob) = (w.alice, w.bob);
    let d = w.alices_drama().await;
    let worker = w.start_worker().await;
    let caller = Caller::user(alice);
    // Everything generated for real, so that only the stitch is left to redo.
    let whole = w
        .app
        .generate(&caller, &d.id, drama_app::pipeline::Scope::Drama, false)
        .await
        .unwrap();
    assert_eq!(settle(&w, &caller, whole.job_id).await, None);
    let stitched = w.first_episode_url(alice, &d.id).await;
    assert!(stitched.is_some());

    let bobs = format!("{bob}/bobs/uploads/secret.bin");
    put(&w, &bobs, b"bob's secret clip").await;
    behind_the_servers_back(&w, "e0-s0-vid", &bobs).await;
    let again = w
        .app
        .stitch_episode(&caller, &d.id, &EpisodeId::parse("e0").unwrap())
        .await
        .unwrap();
    let failure = settle(&w, &caller, again.job_id)
        .await
        .expect("the stitch fails");
    assert!(failure.contains("does not belong"), "{failure}");
    assert!(failure.contains(&bobs), "{failure}");
    let episode = w.first_episode_url(alice, &d.id).await;
    assert_eq!(episode, stitched, "nothing was stitched from Bob's clip");
    worker.shutdown().await;
    w.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_deletes_only_its_owners_unreferenced_keys() {
    let w = world("stored_keys_sweep").await;
    let (alice, bob) = (w.alice, w.bob);
    let d = w.alices_drama().await;
    let bobs = format!("{bob}/bobs/uploads/b.bin");
    let bobs_library = format!("{bob}/~p/uploads/b.bin");
    let alices_library = format!("{alice}/~p/uploads/a.bin");
    let alices_orphan = format!("{alice}/alices/uploads/gone.bin");
    let alices_reference = format!("{alice}/alices/uploads/r.bin");
    for key in [
        &bobs,
        &bobs_library,
        &alices_library,
        &alices_orphan,
        &alices_reference,
    ] {
        put(&w, key, b"bytes").await;
    }
    // Recorded as Alice's: Bob's objects, her library, an orphan, a reference a job names.
    w.store
        .record_orphans(
            alice,
            &d.id,
            &[
                bobs.clone(),
                bobs_library.clone(),
                alices_library.clone(),
                alices_orphan.clone(),
                alices_reference.clone(),
            ],
            "test",
        )
        .await
        .unwrap();
    w.age_orphans().await;
    use drama_jobs::JobStore as _;
    w.jobs
        .submit(
            &drama_jobs::Graph::new(drama_jobs::RunSpec::new("create_drama", alice.0)).with(
                drama_jobs::NodeSpec::task(
                    "write",
                    "write_drama",
                    serde_json::json!({"drama": "x", "premise": "p", "reference_key": alices_reference}),
                ),
            ),
        )
        .await
        .unwrap();

    let deleted = w.app.sweep_orphans(100).await;
    assert_eq!(deleted, 1);
    let exists = |key: String| {
        let assets = w.assets.clone();
        async move { assets.head(&ObjectKey::parse(key).unwrap()).await.is_ok() }
    };
    assert!(!exists(alices_orphan.clone()).await, "her orphan is gone");
    for key in [&bobs, &bobs_library, &alices_library, &alices_reference] {
        assert!(exists(key.clone()).await, "{key} survives");
    }
    // What was not hers to delete stays recorded for an operator to look at.
    let left: i64 = sqlx::query_scalar("select count(*) from public.orphaned_objects")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(left, 4);
    w.drop_database().await;
}

/// A 1×1 PNG.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// A premise's reference image is the written drama's to keep; the image of a run that never
/// wrote its drama (cancelled) stays recorded as an orphan, and once the run is gone the
/// sweeper deletes it and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_image_is_kept_by_its_drama_and_swept_after_a_run_that_wrote_none() {
    use drama_app::pipeline::{PremiseRequest, ReferenceUpload};
    use drama_jobs::JobStore as _;
    let w = world("stored_keys_reference").await;
    let alice = Caller::user(w.alice);
    let premise = |id: &str| PremiseRequest {
        premise: "A lighthouse keeper finds a map.".into(),
        id: Some(id.into()),
        model: None,
        reference: Some(ReferenceUpload {
            bytes: Bytes::from_static(PNG),
            content_type: Some("image/png".into()),
        }),
    };
    let references = |id: &str| format!("{}/{id}/references/", w.alice);
    // No worker yet: this run is cancelled before it writes anything.
    let dropped = w
        .app
        .create_from_premise(&alice, premise("dropped"))
        .await
        .unwrap();
    w.app.cancel_job(&alice, dropped.job_id).await.unwrap();
    let worker = w.start_worker().await;
    let written = w
        .app
        .create_from_premise(&alice, premise("kept"))
        .await
        .unwrap();
    assert_eq!(settle(&w, &alice, written.job_id).await, None);
    worker.shutdown().await;
    let recorded: Vec<String> =
        sqlx::query_scalar("select storage_key from public.orphaned_objects")
            .fetch_all(&w.pool)
            .await
            .unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(
        recorded[0].starts_with(&references("dropped")),
        "{recorded:?}"
    );

    // Once the cancelled run is pruned (its refund paid), its image is swept; the drama's stays.
    w.app.settle_refunds().await;
    let later = chrono::Utc::now() + chrono::Duration::seconds(1);
    assert_eq!(w.jobs.prune(later, 10).await.unwrap().runs, 2);
    w.age_orphans().await;
    assert_eq!(w.app.sweep_orphans(100).await, 1);
    let left: Vec<String> = w
        .assets
        .list(&drama_assets::keys::user_prefix(w.alice))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.into_inner())
        .filter(|k| k.contains("/references/"))
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(&references("kept")), "{left:?}");
    w.drop_database().await;
}

/// The first bytes of a photo as an iPhone takes it: an ISO base media file of brand `heic`.
const HEIC: &[u8] = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic\0\0\0\x0dmeta\0\0\0\0\0";

/// A reference image in a format the image models do not read (HEIC, declared as such, as
/// another image type, or sent as bytes of no declared type) does not refuse the premise: the drama is written without
/// it, its metadata saying why, and nothing of it is stored or left to sweep.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_reference_image_is_dropped_and_the_drama_says_why() {
    use drama_app::pipeline::{PremiseRequest, ReferenceUpload};
    let w = world("stored_keys_heic").await;
    let alice = Caller::user(w.alice);
    let worker = w.start_worker().await;
    for (id, declared) in [
        ("heic_declared", Some("image/heic")),
        ("heic_sniffed", Some("application/octet-stream")),
        ("heic_untyped", None),
        ("heic_as_jpeg", Some("image/jpeg")),
    ] {
        let started = w
            .app
            .create_from_premise(
                &alice,
                PremiseRequest {
                    premise: "A ferry captain's last season.".into(),
                    id: Some(id.into()),
                    model: None,
                    reference: Some(ReferenceUpload {
                        bytes: Bytes::from_static(HEIC),
                        content_type: declared.map(str::to_owned),
                    }),
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(settle(&w, &alice, started.job_id).await, None, "{id}");
        let stored = w
            .store
            .get_complete(w.alice, &id.parse().unwrap())
            .await
            .unwrap();
        let metadata = stored.drama.metadata.unwrap_or_default();
        let why = metadata["reference_image_dropped"]
            .as_str()
            .unwrap_or_default();
        assert!(why.contains("HEIC"), "{id}: {metadata}");
        assert!(
            metadata.get("reference_image_url").is_none(),
            "{id}: {metadata}"
        );
    }
    worker.shutdown().await;
    let kept: Vec<String> = w
        .assets
        .list(&drama_assets::keys::user_prefix(w.alice))
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key.into_inner())
        .filter(|k| k.contains("/references/"))
        .collect();
    assert!(kept.is_empty(), "{kept:?}");
    let orphans: i64 = sqlx::query_scalar("select count(*) from public.orphaned_objects")
        .fetch_one(&w.pool)
        .await
        .unwrap();
    assert_eq!(orphans, 0);

    // Bytes that are not an image at all, or not what their declared type says, are still
    // refused, naming the form's field.
    for (declared, bytes) in [
        (Some("image/png"), &b"plain words, not a picture"[..]),
        (None, &b"plain words, not a picture"[..]),
        (Some("application/pdf"), &b"%PDF-1.7"[..]),
    ] {
        let refused = w
            .app
            .create_from_premise(
                &alice,
                PremiseRequest {
                    premise: "A ferry captain's last season.".into(),
                    id: Some("refused".into()),
                    model: None,
                    reference: Some(ReferenceUpload {
                        bytes: Bytes::from_static(bytes),
                        content_type: declared.map(str::to_owned),
                    }),
                },
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, drama_app::AppError::Invalid(e) if e.first_field() == "reference_image"),
            "{declared:?}: {refused}"
        );
    }
    w.drop_database().await;
}
