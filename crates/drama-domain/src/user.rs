use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ids::UserId;

/// Longest display name, in characters (a check constraint of `users` holds it: a client may
/// change its own name through Supabase's Data API, beside this server).
pub const MAX_DISPLAY_NAME: usize = 200;

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
