//! `import-r2` and `export-r2` through the binary: an S3 server in this process, a scratch
//! PostgreSQL database, the command's exit codes, printed summary and JSON report, and a run
//! killed with SIGKILL that the next run completes.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use drama_assets::{AssetStore, ObjectKey, S3Store};
use drama_testkit::pg::ScratchDb;
use drama_testkit::s3::{S3Server, require_signature};
use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::{GetObjectInput, ListObjectsV2Input};
use s3s::{S3Request, S3Result, s3_error};
use serde_json::{Value, json};

use tokio::sync::Notify;

mod support;

use support::text;

const BUCKET: &str = "sfd-production";
const PUBLIC_URL: &str = "https://cdn.example.com";
const FIXTURE: &str = include_str!("../../../fixtures/legacy-r2/corgi_musk_v5.json");

/// Lets a number of object reads through, then holds the rest until opened; refuses to list
/// under a prefix when told to.
#[derive(Default)]
struct Gate {
    remaining: AtomicI64,
    closed: AtomicBool,
    opened: Notify,
    unlistable: Mutex<Option<String>>,
}

impl Gate {
    fn close_after(&self, reads: i64) {
        self.remaining.store(reads, Ordering::SeqCst);
        self.closed.store(true, Ordering::SeqCst);
    }

    fn open(&self) {
        self.closed.store(false, Ordering::SeqCst);
        self.opened.notify_waiters();
    }
}

#[derive(Clone)]
struct GatedAccess(Arc<Gate>);

#[async_trait::async_trait]
impl S3Access for GatedAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        require_signature(cx)
    }

    async fn list_objects_v2(&self, req: &mut S3Request<ListObjectsV2Input>) -> S3Result<()> {
        let refused = self.0.unlistable.lock().unwrap().clone();
        let prefix = req.input.prefix.as_deref().unwrap_or_default();
        match refused {
            Some(refused) if prefix.starts_with(&refused) => {
                Err(s3_error!(AccessDenied, "listing refused by the test"))
            }
            _ => Ok(()),
        }
    }

    async fn get_object(&self, _req: &mut S3Request<GetObjectInput>) -> S3Result<()> {
        let gate = &self.0;
        if gate.closed.load(Ordering::SeqCst) && gate.remaining.fetch_sub(1, Ordering::SeqCst) <= 0
        {
            loop {
                let opened = gate.opened.notified();
                if !gate.closed.load(Ordering::SeqCst) {
                    break;
                }
                opened.await;
            }
        }
        Ok(())
    }
}

/// An S3 server on 127.0.0.1 whose reads can be held; stopped when dropped.
struct TestS3 {
    server: S3Server,
    store: S3Store,
    gate: Arc<Gate>,
}

