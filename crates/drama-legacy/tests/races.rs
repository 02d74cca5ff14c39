//! Two imports of the same drama at once (a second `import-r2`, or `migrate --adopt-legacy`
//! and `import-r2` together) on a real PostgreSQL: the other import's create lands between
//! this import's look at the id (free) and its own create.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};

use common::{TestS3, drama_key, drama_report, fixture_as, import, options, repos};
use drama_dal::legacy::{
    DramaState, ImportRecord, ImportWrite, LegacyImport, LegacyImportRepository, RecordedImport,
};
use drama_dal::{NewUser, RepoError};
use drama_domain::{DramaId, UserId};
use drama_legacy::{Outcome, ReasonCode, Repositories};
use drama_postgres::PgStore;
use sqlx::PgPool;

/// The real store, with another import of the same drama committed (once) right before this
/// import's create: the interleaving of two runs, made deterministic.
struct Raced {
    store: Arc<PgStore>,
    /// The owner the other import creates the drama for.
    rival: Mutex<Option<UserId>>,
}

#[async_trait::async_trait]
impl LegacyImportRepository for Raced {
    async fn recorded_imports(
        &self,
        source_prefix: &str,
    ) -> Result<Vec<RecordedImport>, RepoError> {
        self.store.recorded_imports(source_prefix).await
    }

    async fn drama_state(&self, id: &DramaId) -> Result<Option<DramaState>, RepoError> {
        self.store.drama_state(id).await
    }

    async fn apply_import(&self, import: &LegacyImport) -> Result<ImportRecord, RepoError> {
        let rival = self.rival.lock().unwrap().take();
        if let (Some(rival), ImportWrite::Create { .. }) = (rival, &import.write) {
            // The other run: the same drama from the old tables, committed first.
            let mut other = import.clone();
            other.owner = rival;
            other.source_key = format!("db:legacy/dramas/{}", import.drama.id);
            self.store.apply_import(&other).await.unwrap();
        }
        self.store.apply_import(import).await
    }

    async fn drama_owners(&self) -> Result<Vec<UserId>, RepoError> {
        self.store.drama_owners().await
    }
}

fn raced(pool: &PgPool, rival: UserId) -> Repositories {
    let store = Arc::new(PgStore::new(pool.clone()));
    Repositories {
        dramas: store.clone(),
        users: store.clone(),
        imports: Arc::new(Raced {
            store,
            rival: Mutex::new(Some(rival)),
        }),
    }
}

/// The other import created the drama for the same owner: a conflict to run again (which
/// then finds the drama as that import wrote it), not "another user's".
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_drama_created_for_the_same_owner_by_another_import_is_a_conflict(pool: PgPool) {
    let s3 = TestS3::start().await;
    let owner = UserId::random();
    s3.put_json(&drama_key("both"), &fixture_as("both")).await;

    let report = import(&s3, &raced(&pool, owner), options(&s3, owner)).await;
    let entry = drama_report(&report, "both");
    assert_eq!(entry.outcome, Outcome::Failed, "{entry:#?}");
    let reason = entry.reason.as_ref().unwrap();
    assert_eq!(reason.code, ReasonCode::Conflict, "{reason:?}");
    assert!(reason.message.contains("run again"), "{}", reason.message);
    assert!(
        !reason.message.contains("another user"),
        "{}",
        reason.message
    );

    // The rerun finds what the other import wrote, the file's own content.
    let again = import(&s3, &repos(&pool), options(&s3, owner)).await;
    let entry = drama_report(&again, "both");
    assert_eq!(entry.outcome, Outcome::Unchanged, "{entry:#?}");
    assert!(!again.is_failure());
}

/// Another user got the id in between: that stays a clash of ids.
#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_drama_created_for_another_user_meanwhile_is_taken(pool: PgPool) {
    let s3 = TestS3::start().await;
    let (owner, other) = (UserId::random(), UserId::random());
    let store = PgStore::new(pool.clone());
    drama_dal::UserRepository::create_user(&store, &NewUser::new(other))
        .await
        .unwrap();
    s3.put_json(&drama_key("both"), &fixture_as("both")).await;

    let report = import(&s3, &raced(&pool, other), options(&s3, owner)).await;
    let entry = drama_report(&report, "both");
    assert_eq!(entry.outcome, Outcome::Failed, "{entry:#?}");
    assert_eq!(
        entry.reason.as_ref().map(|r| r.code),
        Some(ReasonCode::IdTaken),
        "{entry:#?}"
    );
}
