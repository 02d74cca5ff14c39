//! The import from the old server's database tables: a scratch database with the old schema
//! and its rows, moved aside by `adopt_legacy_schema`, imported through the same decisions and
//! reports as the bucket's files, with an S3 server in this process for the asset URLs.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::{TestS3, database_snapshot, drama_report, id, memory_repos, png, repos, stored_drama};
use drama_dal::legacy_tables::LegacyTableAccess;
use drama_domain::UserId;
use drama_legacy::{
    CancellationToken, ImportOptions, ImportReport, Importer, Outcome, OwnerMap, ReasonCode,
    Repositories, Silent,
};
use drama_postgres::PgLegacyTables;
use drama_testkit::pg::{OLD_ROWS_SQL, OLD_SCHEMA_SQL, run_script};
use sqlx::PgPool;

/// The old server's tables and rows in `public`, then `alterations` (SQL, may be empty): what
/// the old repository code or a hand edit did to them.
async fn old_database(pool: &PgPool, alterations: &str) {
    run_script(pool, OLD_SCHEMA_SQL).await;
    run_script(pool, OLD_ROWS_SQL).await;
    if !alterations.is_empty() {
        run_script(pool, alterations).await;
    }
}

async fn run(
    s3: &TestS3,
    repos: &Repositories,
    pool: &PgPool,
    schema: &str,
    options: ImportOptions,
) -> ImportReport {
    let tables = PgLegacyTables::open(pool.clone(), schema).await.unwrap();
    Importer::new(s3.store.clone(), repos.clone(), options)
        .unwrap()
        .from_tables(Arc::new(tables))
        .run(&Silent, &CancellationToken::new())
        .await
        .unwrap()
}

/// A dry run over the tables still in `public`, into memory: what the real run would decide.
async fn dry_run_in_public(s3: &TestS3, pool: &PgPool, owners: OwnerMap) -> ImportReport {
    run(
        s3,
        &memory_repos(),
        pool,
        "public",
        options(s3, owners, true),
    )
    .await
}

/// An import of the tables adopted into `legacy`, into `repos`.
async fn import_adopted(
    s3: &TestS3,
    repos: &Repositories,
    pool: &PgPool,
    owners: OwnerMap,
) -> ImportReport {
    run(s3, repos, pool, "legacy", options(s3, owners, false)).await
}

fn options(s3: &TestS3, owners: OwnerMap, dry_run: bool) -> ImportOptions {
    let mut o = ImportOptions::new(owners);
    o.bucket_urls = s3.bucket_urls();
    o.jobs = 2;
    o.dry_run = dry_run;
    o
}

/// What an import of the adopted tables leaves: the S3 server its asset URLs point into, the
/// repositories of the scratch database and the report.
struct Adopted {
    _s3: TestS3,
    repos: Repositories,
    report: ImportReport,
}

/// Moves the old tables aside into `legacy` and imports them for `owners` into the database.
async fn adopt_and_import(pool: &PgPool, owners: OwnerMap) -> Adopted {
    drama_postgres::adopt_legacy_schema(pool).await.unwrap();
    let s3 = TestS3::start().await;
    let repos = repos(pool);
    let report = import_adopted(&s3, &repos, pool, owners).await;
    Adopted {
        _s3: s3,
        repos,
        report,
    }
}

