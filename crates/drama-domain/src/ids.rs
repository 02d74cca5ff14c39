use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

/// Why a string is not a valid client id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientIdError {
    /// The id is the empty string.
    #[error("must not be empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] characters.
    #[error("must be at most 128 characters, got {0}")]
    TooLong(usize),
    /// The id contains a character outside `[A-Za-z0-9_.-]`.
    #[error("may only contain A-Z, a-z, 0-9, '_', '.' and '-', found {0:?}")]
    BadCharacter(char),
}

/// Longest accepted client id.
pub const MAX_ID_LEN: usize = 128;

fn check_client_id(s: &str) -> Result<(), ClientIdError> {
    if s.is_empty() {
        return Err(ClientIdError::Empty);
    }
    if let Some(bad) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(ClientIdError::BadCharacter(bad));
    }
    // Only ASCII remains, so bytes are characters.
    if s.len() > MAX_ID_LEN {
        return Err(ClientIdError::TooLong(s.len()));
    }
    Ok(())
}

macro_rules! client_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        ///
        /// Ids written by clients and language models: 1–128 characters of `[A-Za-z0-9_.-]`.
        /// They are unique only inside one drama (except drama ids, which are global).
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Parses an id.
            ///
            /// # Errors
            /// [`ClientIdError`] when `s` is empty, too long or uses another character.
            pub fn parse(s: impl Into<String>) -> Result<Self, ClientIdError> {
                let s = s.into();
                check_client_id(&s)?;
                Ok(Self(s))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The id as an owned string.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = ClientIdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = ClientIdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(s).map_err(|e| serde::de::Error::custom(format_args!("invalid id: {e}")))
            }
        }
    };
}

client_id!(
    /// Id of a drama, unique across all owners.
    DramaId
);
client_id!(
    /// Id of a character, unique within its drama.
    CharacterId
);
client_id!(
    /// Id of an episode, unique within its drama.
    EpisodeId
);
client_id!(
    /// Id of a scene, unique within its drama (not only its episode).
    SceneId
);
client_id!(
    /// Id of an asset, unique within its drama.
    AssetId
);

/// Id of a user: the Supabase Auth subject for people, a generated UUID for service users.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(pub Uuid);

impl UserId {
    /// A fresh random id.
    pub fn random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for UserId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

impl From<Uuid> for UserId {
    fn from(u: Uuid) -> Self {
        Self(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_edges_of_the_alphabet() {
        for ok in [
            "a",
            "Z",
            "0",
            "9",
            "_",
            ".",
            "-",
            "char-corgi",
            "ep1-sc1-img",
            "a.b_c-D",
        ] {
            assert!(DramaId::parse(ok).is_ok(), "{ok}");
        }
        assert!(DramaId::parse("x".repeat(128)).is_ok());
    }

    #[test]
    fn rejects_what_is_outside_it() {
        assert_eq!(DramaId::parse(""), Err(ClientIdError::Empty));
        assert_eq!(
            DramaId::parse("x".repeat(129)),
            Err(ClientIdError::TooLong(129))
        );
        assert_eq!(DramaId::parse("a b"), Err(ClientIdError::BadCharacter(' ')));
        assert_eq!(DramaId::parse("a/b"), Err(ClientIdError::BadCharacter('/')));
        assert_eq!(DramaId::parse("é"), Err(ClientIdError::BadCharacter('é')));
        assert_eq!(
            DramaId::parse("a\u{0}"),
            Err(ClientIdError::BadCharacter('\u{0}'))
        );
    }

    #[test]
    fn serde_rejects_bad_ids() {
        let e = serde_json::from_str::<SceneId>("\"../x\"").unwrap_err();
        assert!(e.to_string().contains("invalid id"), "{e}");
    }

    proptest! {
        #[test]
        fn parse_agrees_with_the_rule(s in "\\PC{0,140}") {
            let ok = !s.is_empty()
                && s.len() <= 128
                && s.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            prop_assert_eq!(EpisodeId::parse(s.clone()).is_ok(), ok);
        }
    }
}