impl TestS3 {
    async fn start() -> Self {
        let gate = Arc::new(Gate::default());
        let server = S3Server::start_with(BUCKET, None, GatedAccess(gate.clone())).await;
        Self {
            store: server.store(Some(PUBLIC_URL)),
            server,
            gate,
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) {
        self.store
            .put_bytes(
                &ObjectKey::parse(key).unwrap(),
                Bytes::from(bytes),
                content_type,
            )
            .await
            .unwrap();
    }

    async fn get_json(&self, key: &str) -> Value {
        let (_, bytes) = self
            .store
            .get_bytes(&ObjectKey::parse(key).unwrap())
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    /// The binary, configured for this bucket and `database_url`.
    fn command(&self, args: &[&str], database_url: &str) -> Command {
        let mut c = support::binary(args);
        c.env("DATABASE_URL", database_url)
            .env("ENVIRONMENT", "production")
            .envs(self.server.env())
            .env("R2_PUBLIC_URL", PUBLIC_URL);
        c
    }

    /// Runs the binary to completion without blocking this test's runtime (which serves S3).
    async fn run(&self, args: &[&str], database_url: &str) -> Output {
        support::output(self.command(args, database_url)).await
    }

    /// A scratch database named after `name`, migrated by the binary.
    async fn migrated_database(&self, name: &str) -> ScratchDb {
        let db = ScratchDb::create(name).await;
        let migrated = self.run(&["migrate"], &db.url()).await;
        assert!(migrated.status.success(), "{}", text(&migrated));
        db
    }

    /// `import-r2 --owner owner`, then the `extra` arguments, its report written to `report`.
    async fn import(
        &self,
        owner: &str,
        extra: &[&str],
        report: &Path,
        database_url: &str,
    ) -> Output {
        let mut args = vec!["import-r2", "--owner", owner];
        args.extend_from_slice(extra);
        args.extend(["--report", report.to_str().unwrap()]);
        self.run(&args, database_url).await
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        // Held reads must not outlive the test; the server itself stops when dropped.
        self.gate.open();
    }
}

fn fixture_as(id: &str) -> Vec<u8> {
    let mut v: Value = serde_json::from_str(FIXTURE).unwrap();
    v["id"] = json!(id);
    serde_json::to_vec(&v).unwrap()
}

fn read_report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_and_export_through_the_binary() {
    let s3 = TestS3::start().await;
    let db = s3.migrated_database("legacy_cli").await;
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("import.json");
    let owner = uuid::Uuid::new_v4().to_string();

    s3.put(
        "dramas/corgi_musk_v5/drama.json",
        FIXTURE.as_bytes().to_vec(),
        "application/json",
    )
    .await;
    for id in ["one", "two", "three"] {
        s3.put(
            &format!("dramas/{id}/drama.json"),
            fixture_as(id),
            "application/json",
        )
        .await;
    }
    s3.put(
        "dramas/index.json",
        serde_json::to_vec(&json!({"version": 1, "dramas": {"one": {"id": "one"}}})).unwrap(),
        "application/json",
    )
    .await;

    // A dry run writes nothing.
    let dry = s3.import(&owner, &["--dry-run"], &report, &db.url()).await;
    assert!(dry.status.success(), "{}", text(&dry));
    assert!(text(&dry).contains("DRY RUN"), "{}", text(&dry));
    assert_eq!(read_report(&report)["counts"]["imported"], 4);
    assert_eq!(db.count("dramas").await, 0);
    assert_eq!(db.count("users").await, 0);

    // The import: plain progress lines (stderr is not a terminal), summary, report.
    let run = s3
        .import(&owner, &["--jobs", "3"], &report, &db.url())
        .await;
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(out.contains("import: 4 to do"), "{out}");
    assert!(out.contains("import: 4/4 (imported 4)"), "{out}");
    assert!(out.contains("imported 4, updated 0, unchanged 0"), "{out}");
    assert!(out.contains("characters[].voice_description: 20"), "{out}");
    assert!(out.contains(&format!("created user {owner}")), "{out}");
    let json = read_report(&report);
    assert_eq!(json["command"], "import-r2");
    assert_eq!(json["counts"]["imported"], 4);
    assert_eq!(json["source"]["not_in_index"], 3);
    assert_eq!(db.count("dramas").await, 4);

    // Again: nothing to do.
    let again = s3.run(&["import-r2", "--owner", &owner], &db.url()).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("imported 0, updated 0, unchanged 4"),
        "{}",
        text(&again)
    );

    // A bad file: the others are fine, the exit code says something failed.
    s3.put(
        "dramas/bad/drama.json",
        b"not json at all".to_vec(),
        "text/plain",
    )
    .await;
    let failing = s3.import(&owner, &[], &report, &db.url()).await;
    let out = text(&failing);
    assert_eq!(failing.status.code(), Some(1), "{out}");
    assert!(out.contains("dramas/bad/drama.json: not_json"), "{out}");
    assert_eq!(read_report(&report)["counts"]["failed"], 1);
    assert_eq!(read_report(&report)["counts"]["unchanged"], 4);

    // A user of the new system and their drama: private, so a rollback leaves it out.
    let store = drama_postgres::PgStore::new(db.pool().await);
    let newcomer = drama_domain::UserId::random();
    drama_dal::UserRepository::create_user(&store, &drama_dal::NewUser::new(newcomer))
        .await
        .unwrap();
    let private = drama_legacy::LegacyDrama::parse(&fixture_as("private"))
        .unwrap()
        .drama;
    drama_dal::DramaRepository::create(&store, newcomer, &private)
        .await
        .unwrap();

    // Export: the old layout with a rebuilt index.
    let export_report = work.path().join("export.json");
    let exported = s3
        .run(
            &["export-r2", "--report", export_report.to_str().unwrap()],
            &db.url(),
        )
        .await;
    let out = text(&exported);
    assert!(exported.status.success(), "{out}");
    assert!(out.contains("exported 4, failed 0"), "{out}");
    assert!(out.contains("rewritten with 4 entries"), "{out}");
    assert!(
        out.contains("dramas/bad/drama.json"),
        "stale files are listed: {out}"
    );
    let index = s3.get_json("dramas/index.json").await;
    assert_eq!(index["count"], 4);
    let one = s3.get_json("dramas/one/drama.json").await;
    assert_eq!(one["user_id"], json!(owner));
    assert_eq!(read_report(&export_report)["exported"], 4);
    assert!(
        out.contains("left out: 1 drama(s) of 1 other owner(s)"),
        "{out}"
    );
    assert_eq!(read_report(&export_report)["left_out"], 1);
    assert_eq!(index["dramas"].get("private"), None);
    let private_key = ObjectKey::parse("dramas/private/drama.json").unwrap();
    assert!(s3.store.get_bytes(&private_key).await.is_err());

    // The user old clients act as belongs to the old world; so does a user named.
    let mut as_legacy = s3.command(&["export-r2", "--dry-run"], &db.url());
    as_legacy.env("LEGACY_USER_ID", newcomer.to_string());
    let as_legacy = support::output(as_legacy).await;
    assert!(
        text(&as_legacy).contains("exported 5, failed 0"),
        "{}",
        text(&as_legacy)
    );
    let named = s3
        .run(&["export-r2", "--owner", &newcomer.to_string()], &db.url())
        .await;
    assert!(
        text(&named).contains("exported 5, failed 0"),
        "{}",
        text(&named)
    );
    assert_eq!(
        s3.get_json("dramas/private/drama.json").await["user_id"],
        json!(newcomer.to_string())
    );
    let clash = s3
        .run(&["export-r2", "--all-owners", "--owner", &owner], &db.url())
        .await;
    assert_eq!(clash.status.code(), Some(2), "{}", text(&clash));

    // Options are checked before anything runs.
    let bad = s3
        .run(&["import-r2", "--prefix", "../escape"], &db.url())
        .await;
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        text(&bad).contains("invalid option --prefix"),
        "{}",
        text(&bad)
    );
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_import_is_completed_by_the_next_run() {
    let s3 = TestS3::start().await;
    let db = s3.migrated_database("legacy_cli").await;
    let owner = uuid::Uuid::new_v4().to_string();
    const TOTAL: i64 = 200;
    for i in 0..TOTAL {
        let id = format!("d{i:03}");
        s3.put(
            &format!("dramas/{id}/drama.json"),
            fixture_as(&id),
            "application/json",
        )
        .await;
    }

    // The index read plus 40 drama files go through; then reads hang until the gate opens.
    s3.gate.close_after(41);
    let mut child = s3
        .command(&["import-r2", "--owner", &owner, "--jobs", "4"], &db.url())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut imported = 0;
    for _ in 0..600 {
        imported = db.count("legacy_imports").await;
        if imported >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(imported, 40, "the reads that went through were imported");
    assert!(
        child.try_wait().unwrap().is_none(),
        "the import is held, not finished"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    s3.gate.open();
    assert_eq!(db.count("dramas").await, 40);

    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("resume.json");
    let rerun = s3.import(&owner, &[], &report, &db.url()).await;
    assert!(rerun.status.success(), "{}", text(&rerun));
    let json = read_report(&report);
    assert_eq!(json["counts"]["unchanged"], 40);
    assert_eq!(json["counts"]["imported"], TOTAL - 40);
    assert_eq!(db.count("dramas").await, TOTAL);
    assert_eq!(db.count("legacy_imports").await, TOTAL);
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_old_asset_library_reaches_its_new_owner_through_the_api() {
    let s3 = TestS3::start().await;
    let db = s3.migrated_database("legacy_library").await;
    let owner = uuid::Uuid::new_v4().to_string();
    let id = "5d0c3f64-1b1e-4a44-9a57-3d2b8e6f0c11";
    let png: Vec<u8> = [b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".as_slice(), &[7u8; 200]].concat();
    s3.put(
        &format!("10000/my-project/images/{id}.png"),
        png.clone(),
        "image/png",
    )
    .await;
    s3.put(
        &format!("10000/my-project/images/{id}.json"),
        serde_json::to_vec(&json!({
            "asset_id": id, "user_id": "10000", "project_name": "my-project",
            "asset_type": "image", "tag": "character", "filename": "hero.png",
            "created_at": "2025-11-02T10:00:00.000000Z", "updated_at": "2025-11-02T10:00:00.000000Z",
            "file_size": png.len(), "r2_key": format!("10000/my-project/images/{id}.png"),
            "content_type": "image/png"}))
        .unwrap(),
        "application/json",
    )
    .await;

    let run = s3.run(&["import-r2", "--owner", &owner], &db.url()).await;
    let out = text(&run);
    assert!(run.status.success(), "{out}");
    assert!(
        out.contains("asset library (owners 10000): 1 records; copied 1"),
        "{out}"
    );
    let again = s3.run(&["import-r2", "--owner", &owner], &db.url()).await;
    assert!(
        text(&again).contains("unchanged 1, deleted since their import 0, failed 0"),
        "{}",
        text(&again)
    );

    let created = s3
        .run(
            &["keys", "create", "--name", "app", "--owner", &owner],
            &db.url(),
        )
        .await;
    let key = support::printed_key(&text(&created));
    let port = support::free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut command = s3.command(&["serve"], &db.url());
    command
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("AI_OFFLINE", "true");
    let mut server = support::Server::spawn(command, port, dir.path(), "serve");
    server.wait_for("/ready").await;
    let http = reqwest::Client::new();
    let list: Value = http
        .get(server.url("/asset-library/list?project_name=my-project"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(list["assets"][0]["asset_id"], id);
    assert_eq!(list["assets"][0]["filename"], "hero.png");
    let bytes = http
        .get(server.url(&format!(
            "/asset-library/{id}?project_name=my-project&asset_type=image"
        )))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert!(bytes.status().is_success(), "{}", bytes.status());
    assert_eq!(bytes.bytes().await.unwrap().to_vec(), png);
    server.stop().await;
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_that_cannot_be_listed_still_leaves_the_report_of_the_dramas() {
    let s3 = TestS3::start().await;
    let db = s3.migrated_database("legacy_cli_library_error").await;
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("import.json");
    let owner = uuid::Uuid::new_v4().to_string();
    s3.put(
        "dramas/one/drama.json",
        fixture_as("one"),
        "application/json",
    )
    .await;
    // The old library of the default owner lives under `10000/`.
    *s3.gate.unlistable.lock().unwrap() = Some("10000/".to_owned());

    let run = s3.import(&owner, &[], &report, &db.url()).await;
    let out = text(&run);
    assert_eq!(run.status.code(), Some(1), "{out}");
    assert!(out.contains("imported 1, updated 0"), "{out}");
    assert!(out.contains("stopped:"), "{out}");
    let json = read_report(&report);
    assert_eq!(json["counts"]["imported"], 1);
    assert!(
        json["library"]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{json:#}"
    );
    assert_eq!(db.count("dramas").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drama_the_old_server_deleted_goes_only_with_delete_gone() {
    let s3 = TestS3::start().await;
    let db = s3.migrated_database("legacy_gone").await;
    let work = tempfile::tempdir().unwrap();
    let report = work.path().join("import.json");
    let owner = uuid::Uuid::new_v4().to_string();
    for id in ["stays", "gone"] {
        s3.put(
            &format!("dramas/{id}/drama.json"),
            fixture_as(id),
            "application/json",
        )
        .await;
    }
    let first = s3.import(&owner, &[], &report, &db.url()).await;
    assert!(first.status.success(), "{}", text(&first));
    assert_eq!(db.count("dramas").await, 2);
    // Something the new system stored under the drama's own prefix (an upload).
    let upload = format!("{owner}/gone/uploads/ref.png");
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    png.resize(64, 7);
    s3.put(&upload, png, "image/png").await;

    // The old server deletes the drama; the final import reports it and keeps it.
    s3.store
        .delete(&ObjectKey::parse("dramas/gone/drama.json").unwrap())
        .await
        .unwrap();
    let kept = s3.import(&owner, &[], &report, &db.url()).await;
    let out = text(&kept);
    assert!(kept.status.success(), "{out}");
    assert!(out.contains("imported 0, updated 0, unchanged 1"), "{out}");
    assert!(
        out.contains("gone from the source: deleted 0, kept 1"),
        "{out}"
    );
    assert!(
        out.contains("dramas/gone/drama.json: source_deleted"),
        "{out}"
    );
    let json = read_report(&report);
    assert_eq!(json["counts"]["source_deleted"], 1);
    let gone = json["dramas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["drama_id"] == "gone")
        .cloned()
        .unwrap();
    assert_eq!(gone["outcome"], "source_deleted", "{gone}");
    assert_eq!(db.count("dramas").await, 2);

    // A run of the owner's on the drama, still queued: the delete cancels it, as the API's
    // does, so that its task does not go on to pay a provider for a drama that is gone.
    let pool = sqlx::PgPool::connect(&db.url()).await.unwrap();
    let engine = drama_postgres::jobs::PgJobStore::new(pool.clone());
    let run = drama_jobs::JobStore::submit(
        &engine,
        &drama_jobs::Graph::new(
            drama_jobs::RunSpec::new("generate", uuid::Uuid::parse_str(&owner).unwrap())
                .subject("gone"),
        )
        .with(drama_jobs::NodeSpec::task(
            "portrait",
            "portrait",
            json!({}),
        )),
    )
    .await
    .unwrap()
    .run_id;

    // --delete-gone deletes it as the API does: rows, and the objects under its prefix.
    let deleted = s3
        .import(&owner, &["--delete-gone"], &report, &db.url())
        .await;
    let out = text(&deleted);
    assert!(deleted.status.success(), "{out}");
    assert!(out.contains("deleted 1, kept 0"), "{out}");
    let json = read_report(&report);
    assert_eq!(json["delete_gone"], true);
    assert_eq!(json["counts"]["deleted"], 1);
    assert_eq!(db.count("dramas").await, 1);
    assert!(
        s3.store
            .get_bytes(&ObjectKey::parse(&upload).unwrap())
            .await
            .unwrap_err()
            .is_not_found()
    );
    let state: String = sqlx::query_scalar(
        "select state::text from public.jobs where run_id = $1 and key = 'portrait'",
    )
    .bind(run.0)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        state, "cancelled",
        "the run of the deleted drama is cancelled"
    );
    pool.close().await;
    db.drop_it().await;
}