#[sqlx::test(migrations = false)]
async fn every_row_of_the_old_tables_lands_with_the_mapped_owner(pool: PgPool) {
    old_database(&pool, "").await;
    let s3 = TestS3::start().await;
    s3.put("dramas/corgi/cover.png", png(300), "image/png")
        .await;
    s3.put(
        "dramas/corgi/characters/corgi-c1.png",
        png(200),
        "image/png",
    )
    .await;
    let owner = UserId::random();
    let owners = OwnerMap::default().with_default_owner(owner);

    // A dry run against the tables still in public, into memory: the real run's decisions.
    let dry = dry_run_in_public(&s3, &pool, owners.clone()).await;
    assert!(dry.dry_run);
    assert_eq!(dry.command, "migrate --adopt-legacy");
    assert_eq!(dry.source.origin, "database");
    assert_eq!((dry.counts.imported, dry.counts.failed), (2, 1));

    drama_postgres::adopt_legacy_schema(&pool).await.unwrap();
    let repos = repos(&pool);
    let report = import_adopted(&s3, &repos, &pool, owners.clone()).await;
    assert_eq!(report.counts.total, 3);
    assert_eq!(report.counts.imported, 2, "{report:#?}");
    assert_eq!(report.counts.failed, 1);
    assert_eq!(report.users_created, vec![owner]);
    let broken = drama_report(&report, "broken");
    assert_eq!(broken.source_key, "db:legacy/dramas/broken");
    assert_eq!(broken.outcome, Outcome::Failed);
    let reason = broken.reason.as_ref().unwrap();
    assert_eq!(reason.code, ReasonCode::InvalidDrama);
    assert!(reason.message.contains("duration"), "{}", reason.message);

    // Every row, in its place, with the owner.
    let corgi = stored_drama(&repos, owner, "corgi").await.drama;
    assert_eq!(corgi.title, "Corgi Tycoon");
    assert_eq!(corgi.characters.len(), 2);
    assert!(corgi.characters[0].main);
    assert_eq!(corgi.characters[1].voice_description, "");
    assert_eq!(corgi.characters[0].assets.len(), 1);
    assert_eq!(corgi.episodes.len(), 2);
    assert_eq!(corgi.episodes[0].scenes.len(), 2);
    assert_eq!(corgi.episodes[0].assets.len(), 1);
    assert_eq!(corgi.episodes[0].scenes[0].assets.len(), 2);
    assert_eq!(corgi.episodes[1].premise.as_deref(), Some("rivalry"));
    assert_eq!(corgi.assets.len(), 1);
    assert_eq!(
        corgi.metadata.as_ref().unwrap()["genre"],
        serde_json::json!("comedy")
    );
    let heist = stored_drama(&repos, owner, "heist").await.drama;
    assert_eq!(heist.episodes[0].scenes[0].id.as_str(), "heist-e1-s1");
    // Bucket URLs became storage records; the foreign one stayed a URL.
    let objects = repos
        .dramas
        .asset_objects(owner, &id("corgi"))
        .await
        .unwrap();
    assert_eq!(objects.len(), 2, "{objects:?}");
    let corgi_report = drama_report(&report, "corgi");
    assert_eq!(corgi_report.assets.in_bucket, 2);
    assert_eq!(corgi_report.assets.foreign, 1);
    assert!(
        corgi_report.defaulted.is_empty(),
        "{:?}",
        corgi_report.defaulted
    );

    // A rerun changes nothing.
    let before = database_snapshot(&pool).await;
    let again = import_adopted(&s3, &repos, &pool, owners.clone()).await;
    assert_eq!(again.counts.unchanged, 2);
    assert_eq!(again.counts.failed, 1);
    assert_eq!(database_snapshot(&pool).await, before);

    // The refused row, repaired where it now lives, comes over on the next run.
    run_script(
        &pool,
        "update legacy.assets set duration = 10 where id = 'broken-e1-s1-vid'",
    )
    .await;
    let fixed = import_adopted(&s3, &repos, &pool, owners).await;
    assert_eq!(fixed.counts.imported, 1);
    assert_eq!(fixed.counts.unchanged, 2);
    assert!(!fixed.is_failure());
    assert!(
        repos
            .dramas
            .get_complete(owner, &id("broken"))
            .await
            .is_ok()
    );
}

#[sqlx::test(migrations = false)]
async fn the_old_repository_columns_and_users_table_are_understood(pool: PgPool) {
    // What the old repository code wrote although its SQL file never created it.
    old_database(
        &pool,
        "alter table dramas add column user_id text, add column cover_url text;
         alter table characters add column is_main boolean;
         alter table episodes add column sequence_number integer;
         alter table characters alter column main drop default;
         update characters set main = null, is_main = (id = 'corgi-c2');
         update episodes set sequence_number = case id when 'corgi-e1' then 2 else 1 end;
         update dramas set user_id = 'a1111111-1111-1111-1111-111111111111' where id = 'corgi';
         update dramas set user_id = 'alice' where id = 'heist';
         update assets set duration = 10 where id = 'broken-e1-s1-vid';
         create table users (id text primary key, email text, display_name text,
           tokens integer default 30, subscription_tier text default 'free');
         insert into users values
           ('a1111111-1111-1111-1111-111111111111', 'demo@shortformdramas.com', 'Demo', 7, 'pro'),
           ('not-a-uuid', 'x@example.com', null, 30, 'free');",
    )
    .await;
    let alice = UserId::random();
    let owners = OwnerMap::parse(format!(r#"{{"alice": "{alice}"}}"#).as_bytes()).unwrap();
    let Adopted { repos, report, .. } = adopt_and_import(&pool, owners).await;

    let demo: UserId = "a1111111-1111-1111-1111-111111111111".parse().unwrap();
    let user = repos.users.get_user(demo).await.unwrap();
    assert_eq!(user.email.as_deref(), Some("demo@shortformdramas.com"));
    assert_eq!(
        user.tokens, 0,
        "an old balance is carried only when trusted, and only the old tables name this user \
         (Supabase Auth does not list it)"
    );
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains(&demo.to_string()) && n.contains("not a user of Supabase Auth")),
        "{:?}",
        report.notes
    );
    assert!(report.users_created.contains(&demo));
    assert!(report.users_created.contains(&alice));
    assert!(
        report.notes.iter().any(|n| n.contains("not-a-uuid")),
        "{:?}",
        report.notes
    );
    let corgi = stored_drama(&repos, demo, "corgi").await.drama;
    assert!(!corgi.characters[0].main && corgi.characters[1].main);
    assert_eq!(
        corgi.episodes[0].id.as_str(),
        "corgi-e2",
        "sequence_number orders"
    );
    assert!(repos.dramas.get_complete(alice, &id("heist")).await.is_ok());
    // The default owner has no mapping: its drama fails and says what to pass.
    let broken = drama_report(&report, "broken");
    assert_eq!(
        broken.reason.as_ref().unwrap().code,
        ReasonCode::OwnerUnmapped
    );
}

