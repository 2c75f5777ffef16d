//! Infer requests that send a model's raw attributes (one input per attribute, shape
//! `[N]` or `[N, 1]`, numbers as INT32/INT64/FP32/FP64 and categories as BYTES, in JSON
//! or Triton's binary extension) instead of its encoded input. The attributes are encoded
//! with the model's feature specification into the one input tensor the engine takes.
//! Every refusal is a 400 that names the attribute (and, for a category, its values).

use bytes::Bytes;
use coffer_models::Datatype;
use coffer_models::manifest::attributes::ValueType;
use coffer_score::{AttributeEncoder, EncodeError, RawValue};

use super::data::Scalar;
use super::request::{InferRequest, RequestInput, bad, binary_size, decode_binary};
use crate::api::ApiError;
use crate::tensor::Tensor;

/// True when a model with a feature specification should read the request as raw
/// attributes: it has inputs, and none names one of the model's tensors.
pub fn requested(request: &InferRequest, specs: &[coffer_models::TensorSpec]) -> bool {
    !request.inputs.is_empty()
        && !request
            .inputs
            .iter()
            .any(|i| specs.iter().any(|s| s.name == i.name))
}

fn attribute_list(encoder: &AttributeEncoder) -> String {
    let names: Vec<&str> = encoder.attributes().map(|a| a.name.as_str()).collect();
    names.join(", ")
}

/// The raw attributes as sent, one JSON array per attribute (for the decision record).
pub type RawColumns = serde_json::Map<String, serde_json::Value>;

/// Reads the request's attributes and encodes them: the model's one input tensor, the
/// batch size, and (when `keep`) the values as sent.
pub fn encode(
    request: &InferRequest,
    binary: &Bytes,
    encoder: &AttributeEncoder,
    max_batch: usize,
    keep: bool,
) -> Result<(Vec<Tensor>, usize, Option<RawColumns>), ApiError> {
    let mut columns: Vec<Option<Vec<RawValue>>> = vec![None; encoder.attributes().len()];
    let mut offset = 0usize;
    let mut rows: Option<usize> = None;
    for input in &request.inputs {
        let index = encoder.index(&input.name).ok_or_else(|| {
            bad(
                "unknown_input",
                format!(
                    "input '{}' is neither the model's input '{}' nor one of its attributes ({})",
                    input.name,
                    encoder.input(),
                    attribute_list(encoder)
                ),
            )
        })?;
        if columns[index].is_some() {
            return Err(bad(
                "duplicate_input",
                format!("attribute '{}' is given twice", input.name),
            ));
        }
        let n = match input.shape.as_slice() {
            [n] | [n, 1] if *n >= 0 => *n as usize,
            _ => {
                return Err(bad(
                    "shape_mismatch",
                    format!(
                        "attribute '{}' has shape {:?}; an attribute is [N] or [N, 1] (one value per row)",
                        input.name, input.shape
                    ),
                ));
            }
        };
        if *rows.get_or_insert(n) != n {
            return Err(bad(
                "shape_mismatch",
                format!(
                    "attribute '{}' has {n} rows but other attributes have {}",
                    input.name,
                    rows.unwrap_or(0)
                ),
            ));
        }
        if n > max_batch {
            return Err(batch_too_large(n, max_batch));
        }
        let value_type = encoder
            .attributes()
            .nth(index)
            .map_or(ValueType::Number, |a| a.value_type);
        let column = read_column(input, value_type, binary, &mut offset)?;
        if column.len() != n {
            return Err(bad(
                "shape_mismatch",
                format!(
                    "attribute '{}' has shape {:?} but {} values",
                    input.name,
                    input.shape,
                    column.len()
                ),
            ));
        }
        columns[index] = Some(column);
    }
    let rows = rows.unwrap_or(0);
    if rows == 0 {
        return Err(bad(
            "shape_mismatch",
            "the batch is empty: the request has no attribute values",
        ));
    }
    let width = encoder.width();
    let mut encoded = vec![0.0f64; rows * width];
    for (index, column) in columns.iter().enumerate() {
        for (r, row) in encoded.chunks_exact_mut(width).enumerate() {
            let value = column.as_ref().map_or(RawValue::Missing, |c| c[r]);
            encoder
                .encode(index, value, row)
                .map_err(|e| refusal(e, r, rows))?;
        }
    }
    let kept = keep.then(|| {
        encoder
            .attributes()
            .zip(&columns)
            .filter_map(|(a, c)| {
                let values = c.as_ref()?.iter().map(|v| match v {
                    RawValue::Number(x) => serde_json::json!(x),
                    RawValue::Text(t) => serde_json::json!(t),
                    RawValue::Missing => serde_json::Value::Null,
                });
                Some((a.name.clone(), serde_json::Value::Array(values.collect())))
            })
            .collect()
    });
    Ok((vec![encoder.tensor(&encoded, rows)], rows, kept))
}

fn batch_too_large(rows: usize, max_batch: usize) -> ApiError {
    bad(
        "batch_too_large",
        format!("the batch has {rows} rows; this model takes at most {max_batch} per request"),
    )
}

