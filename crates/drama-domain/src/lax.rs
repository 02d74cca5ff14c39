//! Numbers and flags of JSON input read as the old server's models read them, within what
//! the API document can state.
//!
//! The old server validated its bodies with Pydantic in its default (lax) mode, which takes
//! `10.0` for an integer field and `1` for a boolean one; its main client, a Flutter app,
//! writes every `double` with a fraction (`jsonEncode(10.0)` is `10.0`). serde refuses both.
//! Here an integer field takes any integral number (`10.0` is 10, as JSON Schema's `integer`
//! also reads it) and a flag takes `0` and `1` besides `false` and `true`. What Pydantic
//! also coerced from text (`"10"`, `"yes"`) stays refused: the document types these fields as
//! numbers and booleans, and no JSON writer sends a number as text unasked. `10.5`, `2` for a
//! flag and values outside the field's type are refused, naming the field.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{self, Unexpected, Visitor};
use serde_json::Value;

/// `value` as an `i64` when it is an integral JSON number that fits.
pub fn as_i64(value: &Value) -> Option<i64> {
    value
        .as_i64()
        .or_else(|| value.as_f64().and_then(float_to_i64))
}

/// Exactly 2^63: the first float past `i64::MAX` (which itself has no float of its own).
const I64_END: f64 = 9_223_372_036_854_775_808.0;

/// `float` as an `i64` when it is integral and in range (`10.0` → 10; `10.5` → `None`).
pub fn float_to_i64(float: f64) -> Option<i64> {
    if float.fract() == 0.0 && (-I64_END..I64_END).contains(&float) {
        // Integral and inside the range, so the conversion is exact.
        #[expect(clippy::cast_possible_truncation, reason = "checked just above")]
        Some(float as i64)
    } else {
        None
    }
}

/// `#[serde(default, deserialize_with = "drama_domain::lax::option_int")]` for an optional
/// integer field.
///
/// # Errors
/// The deserializer's error for anything but an integral number that fits `T`, or null.
pub fn option_int<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    deserializer.deserialize_option(OptionVisitor(PhantomData))
}

/// `#[serde(default, deserialize_with = "drama_domain::lax::flag")]` for a boolean field:
/// `true`, `false`, `1` or `0` (`1.0` and `0.0` too).
///
/// # Errors
/// The deserializer's error for any other value.
pub fn flag<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    deserializer.deserialize_any(FlagVisitor)
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

struct FlagVisitor;

impl Visitor<'_> for FlagVisitor {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a boolean (or 0 or 1)")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::invalid_value(Unexpected::Signed(v), &self)),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        match v {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        match float_to_i64(v) {
            Some(int) => self.visit_i64(int),
            None => Err(E::invalid_value(Unexpected::Float(v), &self)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Body {
        #[serde(default, deserialize_with = "super::option_int")]
        days: Option<u32>,
        #[serde(default, deserialize_with = "super::flag")]
        on: bool,
    }

    fn days(body: serde_json::Value) -> Result<Option<u32>, serde_json::Error> {
        serde_json::from_value::<Body>(body).map(|b| b.days)
    }

    fn on(value: serde_json::Value) -> Result<bool, serde_json::Error> {
        serde_json::from_value::<Body>(json!({ "on": value })).map(|b| b.on)
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
    fn flags_are_booleans_zero_or_one() {
        assert!(on(json!(true)).unwrap());
        assert!(!on(json!(false)).unwrap());
        assert!(on(json!(1)).unwrap());
        assert!(!on(json!(0)).unwrap());
        assert!(on(json!(1.0)).unwrap());
        assert!(!on(json!(0.0)).unwrap());
        assert!(!serde_json::from_value::<Body>(json!({})).unwrap().on);
        for refused in [
            json!(2),
            json!(-1),
            json!(0.5),
            json!("true"),
            json!("1"),
            json!(null),
        ] {
            assert!(on(refused.clone()).is_err(), "{refused}");
        }
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
