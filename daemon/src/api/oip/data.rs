//! The `data` field of an infer request input, read straight from the JSON text into one
//! flat buffer of scalars (nested row-major arrays are flattened as they are read), with
//! no intermediate `serde_json::Value` tree. Strings are kept (BYTES attributes read
//! them); elements that cannot be a tensor value (objects, null) are kept as such so
//! that validation can name the element.

use std::fmt;

use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};

use super::json::NON_FINITE_MARKER;

/// Deepest nesting accepted in `data`.
const MAX_DEPTH: usize = 32;

/// One element of `data` as JSON wrote it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    /// A bare `NaN`/`Infinity` token (see [`super::json`]).
    NonFinite,
    /// A string: its index in [`FlatData::strings`].
    Text(u32),
    /// `null`.
    Null,
    /// An object.
    NotAValue,
}

impl Scalar {
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Scalar::Int(x) => Some(x as f64),
            Scalar::UInt(x) => Some(x as f64),
            Scalar::Float(x) => Some(x),
            _ => None,
        }
    }

    pub fn as_i64(self) -> Option<i64> {
        match self {
            Scalar::Int(x) => Some(x),
            Scalar::UInt(x) => i64::try_from(x).ok(),
            _ => None,
        }
    }

    pub fn as_bool(self) -> Option<bool> {
        match self {
            Scalar::Bool(b) => Some(b),
            _ => None,
        }
    }
}

/// The flattened `data` of one input.
#[derive(Debug, Default)]
pub struct FlatData {
    pub values: Vec<Scalar>,
    /// The strings that [`Scalar::Text`] points into.
    pub strings: Vec<Box<str>>,
    /// Nesting went deeper than [`MAX_DEPTH`]; `values` is incomplete.
    pub too_deep: bool,
}

impl<'de> Deserialize<'de> for FlatData {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = FlatData::default();
        deserializer.deserialize_any(Element {
            out: &mut out,
            depth: 0,
        })?;
        Ok(out)
    }
}

/// Visits one element (a scalar or an array) and appends what it holds to `out`.
struct Element<'a> {
    out: &'a mut FlatData,
    depth: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for Element<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("tensor data: numbers, booleans or arrays of them")
    }

    fn visit_i64<E>(self, v: i64) -> Result<(), E> {
        self.out.values.push(Scalar::Int(v));
        Ok(())
    }

    fn visit_u64<E>(self, v: u64) -> Result<(), E> {
        self.out.values.push(Scalar::UInt(v));
        Ok(())
    }

    fn visit_f64<E>(self, v: f64) -> Result<(), E> {
        self.out.values.push(Scalar::Float(v));
        Ok(())
    }

    fn visit_bool<E>(self, v: bool) -> Result<(), E> {
        self.out.values.push(Scalar::Bool(v));
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        if v == NON_FINITE_MARKER {
            self.out.values.push(Scalar::NonFinite);
        } else {
            let index = u32::try_from(self.out.strings.len()).unwrap_or(u32::MAX);
            self.out.strings.push(v.into());
            self.out.values.push(Scalar::Text(index));
        }
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.values.push(Scalar::Null);
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map
            .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
            .is_some()
        {}
        self.out.values.push(Scalar::NotAValue);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            self.out.too_deep = true;
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        if let Some(n) = seq.size_hint() {
            self.out.values.reserve(n);
        }
        loop {
            let element = Element {
                out: &mut *self.out,
                depth: self.depth + 1,
            };
            if seq.next_element_seed(element)?.is_none() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> FlatData {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn flattens_nested_rows_in_order() {
        let d = read("[[1, 2.5], [-3, true]]");
        assert_eq!(
            d.values,
            vec![
                Scalar::UInt(1),
                Scalar::Float(2.5),
                Scalar::Int(-3),
                Scalar::Bool(true)
            ]
        );
        assert!(!d.too_deep);
    }

    #[test]
    fn keeps_strings_and_non_values_for_validation() {
        let d = read(r#"[1, "x", null, {"a": [1]}, "\u0001non-finite", "y"]"#);
        assert_eq!(
            d.values,
            vec![
                Scalar::UInt(1),
                Scalar::Text(0),
                Scalar::Null,
                Scalar::NotAValue,
                Scalar::NonFinite,
                Scalar::Text(1)
            ]
        );
        assert_eq!(d.strings, vec!["x".into(), "y".into()]);
        assert_eq!(d.values[1].as_f64(), None);
    }

    #[test]
    fn flags_deep_nesting() {
        let json = format!("{}1{}", "[".repeat(40), "]".repeat(40));
        assert!(read(&json).too_deep);
        let json = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let d = read(&json);
        assert!(!d.too_deep);
        assert_eq!(d.values, vec![Scalar::UInt(1)]);
    }

    #[test]
    fn large_integers_keep_their_precision() {
        let d = read("[9007199254740993, -9007199254740993]");
        assert_eq!(d.values[0].as_i64(), Some(9_007_199_254_740_993));
        assert_eq!(d.values[1].as_i64(), Some(-9_007_199_254_740_993));
    }
}
