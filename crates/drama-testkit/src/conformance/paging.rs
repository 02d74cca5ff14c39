//! Scenarios of listing: keyset cursors, offsets and page limits.

use std::sync::Arc;

use drama_dal::{Cursor, PageRequest, RepoError, Store};

use super::user;
use crate::builders::small_drama;

/// Keyset pages neither skip nor repeat rows while new dramas are inserted between reads.
pub async fn cursor_pages_are_stable_under_concurrent_inserts(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    for i in 0..25 {
        store
            .create(owner, &small_drama(&format!("page-{i:02}")))
            .await
            .unwrap();
    }
    let first = store
        .list_summaries(owner, &PageRequest::first(10))
        .await
        .unwrap();
    let ids: Vec<String> = first.items.iter().map(|s| s.id.to_string()).collect();
    let expected_first: Vec<String> = (15..25).rev().map(|i| format!("page-{i:02}")).collect();
    assert_eq!(ids, expected_first, "newest first");

    let mut seen: Vec<String> = ids;
    let mut cursor = first.next.expect("more pages");
    let mut inserted = 0;
    loop {
        // Writers insert while the reader pages.
        for _ in 0..3 {
            store
                .create(owner, &small_drama(&format!("late-{inserted:02}")))
                .await
                .unwrap();
            inserted += 1;
        }
        let encoded = cursor.encode();
        let page = store
            .list_summaries(
                owner,
                &PageRequest::after(10, Cursor::decode(&encoded).unwrap()),
            )
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|s| s.id.to_string()));
        match page.next {
            Some(next) => cursor = next,
            None => break,
        }
    }
    let expected: Vec<String> = (0..25).rev().map(|i| format!("page-{i:02}")).collect();
    assert_eq!(seen, expected, "no row skipped or repeated");

    let complete = store
        .list_complete(owner, &PageRequest::first(3))
        .await
        .unwrap();
    let newest = format!("late-{:02}", inserted - 1);
    assert_eq!(complete.items.len(), 3);
    assert_eq!(complete.items[0].drama.id.as_str(), newest);
    assert_eq!(complete.items[0].drama, small_drama(&newest));
}

/// Offsets skip rows after the cursor; limits outside 1..=1000 are refused.
pub async fn offset_and_limits_are_honoured(store: Arc<dyn Store>) {
    let owner = user(&*store).await;
    for i in 0..5 {
        store
            .create(owner, &small_drama(&format!("o{i}")))
            .await
            .unwrap();
    }
    let page = store
        .list_complete(
            owner,
            &PageRequest {
                limit: 2,
                after: None,
                offset: 2,
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = page.items.iter().map(|d| d.drama.id.as_str()).collect();
    assert_eq!(ids, ["o2", "o1"]);
    assert!(page.next.is_some());
    let last = store
        .list_summaries(
            owner,
            &PageRequest {
                limit: 10,
                after: None,
                offset: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(last.items.len(), 2);
    assert!(last.next.is_none());
    for limit in [0, 1001] {
        let r = store
            .list_summaries(owner, &PageRequest::first(limit))
            .await;
        assert!(
            matches!(r, Err(RepoError::Invalid(ref e)) if e.first_field() == "limit"),
            "{r:?}"
        );
    }
    let empty = store
        .list_summaries(user(&*store).await, &PageRequest::first(10))
        .await
        .unwrap();
    assert!(empty.items.is_empty() && empty.next.is_none());
}
