use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::UserId;

/// Longest display name, in characters (a check constraint of `users` holds it: a client may
/// change its own name through Supabase's Data API, beside this server).
pub const MAX_DISPLAY_NAME: usize = 200;

/// The old server's main line wrote `10000` as the owner of every drama and library upload.
pub const OLD_DEFAULT_OWNER: &str = "10000";

/// The demo user its Supabase branch wrote into every drama row its GraphQL saved
/// (`a1111111-1111-1111-1111-111111111111`); nobody signs in as it.
pub const OLD_DEMO_USER: UserId =
    UserId(Uuid::from_u128(0xa111_1111_1111_1111_1111_1111_1111_1111));

/// Whether an old owner id is the old server's implicit user, [`OLD_DEFAULT_OWNER`] or
/// [`OLD_DEMO_USER`] (in any spelling of the UUID). Both stand for "the old default owner":
/// the import gives their data to the user `--owner` names (unless the owner map names them),
/// and an old service client's `user_id` naming either means that user (`LEGACY_USER_ID`).
#[must_use]
pub fn is_old_default_owner(owner: &str) -> bool {
    let owner = owner.trim();
    owner == OLD_DEFAULT_OWNER || owner.parse::<UserId>().is_ok_and(|u| u == OLD_DEMO_USER)
}

/// A person (through Supabase Auth) or a service (through API keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Equal to `auth.users.id` for people who sign in through Supabase.
    pub id: UserId,
    /// Contact address, when known.
    pub email: Option<String>,
    /// Name to show (at most [`MAX_DISPLAY_NAME`] characters).
    pub display_name: Option<String>,
    /// Credit balance; never negative.
    pub tokens: i64,
    /// Plan name (`free` by default).
    pub subscription_tier: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Id of an API key record.
pub type ApiKeyId = Uuid;

/// Everything about an API key except its secret, which is never stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyMeta {
    /// Record id.
    pub id: ApiKeyId,
    /// Whose dramas the key acts on.
    pub owner: UserId,
    /// Label chosen at creation.
    pub name: String,
    /// The public lookup part of the key (`dk_<prefix>_…`).
    pub prefix: String,
    /// Granted scopes, e.g. `service` for a caller that may act for other users.
    pub scopes: Vec<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last successful use (recorded at most about once a minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// After this instant the key is refused.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the key was revoked; a revoked key is refused.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key the caller presented to make this one (`None`: made by a signed-in session or
    /// an operator). Revoking that key revokes this one, so a key that was taken cannot leave
    /// successors behind.
    pub made_by: Option<ApiKeyId>,
}

impl ApiKeyMeta {
    /// Scope that lets a caller act for another user (`userId` arguments).
    pub const SERVICE_SCOPE: &'static str = "service";

    /// Whether the key may be used at `now`.
    pub fn is_usable_at(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }

    /// Whether the key carries the service scope.
    pub fn is_service(&self) -> bool {
        self.scopes.iter().any(|s| s == Self::SERVICE_SCOPE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_implicit_users_of_the_old_server_are_the_old_default_owner() {
        assert_eq!(
            OLD_DEMO_USER.to_string(),
            "a1111111-1111-1111-1111-111111111111"
        );
        for old in [
            "10000",
            " 10000 ",
            "a1111111-1111-1111-1111-111111111111",
            "A1111111-1111-1111-1111-111111111111",
            "a1111111111111111111111111111111",
        ] {
            assert!(is_old_default_owner(old), "{old}");
        }
        for other in [
            "",
            "100000",
            "alice",
            "a1111111-1111-1111-1111-111111111112",
        ] {
            assert!(!is_old_default_owner(other), "{other}");
        }
    }
}
