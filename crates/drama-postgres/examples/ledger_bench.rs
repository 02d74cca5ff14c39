//! What the credit ledger costs a credit movement: `public.move_credits` (the balance update,
//! the ledger row and the commit-time check that the balance follows its ledger) against the
//! bare balance update it replaced (run with triggers off, as the schema was before the
//! ledger). Each movement is its own transaction, as in the server; the two kinds alternate
//! in blocks within one run so that both see the same machine.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!   cargo run --release -p drama-postgres --example ledger_bench -- [movements] [reps]
//! ```
//!
//! Defaults: 2,000 movements per block, 3 blocks of each kind. Prints a Markdown table and
//! drops its scratch database.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::time::{Duration, Instant};

use drama_dal::{CreditLedger as _, CreditMove, CreditReason, NewUser, UserRepository as _};
use drama_domain::UserId;
use drama_postgres::PgStore;
use drama_testkit::pg::ScratchDb;
use sqlx::{Connection as _, PgConnection};

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .map_or(default, |a| a.parse().expect("a whole number"))
}

/// One movement as the server makes it now.
async fn ledger_move(conn: &mut PgConnection, owner: UserId, amount: i64) {
    let mut tx = conn.begin().await.unwrap();
    let after: Option<i64> =
        sqlx::query_scalar("select public.move_credits($1, $2, $3, $4, null, $5)")
            .bind(owner.0)
            .bind(amount)
            .bind("run_charge")
            .bind(uuid::Uuid::new_v4())
            .bind("generate")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert!(after.is_some());
    tx.commit().await.unwrap();
}

/// The balance update the ledger replaced.
async fn plain_move(conn: &mut PgConnection, owner: UserId, amount: i64) {
    let mut tx = conn.begin().await.unwrap();
    let after: Option<i64> = sqlx::query_scalar(
        "update public.users set tokens = tokens + $2 \
         where id = $1 and tokens + $2 >= 0 returning tokens",
    )
    .bind(owner.0)
    .bind(amount)
    .fetch_optional(&mut *tx)
    .await
    .unwrap();
    assert!(after.is_some());
    tx.commit().await.unwrap();
}

#[tokio::main]
async fn main() {
    let movements = arg(1, 2_000).next_multiple_of(32);
    let reps = arg(2, 3);
    let db = ScratchDb::create("ledger_bench").await;
    let pool = db.pool().await;
    drama_postgres::migrate(&pool).await.unwrap();
    let store = PgStore::new(pool.clone());
    // Several owners, so the benchmark does not measure one hot row only.
    let mut owners = Vec::new();
    for _ in 0..16 {
        let owner = UserId::random();
        store.create_user(&NewUser::new(owner)).await.unwrap();
        store
            .move_credits(&CreditMove::new(owner, 1 << 40, CreditReason::Grant))
            .await
            .unwrap();
        owners.push(owner);
    }
    let mut ledger_conn = PgConnection::connect(&db.url()).await.unwrap();
    let mut plain_conn = PgConnection::connect(&db.url()).await.unwrap();
    // Before the ledger there was no trigger on `users`; replica mode skips the new ones.
    sqlx::query("set session_replication_role = replica")
        .execute(&mut plain_conn)
        .await
        .unwrap();

    // Warm both paths (plans, caches).
    for i in 0..224 {
        let owner = owners[i % owners.len()];
        ledger_move(&mut ledger_conn, owner, -1).await;
        plain_move(
            &mut plain_conn,
            owner,
            if (i / owners.len()) % 2 == 0 { -1 } else { 1 },
        )
        .await;
    }
    let mut ledger = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..reps {
        let start = Instant::now();
        for i in 0..movements {
            ledger_move(&mut ledger_conn, owners[i % owners.len()], -1).await;
        }
        ledger.push(start.elapsed());
        let start = Instant::now();
        for i in 0..movements {
            // Alternating signs leave every balance where the ledger says it is.
            let amount = if (i / owners.len()) % 2 == 0 { -1 } else { 1 };
            plain_move(&mut plain_conn, owners[i % owners.len()], amount).await;
        }
        plain.push(start.elapsed());
    }
    let per = |d: &Duration| d.as_secs_f64() * 1e6 / movements as f64;
    println!("| rep | plain update, µs/movement | ledger, µs/movement | ratio |");
    println!("|---|---|---|---|");
    for (i, (l, p)) in ledger.iter().zip(&plain).enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {:.2}× |",
            i + 1,
            per(p),
            per(l),
            per(l) / per(p)
        );
    }
    let best = |v: &[Duration]| v.iter().map(per).fold(f64::INFINITY, f64::min);
    println!(
        "\nbest of {reps}: plain {:.1} µs, ledger {:.1} µs, +{:.1} µs per movement",
        best(&plain),
        best(&ledger),
        best(&ledger) - best(&plain)
    );
    let check = store.check_ledger().await.unwrap();
    println!("ledger check after the run: {} mismatches", check.len());

    drop(ledger_conn);
    drop(plain_conn);
    pool.close().await;
    db.drop_it().await;
}