/// The `users` table the old repository wrote (the SQL file has none).
const OLD_USERS_SQL: &str = "create table users (id text primary key, email text, \
     display_name text, tokens integer default 30, subscription_tier text default 'free');
     insert into users values
       ('a1111111-1111-1111-1111-111111111111', 'demo@shortformdramas.com', 'Demo', 7, 'pro');";

#[sqlx::test(migrations = false)]
async fn a_main_character_keeps_its_flag_from_is_main(pool: PgPool) {
    // A real old database: `main` from the SQL file (default false, never written by the old
    // code, so false on every row) and `is_main`, which the old repository wrote and read.
    old_database(
        &pool,
        "alter table characters add column is_main boolean;
         update characters set main = false, is_main = (id in ('corgi-c2', 'heist-c1'));",
    )
    .await;
    let owner = UserId::random();
    let Adopted { repos, report, .. } =
        adopt_and_import(&pool, OwnerMap::default().with_default_owner(owner)).await;

    let corgi = stored_drama(&repos, owner, "corgi").await.drama;
    assert!(!corgi.characters[0].main && corgi.characters[1].main);
    let heist = stored_drama(&repos, owner, "heist").await.drama;
    assert!(heist.characters[0].main);
    let corgi_report = drama_report(&report, "corgi");
    assert!(
        corgi_report
            .repairs
            .iter()
            .any(|r| r.contains("\"corgi-c2\"") && r.contains("is_main")),
        "{:?}",
        corgi_report.repairs
    );
}

#[sqlx::test(migrations = false)]
async fn a_mapped_owner_listed_in_the_old_users_table_keeps_its_row(pool: PgPool) {
    old_database(&pool, OLD_USERS_SQL).await;
    run_script(
        &pool,
        "update assets set duration = 10 where id = 'broken-e1-s1-vid'",
    )
    .await;
    let s3 = TestS3::start().await;
    let demo: UserId = "a1111111-1111-1111-1111-111111111111".parse().unwrap();
    let owners = OwnerMap::default().with_default_owner(demo);

    // The dry run names the user once.
    let dry = dry_run_in_public(&s3, &pool, owners.clone()).await;
    assert_eq!(dry.users_created, vec![demo]);

    drama_postgres::adopt_legacy_schema(&pool).await.unwrap();
    let repos = repos(&pool);
    let report = import_adopted(&s3, &repos, &pool, owners).await;
    assert_eq!(report.users_created, vec![demo]);
    assert_eq!(report.counts.imported, 3, "{report:#?}");
    let user = repos.users.get_user(demo).await.unwrap();
    assert_eq!(user.email.as_deref(), Some("demo@shortformdramas.com"));
    assert_eq!(user.display_name.as_deref(), Some("Demo"));
    assert_eq!(user.tokens, 30);
    assert_eq!(user.subscription_tier, "pro");
    // Credited once: the opening entry (the initial credits: its old balance of 7 is not
    // trusted without --trust-legacy-balances), nothing else.
    let ledger: Vec<(i64, i64, String)> = sqlx::query_as(
        "select amount, balance_after, reason from credit_ledger where owner_id = $1 order by id",
    )
    .bind(demo.as_uuid())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(ledger, vec![(30, 30, "opening".to_owned())]);
    assert!(repos.dramas.get_complete(demo, &id("corgi")).await.is_ok());
}

