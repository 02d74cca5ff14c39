//! Size limits per category, and the parsing of human-written byte sizes.

use std::collections::BTreeMap;

use crate::error::AssetError;
use crate::keys::{Category, ObjectKey};

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

/// The largest object any backend takes (R2's multipart ceiling is higher, but a single
/// generated asset above this is a bug, not a drama).
pub const DEFAULT_OTHER_LIMIT: u64 = 5 * GIB;

/// Largest accepted object per category. Keys without the built layout (legacy objects)
/// fall under `other`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeLimits {
    per_category: BTreeMap<Category, u64>,
    other: u64,
}

impl Default for SizeLimits {
    fn default() -> Self {
        let per_category = Category::ALL
            .into_iter()
            .map(|c| (c, default_limit(c)))
            .collect();
        Self {
            per_category,
            other: DEFAULT_OTHER_LIMIT,
        }
    }
}

fn default_limit(category: Category) -> u64 {
    match category {
        Category::Portraits | Category::Storyboards | Category::Covers | Category::References => {
            32 * MIB
        }
        Category::Clips | Category::Auditions => GIB,
        Category::Episodes => 4 * GIB,
        Category::Audio => 100 * MIB,
        Category::Uploads => 512 * MIB,
        Category::Metadata => MIB,
    }
}

impl SizeLimits {
    /// The limit for objects of `category`.
    pub fn for_category(&self, category: Category) -> u64 {
        self.per_category
            .get(&category)
            .copied()
            .unwrap_or_else(|| default_limit(category))
    }

    /// The limit for keys without the built layout.
    pub fn other(&self) -> u64 {
        self.other
    }

    /// The limit that applies to `key`.
    pub fn for_key(&self, key: &ObjectKey) -> u64 {
        key.category().map_or(self.other, |c| self.for_category(c))
    }

    /// Replaces the limit of one category.
    #[must_use]
    pub fn with(mut self, category: Category, limit: u64) -> Self {
        self.per_category.insert(category, limit);
        self
    }

    /// Replaces the limit for keys without the built layout.
    #[must_use]
    pub fn with_other(mut self, limit: u64) -> Self {
        self.other = limit;
        self
    }

    /// Parses `ASSETS_SIZE_LIMITS`: comma-separated `name=size` pairs, where `name` is a
    /// category or `other` and `size` is like `25MiB`, `1GiB`, `500000`. Categories not
    /// listed keep their defaults.
    ///
    /// # Errors
    /// [`AssetError::InvalidSettings`] naming the bad entry.
    pub fn parse(spec: &str) -> Result<Self, AssetError> {
        let mut limits = Self::default();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |message: String| AssetError::InvalidSettings {
                variable: "ASSETS_SIZE_LIMITS",
                message,
            };
            let (name, size) = entry
                .split_once('=')
                .ok_or_else(|| bad(format!("entry {entry:?} is not name=size")))?;
            let size = parse_size(size.trim()).map_err(|e| bad(format!("entry {entry:?}: {e}")))?;
            match name.trim() {
                "other" => limits.other = size,
                n => {
                    let category = Category::parse(n).ok_or_else(|| {
                        bad(format!(
                            "unknown category {n:?} (expected one of {} or other)",
                            Category::ALL.map(Category::as_str).join(", ")
                        ))
                    })?;
                    limits.per_category.insert(category, size);
                }
            }
        }
        Ok(limits)
    }
}

/// Parses a byte size: a number with an optional unit `B`, `KB`, `MB`, `GB` (powers of
/// 1000) or `KiB`, `MiB`, `GiB` (powers of 1024), case-insensitive.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 25MiB"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1024,
        "mib" => MIB,
        "gib" => GIB,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes() {
        assert_eq!(parse_size("25MiB"), Ok(25 * MIB));
        assert_eq!(parse_size("1gb"), Ok(1_000_000_000));
        assert_eq!(parse_size("42"), Ok(42));
        assert!(parse_size("MiB").is_err());
        assert!(parse_size("3 parsecs").is_err());
        assert!(parse_size("99999999999999GiB").is_err());
    }

    #[test]
    fn parses_the_limits_variable() {
        let limits = SizeLimits::parse("portraits=1MiB, other=10").unwrap();
        assert_eq!(limits.for_category(Category::Portraits), MIB);
        assert_eq!(limits.for_category(Category::Clips), GIB);
        assert_eq!(limits.other(), 10);
        let err = SizeLimits::parse("posters=1MiB").unwrap_err().to_string();
        assert!(
            err.contains("ASSETS_SIZE_LIMITS") && err.contains("posters"),
            "{err}"
        );
        assert!(SizeLimits::parse("portraits").is_err());
    }
}
