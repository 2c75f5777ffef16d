//! Applies a model's feature specification (`[[attributes]]`): raw attribute values in,
//! the encoded input row out, exactly as the training pipeline encoded its rows
//! (standardization in f64, then rounded once to the input's type). Each refusal names the
//! attribute and, for a category, the values it takes.

use std::collections::HashMap;

use coffer_models::manifest::attributes::{AttributeSpec, Encoding, RawDefault, ValueType};
use coffer_models::{Datatype, Manifest};

use crate::tensor::{Tensor, TensorData};

/// One raw value as a client sent it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue<'a> {
    Number(f64),
    Text(&'a str),
    /// Absent or null.
    Missing,
}

/// Why a raw value cannot be encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EncodeError {
    #[error("attribute '{attribute}' is missing and has no default")]
    Missing { attribute: String },
    #[error("attribute '{attribute}': {value:?} is not one of its categories ({allowed})")]
    UnknownCategory {
        attribute: String,
        value: String,
        allowed: String,
    },
    #[error("attribute '{attribute}' is a {expected}")]
    WrongType { attribute: String, expected: String },
    #[error("attribute '{attribute}' is not a finite number")]
    NotFinite { attribute: String },
}

/// Most categories an error message lists.
const LISTED: usize = 40;

#[derive(Debug)]
struct Compiled {
    spec: AttributeSpec,
    offset: usize,
    /// Category → its column (or index), `None` for a zero category.
    lookup: HashMap<String, Option<usize>>,
}

/// The feature specification of one model version, ready to encode rows.
#[derive(Debug)]
pub struct AttributeEncoder {
    attrs: Vec<Compiled>,
    by_name: HashMap<String, usize>,
    input: String,
    datatype: Datatype,
    width: usize,
}

