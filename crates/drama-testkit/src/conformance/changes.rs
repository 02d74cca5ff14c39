//! Scenarios of the change feed that followers of a drama read.

use std::sync::Arc;

use drama_dal::{DramaChange, Store};
use drama_domain::{DramaPatch, EntityPatch};
use futures::StreamExt as _;

use super::user;
use crate::builders::small_drama;

/// Creation, every committed change and deletion are announced once each, in order, with the
/// version they produced; a refused write announces nothing.
pub async fn changes_are_announced_to_followers(store: Arc<dyn Store>) {
    let alice = user(&*store).await;
    let mut changes = store.drama_changes().await.unwrap();
    let d = small_drama("followed");
    store.create(alice, &d).await.unwrap();
    let mut edited = d.clone();
    edited.title = "Edited".into();
    store.save_complete(alice, &edited, None).await.unwrap();
    assert!(
        store.save_complete(alice, &edited, Some(1)).await.is_err(),
        "a stale write is refused"
    );
    store
        .patch(
            alice,
            &d.id,
            &EntityPatch::Drama(DramaPatch::from_json(br#"{"title": "Patched"}"#).unwrap()),
            None,
        )
        .await
        .unwrap();
    store.delete(alice, &d.id).await.unwrap();
    // A later drama's notice fences the stream: whatever was announced about the first one
    // arrived before it.
    let fence = small_drama("fence");
    store.create(alice, &fence).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let change = tokio::time::timeout(std::time::Duration::from_secs(10), changes.next())
            .await
            .expect("a notice within 10 s")
            .expect("the feed stays open");
        if change.drama_id == fence.id {
            break;
        }
        if change.drama_id == d.id {
            seen.push(change);
        }
    }
    let notice = |version, deleted| DramaChange {
        drama_id: d.id.clone(),
        owner: alice,
        version,
        deleted,
    };
    assert_eq!(
        seen,
        [
            notice(1, false),
            notice(2, false),
            notice(3, false),
            notice(3, true)
        ]
    );
}
