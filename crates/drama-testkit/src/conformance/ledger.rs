//! Scenarios of the credit ledger: every movement is a row, balances equal their ledger.

use std::sync::Arc;

use drama_dal::{CreditMove, CreditReason, Entity, NewUser, RepoError, Store};
use drama_domain::UserId;

use super::assert_not_found;

/// Movements are recorded with their reason, run and resulting balance; a movement that would
/// overdraw is refused without a row; every balance equals the sum of its ledger.
pub async fn every_credit_movement_is_in_the_ledger(store: Arc<dyn Store>) {
    let owner = UserId::random();
    let mut new = NewUser::new(owner);
    new.tokens = 5;
    store.create_user(&new).await.unwrap();
    // Any id will do for a run the store does not check.
    let run = UserId::random().0;

    let grant = CreditMove::new(owner, 10, CreditReason::Grant).note("welcome");
    assert_eq!(store.move_credits(&grant).await.unwrap(), 15);
    let charge = CreditMove::new(owner, -15, CreditReason::RunCharge).run(run);
    assert_eq!(store.move_credits(&charge).await.unwrap(), 0);
    let short = CreditMove::new(owner, -1, CreditReason::ResumeCharge).run(run);
    assert!(matches!(
        store.move_credits(&short).await,
        Err(RepoError::InsufficientTokens {
            balance: 0,
            needed: 1
        })
    ));
    // Unbilled usage is recorded at price 0.
    let free = CreditMove::new(owner, 0, CreditReason::RunCharge).run(run);
    assert_eq!(store.move_credits(&free).await.unwrap(), 0);
    assert_eq!(store.credit_tokens(owner, 4).await.unwrap(), 4);
    assert_eq!(store.debit_tokens(owner, 1).await.unwrap(), 3);

    let all = store.ledger(owner, 100, 0).await.unwrap();
    let seen: Vec<(i64, i64, CreditReason)> = all
        .iter()
        .map(|e| (e.amount, e.balance_after, e.reason))
        .collect();
    assert_eq!(
        seen,
        vec![
            (-1, 3, CreditReason::Adjustment),
            (4, 4, CreditReason::Adjustment),
            (0, 0, CreditReason::RunCharge),
            (-15, 0, CreditReason::RunCharge),
            (10, 15, CreditReason::Grant),
            (5, 5, CreditReason::Opening),
        ]
    );
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    assert_eq!(all[3].run_id, Some(run));
    assert_eq!(all[4].note.as_deref(), Some("welcome"));
    assert!(all.iter().all(|e| e.owner == owner));
    let page: Vec<i64> = store
        .ledger(owner, 2, 2)
        .await
        .unwrap()
        .iter()
        .map(|e| e.amount)
        .collect();
    assert_eq!(page, vec![0, -15]);
    assert_eq!(
        store.get_user(owner).await.unwrap().tokens,
        all.iter().map(|e| e.amount).sum::<i64>()
    );

    // A user first seen through auth opens the ledger with the deployment's initial
    // credits (`INITIAL_CREDITS`), 0 included.
    for initial in [250, 0] {
        let fresh = UserId::random();
        let user = store.upsert_from_auth(fresh, None, initial).await.unwrap();
        assert_eq!(user.tokens, initial);
        let opening = store.ledger(fresh, 10, 0).await.unwrap();
        assert_eq!(opening.len(), 1);
        assert_eq!(
            (opening[0].amount, opening[0].reason),
            (initial, CreditReason::Opening)
        );
    }

    assert_not_found(
        store
            .move_credits(&CreditMove::new(UserId::random(), 1, CreditReason::Grant))
            .await,
        Entity::User,
    );
    assert!(matches!(
        store
            .move_credits(&CreditMove::new(owner, 1, CreditReason::Grant).note("x".repeat(1001)))
            .await,
        Err(RepoError::Invalid(_))
    ));
    assert!(matches!(
        store.ledger(owner, 0, 0).await,
        Err(RepoError::Invalid(_))
    ));
    assert_eq!(store.check_ledger().await.unwrap(), vec![]);
}

/// Concurrent movements of one user are applied one after the other: none overdraws, every
/// accepted one has its row, and each row's balance follows from the one before.
pub async fn concurrent_movements_keep_the_ledger_whole(store: Arc<dyn Store>) {
    let owner = UserId::random();
    let mut new = NewUser::new(owner);
    new.tokens = 10;
    store.create_user(&new).await.unwrap();
    let tasks: Vec<_> = (0..24)
        .map(|i| {
            let store = store.clone();
            let amount = if i % 3 == 0 { 2 } else { -3 };
            tokio::spawn(async move {
                store
                    .move_credits(&CreditMove::new(owner, amount, CreditReason::Adjustment))
                    .await
            })
        })
        .collect();
    let mut accepted = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(balance) => {
                assert!(balance >= 0);
                accepted += 1;
            }
            Err(RepoError::InsufficientTokens { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    let mut rows = store.ledger(owner, 1000, 0).await.unwrap();
    rows.reverse();
    assert_eq!(rows.len(), accepted + 1, "one row per accepted movement");
    let mut balance = 0;
    for r in &rows {
        balance += r.amount;
        assert_eq!(r.balance_after, balance, "row {r:?}");
        assert!(balance >= 0);
    }
    assert_eq!(store.get_user(owner).await.unwrap().tokens, balance);
    assert_eq!(store.check_ledger().await.unwrap(), vec![]);
}
