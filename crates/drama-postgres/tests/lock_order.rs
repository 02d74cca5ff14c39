//! The lock order of the generation writes (`generation.rs`): a completing transaction takes
//! the run's root row before the drama, the drama's entity rows and the owner's balance. Each
//! test holds the run's lock itself, lets a completion queue behind it, and proves that the
//! completion holds nothing else while it waits — so it cannot be one half of a deadlock with
//! a transaction that holds the run and wants the drama (scene writing, edits, the refund loop).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Duration;

use drama_dal::{
    AssetObject, DramaRepository, EntityUrl, GeneratedAsset, GenerationStore, NewUser,
    ScriptCompletion, UserRepository,
};
use drama_domain::{AssetId, DramaId, EpisodeId, SceneId, UserId};
use drama_jobs::{
    ClaimRequest, ClaimedJob, Expansion, Graph, JobStore, NodeSpec, RunSpec, WorkerId,
    WorkerRegistration,
};
use drama_postgres::PgStore;
use drama_postgres::jobs::PgJobStore;
use serde_json::json;
use sqlx::{PgConnection, PgPool};

struct Setup {
    store: PgStore,
    owner: UserId,
    drama: DramaId,
    job: ClaimedJob,
}

/// A user with a drama and one claimed task of a run of theirs.
async fn setup(pool: &PgPool) -> Setup {
    let store = PgStore::new(pool.clone());
    let owner = UserId::random();
    let mut user = NewUser::new(owner);
    user.tokens = 1000;
    store.create_user(&user).await.unwrap();
    let drama = drama_testkit::builders::drama("locks", 2, 1, 2);
    store.create(owner, &drama).await.unwrap();
    let jobs = PgJobStore::new(pool.clone());
    let worker = WorkerId::new();
    jobs.register_worker(&WorkerRegistration {
        id: worker,
        name: "test".into(),
        kinds: vec!["k".into()],
        ttl: Duration::from_secs(60),
    })
    .await
    .unwrap();
    let graph = Graph::new(RunSpec::new("generate", owner.0))
        .with(NodeSpec::task("a", "k", json!({})))
        .with(NodeSpec::task("b", "z", json!({})).after(["a"]));
    jobs.submit(&graph).await.unwrap();
    let job = jobs
        .claim(&ClaimRequest {
            worker,
            kinds: vec!["k".into()],
            limit: 1,
        })
        .await
        .unwrap()
        .remove(0);
    Setup {
        store,
        owner,
        drama: drama.id,
        job,
    }
}

/// Holds the run's root row in a transaction of its own.
async fn hold_run(pool: &PgPool, job: &ClaimedJob) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("select 1 from public.job_groups where id = $1 for no key update")
        .bind(job.fence.run_id.0)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

