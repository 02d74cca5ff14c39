//! The memory budget of `import-r2`: the bytes of old drama files its jobs hold at once, from
//! before a file is read until its drama is written, stay within `--memory-mib` (a file
//! larger than the whole budget holds it alone), against an S3 server in this process.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestS3, drama_key, fixture_as, import, memory_repos, options};
use drama_dal::RepoError;
use drama_dal::legacy::{
    DramaState, ImportRecord, LegacyImport, LegacyImportRepository, RecordedImport,
};
use drama_domain::{DramaId, UserId};
use drama_legacy::{Importer, LegacyError, Repositories};

const KIB: u64 = 1024;

/// Import bookkeeping whose writes take a while (a database under load): every job holds its
/// document until its write is done, so without a bound all of them would hold one at once.
struct SlowWrites(Arc<dyn LegacyImportRepository>);

#[async_trait::async_trait]
impl LegacyImportRepository for SlowWrites {
    async fn recorded_imports(&self, prefix: &str) -> Result<Vec<RecordedImport>, RepoError> {
        self.0.recorded_imports(prefix).await
    }

    async fn drama_state(&self, id: &DramaId) -> Result<Option<DramaState>, RepoError> {
        self.0.drama_state(id).await
    }

    async fn apply_import(&self, import: &LegacyImport) -> Result<ImportRecord, RepoError> {
        tokio::time::sleep(Duration::from_millis(40)).await;
        self.0.apply_import(import).await
    }

    async fn drama_owners(&self) -> Result<Vec<UserId>, RepoError> {
        self.0.drama_owners().await
    }
}

fn slow_repos() -> Repositories {
    let repos = memory_repos();
    Repositories {
        imports: Arc::new(SlowWrites(repos.imports.clone())),
        ..repos
    }
}

/// The fixture under `id`, padded with trailing blanks (still one JSON document) to `size`
/// bytes.
fn file_of(id: &str, size: u64) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(&fixture_as(id)).unwrap();
    let size = usize::try_from(size).unwrap();
    assert!(bytes.len() < size);
    bytes.resize(size, b' ');
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_files_held_at_once_stay_within_the_budget() {
    let s3 = TestS3::start().await;
    let repos = slow_repos();
    let owner = UserId::random();
    let budget = 1024 * KIB;
    let files: Vec<(String, Vec<u8>)> = (0..24)
        .map(|i| {
            let id = format!("small{i:02}");
            (drama_key(&id), file_of(&id, 300 * KIB))
        })
        .collect();
    s3.put_many(files).await;
    let mut opts = options(&s3, owner);
    opts.jobs = 16;
    opts.memory_budget = budget;

    let first = import(&s3, &repos, opts.clone()).await;
    assert_eq!(first.counts.imported, 24, "{:?}", first.counts);
    assert_eq!(first.memory.budget_bytes, budget);
    // Sixteen jobs would hold 16 × 300 KiB at once; the budget lets three in.
    assert!(
        first.memory.peak_bytes <= budget,
        "{} bytes held at once",
        first.memory.peak_bytes
    );
    assert!(first.memory.peak_bytes >= 300 * KIB);

    // A file larger than the whole budget is still imported, alone: the small ones, read
    // again and found unchanged, wait for it or it for them.
    let big = 2560 * KIB;
    s3.put(&drama_key("big"), file_of("big", big), "application/json")
        .await;
    let second = import(&s3, &repos, opts).await;
    assert_eq!(
        (second.counts.imported, second.counts.unchanged),
        (1, 24),
        "{:?}",
        second.counts
    );
    assert_eq!(
        second.memory.peak_bytes, big,
        "while the big file was held, nothing else was"
    );
}

#[tokio::test]
async fn a_zero_budget_is_refused() {
    let s3 = TestS3::start().await;
    let mut opts = options(&s3, UserId::random());
    opts.memory_budget = 0;
    let refused = Importer::new(s3.store.clone(), memory_repos(), opts).err();
    assert!(
        matches!(
            refused,
            Some(LegacyError::InvalidOption {
                option: "--memory-mib",
                ..
            })
        ),
        "{refused:?}"
    );
}
