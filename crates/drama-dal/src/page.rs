use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use drama_domain::DramaId;

use crate::error::RepoError;

/// Largest page a list call returns.
pub const MAX_PAGE_SIZE: u32 = 1000;

/// A position in a list ordered by `updated_at` descending, then id descending.
///
/// Opaque to clients: it travels as the string from [`Cursor::encode`]. Rows inserted after a
/// page was read sort before the cursor, so the following pages neither skip nor repeat rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// `updated_at` of the last row returned.
    pub updated_at: DateTime<Utc>,
    /// Id of the last row returned.
    pub id: DramaId,
}

impl Cursor {
    /// The opaque string form.
    pub fn encode(&self) -> String {
        let raw = format!("v1:{}:{}", self.updated_at.timestamp_micros(), self.id);
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Reads the opaque string form.
    ///
    /// # Errors
    /// `RepoError::Invalid` naming `cursor` when the text was not produced by [`Cursor::encode`].
    pub fn decode(text: &str) -> Result<Self, RepoError> {
        let bad = || RepoError::invalid("cursor", "not a cursor returned by this server");
        let raw = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let raw = String::from_utf8(raw).map_err(|_| bad())?;
        let rest = raw.strip_prefix("v1:").ok_or_else(bad)?;
        let (micros, id) = rest.split_once(':').ok_or_else(bad)?;
        let micros: i64 = micros.parse().map_err(|_| bad())?;
        let updated_at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
        let id = DramaId::parse(id).map_err(|_| bad())?;
        Ok(Self { updated_at, id })
    }
}

/// Which page of a list to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// Rows per page, 1..=[`MAX_PAGE_SIZE`].
    pub limit: u32,
    /// Start after this position; `None` starts at the newest row.
    pub after: Option<Cursor>,
    /// Rows to skip after the cursor (GraphQL `offset`); keyset paging uses 0.
    pub offset: u32,
}

impl PageRequest {
    /// The first `limit` rows.
    pub fn first(limit: u32) -> Self {
        Self {
            limit,
            after: None,
            offset: 0,
        }
    }

    /// The `limit` rows after `cursor`.
    pub fn after(limit: u32, cursor: Cursor) -> Self {
        Self {
            limit,
            after: Some(cursor),
            offset: 0,
        }
    }

    /// Checks the bounds.
    ///
    /// # Errors
    /// `RepoError::Invalid` naming `limit` when it is 0 or above [`MAX_PAGE_SIZE`].
    pub fn validate(&self) -> Result<(), RepoError> {
        if self.limit == 0 || self.limit > MAX_PAGE_SIZE {
            return Err(RepoError::invalid(
                "limit",
                format!("must be between 1 and {MAX_PAGE_SIZE}, got {}", self.limit),
            ));
        }
        Ok(())
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows, newest first.
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_forgeries() {
        let c = Cursor {
            updated_at: DateTime::from_timestamp_micros(1_764_000_000_123_456).unwrap(),
            id: DramaId::parse("drama_a.b-c").unwrap(),
        };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "100", "djE6eDp5", "!!!"] {
            let e = Cursor::decode(bad).unwrap_err();
            assert!(matches!(e, RepoError::Invalid(ref d) if d.first_field() == "cursor"));
        }
    }

    #[test]
    fn limits_are_bounded() {
        assert!(PageRequest::first(1).validate().is_ok());
        assert!(PageRequest::first(1000).validate().is_ok());
        assert!(PageRequest::first(0).validate().is_err());
        assert!(PageRequest::first(1001).validate().is_err());
    }
}
