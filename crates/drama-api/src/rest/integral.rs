//! Integer fields of request bodies as JSON Schema reads them: `3.0` is the integer 3.
//!
//! serde refuses a float where it expects an integer, but the document types these fields as
//! `integer`, which JSON Schema satisfies with any number whose fraction is zero, and clients
//! whose JSON writers emit every number as a float (or that compute the value in floating
//! point) send `3.0`. `3.5` and values outside the field's type are still refused.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{self, Unexpected, Visitor};
use serde_json::Value;

/// `value` as an `i64` when it is an integral JSON number that fits.
pub(crate) fn as_i64(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        let float = value.as_f64()?;
        float_to_i64(float)
    })
}

/// Exactly 2^63: the first float past `i64::MAX` (which itself has no float of its own).
const I64_END: f64 = 9_223_372_036_854_775_808.0;

fn float_to_i64(float: f64) -> Option<i64> {
    if float.fract() == 0.0 && (-I64_END..I64_END).contains(&float) {
        // Integral and inside the range, so the conversion is exact.
        #[expect(clippy::cast_possible_truncation, reason = "checked just above")]
        Some(float as i64)
    } else {
        None
    }
}

/// `#[serde(default, deserialize_with = "integral::option")]` for an optional integer field.
pub(crate) fn option<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

struct OptionVisitor<T>(PhantomData<T>);

impl<'de, T: TryFrom<i64> + TryFrom<u64>> Visitor<'de> for OptionVisitor<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer in range or null")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(IntegerVisitor(PhantomData)).map(Some)
    }
}

struct IntegerVisitor<T>(PhantomData<T>);

impl<T: TryFrom<i64> + TryFrom<u64>> Visitor<'_> for IntegerVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer in range")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        T::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        let int = float_to_i64(v).ok_or_else(|| E::invalid_type(Unexpected::Float(v), &self))?;
        self.visit_i64(int)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Body {
        #[serde(default, deserialize_with = "super::option")]
        days: Option<u32>,
    }

    fn days(body: serde_json::Value) -> Result<Option<u32>, serde_json::Error> {
        serde_json::from_value::<Body>(body).map(|b| b.days)
    }

    #[test]
    fn integral_floats_are_integers_and_the_rest_is_refused() {
        assert_eq!(days(json!({"days": 3})).unwrap(), Some(3));
        assert_eq!(days(json!({"days": 3.0})).unwrap(), Some(3));
        assert_eq!(days(json!({"days": null})).unwrap(), None);
        assert_eq!(days(json!({})).unwrap(), None);
        assert!(days(json!({"days": 3.5})).is_err());
        assert!(days(json!({"days": -1})).is_err());
        assert!(days(json!({"days": -1.0})).is_err());
        assert!(days(json!({"days": 5e9})).is_err());
        assert!(days(json!({"days": "3"})).is_err());
    }

    #[test]
    fn values_read_directly_follow_the_same_rule() {
        assert_eq!(super::as_i64(&json!(7)), Some(7));
        assert_eq!(super::as_i64(&json!(7.0)), Some(7));
        assert_eq!(super::as_i64(&json!(-2.0)), Some(-2));
        assert_eq!(super::as_i64(&json!(7.25)), None);
        assert_eq!(super::as_i64(&json!(9.3e18)), None);
        assert_eq!(super::as_i64(&json!(u64::MAX)), None);
        assert_eq!(super::as_i64(&json!("7")), None);
    }
}
