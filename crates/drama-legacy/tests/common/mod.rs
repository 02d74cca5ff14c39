//! Test support: an S3 server (s3s + s3s-fs) inside the test process, a bucket seeded with old
//! files, and snapshots of the database.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use drama_assets::{AssetStore, ObjectKey};
use drama_dal::MemoryLegacyImports;
use drama_dal::StoredDrama;
use drama_domain::{DramaId, UserId};
use drama_legacy::{
    BucketUrls, CancellationToken, DramaReport, ExportOptions, ExportOwners, ExportReport,
    Exporter, ImportOptions, ImportReport, Importer, Layout, OwnerMap, Repositories, Silent,
};
use drama_postgres::PgStore;
use drama_testkit::s3::S3Server;
use futures::StreamExt as _;
use serde_json::Value;
use sqlx::PgPool;

pub const BUCKET: &str = "sfd-production";
/// The old server's public URL base for drama objects.
pub const PUBLIC_BASE: &str = "https://pub-82a9c3c68d1a421f8e31796087e04132.r2.dev";

pub const FIXTURE: &str = include_str!("../../../../fixtures/legacy-r2/corgi_musk_v5.json");

/// A running S3 server on 127.0.0.1 with one bucket; stopped when dropped.
pub struct TestS3 {
    pub endpoint: String,
    pub store: Arc<dyn AssetStore>,
    server: S3Server,
}

impl TestS3 {
    pub async fn start() -> Self {
        let server = S3Server::start(BUCKET).await;
        Self {
            endpoint: server.endpoint().to_owned(),
            store: Arc::new(server.store(Some(PUBLIC_BASE))),
            server,
        }
    }

    /// The bucket URL bases the binary would derive from these settings.
    pub fn bucket_urls(&self) -> BucketUrls {
        BucketUrls::new([
            PUBLIC_BASE.to_owned(),
            format!("{}/{BUCKET}", self.endpoint),
        ])
        .unwrap()
    }

    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>, content_type: &str) {
        self.store
            .put_bytes(&ObjectKey::parse(key).unwrap(), bytes.into(), content_type)
            .await
            .unwrap();
    }

    /// Writes an object the bucket client would refuse to (a key breaking the key rules, as
    /// the old server's can): straight into the S3 server's directory, which it lists from.
    pub fn put_unchecked(&self, key: &str, bytes: &[u8]) {
        let path = self.server.root().join(BUCKET).join(key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    pub async fn put_json(&self, key: &str, value: &Value) {
        self.put(
            key,
            serde_json::to_vec_pretty(value).unwrap(),
            "application/json",
        )
        .await;
    }

    /// Puts many files at once.
    pub async fn put_many(&self, files: Vec<(String, Vec<u8>)>) {
        futures::stream::iter(files)
            .map(|(key, bytes)| async move { self.put(&key, bytes, "application/json").await })
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        match self.store.get_bytes(&ObjectKey::parse(key).unwrap()).await {
            Ok((_, bytes)) => Some(bytes),
            Err(e) if e.is_not_found() => None,
            Err(e) => panic!("reading {key}: {e}"),
        }
    }

    /// Every object: key → (size, sha-256).
    pub async fn snapshot(&self) -> BTreeMap<String, (u64, String)> {
        use sha2::Digest as _;
        let prefix = drama_assets::KeyPrefix::parse("dramas/").unwrap();
        let mut out = BTreeMap::new();
        for o in self.store.list(&prefix).await.unwrap() {
            let bytes = self.get(o.key.as_str()).await.unwrap();
            out.insert(
                o.key.to_string(),
                (o.size, hex::encode(sha2::Sha256::digest(&bytes))),
            );
        }
        out
    }
}

/// The fixture as JSON.
pub fn fixture() -> Value {
    serde_json::from_str(FIXTURE).unwrap()
}

/// The fixture under another id (and title), as the old server wrote it (no owner, no
/// `voice_description`).
pub fn fixture_as(id: &str) -> Value {
    let mut v = fixture();
    v["id"] = Value::String(id.to_owned());
    v["title"] = Value::String(format!("Corgi Musk {id}"));
    v
}

pub fn id(s: &str) -> DramaId {
    DramaId::parse(s).unwrap()
}

/// The drama `drama_id` of `owner` as the repositories hold it; panics when it is not there.
pub async fn stored_drama(repos: &Repositories, owner: UserId, drama_id: &str) -> StoredDrama {
    repos
        .dramas
        .get_complete(owner, &id(drama_id))
        .await
        .unwrap_or_else(|e| panic!("{drama_id} of {owner}: {e}"))
}

/// The report's line for the drama `drama_id`; panics when the report has none.
pub fn drama_report<'a>(report: &'a ImportReport, drama_id: &str) -> &'a DramaReport {
    report
        .dramas
        .iter()
        .find(|d| d.drama_id == drama_id)
        .unwrap_or_else(|| panic!("{drama_id} is not in the report"))
}