/// The old Supabase branch wrote its demo user into every drama row its GraphQL saved; like
/// `10000` it is the old default owner, whose dramas `--owner` receives, and its `users` row
/// does not become a user nobody can sign in as.
#[sqlx::test(migrations = false)]
async fn the_old_demo_users_dramas_go_to_the_default_owner(pool: PgPool) {
    old_database(&pool, OLD_USERS_SQL).await;
    run_script(
        &pool,
        "alter table dramas add column user_id text;
         update dramas set user_id = 'a1111111-1111-1111-1111-111111111111' where id = 'corgi';
         update dramas set user_id = 'A1111111-1111-1111-1111-111111111111' where id = 'heist';
         update assets set duration = 10 where id = 'broken-e1-s1-vid';",
    )
    .await;
    let owner = UserId::random();
    let Adopted { repos, report, .. } =
        adopt_and_import(&pool, OwnerMap::default().with_default_owner(owner)).await;
    assert_eq!(report.counts.imported, 3, "{report:#?}");
    for drama in ["corgi", "heist", "broken"] {
        assert!(
            repos.dramas.get_complete(owner, &id(drama)).await.is_ok(),
            "{drama}"
        );
    }
    let demo: UserId = "a1111111-1111-1111-1111-111111111111".parse().unwrap();
    assert!(repos.users.get_user(demo).await.is_err());
    assert_eq!(report.users_created, vec![owner]);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains(&demo.to_string()) && n.contains(&owner.to_string())),
        "{:?}",
        report.notes
    );
}

#[sqlx::test(migrations = false)]
async fn a_blank_owner_is_the_old_default_owner(pool: PgPool) {
    old_database(
        &pool,
        "alter table dramas add column user_id text;
         update dramas set user_id = '' where id = 'corgi';
         update dramas set user_id = '  ' where id = 'heist';",
    )
    .await;
    let owner = UserId::random();
    let Adopted { repos, report, .. } =
        adopt_and_import(&pool, OwnerMap::default().with_default_owner(owner)).await;
    assert_eq!(report.counts.imported, 2, "{report:#?}");
    assert!(repos.dramas.get_complete(owner, &id("corgi")).await.is_ok());
    assert!(repos.dramas.get_complete(owner, &id("heist")).await.is_ok());
}

#[sqlx::test(migrations = false)]
async fn scenes_outside_an_episode_of_their_drama_are_reported(pool: PgPool) {
    old_database(
        &pool,
        "alter table scenes alter column episode_id drop not null;
         insert into scenes (id, episode_id, drama_id, description) values
           ('corgi-lost', null, 'corgi', 'No episode.'),
           ('corgi-moved', 'heist-e1', 'corgi', 'In the other drama.');
         insert into assets (id, drama_id, scene_id, kind, prompt) values
           ('corgi-lost-img', 'corgi', 'corgi-lost', 'image', 'An image of the lost scene');",
    )
    .await;
    let owner = UserId::random();
    let Adopted { repos, report, .. } =
        adopt_and_import(&pool, OwnerMap::default().with_default_owner(owner)).await;

    let corgi_report = drama_report(&report, "corgi");
    assert_eq!(corgi_report.outcome, Outcome::Imported);
    for scene in ["\"corgi-lost\"", "\"corgi-moved\""] {
        assert!(
            corgi_report
                .repairs
                .iter()
                .any(|r| r.starts_with(&format!("scene {scene}"))),
            "{scene}: {:?}",
            corgi_report.repairs
        );
    }
    let corgi = stored_drama(&repos, owner, "corgi").await.drama;
    assert_eq!(corgi.episodes[0].scenes.len(), 2);
    // The asset of the scene that has no episode stays on the drama.
    assert!(
        corgi
            .assets
            .iter()
            .any(|a| a.id.as_str() == "corgi-lost-img")
    );
    // The scene under another drama's episode comes over with that drama.
    let heist = stored_drama(&repos, owner, "heist").await.drama;
    let scenes: Vec<&str> = heist.episodes[0]
        .scenes
        .iter()
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(scenes, vec!["heist-e1-s1", "corgi-moved"]);
}

