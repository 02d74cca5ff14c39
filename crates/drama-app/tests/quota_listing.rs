//! The byte and object quotas cost a bounded listing whatever a user stores: a check stops
//! counting once the user is over a limit, a user at the object bound is refused, a burst of
//! checks lists once, and the remembered count stays exact through the process's own writes.
//! The stores are the real ones (the in-process S3 server, memory) behind a wrapper that
//! counts the listings they answer.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use drama_ai::AiProviders;
use drama_app::pipeline::Scope;
use drama_app::{App, AppError, Caller, LibraryTag, LibraryType, LibraryUpload, Quotas};
use drama_assets::keys::asset_key;
use drama_assets::{
    AssetError, AssetStore, ByteRange, ByteStream, Category, CheckReport, KeyPrefix, ListPage,
    MediaType, ObjectInfo, ObjectKey, ObjectStream, ObjectSummary, PresignedRequest,
    Scope as KeyScope, SizeLimits, UrlSigner,
};
use drama_dal::DramaRepository as _;
use drama_domain::{DramaId, UserId};
use drama_testkit::pg::ScratchDb;
use futures::StreamExt as _;
use support::{migrated, user_with};

mod support;

/// A real store that counts the listings it answers.
struct Counting {
    inner: Arc<dyn AssetStore>,
    /// Calls of `list` (every object at once).
    whole: AtomicU64,
    /// Calls of `list_page`.
    pages: AtomicU64,
    /// Entries answered by either.
    entries: AtomicU64,
}

impl Counting {
    fn new(inner: Arc<dyn AssetStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            whole: AtomicU64::new(0),
            pages: AtomicU64::new(0),
            entries: AtomicU64::new(0),
        })
    }

    fn counts(&self) -> (u64, u64, u64) {
        (
            self.whole.load(Ordering::SeqCst),
            self.pages.load(Ordering::SeqCst),
            self.entries.load(Ordering::SeqCst),
        )
    }
}

