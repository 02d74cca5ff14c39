//! API keys: `dk_<prefix>_<secret>`.
//!
//! The prefix (12 alphanumerics) is the public lookup handle; the secret (40 alphanumerics,
//! about 238 bits) never leaves the response that created it. The store keeps SHA-256 of the
//! whole key: the secret's entropy makes a slow hash pointless, and a fast one keeps
//! authentication off the hot path.

use chrono::{DateTime, Utc};
use drama_domain::ApiKeyMeta;
use rand::Rng as _;
use rand::distr::Alphanumeric;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::RepoError;
use crate::repos::ApiKeyRepository;

/// Text every key starts with.
pub const KEY_PREFIX: &str = "dk_";
/// Length of the lookup part.
pub const LOOKUP_LEN: usize = 12;
/// Length of the secret part.
pub const SECRET_LEN: usize = 40;

fn random_alphanumeric(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh key: `(full key, lookup prefix, hash to store)`.
pub fn generate() -> (String, String, Vec<u8>) {
    let lookup = random_alphanumeric(LOOKUP_LEN);
    let key = format!("{KEY_PREFIX}{lookup}_{}", random_alphanumeric(SECRET_LEN));
    let hash = hash(&key);
    (key, lookup, hash)
}

/// SHA-256 of a full key.
pub fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The lookup prefix of a presented key, if it has our shape.
pub fn lookup_of(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (lookup, secret) = rest.split_once('_')?;
    let well_formed = lookup.len() == LOOKUP_LEN
        && secret.len() == SECRET_LEN
        && lookup
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_alphanumeric());
    well_formed.then_some(lookup)
}

/// Why a presented key was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyRejected {
    /// Not one of our keys, or no key with that prefix, or the secret does not match.
    #[error("invalid API key")]
    Invalid,
    /// The key was revoked.
    #[error("API key revoked")]
    Revoked,
    /// The key expired.
    #[error("API key expired")]
    Expired,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] RepoError),
}

/// Checks a presented key: shape, lookup, constant-time hash comparison, revocation, expiry.
///
/// # Errors
/// [`KeyRejected`] saying why; `Store` when the lookup itself failed.
pub async fn authenticate(
    repo: &(impl ApiKeyRepository + ?Sized),
    presented: &str,
    now: DateTime<Utc>,
) -> Result<ApiKeyMeta, KeyRejected> {
    let lookup = lookup_of(presented).ok_or(KeyRejected::Invalid)?;
    let stored = repo
        .find_api_key(lookup)
        .await?
        .ok_or(KeyRejected::Invalid)?;
    let presented_hash = hash(presented);
    if !bool::from(presented_hash.ct_eq(&stored.secret_hash)) {
        return Err(KeyRejected::Invalid);
    }
    if stored.meta.revoked_at.is_some() {
        return Err(KeyRejected::Revoked);
    }
    if stored.meta.expires_at.is_some_and(|e| e <= now) {
        return Err(KeyRejected::Expired);
    }
    Ok(stored.meta)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let (key, lookup, h) = generate();
        assert_eq!(lookup_of(&key), Some(lookup.as_str()));
        assert_eq!(h, hash(&key));
        assert_eq!(h.len(), 32);
        assert_eq!(key.len(), KEY_PREFIX.len() + LOOKUP_LEN + 1 + SECRET_LEN);
        let (other, _, _) = generate();
        assert_ne!(key, other);
    }

    #[test]
    fn malformed_keys_have_no_lookup() {
        let (key, _, _) = generate();
        for bad in [
            "",
            "dk_",
            "sk_abc_def",
            &key[..key.len() - 1],
            &format!("{key}x"),
            &key.replace("dk_", "DK_"),
        ] {
            assert_eq!(lookup_of(bad), None, "{bad}");
        }
    }
}