/// On the old server's split branch the bucket (REST) and the tables (GraphQL) held two copies
/// of the same drama, and the tables' never held assets, metadata or `premise_url`. After the
/// adoption imported the rows, the bucket's file of the same drama says so by its own code,
/// naming the import that brought the drama in, and `--overwrite` takes the file's copy.
#[sqlx::test(migrations = false)]
async fn the_bucket_copy_of_a_drama_adopted_from_the_tables_is_told_apart(pool: PgPool) {
    old_database(&pool, "").await;
    drama_postgres::adopt_legacy_schema(&pool).await.unwrap();
    let s3 = TestS3::start().await;
    let repos = repos(&pool);
    let owner = UserId::random();
    let owners = OwnerMap::default().with_default_owner(owner);
    let adopted = import_adopted(&s3, &repos, &pool, owners).await;
    assert_eq!(drama_report(&adopted, "heist").outcome, Outcome::Imported);

    // The bucket's copy: the same drama, with what its rows could not hold.
    let stored = stored_drama(&repos, owner, "heist").await.drama;
    let mut file = serde_json::to_value(&stored).unwrap();
    file["metadata"] =
        serde_json::json!({"reference_image_url": "https://images.example.org/r.png"});
    file["characters"][0]["premise_url"] = serde_json::json!("https://images.example.org/w.png");
    s3.put_json(&common::drama_key("heist"), &file).await;

    let report = common::import(&s3, &repos, common::options(&s3, owner)).await;
    let entry = drama_report(&report, "heist");
    assert_eq!(entry.outcome, Outcome::Skipped, "{entry:#?}");
    let reason = entry.reason.as_ref().unwrap();
    assert_eq!(
        reason.code,
        ReasonCode::ImportedFromOtherSource,
        "{reason:?}"
    );
    assert!(
        reason.message.contains("db:legacy/dramas/heist") && reason.message.contains("--overwrite"),
        "{}",
        reason.message
    );
    assert_eq!(stored_drama(&repos, owner, "heist").await.drama, stored);

    let mut overwrite = common::options(&s3, owner);
    overwrite.overwrite = true;
    let taken = common::import(&s3, &repos, overwrite).await;
    assert_eq!(drama_report(&taken, "heist").outcome, Outcome::Updated);
    let now = stored_drama(&repos, owner, "heist").await.drama;
    assert_eq!(
        now.characters[0].premise_url.as_deref(),
        Some("https://images.example.org/w.png")
    );
}

/// The old tables as Supabase left them: allow-all policies, and the client roles granted
/// what Supabase grants them by default — here with a `users` table whose balance someone
/// raised through the Data API, `scenes` under row security without a policy, and `jobs`
/// granted to `anon` only.
async fn old_tables_open_to_clients(pool: &PgPool) -> Vec<LegacyTableAccess> {
    old_database(
        pool,
        "create table users (id text primary key, email text, display_name text,
           tokens bigint default 30, subscription_tier text default 'free');
         alter table users enable row level security;
         create policy \"Allow all on users\" on users for all using (true) with check (true);
         insert into users values
           ('b2222222-2222-2222-2222-222222222222', 'rich@example.com', null,
            1000000000000000, 'free'),
           ('c3333333-3333-3333-3333-333333333333', 'poor@example.com', null, 7, 'free');
         drop policy \"Allow all on scenes\" on scenes;
         grant select, insert, update, delete on all tables in schema public
           to anon, authenticated;
         revoke insert, update on jobs from authenticated;",
    )
    .await;
    let access = drama_postgres::legacy_table_access(pool, "public")
        .await
        .unwrap();
    let of = |table: &str| access.iter().find(|a| a.table == table).unwrap().clone();
    assert_eq!(of("users").writable_by, ["anon", "authenticated"]);
    assert!(of("users").row_security);
    assert_eq!(of("users").write_policies, ["Allow all on users"]);
    assert!(
        of("scenes").writable_by.is_empty(),
        "row security, no policy"
    );
    assert_eq!(of("jobs").writable_by, ["anon"]);
    drama_postgres::adopt_legacy_schema(pool).await.unwrap();
    let closed = drama_postgres::legacy_table_access(pool, "legacy")
        .await
        .unwrap();
    assert!(
        closed.iter().all(|a| a.writable_by.is_empty()),
        "{closed:?}"
    );
    access
}

const RICH: &str = "b2222222-2222-2222-2222-222222222222";
const POOR: &str = "c3333333-3333-3333-3333-333333333333";