/// Waits until another session waits for a lock on `job_groups` (the completion queued behind
/// the held run).
async fn until_queued_on_the_run(pool: &PgPool) {
    for _ in 0..2000 {
        let waiting: i64 = sqlx::query_scalar(
            "select count(*) from pg_stat_activity \
             where datname = current_database() and wait_event_type = 'Lock' \
               and query like '%job_groups%'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the completion never waited for the run's lock");
}

/// Whether `sql` (a `select … for no key update nowait`) gets its lock at once.
async fn lockable(conn: &mut PgConnection, sql: &str, bind: &str) -> bool {
    sqlx::query("savepoint probe")
        .execute(&mut *conn)
        .await
        .unwrap();
    let got = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(bind)
        .execute(&mut *conn)
        .await;
    match got {
        Ok(_) => {
            sqlx::query("release savepoint probe")
                .execute(&mut *conn)
                .await
                .unwrap();
            true
        }
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("55P03") => {
            sqlx::query("rollback to savepoint probe")
                .execute(&mut *conn)
                .await
                .unwrap();
            false
        }
        Err(e) => panic!("{e}"),
    }
}

/// Every row a completion of `s` could lock after the run is still free.
/// `asset`: the asset row the operation writes, when it writes one (a scene expansion writes
/// new scenes into an emptied episode, so it has no asset row to hold yet).
async fn nothing_else_is_held(pool: &PgPool, s: &Setup, asset: Option<&str>) {
    let mut probe = pool.begin().await.unwrap();
    assert!(
        lockable(
            &mut probe,
            "select 1 from public.dramas where id = $1 for no key update nowait",
            s.drama.as_str(),
        )
        .await,
        "the drama row was locked before the run"
    );
    if let Some(asset) = asset {
        let exists: bool = sqlx::query_scalar(
            "select exists (select 1 from public.assets where drama_id = 'locks' and id = $1)",
        )
        .bind(asset)
        .fetch_one(&mut *probe)
        .await
        .unwrap();
        assert!(exists, "the probed asset row {asset} exists");
        assert!(
            lockable(
                &mut probe,
                "select 1 from public.assets where drama_id = 'locks' and id = $1 \
                 for no key update nowait",
                asset,
            )
            .await,
            "the asset row was locked before the run"
        );
    }
    assert!(
        lockable(
            &mut probe,
            "select 1 from public.users where id = $1::uuid for no key update nowait",
            &s.owner.to_string(),
        )
        .await,
        "the owner's balance was locked before the run"
    );
    probe.rollback().await.unwrap();
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn an_asset_completion_locks_the_run_before_the_drama_and_its_rows(pool: PgPool) {
    let s = setup(&pool).await;
    let holder = hold_run(&pool, &s.job).await;
    let key = format!("{}/locks/storyboards/e0-s0-img-abc.png", s.owner);
    let generated = GeneratedAsset {
        asset_id: AssetId::parse("e0-s0-img").unwrap(),
        url: format!("https://cdn.example/{key}"),
        object: AssetObject {
            storage_key: key,
            content_type: "image/png".into(),
            size_bytes: 3,
            checksum: Some("sha256:abc".into()),
            input_hash: Some("h".into()),
            usage: None,
        },
        entity_url: EntityUrl::SceneImage(SceneId::parse("e0-s0").unwrap()),
    };
    let completion = {
        let (store, fence, owner, drama) = (s.store.clone(), s.job.fence, s.owner, s.drama.clone());
        tokio::spawn(async move {
            store
                .complete_asset(&fence, owner, &drama, &generated, json!({}))
                .await
        })
    };
    until_queued_on_the_run(&pool).await;
    nothing_else_is_held(&pool, &s, Some("e0-s0-img")).await;
    holder.rollback().await.unwrap();
    completion.await.unwrap().unwrap();
    let stored = s.store.get_complete(s.owner, &s.drama).await.unwrap();
    assert!(stored.drama.episodes[0].scenes[0].image_url.is_some());
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_scene_expansion_locks_the_run_before_the_drama_and_the_balance(pool: PgPool) {
    let s = setup(&pool).await;
    // The episode's scenes are written anew: an episode that has scenes keeps them.
    let stored = s.store.get_complete(s.owner, &s.drama).await.unwrap();
    let scenes = stored.drama.episodes[0].scenes.clone();
    let mut emptied = stored.drama.clone();
    emptied.episodes[0].scenes.clear();
    s.store
        .save_complete(s.owner, &emptied, Some(stored.version))
        .await
        .unwrap();
    let holder = hold_run(&pool, &s.job).await;
    let expansion = Expansion::new().with(NodeSpec::task("storyboard", "k", json!({})));
    let completion = {
        let (store, fence, owner, drama) = (s.store.clone(), s.job.fence, s.owner, s.drama.clone());
        tokio::spawn(async move {
            store
                .complete_scenes(
                    &fence,
                    owner,
                    &drama,
                    &EpisodeId::parse("e0").unwrap(),
                    &scenes,
                    ScriptCompletion {
                        usage_price: None,
                        expansion,
                        expansion_cost: 5,
                        result: json!({}),
                        kept_objects: Vec::new(),
                    },
                )
                .await
        })
    };
    until_queued_on_the_run(&pool).await;
    nothing_else_is_held(&pool, &s, None).await;
    holder.rollback().await.unwrap();
    assert!(completion.await.unwrap().unwrap(), "the expansion was paid");
    let user = s.store.get_user(s.owner).await.unwrap();
    assert_eq!(user.tokens, 995);
}
