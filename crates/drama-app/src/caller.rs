use chrono::{DateTime, Utc};
use drama_domain::{ApiKeyId, UserId};

use crate::RequestKey;

/// Who is asking: always taken from verified credentials, never from a request argument; and,
/// for paid requests, the client's idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The authenticated user.
    pub user: UserId,
    /// A service caller (an API key with the `service` scope, or a Supabase `service_role`
    /// token) may act for another user.
    pub service: bool,
    /// The client's name for this request: a paid request repeated with the same key returns
    /// the first answer and charges nothing.
    pub request: Option<RequestKey>,
    /// The API key the request came with (`None`: a token, a legacy key or the service
    /// key). Keys it makes are revoked with it and expire no later: a key cannot outlive
    /// itself through the keys it creates.
    pub key: Option<PresentedKey>,
    /// Authenticated by a legacy key (`LEGACY_API_KEYS`): a secret of the deployment's
    /// configuration, shared and never expiring, that acts as the legacy user.
    pub legacy: bool,
}

/// One of our API keys, as a request presented it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresentedKey {
    /// Its record.
    pub id: ApiKeyId,
    /// When it stops working (`None`: never).
    pub expires_at: Option<DateTime<Utc>>,
}

impl Caller {
    /// A person or an ordinary key.
    pub fn user(user: UserId) -> Self {
        Self {
            user,
            service: false,
            request: None,
            key: None,
            legacy: false,
        }
    }

    /// A legacy key's caller, acting as `user`.
    pub fn legacy(user: UserId) -> Self {
        Self {
            legacy: true,
            ..Self::user(user)
        }
    }

    /// A service caller.
    pub fn service(user: UserId) -> Self {
        Self {
            user,
            service: true,
            request: None,
            key: None,
            legacy: false,
        }
    }

    /// The same caller, naming its request with `key`.
    #[must_use]
    pub fn keyed(self, key: Option<RequestKey>) -> Self {
        Self {
            request: key,
            ..self
        }
    }

    /// The same caller, authenticated by API key `key`.
    #[must_use]
    pub fn with_key(self, key: PresentedKey) -> Self {
        Self {
            key: Some(key),
            ..self
        }
    }

    /// Whether the caller may make API keys: a person, or one of our keys. A legacy key and
    /// the project's service key (or a `service_role` token) are secrets of the deployment's
    /// configuration that never expire; a key made with one would outlive its removal or
    /// rotation, so keys for those callers come from the operator (`drama-server keys
    /// create`).
    pub fn may_make_keys(&self) -> bool {
        self.key.is_some() || !(self.legacy || self.service)
    }

    /// The owner whose data a request reads or writes: `requested` when a service caller
    /// names one, the caller otherwise (a `userId` argument from anyone else is ignored, so
    /// old clients that send one keep working and see only their own data).
    pub fn owner(&self, requested: Option<UserId>) -> UserId {
        match requested {
            Some(other) if self.service => other,
            _ => self.user,
        }
    }

    /// The caller as it acts for `requested`: a service caller naming a user works as that
    /// user's service caller (their dramas, their credits); anyone else stays themselves.
    pub fn acting_for(self, requested: Option<UserId>) -> Self {
        Self {
            user: self.owner(requested),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_service_callers_act_for_others() {
        let (me, other) = (UserId::random(), UserId::random());
        assert_eq!(Caller::user(me).owner(Some(other)), me);
        assert_eq!(Caller::user(me).owner(None), me);
        assert_eq!(Caller::service(me).owner(Some(other)), other);
        assert_eq!(Caller::service(me).owner(None), me);
        assert_eq!(
            Caller::service(me).acting_for(Some(other)),
            Caller::service(other)
        );
        assert_eq!(Caller::user(me).acting_for(Some(other)), Caller::user(me));
        assert_eq!(Caller::service(me).acting_for(None), Caller::service(me));
    }

    #[test]
    fn only_people_and_our_keys_make_keys() {
        let me = UserId::random();
        let key = PresentedKey {
            id: uuid::Uuid::new_v4(),
            expires_at: None,
        };
        assert!(Caller::user(me).may_make_keys());
        assert!(Caller::user(me).with_key(key).may_make_keys());
        assert!(Caller::service(me).with_key(key).may_make_keys());
        assert!(!Caller::service(me).may_make_keys());
        assert!(!Caller::legacy(me).may_make_keys());
    }
}