pub fn drama_key(id: &str) -> String {
    format!("dramas/{id}/drama.json")
}

/// An old index listing `ids`.
pub fn index_of(ids: &[&str]) -> Value {
    let mut dramas = serde_json::Map::new();
    for id in ids {
        dramas.insert(
            (*id).to_owned(),
            serde_json::json!({"id": id, "title": format!("Title {id}"), "description": "d",
                "premise": "p", "url": null, "created_at": "2025-11-01T10:00:00.000001Z",
                "updated_at": "2025-11-20T07:58:35.123456Z"}),
        );
    }
    serde_json::json!({"version": 1, "updated_at": "2025-11-20T07:58:35.123456Z",
                       "count": ids.len(), "dramas": dramas})
}

/// Bytes that start like a PNG.
pub fn png(len: usize) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    v.resize(len, 7);
    v
}

pub fn repos(pool: &PgPool) -> Repositories {
    Repositories::of(Arc::new(PgStore::new(pool.clone())))
}

pub fn memory_repos() -> Repositories {
    let store = Arc::new(drama_dal::MemoryStore::new());
    Repositories {
        dramas: store.clone(),
        users: store.clone(),
        imports: Arc::new(MemoryLegacyImports::new(store)),
    }
}

pub fn options(s3: &TestS3, owner: UserId) -> ImportOptions {
    let mut o = ImportOptions::new(OwnerMap::default().with_default_owner(owner));
    o.bucket_urls = s3.bucket_urls();
    o.jobs = 4;
    o
}

pub async fn import(s3: &TestS3, repos: &Repositories, options: ImportOptions) -> ImportReport {
    Importer::new(s3.store.clone(), repos.clone(), options)
        .unwrap()
        .run(&Silent, &CancellationToken::new())
        .await
        .unwrap()
}

/// An export of the old server's world (the default owners).
pub async fn export(s3: &TestS3, repos: &Repositories, dry_run: bool) -> ExportReport {
    export_of(s3, repos, dry_run, ExportOwners::default()).await
}

pub async fn export_of(
    s3: &TestS3,
    repos: &Repositories,
    dry_run: bool,
    owners: ExportOwners,
) -> ExportReport {
    Exporter::new(
        s3.store.clone(),
        repos.clone(),
        ExportOptions {
            layout: Layout::default(),
            dry_run,
            jobs: 4,
            owners,
        },
    )
    .unwrap()
    .run(&Silent, &CancellationToken::new())
    .await
    .unwrap()
}

/// Every row of every table the import writes, as text, for before/after comparisons.
pub async fn database_snapshot(pool: &PgPool) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (table, order) in [
        ("users", "id"),
        ("dramas", "id"),
        ("characters", "drama_id, id"),
        ("episodes", "drama_id, id"),
        ("scenes", "drama_id, id"),
        ("assets", "drama_id, id"),
        ("legacy_imports", "source_key"),
        ("legacy_object_references", "drama_id, storage_key"),
    ] {
        let rows: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select t::text from public.{table} t order by {order}"
        )))
        .fetch_all(pool)
        .await
        .unwrap();
        out.insert(table.to_owned(), rows);
    }
    out
}

pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from public.{table}"
    )))
    .fetch_one(pool)
    .await
    .unwrap()
}
