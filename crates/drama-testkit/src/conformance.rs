//! Scenarios every repository implementation must pass, identically.
//!
//! They are grouped by the part of the store contract they check, one module each, so a
//! failing scenario points at the part an implementation breaks.
//!
//! Instantiate them once per implementation with [`for_each_scenario!`](crate::for_each_scenario),
//! as the crate documentation shows (a compiled example).

use drama_dal::{AssetObject, Entity, NewUser, RepoError, Store};
use drama_domain::{DramaId, UserId};
use serde_json::json;

mod changes;
mod conflicts;
mod keys;
mod ledger;
mod objects;
mod paging;
mod trees;
mod users;

pub use changes::changes_are_announced_to_followers;
pub use conflicts::{
    concurrent_writers_with_one_version_exactly_one_wins, patches_find_only_their_own_entities,
    stale_patches_conflict_and_change_nothing,
};
pub use keys::{
    a_key_revokes_only_within_its_own_line, key_creations_are_capped_per_day,
    lapsed_keys_are_listed_for_a_while_then_purged,
};
pub use ledger::{
    concurrent_movements_keep_the_ledger_whole, every_credit_movement_is_in_the_ledger,
};
pub use objects::{
    asset_objects_follow_their_assets, dropped_objects_become_orphans_claimed_once,
    orphans_are_claimed_only_for_their_owner,
};
pub use paging::{
    cursor_pages_are_stable_under_concurrent_inserts, offset_and_limits_are_honoured,
};
pub use trees::{
    create_rejects_taken_ids_and_invalid_dramas_without_writing, crud_round_trips_every_part,
    delete_cascades_and_returns_storage_keys, ids_at_the_edges_of_the_alphabet_round_trip,
    replacing_a_tree_removes_children_that_are_gone, unicode_and_megabyte_text_round_trip,
};
pub use users::{
    a_revocation_reaches_the_keys_made_with_the_key,
    api_keys_store_only_hashes_and_refuse_revoked_and_expired,
    capped_key_creation_holds_under_concurrency, concurrent_debits_never_overdraw,
    owners_are_isolated, users_are_created_upserted_and_credited,
};

/// Calls `$m!(scenario)` for every scenario of this module.
#[macro_export]
macro_rules! for_each_scenario {
    ($m:ident) => {
        $m!(crud_round_trips_every_part);
        $m!(create_rejects_taken_ids_and_invalid_dramas_without_writing);
        $m!(replacing_a_tree_removes_children_that_are_gone);
        $m!(concurrent_writers_with_one_version_exactly_one_wins);
        $m!(stale_patches_conflict_and_change_nothing);
        $m!(patches_find_only_their_own_entities);
        $m!(cursor_pages_are_stable_under_concurrent_inserts);
        $m!(offset_and_limits_are_honoured);
        $m!(delete_cascades_and_returns_storage_keys);
        $m!(owners_are_isolated);
        $m!(concurrent_debits_never_overdraw);
        $m!(users_are_created_upserted_and_credited);
        $m!(unicode_and_megabyte_text_round_trip);
        $m!(ids_at_the_edges_of_the_alphabet_round_trip);
        $m!(api_keys_store_only_hashes_and_refuse_revoked_and_expired);
        $m!(capped_key_creation_holds_under_concurrency);
        $m!(a_revocation_reaches_the_keys_made_with_the_key);
        $m!(a_key_revokes_only_within_its_own_line);
        $m!(key_creations_are_capped_per_day);
        $m!(lapsed_keys_are_listed_for_a_while_then_purged);
        $m!(asset_objects_follow_their_assets);
        $m!(dropped_objects_become_orphans_claimed_once);
        $m!(orphans_are_claimed_only_for_their_owner);
        $m!(changes_are_announced_to_followers);
        $m!(every_credit_movement_is_in_the_ledger);
        $m!(concurrent_movements_keep_the_ledger_whole);
    };
}

async fn user(store: &dyn Store) -> UserId {
    let id = UserId::random();
    store.create_user(&NewUser::new(id)).await.unwrap();
    id
}

fn did(s: &str) -> DramaId {
    DramaId::parse(s).unwrap()
}

/// A key under `owner`'s prefix (where the stores accept it).
fn okey(owner: UserId, rest: &str) -> String {
    format!("{owner}/{rest}")
}

fn object(key: &str) -> AssetObject {
    AssetObject {
        storage_key: key.to_owned(),
        content_type: "image/png".to_owned(),
        size_bytes: 42,
        checksum: Some("sha256:00".to_owned()),
        input_hash: Some("h1".to_owned()),
        usage: Some(json!({"images": 1})),
    }
}

fn assert_not_found(result: Result<impl std::fmt::Debug, RepoError>, entity: Entity) {
    match result {
        Err(RepoError::NotFound { entity: e, .. }) if e == entity => {}
        other => panic!("expected {entity} not found, got {other:?}"),
    }
}
