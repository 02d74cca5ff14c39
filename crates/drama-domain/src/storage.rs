//! Which stored objects a drama may point at.
//!
//! The one rule, kept identical to the database's `public.storage_key_belongs` (migration
//! `20261206000400_tenant_isolation.sql`), so that a key the database would refuse is also
//! refused by the server before it reads one that got into a row some other way:
//!
//! - a key whose first segment has the shape of a user id (`8-4-4-4-12` hex digits, any case)
//!   must lie under the drama owner's prefix `{owner}/` (every key the server builds is
//!   `{user}/{scope}/{category}/{file}`);
//! - any other key is an object of the old server, recorded by the legacy import, and must lie
//!   in the drama's own folder of the old layout: `dramas/{drama}/…`, optionally below a prefix
//!   (`{prefix}/dramas/{drama}/…`);
//! - no key has an empty, `.` or `..` segment.

use crate::{DramaId, UserId};

/// Whether `key` may be stored for (and read on behalf of) drama `drama` of `owner`.
pub fn storage_key_belongs(key: &str, owner: UserId, drama: &DramaId) -> bool {
    if key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return false;
    }
    let first = key.split('/').next().unwrap_or_default();
    if looks_like_user_id(first) {
        return first == owner.to_string();
    }
    legacy_key_of(key, drama)
}

/// Whether `key` lies in the old layout's folder of `drama`: `[{prefix}/]dramas/{drama}/{rest}`.
pub fn legacy_key_of(key: &str, drama: &DramaId) -> bool {
    let folder = format!("dramas/{drama}/");
    key.starts_with(&folder) || key.contains(&format!("/{folder}"))
}

/// `8-4-4-4-12` hexadecimal digits, the form the server writes user ids in.
fn looks_like_user_id(segment: &str) -> bool {
    let groups: Vec<&str> = segment.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drama(id: &str) -> DramaId {
        DramaId::parse(id).unwrap()
    }

    #[test]
    fn built_keys_belong_to_their_owner_only() {
        let (alice, bob) = (UserId::random(), UserId::random());
        let key = format!("{alice}/d1/clips/a.mp4");
        assert!(storage_key_belongs(&key, alice, &drama("d1")));
        // Any drama of the owner: the library and other dramas are the owner's too.
        assert!(storage_key_belongs(
            &format!("{alice}/~p/uploads/x.png"),
            alice,
            &drama("d1")
        ));
        assert!(!storage_key_belongs(&key, bob, &drama("d1")));
        let upper = format!("{}/d1/clips/a.mp4", alice.to_string().to_uppercase());
        assert!(!storage_key_belongs(&upper, alice, &drama("d1")));
    }

    #[test]
    fn old_layout_keys_belong_to_their_drama_folder_only() {
        let owner = UserId::random();
        assert!(storage_key_belongs(
            "dramas/d1/cover.png",
            owner,
            &drama("d1")
        ));
        assert!(storage_key_belongs(
            "old/dramas/d1/c/a.png",
            owner,
            &drama("d1")
        ));
        assert!(!storage_key_belongs(
            "dramas/d2/cover.png",
            owner,
            &drama("d1")
        ));
        assert!(!storage_key_belongs(
            "dramas/d1x/cover.png",
            owner,
            &drama("d1")
        ));
        assert!(!storage_key_belongs(
            "xdramas/d1/cover.png",
            owner,
            &drama("d1")
        ));
        assert!(!storage_key_belongs("k/1", owner, &drama("d1")));
        // A user's prefix is never an old folder, even if it holds one.
        let other = UserId::random();
        let hidden = format!("{other}/dramas/d1/a.png");
        assert!(!storage_key_belongs(&hidden, owner, &drama("d1")));
    }

    #[test]
    fn dot_and_empty_segments_never_belong() {
        let owner = UserId::random();
        for key in [
            "dramas/d1/../x.png",
            "dramas/d1/./x.png",
            "dramas/d1//x.png",
            "/dramas/d1/x.png",
            "dramas/d1/",
            "",
        ] {
            assert!(!storage_key_belongs(key, owner, &drama("d1")), "{key}");
        }
        let key = format!("{owner}/d1/../x.png");
        assert!(!storage_key_belongs(&key, owner, &drama("d1")));
    }
}
