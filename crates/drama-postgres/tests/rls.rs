//! What Supabase clients can do directly, run as the real roles: `authenticated` with the
//! request's JWT claims set through `set_config`, and `anon`. Every relation of `public` is
//! covered, found in the catalog: one that is not listed here fails the grants test.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use drama_dal::{
    ApiKeyRepository, AssetObject, DramaRepository, NewUser, RepoError, UserRepository,
};
use drama_domain::UserId;
use drama_jobs::{Graph, JobStore as _, NodeSpec, RunSpec};
use drama_postgres::PgStore;
use drama_postgres::jobs::PgJobStore;
use drama_testkit::builders::drama;
use serde_json::json;
use sqlx::{PgConnection, PgPool};

/// Relations a signed-in client may read (its own rows only), with the SQL that names a row's
/// owner. Everything else in `public` is closed to clients.
const READABLE: &[(&str, &str)] = &[
    ("users", "id"),
    ("api_keys", "owner_id"),
    ("dramas", "owner_id"),
    (
        "characters",
        "(select d.owner_id from public.dramas d where d.id = t.drama_id)",
    ),
    (
        "episodes",
        "(select d.owner_id from public.dramas d where d.id = t.drama_id)",
    ),
    (
        "scenes",
        "(select d.owner_id from public.dramas d where d.id = t.drama_id)",
    ),
    (
        "assets",
        "(select d.owner_id from public.dramas d where d.id = t.drama_id)",
    ),
    ("jobs", "owner_id"),
    ("credit_ledger", "owner_id"),
    (
        "job_groups",
        "(select j.owner_id from public.jobs j where j.id = t.id)",
    ),
    (
        "job_edges",
        "(select j.owner_id from public.jobs j where j.id = t.job_id)",
    ),
    (
        "job_event_batches",
        "(select j.owner_id from public.jobs j where j.id = t.run_id)",
    ),
    (
        "job_events",
        "(select j.owner_id from public.jobs j where j.id = t.run_id)",
    ),
];

/// The only columns a client may write (its own row's).
const WRITABLE: &[(&str, &str)] = &[("users", "display_name")];

/// Columns a client may not even read: secrets, and a task's checkpoint (a script task's paid
/// output, which stays there when the task fails and is refunded).
const HIDDEN: &[(&str, &str)] = &[("api_keys", "secret_hash"), ("jobs", "checkpoint")];

