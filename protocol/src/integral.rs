//! Integers of request bodies, read the way JSON Schema counts them: `3.0` is the integer
//! 3. The OpenAPI description types these fields `integer`, and a body built from it by
//! a generic tool (or a language whose numbers are all floats) may carry an integral
//! float; it is accepted when its value is whole, below 2^53 in magnitude and in the
//! field's range. A fraction, a string or a value out of range is still refused.
//!
//! Use with `#[serde(deserialize_with = "crate::integral::deserialize")]`, or
//! `crate::integral::option` (with `#[serde(default)]`) for an optional field.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Visitor};

/// Integral floats are accepted below this magnitude (2^53), where each stands for one
/// integer only. Beyond it a float may be an integer literal that a JSON parser rounded
/// (`-9223372036854775809` reads as -2^63), so it is refused rather than guessed at.
const F64_INTEGRAL_LIMIT: f64 = 9_007_199_254_740_992.0;

struct Integral<T>(PhantomData<T>);

impl<T: TryFrom<i128>> Integral<T> {
    fn convert<E: de::Error>(wide: i128) -> Result<T, E> {
        T::try_from(wide).map_err(|_| E::custom(format!("integer {wide} is out of range")))
    }
}

impl<'de, T: TryFrom<i128>> Visitor<'de> for Integral<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        Self::convert(v.into())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        Self::convert(v.into())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        if v.fract() != 0.0 || !v.is_finite() || v.abs() >= F64_INTEGRAL_LIMIT {
            return Err(E::invalid_type(de::Unexpected::Float(v), &self));
        }
        // Whole and below 2^53 in magnitude: the cast is exact.
        Self::convert(v as i128)
    }
}

/// A required integer field.
pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    d.deserialize_any(Integral(PhantomData))
}

/// An optional integer field (`null` is `None`); pair with `#[serde(default)]`.
pub fn option<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128>,
{
    struct Opt<T>(PhantomData<T>);
    impl<'de, T: TryFrom<i128>> Visitor<'de> for Opt<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer or null")
        }
        fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            deserialize(d).map(Some)
        }
    }
    d.deserialize_option(Opt(PhantomData))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        #[serde(deserialize_with = "super::deserialize")]
        n: i64,
        #[serde(default, deserialize_with = "super::option")]
        m: Option<u32>,
    }

    fn json(s: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(s)
    }

    #[test]
    fn whole_floats_are_integers_and_nothing_else_is() {
        assert_eq!(json(r#"{"n": 3}"#).unwrap(), Body { n: 3, m: None });
        assert_eq!(
            json(r#"{"n": -3.0, "m": 286.0}"#).unwrap(),
            Body {
                n: -3,
                m: Some(286)
            }
        );
        assert_eq!(json(r#"{"n": 1, "m": null}"#).unwrap().m, None);
        for bad in [
            r#"{"n": 1.5}"#,
            r#"{"n": "1"}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": 9223372036854775808}"#,
            r#"{"n": -9223372036854775809}"#,
            r#"{"n": 9007199254740992.0}"#,
            r#"{"n": 1, "m": -1}"#,
            r#"{"n": 1, "m": 4294967296.0}"#,
        ] {
            assert!(json(bad).is_err(), "{bad}");
        }
        // MessagePack: a float64 of 7.0.
        let mp = rmp_serde::to_vec_named(&serde_json::json!({"n": 7.0, "m": 2})).unwrap();
        assert_eq!(
            rmp_serde::from_slice::<Body>(&mp).unwrap(),
            Body { n: 7, m: Some(2) }
        );
    }
}