impl AttributeEncoder {
    /// The encoder of a checked manifest; `None` when it has no attributes.
    pub fn new(manifest: &Manifest) -> Option<AttributeEncoder> {
        let input = manifest.io.inputs.first()?;
        if manifest.attributes.is_empty() {
            return None;
        }
        let mut offset = 0;
        let attrs: Vec<Compiled> = manifest
            .attributes
            .iter()
            .map(|spec| {
                let lookup = spec
                    .categories
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), Some(i)))
                    .chain(spec.zero_categories.iter().map(|c| (c.clone(), None)))
                    .collect();
                let c = Compiled {
                    spec: spec.clone(),
                    offset,
                    lookup,
                };
                offset += spec.width();
                c
            })
            .collect();
        let by_name = attrs
            .iter()
            .enumerate()
            .map(|(i, a)| (a.spec.name.clone(), i))
            .collect();
        Some(AttributeEncoder {
            attrs,
            by_name,
            input: input.name.clone(),
            datatype: input.datatype,
            width: offset,
        })
    }

    /// The attributes, in column order.
    pub fn attributes(&self) -> impl ExactSizeIterator<Item = &AttributeSpec> {
        self.attrs.iter().map(|a| &a.spec)
    }

    /// The index of an attribute by name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Encoded columns per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The model input the attributes fill.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// For each encoded column, the index of the attribute it belongs to.
    pub fn column_owners(&self) -> Vec<usize> {
        self.attrs
            .iter()
            .enumerate()
            .flat_map(|(i, a)| std::iter::repeat_n(i, a.spec.width()))
            .collect()
    }

    /// Encodes attribute `index`'s value into `row` (one encoded row of `width()`
    /// columns, which this overwrites in the attribute's columns only).
    pub fn encode(
        &self,
        index: usize,
        value: RawValue,
        row: &mut [f64],
    ) -> Result<(), EncodeError> {
        let a = &self.attrs[index];
        let spec = &a.spec;
        let name = || spec.name.clone();
        let value = match (value, &spec.missing) {
            (RawValue::Missing, None) => return Err(EncodeError::Missing { attribute: name() }),
            (RawValue::Missing, Some(RawDefault::Number(x))) => RawValue::Number(*x),
            (RawValue::Missing, Some(RawDefault::Text(t))) => RawValue::Text(t),
            (v, _) => v,
        };
        let cols = &mut row[a.offset..a.offset + spec.width()];
        match (spec.value_type, value) {
            (ValueType::Number, RawValue::Number(x)) => {
                if !x.is_finite() {
                    return Err(EncodeError::NotFinite { attribute: name() });
                }
                match spec.encoding {
                    Encoding::Standardize => {
                        let (mean, scale) = (spec.mean.unwrap_or(0.0), spec.scale.unwrap_or(1.0));
                        cols[0] = (x - mean) / scale;
                    }
                    Encoding::Bucket => {
                        cols.fill(0.0);
                        cols[spec.edges.partition_point(|e| *e < x)] = 1.0;
                    }
                    _ => cols[0] = x,
                }
            }
            (ValueType::Category, RawValue::Text(t)) => {
                let Some(&column) = a.lookup.get(t) else {
                    let mut allowed: Vec<String> = spec
                        .allowed()
                        .take(LISTED)
                        .map(|c| format!("{c:?}"))
                        .collect();
                    let total = spec.categories.len() + spec.zero_categories.len();
                    if total > LISTED {
                        allowed.push(format!("and {} more", total - LISTED));
                    }
                    return Err(EncodeError::UnknownCategory {
                        attribute: name(),
                        value: t.chars().take(64).collect(),
                        allowed: allowed.join(", "),
                    });
                };
                match spec.encoding {
                    Encoding::Ordinal => cols[0] = column.unwrap_or(0) as f64,
                    _ => {
                        cols.fill(0.0);
                        if let Some(c) = column {
                            cols[c] = 1.0;
                        }
                    }
                }
            }
            (ValueType::Number, _) => {
                return Err(EncodeError::WrongType {
                    attribute: name(),
                    expected: "number (INT32, INT64, FP32 or FP64)".into(),
                });
            }
            (ValueType::Category, _) => {
                return Err(EncodeError::WrongType {
                    attribute: name(),
                    expected: "category (BYTES)".into(),
                });
            }
        }
        Ok(())
    }

    /// Encodes a table of raw values (one column per attribute, as an evaluation set holds
    /// them; an absent column is all missing) into `rows` encoded rows, row-major. The
    /// error carries the row.
    pub fn encode_columns(
        &self,
        columns: &std::collections::BTreeMap<String, Vec<Option<RawDefault>>>,
        rows: usize,
    ) -> Result<Vec<f64>, (usize, EncodeError)> {
        let mut out = vec![0.0; rows * self.width];
        for (i, a) in self.attrs.iter().enumerate() {
            let column = columns.get(&a.spec.name);
            for (r, row) in out.chunks_exact_mut(self.width).enumerate() {
                let value = match column.and_then(|c| c.get(r)).and_then(Option::as_ref) {
                    Some(RawDefault::Number(x)) => RawValue::Number(*x),
                    Some(RawDefault::Text(t)) => RawValue::Text(t),
                    None => RawValue::Missing,
                };
                self.encode(i, value, row).map_err(|e| (r, e))?;
            }
        }
        Ok(out)
    }

    /// The model's input tensor from `rows` encoded rows (row-major, f64 as encoded),
    /// rounded once to the input's datatype.
    pub fn tensor(&self, encoded: &[f64], rows: usize) -> Tensor {
        let data = match self.datatype {
            Datatype::Fp64 => TensorData::F64(encoded.to_vec()),
            _ => TensorData::F32(encoded.iter().map(|&x| x as f32).collect()),
        };
        Tensor {
            name: self.input.clone(),
            shape: vec![rows, self.width],
            data,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder() -> AttributeEncoder {
        let text = r#"
name = "m"
version = "1"
kind = "score"
format = "onnx"
[[files]]
path = "model.onnx"
sha256 = "0000000000000000000000000000000000000000000000000000000000000000"
size = 1
role = "model"
[[io.inputs]]
name = "features"
datatype = "FP32"
shape = [-1, 8]
[[io.outputs]]
name = "p"
datatype = "FP32"
shape = [-1, 1]
[[attributes]]
name = "age"
type = "number"
encoding = "standardize"
mean = 35.5
scale = 11.2
[[attributes]]
name = "status"
type = "category"
encoding = "one_hot"
categories = ["a", "b"]
zero_categories = ["c"]
missing = "c"
[[attributes]]
name = "grade"
type = "category"
encoding = "ordinal"
categories = ["low", "mid", "high"]
[[attributes]]
name = "amount"
type = "number"
encoding = "bucket"
edges = [100.0, 1000.0]
[[attributes]]
name = "score"
type = "number"
encoding = "identity"
missing = 0.5
"#;
        AttributeEncoder::new(&Manifest::parse(text).unwrap()).unwrap()
    }

    fn row(values: [RawValue; 5]) -> Result<Vec<f64>, EncodeError> {
        let e = encoder();
        let mut row = vec![f64::NAN; e.width()];
        for (i, v) in values.into_iter().enumerate() {
            e.encode(i, v, &mut row)?;
        }
        Ok(row)
    }

    #[test]
    fn every_encoding_fills_its_columns() {
        let r = row([
            RawValue::Number(40.0),
            RawValue::Text("b"),
            RawValue::Text("high"),
            RawValue::Number(1000.0),
            RawValue::Number(-2.25),
        ])
        .unwrap();
        assert_eq!(
            r,
            vec![(40.0 - 35.5) / 11.2, 0.0, 1.0, 2.0, 0.0, 1.0, 0.0, -2.25]
        );
        let r = row([
            RawValue::Number(35.5),
            RawValue::Missing,
            RawValue::Text("low"),
            RawValue::Number(1000.5),
            RawValue::Missing,
        ])
        .unwrap();
        assert_eq!(r, vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5]);
        assert_eq!(encoder().column_owners(), vec![0, 1, 1, 2, 3, 3, 3, 4]);
    }

    #[test]
    fn refusals_name_the_attribute() {
        let ok = |i: usize, v: RawValue<'static>| {
            let mut vals = [
                RawValue::Number(1.0),
                RawValue::Text("a"),
                RawValue::Text("low"),
                RawValue::Number(1.0),
                RawValue::Number(1.0),
            ];
            vals[i] = v;
            row(vals)
        };
        let e = ok(1, RawValue::Text("zz")).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"attribute 'status': "zz" is not one of its categories ("a", "b", "c")"#
        );
        assert!(matches!(
            ok(0, RawValue::Missing),
            Err(EncodeError::Missing { .. })
        ));
        assert!(matches!(
            ok(2, RawValue::Missing),
            Err(EncodeError::Missing { .. })
        ));
        assert!(matches!(
            ok(0, RawValue::Text("40")),
            Err(EncodeError::WrongType { .. })
        ));
        assert!(matches!(
            ok(1, RawValue::Number(1.0)),
            Err(EncodeError::WrongType { .. })
        ));
        assert!(matches!(
            ok(3, RawValue::Number(f64::INFINITY)),
            Err(EncodeError::NotFinite { .. })
        ));
    }

    #[test]
    fn the_tensor_is_rounded_once_to_the_input_type() {
        let e = encoder();
        let x = 0.1f64 + 0.2;
        let t = e.tensor(&[x; 8], 1);
        assert_eq!(t.shape, vec![1, 8]);
        assert_eq!(t.data, TensorData::F32(vec![x as f32; 8]));
        assert_eq!(t.name, "features");
    }
}