async fn relations(pool: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as(
        "select c.relname::text, c.relkind::text from pg_class c \
         join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm', 'f', 'S') \
         order by 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn columns(pool: &PgPool, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "select a.attname::text from pg_attribute a \
         where a.attrelid = ('public.' || quote_ident($1))::regclass \
           and a.attnum > 0 and not a.attisdropped order by a.attnum",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn privilege(pool: &PgPool, sql: &str, role: &str, object: &str, what: &str) -> bool {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .bind(role)
        .bind(object)
        .bind(what)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn every_relation_grants_clients_exactly_the_listed_reads_and_writes(pool: PgPool) {
    let found = relations(&pool).await;
    for (name, _) in READABLE {
        assert!(
            found.iter().any(|(n, _)| n == name),
            "{name} is listed as readable but does not exist"
        );
    }
    let table_sql = "select has_table_privilege($1, 'public.' || quote_ident($2), $3)";
    let column_sql = "select has_any_column_privilege($1, 'public.' || quote_ident($2), $3)";
    let sequence_sql = "select has_sequence_privilege($1, 'public.' || quote_ident($2), $3)";
    for (name, kind) in &found {
        if kind == "S" {
            for role in ["anon", "authenticated"] {
                for what in ["USAGE", "SELECT", "UPDATE"] {
                    assert!(
                        !privilege(&pool, sequence_sql, role, name, what).await,
                        "{role} has {what} on sequence {name}"
                    );
                }
            }
            continue;
        }
        let readable = READABLE.iter().any(|(n, _)| n == name);
        for what in [
            "INSERT",
            "DELETE",
            "TRUNCATE",
            "REFERENCES",
            "TRIGGER",
            "UPDATE",
        ] {
            for role in ["anon", "authenticated"] {
                assert!(
                    !privilege(&pool, table_sql, role, name, what).await,
                    "{role} has {what} on all of {name}"
                );
            }
        }
        for what in ["SELECT", "UPDATE", "INSERT", "REFERENCES"] {
            assert!(
                !privilege(&pool, column_sql, "anon", name, what).await,
                "anon has {what} on a column of {name}"
            );
        }
        let reads = privilege(&pool, column_sql, "authenticated", name, "SELECT").await;
        assert_eq!(reads, readable, "authenticated reading {name}");
        for column in columns(&pool, name).await {
            let column_privilege = |what: &'static str| {
                let (pool, name, column) = (pool.clone(), name.clone(), column.clone());
                async move {
                    sqlx::query_scalar::<_, bool>(
                        "select has_column_privilege('authenticated', \
                         'public.' || quote_ident($1), $2, $3)",
                    )
                    .bind(&name)
                    .bind(&column)
                    .bind(what)
                    .fetch_one(&pool)
                    .await
                    .unwrap()
                }
            };
            let writable = WRITABLE.contains(&(name.as_str(), column.as_str()));
            let hidden = HIDDEN.contains(&(name.as_str(), column.as_str()));
            assert_eq!(
                column_privilege("UPDATE").await,
                writable,
                "authenticated updating {name}.{column}"
            );
            assert!(
                !column_privilege("INSERT").await,
                "inserting {name}.{column}"
            );
            assert_eq!(
                column_privilege("SELECT").await,
                readable && !hidden,
                "authenticated reading {name}.{column}"
            );
        }
    }
    // Nothing in `public` is callable through the Data API's RPC endpoint.
    let callable: Vec<String> = sqlx::query_scalar(
        "select p.oid::regprocedure::text from pg_proc p \
         join pg_namespace n on n.oid = p.pronamespace \
         where n.nspname = 'public' and p.prokind = 'f' \
           and (has_function_privilege('anon', p.oid, 'EXECUTE') \
                or has_function_privilege('authenticated', p.oid, 'EXECUTE')) \
         order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(callable, Vec::<String>::new());
    // Nor is a function created later by the role that migrates (another migration, the
    // Supabase SQL editor): it must grant EXECUTE itself to be callable.
    sqlx::query("create function public.added_later() returns int language sql as 'select 1'")
        .execute(&pool)
        .await
        .unwrap();
    let later: (bool, bool) = sqlx::query_as(
        "select has_function_privilege('anon', 'public.added_later()', 'EXECUTE'), \
                has_function_privilege('authenticated', 'public.added_later()', 'EXECUTE')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(later, (false, false));
}

/// Two users, each with a key, a drama with every kind of part and a stored object, a run with
/// an edge and events, an orphaned object and an import record.
async fn two_tenants(pool: &PgPool) -> (UserId, UserId) {
    let store = PgStore::new(pool.clone());
    let jobs = PgJobStore::new(pool.clone());
    let mut users = Vec::new();
    for name in ["alice", "bob"] {
        let user = UserId::random();
        store.create_user(&NewUser::new(user)).await.unwrap();
        store.create_api_key(user, "k", &[], None).await.unwrap();
        let d = drama(&format!("{name}s"), 1, 1, 1);
        store.create(user, &d).await.unwrap();
        let asset = d.episodes[0].scenes[0].assets[0].id.clone();
        let object = AssetObject {
            storage_key: format!("{user}/{}/storyboards/a.png", d.id),
            content_type: "image/png".to_owned(),
            size_bytes: 1,
            checksum: None,
            input_hash: None,
            usage: None,
        };
        store
            .attach_asset_object(user, &d.id, &asset, "https://cdn/a.png", &object)
            .await
            .unwrap();
        jobs.submit(
            &Graph::new(RunSpec::new("t", user.0))
                .with(NodeSpec::task("a", "k", json!({})))
                .with(NodeSpec::task("b", "k", json!({})).after(["a"])),
        )
        .await
        .unwrap();
        drama_dal::OrphanRepository::record_orphans(
            &store,
            user,
            &d.id,
            &[format!("{user}/{}/clips/gone.mp4", d.id)],
            "test",
        )
        .await
        .unwrap();
        sqlx::query(
            "insert into public.legacy_imports (source_key, source_hash, drama_id, owner_id, \
             drama_version) values ($1, repeat('0', 64), $2, $3, 1)",
        )
        .bind(format!("dramas/{}/drama.json", d.id))
        .bind(d.id.as_str())
        .bind(user.0)
        .execute(pool)
        .await
        .unwrap();
        users.push(user);
    }
    (users[0], users[1])
}

async fn act_as(conn: &mut PgConnection, user: UserId) {
    sqlx::query("set local role authenticated")
        .execute(&mut *conn)
        .await
        .unwrap();
    let claims = json!({"sub": user.to_string(), "role": "authenticated"}).to_string();
    sqlx::query("select set_config('request.jwt.claims', $1, true)")
        .bind(claims)
        .execute(&mut *conn)
        .await
        .unwrap();
}

/// Runs `sql` inside a savepoint and answers the SQLSTATE it failed with (None: it worked).
async fn attempt(conn: &mut PgConnection, sql: &str) -> Option<String> {
    sqlx::query("savepoint attempt")
        .execute(&mut *conn)
        .await
        .unwrap();
    let result = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await;
    let code = match result {
        Ok(_) => None,
        Err(sqlx::Error::Database(e)) => Some(e.code().unwrap_or_default().into_owned()),
        Err(e) => panic!("{sql}: {e}"),
    };
    sqlx::query("rollback to savepoint attempt")
        .execute(&mut *conn)
        .await
        .unwrap();
    code
}

async fn count_owned(pool: &PgPool, table: &str, owner_sql: &str, user: UserId) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from public.{table} t where {owner_sql} = $1"
    )))
    .bind(user.0)
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn a_client_reads_only_its_own_rows_and_writes_only_its_display_name(pool: PgPool) {
    let (alice, bob) = two_tenants(&pool).await;
    let mut tx = pool.begin().await.unwrap();
    act_as(&mut tx, alice).await;
    for (table, owner_sql) in READABLE {
        let (alices, bobs) = (
            count_owned(&pool, table, owner_sql, alice).await,
            count_owned(&pool, table, owner_sql, bob).await,
        );
        assert!(alices > 0 && bobs > 0, "{table}: both users have rows");
        let columns: Vec<String> = columns(&pool, table)
            .await
            .into_iter()
            .filter(|c| !HIDDEN.contains(&(table, c.as_str())))
            .collect();
        let seen: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "select count(*) from (select {} from public.{table}) t",
            columns.join(", ")
        )))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        assert_eq!(seen, alices, "{table}: alice sees exactly her rows");
    }
    let secret = attempt(&mut tx, "select secret_hash from public.api_keys").await;
    assert_eq!(secret.as_deref(), Some("42501"));
    // A script task's paid output stays in its checkpoint when the task fails and is refunded.
    let checkpoint = attempt(&mut tx, "select checkpoint from public.jobs").await;
    assert_eq!(checkpoint.as_deref(), Some("42501"));

    for (table, kind) in relations(&pool).await {
        if kind == "S" {
            let next = attempt(&mut tx, &format!("select nextval('public.{table}')")).await;
            assert_eq!(next.as_deref(), Some("42501"), "nextval({table})");
            continue;
        }
        let is_view = kind == "v";
        let denied = |code: Option<String>, what: &str| {
            // A view that cannot be written (or truncated) at all may say so before checking
            // privileges.
            let ok = code.as_deref() == Some("42501")
                || (is_view && matches!(code.as_deref(), Some("55000" | "0A000" | "42809")));
            assert!(ok, "{what} on {table}: {code:?}");
        };
        for column in columns(&pool, &table).await {
            let sql = format!("update public.{table} set {column} = {column}");
            if WRITABLE.contains(&(table.as_str(), column.as_str())) {
                assert_eq!(attempt(&mut tx, &sql).await, None, "{sql}");
            } else {
                denied(attempt(&mut tx, &sql).await, &sql);
            }
        }
        denied(
            attempt(
                &mut tx,
                &format!("insert into public.{table} default values"),
            )
            .await,
            "insert",
        );
        denied(
            attempt(&mut tx, &format!("delete from public.{table}")).await,
            "delete",
        );
        denied(
            attempt(&mut tx, &format!("truncate public.{table}")).await,
            "truncate",
        );
    }

    // The one write is bounded (the constraint refuses, so the transaction is kept by a
    // savepoint) and reaches her own row only.
    let long = "x".repeat(drama_domain::MAX_DISPLAY_NAME + 1);
    let too_long = attempt(
        &mut tx,
        &format!("update public.users set display_name = '{long}'"),
    )
    .await;
    assert_eq!(too_long.as_deref(), Some("23514"), "check_violation");
    let renamed = sqlx::query("update public.users set display_name = 'Mallory'")
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(renamed, 1);
    tx.commit().await.unwrap();
    let names: Vec<(uuid::Uuid, Option<String>)> = sqlx::query_as(
        "select id, display_name from public.users order by display_name nulls last",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        names,
        vec![(alice.0, Some("Mallory".to_owned())), (bob.0, None)]
    );
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn anonymous_clients_can_do_nothing(pool: PgPool) {
    two_tenants(&pool).await;
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("set local role anon")
        .execute(&mut *tx)
        .await
        .unwrap();
    for (table, kind) in relations(&pool).await {
        let sql = if kind == "S" {
            format!("select nextval('public.{table}')")
        } else {
            format!("select count(*) from public.{table}")
        };
        assert_eq!(
            attempt(&mut tx, &sql).await.as_deref(),
            Some("42501"),
            "{sql}"
        );
        if kind != "S" {
            let delete = attempt(&mut tx, &format!("delete from public.{table}")).await;
            assert!(delete.is_some(), "anon deleting from {table}");
        }
    }
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn the_database_refuses_a_storage_key_outside_the_owners_prefix(pool: PgPool) {
    let (alice, bob) = two_tenants(&pool).await;
    let store = PgStore::new(pool.clone());
    let d = drama("alices", 1, 1, 1);
    let asset = d.episodes[0].scenes[0].assets[0].id.clone();
    let object = |key: String| AssetObject {
        storage_key: key,
        content_type: "image/png".to_owned(),
        size_bytes: 1,
        checksum: None,
        input_hash: None,
        usage: None,
    };
    for key in [
        format!("{bob}/bobs/storyboards/a.png"),
        format!("{bob}/~project/uploads/a.png"),
        format!("{alice}/alices/../../{bob}/x.png"),
        "dramas/bobs/cover.png".to_owned(),
        "elsewhere/a.png".to_owned(),
    ] {
        let refused = store
            .attach_asset_object(
                alice,
                &d.id,
                &asset,
                "https://cdn/x.png",
                &object(key.clone()),
            )
            .await;
        assert!(
            matches!(&refused, Err(RepoError::Invalid(e)) if e.to_string().contains("assets_storage_key_owner")),
            "{key}: {refused:?}"
        );
    }
    // Her own prefix, and the old layout's folder of her drama (with or without a prefix).
    for key in [
        format!("{alice}/alices/storyboards/b.png"),
        "dramas/alices/cover.png".to_owned(),
        "old/dramas/alices/cover.png".to_owned(),
    ] {
        store
            .attach_asset_object(
                alice,
                &d.id,
                &asset,
                "https://cdn/x.png",
                &object(key.clone()),
            )
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
    }
    // The rule holds for every writer of the table, not only the repositories.
    let direct = sqlx::query("update public.assets set storage_key = $1 where drama_id = 'alices'")
        .bind(format!("{bob}/bobs/storyboards/a.png"))
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(
        direct.to_string().contains("not under the prefix"),
        "{direct}"
    );
}

#[sqlx::test(migrator = "drama_postgres::MIGRATOR")]
async fn deleting_a_drama_records_its_keys_with_their_owner(pool: PgPool) {
    let (alice, _) = two_tenants(&pool).await;
    let store = PgStore::new(pool.clone());
    let d = drama_domain::DramaId::parse("alices").unwrap();
    let keys = store.delete(alice, &d).await.unwrap();
    assert_eq!(keys.len(), 1);
    let recorded: Vec<(String, uuid::Uuid, String)> = sqlx::query_as(
        "select storage_key, owner_id, drama_id from public.orphaned_objects \
         where drama_id = 'alices' order by 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected = vec![
        (keys[0].clone(), alice.0, "alices".to_owned()),
        (
            format!("{alice}/alices/clips/gone.mp4"),
            alice.0,
            "alices".to_owned(),
        ),
    ];
    expected.sort();
    assert_eq!(recorded, expected);
}