#[async_trait]
impl AssetStore for Counting {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn limits(&self) -> &SizeLimits {
        self.inner.limits()
    }
    async fn put_bytes(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        content_type: &str,
    ) -> Result<ObjectInfo, AssetError> {
        self.inner.put_bytes(key, bytes, content_type).await
    }
    async fn put_stream(
        &self,
        key: &ObjectKey,
        body: ByteStream,
        content_type: &str,
        size_hint: Option<u64>,
    ) -> Result<ObjectInfo, AssetError> {
        self.inner
            .put_stream(key, body, content_type, size_hint)
            .await
    }
    async fn get(&self, key: &ObjectKey) -> Result<ObjectStream, AssetError> {
        self.inner.get(key).await
    }
    async fn get_range(
        &self,
        key: &ObjectKey,
        range: ByteRange,
    ) -> Result<ObjectStream, AssetError> {
        self.inner.get_range(key, range).await
    }
    async fn head(&self, key: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        self.inner.head(key).await
    }
    async fn delete(&self, key: &ObjectKey) -> Result<(), AssetError> {
        self.inner.delete(key).await
    }
    async fn delete_prefix(&self, prefix: &KeyPrefix) -> Result<u64, AssetError> {
        self.inner.delete_prefix(prefix).await
    }
    async fn list(&self, prefix: &KeyPrefix) -> Result<Vec<ObjectSummary>, AssetError> {
        let all = self.inner.list(prefix).await?;
        self.whole.fetch_add(1, Ordering::SeqCst);
        self.entries.fetch_add(all.len() as u64, Ordering::SeqCst);
        Ok(all)
    }
    async fn list_page(
        &self,
        prefix: &KeyPrefix,
        after: Option<&ObjectKey>,
        max: usize,
    ) -> Result<ListPage, AssetError> {
        let page = self.inner.list_page(prefix, after, max).await?;
        self.pages.fetch_add(1, Ordering::SeqCst);
        self.entries
            .fetch_add(page.objects.len() as u64, Ordering::SeqCst);
        Ok(page)
    }
    // `usage` is the trait's own: it reads through the counted `list_page`.
    async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectInfo, AssetError> {
        self.inner.copy(from, to).await
    }
    async fn presign_get(
        &self,
        key: &ObjectKey,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError> {
        self.inner.presign_get(key, expires_in).await
    }
    async fn presign_put(
        &self,
        key: &ObjectKey,
        content_type: &str,
        expires_in: Duration,
    ) -> Result<PresignedRequest, AssetError> {
        self.inner.presign_put(key, content_type, expires_in).await
    }
    fn public_url(&self, key: &ObjectKey) -> Option<String> {
        self.inner.public_url(key)
    }
    fn url_signer(&self) -> Option<&UrlSigner> {
        self.inner.url_signer()
    }
    async fn check(&self) -> CheckReport {
        self.inner.check().await
    }
}

/// Stores `count` objects of `size` bytes under `user`'s prefix straight into `store`, as
/// another process (or an earlier run) would have.
async fn seed(store: &dyn AssetStore, user: UserId, count: usize, size: usize) {
    let scope = KeyScope::project("seed").unwrap();
    futures::stream::iter(0..count)
        .map(|i| {
            let key = asset_key(
                user,
                &scope,
                Category::Uploads,
                &format!("{i:06}"),
                MediaType::Binary,
            )
            .unwrap();
            async move {
                store
                    .put_bytes(
                        &key,
                        Bytes::from(vec![b'x'; size]),
                        "application/octet-stream",
                    )
                    .await
                    .unwrap();
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<()>>()
        .await;
}

fn quotas(stored_bytes: u64, max_objects: u64) -> Quotas {
    Quotas {
        stored_bytes,
        max_objects,
        ..Quotas::UNLIMITED
    }
}

fn text_upload(text: &'static str) -> LibraryUpload {
    LibraryUpload {
        project: "p".to_owned(),
        asset_type: LibraryType::parse("text").unwrap(),
        tag: LibraryTag::parse("character").unwrap(),
        filename: Some("a.txt".to_owned()),
        content_type: Some("text/plain".to_owned()),
        metadata: serde_json::Map::new(),
        body: futures::stream::once(async move { Ok(Bytes::from_static(text.as_bytes())) }).boxed(),
        size_hint: Some(text.len() as u64),
    }
}

fn assert_refused(result: Result<impl std::fmt::Debug, AppError>, which: &str) -> (u64, u64) {
    match result {
        Err(AppError::QuotaExceeded { quota, limit, used }) if quota == which => (limit, used),
        other => panic!("expected the {which} quota to refuse, got {other:?}"),
    }
}

/// A paid run of a user far over the byte quota, on PostgreSQL and the S3 server: refused
/// after one listing page, without listing the user's objects whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_run_over_the_byte_quota_is_refused_after_one_listing_page() {
    let s3 = drama_testkit::s3::S3Server::start("quota-listing").await;
    let bucket: Arc<dyn AssetStore> = Arc::new(s3.store(None));
    let db = ScratchDb::create("quota_listing").await;
    let pool = migrated(&db, 4, "").await;
    let store = Arc::new(drama_postgres::PgStore::new(pool.clone()));
    let jobs = Arc::new(drama_postgres::jobs::PgJobStore::new(pool.clone()));
    let counting = Counting::new(bucket.clone());
    let ports = drama_app::Ports {
        store: store.clone(),
        assets: counting.clone(),
        generation: store.clone(),
        jobs: Arc::new(drama_app::pipeline::jobs_port::EngineJobs(jobs)),
        ai: AiProviders::offline(7),
    };
    let app = App::new(ports).with_quotas(quotas(100, 0));
    let user = user_with(&*store, 100_000).await;
    store
        .create(user, &drama_testkit::builders::drama("d", 1, 1, 1))
        .await
        .unwrap();
    // More objects than one listing request answers, each over the quota on its own.
    seed(&*bucket, user, 1_100, 200).await;

    let caller = Caller::user(user);
    let id = DramaId::parse("d").unwrap();
    let refused = app.generate(&caller, &id, Scope::Drama, false).await;
    let (limit, used) = assert_refused(refused, "stored_bytes");
    assert_eq!(limit, 100);
    assert!(used > limit, "{used}");
    let (whole, pages, entries) = counting.counts();
    assert_eq!(whole, 0, "the user's objects were listed whole");
    assert_eq!(
        pages, 1,
        "one listing request tells the user is over the quota"
    );
    assert!(entries < 1_100, "{entries} entries listed");

    // A library upload is refused the same way, from the count just taken.
    let refused = app.library_upload_admit(&caller, None, Some(10)).await;
    assert_refused(refused, "stored_bytes");
    assert_eq!(counting.counts().0, 0);
    db.drop_it().await;
}

/// A user at the object bound is refused, having cost a listing of that many entries (plus
/// the rest of a page), not of everything stored.
#[tokio::test]
async fn a_user_at_the_object_bound_is_refused_after_a_bounded_listing() {
    let memory: Arc<dyn AssetStore> = Arc::new(drama_assets::MemoryStore::default());
    let counting = Counting::new(memory.clone());
    let (ports, store, _jobs) = drama_app::Ports::memory(counting.clone(), AiProviders::offline(0));
    let app = App::new(ports).with_quotas(quotas(1 << 40, 1_500));
    let user = user_with(&*store, 100).await;
    let bob = user_with(&*store, 100).await;
    seed(&*memory, user, 5_000, 1).await;

    let caller = Caller::user(user);
    let refused = app.library_upload_admit(&caller, None, Some(10)).await;
    let (limit, used) = assert_refused(refused, "max_objects");
    assert_eq!(limit, 1_500);
    assert!(used > limit, "{used}");
    let refused = app
        .library_upload(&caller, None, text_upload("hello"))
        .await;
    assert_refused(refused, "max_objects");
    let (whole, pages, entries) = counting.counts();
    assert_eq!(whole, 0, "the user's objects were listed whole");
    assert_eq!(
        pages, 2,
        "the count stops at the page that reaches the bound"
    );
    assert_eq!(entries, 2_000, "{entries} entries listed of 5,000 stored");

    // Another user is not held to it.
    app.library_upload(&Caller::user(bob), None, text_upload("hello"))
        .await
        .unwrap();
}

/// A burst of checks counts once; the process's own uploads are added to the remembered
/// count, so a request it would let through too many bytes is counted again and refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_counts_once_and_own_writes_keep_the_quota_exact() {
    let memory: Arc<dyn AssetStore> = Arc::new(drama_assets::MemoryStore::default());
    let counting = Counting::new(memory.clone());
    let (ports, store, _jobs) = drama_app::Ports::memory(counting.clone(), AiProviders::offline(0));
    let app = App::new(ports).with_quotas(quotas(3_000, 0));
    let user = user_with(&*store, 100).await;
    seed(&*memory, user, 10, 100).await;
    let caller = Caller::user(user);

    let burst = futures::future::join_all(
        (0..8).map(|_| app.library_upload_admit(&caller, None, Some(100))),
    )
    .await;
    assert!(burst.iter().all(Result::is_ok), "{burst:?}");
    assert_eq!(counting.counts().1, 1, "the burst listed once");

    // 1,000 stored; this upload (and its record) fit, by the remembered count.
    const TEXT: &str = include_str!("quota_listing.rs");
    let text: &'static str = &TEXT[..1_500];
    app.library_upload(&caller, None, text_upload(text))
        .await
        .unwrap();
    assert_eq!(
        counting.counts().1,
        1,
        "a count a few seconds old is reused"
    );

    // 2,500 and more are stored now: 1,500 more would pass the quota. The remembered count
    // (with what this process stored) says it might, and a fresh count says it does.
    let refused = app.library_upload(&caller, None, text_upload(text)).await;
    let (_, used) = assert_refused(refused, "stored_bytes");
    let stored: u64 = memory
        .list(&drama_assets::keys::user_prefix(user))
        .await
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum();
    assert_eq!(used, stored + 1_500, "the refusal rests on an exact count");
    assert_eq!(counting.counts().0, 0);
}