fn refusal(e: EncodeError, row: usize, rows: usize) -> ApiError {
    let code = match &e {
        EncodeError::Missing { .. } => "missing_attribute",
        EncodeError::UnknownCategory { .. } => "unknown_category",
        EncodeError::WrongType { .. } => "attribute_type",
        EncodeError::NotFinite { .. } => "non_finite_value",
    };
    if rows == 1 {
        bad(code, e.to_string())
    } else {
        bad(code, format!("row {row}: {e}"))
    }
}

/// One attribute's values, checked against its type.
fn read_column<'a>(
    input: &'a RequestInput,
    value_type: ValueType,
    binary: &'a Bytes,
    offset: &mut usize,
) -> Result<Vec<RawValue<'a>>, ApiError> {
    let name = &input.name;
    let numeric = Datatype::parse(&input.datatype).filter(|d| !matches!(d, Datatype::Bool));
    match (value_type, numeric, input.datatype.as_str()) {
        (ValueType::Number, Some(_), _) | (ValueType::Category, None, "BYTES") => {}
        (ValueType::Number, _, _) => {
            return Err(bad(
                "attribute_type",
                format!(
                    "attribute '{name}' is a number: send it as INT32, INT64, FP32 or FP64, not {}",
                    input.datatype
                ),
            ));
        }
        (ValueType::Category, _, _) => {
            return Err(bad(
                "attribute_type",
                format!(
                    "attribute '{name}' is a category: send it as BYTES, not {}",
                    input.datatype
                ),
            ));
        }
    }
    if let Some(size) = binary_size(input) {
        let size = size as usize;
        return match numeric {
            Some(datatype) => {
                let data = decode_binary(name, datatype, binary, offset, size)?;
                Ok(data.to_f64().into_iter().map(RawValue::Number).collect())
            }
            None => read_binary_strings(name, binary, offset, size),
        };
    }
    let data = input
        .data
        .as_ref()
        .ok_or_else(|| bad("missing_data", format!("attribute '{name}' has no data")))?;
    if data.too_deep {
        return Err(bad(
            "invalid_data",
            format!("attribute '{name}': data is nested too deeply"),
        ));
    }
    data.values
        .iter()
        .enumerate()
        .map(|(i, &v)| json_value(name, i, v, numeric, &data.strings))
        .collect()
}

fn json_value<'a>(
    name: &str,
    i: usize,
    value: Scalar,
    numeric: Option<Datatype>,
    strings: &'a [Box<str>],
) -> Result<RawValue<'a>, ApiError> {
    let wrong = |what: &str| {
        bad(
            "invalid_data",
            format!("attribute '{name}' element {i}: {what}"),
        )
    };
    match (value, numeric) {
        (Scalar::Null, _) => Ok(RawValue::Missing),
        (Scalar::NonFinite, _) => Err(bad(
            "non_finite_value",
            format!("attribute '{name}' element {i} is not a finite number"),
        )),
        (Scalar::Text(t), None) => strings
            .get(t as usize)
            .map(|s| RawValue::Text(s))
            .ok_or_else(|| wrong("expected a string")),
        (_, None) => Err(wrong("expected a string")),
        (v, Some(Datatype::Int32 | Datatype::Int64)) => v
            .as_i64()
            .map(|x| RawValue::Number(x as f64))
            .ok_or_else(|| wrong("expected an integer")),
        (v, Some(Datatype::Fp32)) => v
            .as_f64()
            .map(|x| RawValue::Number(f64::from(x as f32)))
            .ok_or_else(|| wrong("expected a number")),
        (v, Some(_)) => v
            .as_f64()
            .map(RawValue::Number)
            .ok_or_else(|| wrong("expected a number")),
    }
}

/// BYTES in Triton's binary extension: each element a 4-byte little-endian length and
/// that many bytes (UTF-8 here).
fn read_binary_strings<'a>(
    name: &str,
    binary: &'a Bytes,
    offset: &mut usize,
    size: usize,
) -> Result<Vec<RawValue<'a>>, ApiError> {
    let short = || {
        bad(
            "shape_mismatch",
            format!(
                "attribute '{name}' declares {size} bytes of binary data but the body has fewer or they do not hold whole strings"
            ),
        )
    };
    let end = offset
        .checked_add(size)
        .filter(|&e| e <= binary.len())
        .ok_or_else(short)?;
    let mut at = *offset;
    *offset = end;
    let mut out = Vec::new();
    while at < end {
        let len_bytes: [u8; 4] = binary
            .get(at..at + 4)
            .filter(|_| at + 4 <= end)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(short)?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let start = at + 4;
        let stop = start
            .checked_add(len)
            .filter(|&s| s <= end)
            .ok_or_else(short)?;
        let text = std::str::from_utf8(&binary[start..stop]).map_err(|_| {
            bad(
                "invalid_data",
                format!("attribute '{name}' element {}: not UTF-8", out.len()),
            )
        })?;
        out.push(RawValue::Text(text));
        at = stop;
    }
    Ok(out)
}
