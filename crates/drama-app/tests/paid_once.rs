//! A provider is called once per task: a completing transaction that fails after the upload
//! (a trigger made by the test raises a serialization failure, 40001) is committed again with
//! the same object, and a task whose commits all failed commits its checkpointed object on its
//! next attempt — the offline provider's call counter equals the number of media tasks.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use drama_ai::{AiProviders, OfflineProvider};
use drama_app::pipeline::Scope;
use drama_app::pipeline::spec::kind;
use drama_app::{App, Caller};
use drama_dal::DramaRepository as _;
use drama_domain::JobStatus;
use drama_jobs::{JobView, Worker, WorkerHandle};
use drama_postgres::jobs::PgJobStore;
use drama_testkit::pg::ScratchDb;
use support::{failing_trigger, firings, migrated, pg_ports, user_with, worker_config};

mod support;
use sqlx::PgPool;

const MEDIA: [&str; 5] = [
    kind::PORTRAIT,
    kind::AUDITION,
    kind::STORYBOARD,
    kind::CLIP,
    kind::COVER,
];

struct World {
    app: App,
    caller: Caller,
    offline: Arc<OfflineProvider>,
    worker: WorkerHandle<PgJobStore>,
    pool: PgPool,
    db: ScratchDb,
}

/// A migrated scratch database, `install` run on it, a worker, and a user owning drama `d`;
/// `patience` bounds how long a step after a paid call keeps trying (the app's default when
/// `None`).
async fn world(install: &str, patience: Option<Duration>) -> World {
    let db = ScratchDb::create("paid_once").await;
    let pool = migrated(&db, 16, install).await;
    let ai = AiProviders::offline(7);
    let offline = ai.offline_provider();
    let assets = Arc::new(drama_assets::MemoryStore::default());
    let (ports, pg, jobs) = pg_ports(&pool, assets, ai);
    let app = match patience {
        Some(patience) => App::new(ports).with_paid_step_patience(patience),
        None => App::new(ports),
    };
    let worker = Worker::start(jobs, app.registry(), worker_config())
        .await
        .unwrap();
    let user = user_with(&*pg, 100_000).await;
    pg.create(user, &drama_testkit::builders::drama("d", 2, 1, 2))
        .await
        .unwrap();
    World {
        app,
        caller: Caller::user(user),
        offline,
        worker,
        pool,
        db,
    }
}

impl World {
    /// Generates the whole drama and returns the run's media tasks once it settled.
    async fn generate(&self) -> Vec<JobView> {
        let id = drama_domain::DramaId::parse("d").unwrap();
        let run = self
            .app
            .generate(&self.caller, &id, Scope::Drama, false)
            .await
            .unwrap();
        let mut status = None;
        for _ in 0..3000 {
            let view = self.app.job(&self.caller, run.job_id).await.unwrap();
            if view.state.is_settled() {
                status = Some(view.coarse_status());
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tree = self.app.run_tree(&self.caller, run.job_id).await.unwrap();
        let errors: Vec<_> = tree
            .nodes
            .iter()
            .filter_map(|n| n.error.as_ref().map(|e| (n.key.clone(), e.clone())))
            .collect();
        assert_eq!(
            status,
            Some(JobStatus::Completed),
            "the run settled completed; errors: {errors:?}"
        );
        tree.nodes
            .into_iter()
            .filter(|n| MEDIA.contains(&n.kind.as_str()))
            .collect()
    }

    /// One provider call per media task, and every task done in its first attempt.
    fn assert_paid_once_in_one_attempt(&self, media: &[JobView], why: &str) {
        assert_eq!(
            self.offline.calls().media(),
            media.len() as u64,
            "one provider call per media task"
        );
        for task in media {
            assert_eq!(task.attempts, 1, "{}: {why}", task.key);
        }
    }

    /// How many asset writes the failing trigger saw (failed ones included).
    async fn writes_seen(&self) -> i64 {
        firings(&self.pool, "commit").await
    }

    async fn stop(self) {
        let _report = self.worker.shutdown().await;
        self.pool.close().await;
        self.db.drop_it().await;
    }
}

/// A trigger on the asset write of a completion that raises 40001 for the first `failures`
/// writes of assets whose id matches `ids` (a LIKE pattern); its sequence counts every write
/// it saw and survives the rollback of the failed transactions.
fn failing_commit(failures: u32, ids: &str) -> String {
    failing_trigger(
        "commit",
        failures,
        "before update of storage_key on public.assets",
        &format!("new.storage_key is distinct from old.storage_key and new.id like '{ids}'"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_that_fails_after_the_upload_is_retried_without_calling_the_provider() {
    let w = world(&failing_commit(3, "%"), None).await;
    let media = w.generate().await;
    assert!(!media.is_empty());
    assert!(
        w.writes_seen().await > 3,
        "three commits failed, later ones went through"
    );
    w.assert_paid_once_in_one_attempt(&media, "retried as a commit, not an attempt");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_task_whose_commits_all_failed_commits_its_checkpointed_object_next_attempt() {
    // The first attempt of one storyboard tries its commit once (no patience) and it fails.
    let w = world(&failing_commit(1, "e0-s0-img"), Some(Duration::ZERO)).await;
    let media = w.generate().await;
    assert_eq!(
        w.writes_seen().await,
        2,
        "the first attempt's failed commit, then the second attempt's that held"
    );
    let storyboard = media
        .iter()
        .find(|t| t.payload["asset"] == "e0-s0-img")
        .expect("the storyboard task");
    assert_eq!(storyboard.attempts, 2, "its first attempt gave up");
    assert_eq!(
        w.offline.calls().media(),
        media.len() as u64,
        "the second attempt did not call the provider"
    );
    w.stop().await;
}

/// The steps between a paid call and its checkpoint — recording the object's key before the
/// upload, saving a video's provider task id — fail the first times they run (40001, raised by
/// triggers whose sequences survive the rollbacks); they are done again in place, so no task
/// makes a second attempt and no provider call is repeated.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_between_the_paid_call_and_its_checkpoint_do_not_call_the_provider_again() {
    let w = world(
        "create sequence test_orphans_failures;
         create sequence test_jobs_failures;
         create function test_fail_step() returns trigger language plpgsql as $$
         begin
           if nextval(format('test_%s_failures', case tg_table_name when 'jobs' then 'jobs'
                                                  else 'orphans' end)) <= 8 then
             raise exception 'injected failure of a step after the paid call'
               using errcode = 'serialization_failure';
           end if;
           return new;
         end $$;
         create trigger test_fail_orphan before insert on public.orphaned_objects
           for each row execute function test_fail_step();
         create trigger test_fail_video_checkpoint before update of checkpoint on public.jobs
           for each row when (new.checkpoint ? 'task_id' and new.checkpoint->>'task_id' is not null)
           execute function test_fail_step();",
        None,
    )
    .await;
    let media = w.generate().await;
    assert!(!media.is_empty());
    for step in ["orphans", "jobs"] {
        let seen: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select last_value from test_{step}_failures"
        )))
        .fetch_one(&w.pool)
        .await
        .unwrap();
        assert!(
            seen > 8,
            "{step}: eight failures in a row (seconds of them), then later ones held ({seen})"
        );
    }
    w.assert_paid_once_in_one_attempt(&media, "the step was retried in place");
    w.stop().await;
}