async fn import_open_tables(
    pool: &PgPool,
    access: Vec<LegacyTableAccess>,
    trust: bool,
) -> (Repositories, ImportReport) {
    let s3 = TestS3::start().await;
    let repos = repos(pool);
    let mut o = options(
        &s3,
        OwnerMap::default().with_default_owner(UserId::random()),
        false,
    );
    o.legacy_access = access;
    o.trust_legacy_balances = trust;
    o.max_legacy_credits = 5000;
    let report = run(&s3, &repos, pool, "legacy", o).await;
    (repos, report)
}

async fn tokens(repos: &Repositories, user: &str) -> i64 {
    repos
        .users
        .get_user(user.parse().unwrap())
        .await
        .unwrap()
        .tokens
}

/// Supabase Auth as it stands at adoption: `users` signed up, with `is_anonymous` as
/// Supabase has it since anonymous sign-ins; `anonymous` are anonymous sessions.
async fn auth_users(pool: &PgPool, users: &[&str], anonymous: &[&str]) {
    run_script(
        pool,
        "alter table auth.users add column if not exists is_anonymous boolean not null \
         default false",
    )
    .await;
    for (ids, anonymous) in [(users, false), (anonymous, true)] {
        for id in ids {
            sqlx::query("insert into auth.users (id, is_anonymous) values ($1::uuid, $2)")
                .bind(id)
                .bind(anonymous)
                .execute(pool)
                .await
                .unwrap();
        }
    }
}

#[sqlx::test(migrations = false)]
async fn balances_anyone_could_write_open_at_the_initial_credits(pool: PgPool) {
    let access = old_tables_open_to_clients(&pool).await;
    auth_users(&pool, &[RICH, POOR], &[]).await;
    let (repos, report) = import_open_tables(&pool, access.clone(), false).await;
    assert_eq!(tokens(&repos, RICH).await, 30, "{:?}", report.notes);
    assert_eq!(tokens(&repos, POOR).await, 30);
    assert!(!report.trust_legacy_balances);
    assert_eq!(report.legacy_access, access);
    let noted = |what: &[&str]| {
        report
            .notes
            .iter()
            .any(|n| what.iter().all(|w| n.contains(w)))
    };
    assert!(
        noted(&[RICH, "1000000000000000", "--trust-legacy-balances"]),
        "{:?}",
        report.notes
    );
    assert!(noted(&["old table users:", "anon and authenticated"]));
    assert!(!noted(&["old table scenes:"]));
}

#[sqlx::test(migrations = false)]
async fn trusted_balances_are_carried_over_up_to_the_cap(pool: PgPool) {
    let access = old_tables_open_to_clients(&pool).await;
    let (repos, report) = import_open_tables(&pool, access, true).await;
    assert_eq!(
        tokens(&repos, RICH).await,
        5000,
        "capped: {:?}",
        report.notes
    );
    assert_eq!(tokens(&repos, POOR).await, 7);
    assert!(report.trust_legacy_balances);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains(RICH) && n.contains("LEGACY_MAX_CREDITS")),
        "{:?}",
        report.notes
    );
}

/// Rows anyone could insert into the old tables do not mint credits: without
/// `--trust-legacy-balances`, a user only the old tables name opens with the initial credits
/// only when Supabase Auth lists it as signed up; an anonymous session (anyone can open
/// thousands) or an id Auth does not know opens with nothing, as a new anonymous session does.
#[sqlx::test(migrations = false)]
async fn users_rows_of_anonymous_sessions_or_unknown_ids_open_with_nothing(pool: PgPool) {
    let access = old_tables_open_to_clients(&pool).await;
    const GHOST: &str = "d4444444-4444-4444-4444-444444444444";
    run_script(
        &pool,
        &format!(
            "insert into legacy.users values ('{GHOST}', 'ghost@example.com', null, 30, 'pro')"
        ),
    )
    .await;
    auth_users(&pool, &[POOR], &[RICH]).await;
    let (repos, report) = import_open_tables(&pool, access, false).await;
    assert_eq!(tokens(&repos, POOR).await, 30, "{:?}", report.notes);
    assert_eq!(tokens(&repos, RICH).await, 0);
    assert_eq!(tokens(&repos, GHOST).await, 0);
    let noted = |id: &str, why: &str| {
        report
            .notes
            .iter()
            .any(|n| n.contains(id) && n.contains(why))
    };
    assert!(noted(RICH, "anonymous session"), "{:?}", report.notes);
    assert!(
        noted(GHOST, "not a user of Supabase Auth"),
        "{:?}",
        report.notes
    );
    assert!(!noted(POOR, "Supabase Auth"), "{:?}", report.notes);
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("old table users:") && n.contains("email and subscription_tier")),
        "{:?}",
        report.notes
    );
}
