//! The Open Inference Protocol infer request: parsing (JSON, or JSON plus binary tensor
//! data as Triton's binary extension sends it) and validation against the model's
//! declared inputs. Every refusal names the input and what is wrong with it.

use bytes::Bytes;
use coffer_models::{Datatype, TensorSpec};
use serde::Deserialize;
use serde_json::Value;

use super::data::{FlatData, Scalar};
use super::json::mark_non_finite;
use crate::api::{ApiError, ErrorKind, Family};
use crate::tensor::{Tensor, TensorData};

#[derive(Debug, Deserialize)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, Value>>,
    pub inputs: Vec<RequestInput>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestOutput>>,
}

#[derive(Debug, Deserialize)]
pub struct RequestInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub data: Option<FlatData>,
}

#[derive(Debug, Deserialize)]
pub struct RequestOutput {
    pub name: String,
    #[serde(default)]
    pub parameters: Option<serde_json::Map<String, Value>>,
}

pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, message, Family::InferenceProtocol).with_code(code)
}

/// Splits the body into the JSON header and the binary part, and parses the header.
pub fn parse(
    body: &Bytes,
    header_length: Option<usize>,
) -> Result<(InferRequest, Bytes), ApiError> {
    let (json, binary) = match header_length {
        Some(n) if n <= body.len() => (body.slice(..n), body.slice(n..)),
        Some(n) => {
            return Err(bad(
                "invalid_json",
                format!(
                    "Inference-Header-Content-Length is {n} but the body has {} bytes",
                    body.len()
                ),
            ));
        }
        None => (body.clone(), Bytes::new()),
    };
    let marked = mark_non_finite(&json);
    let request: InferRequest = serde_json::from_slice(&marked).map_err(|e| {
        bad(
            "invalid_json",
            format!("the body is not an infer request: {e}"),
        )
    })?;
    Ok((request, binary))
}

pub(super) fn binary_size(input: &RequestInput) -> Option<u64> {
    input.parameters.as_ref()?.get("binary_data_size")?.as_u64()
}

/// Checks the request's inputs against the model's and builds one tensor per declared
/// input, in declared order. Returns the tensors and the batch size.
pub fn validate(
    request: &InferRequest,
    binary: &Bytes,
    specs: &[TensorSpec],
    max_batch: usize,
) -> Result<(Vec<Tensor>, usize), ApiError> {
    for input in &request.inputs {
        if !specs.iter().any(|s| s.name == input.name) {
            let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            return Err(bad(
                "unknown_input",
                format!(
                    "input '{}' is not an input of this model (inputs: {})",
                    input.name,
                    known.join(", ")
                ),
            ));
        }
        if request
            .inputs
            .iter()
            .filter(|i| i.name == input.name)
            .count()
            > 1
        {
            return Err(bad(
                "duplicate_input",
                format!("input '{}' is given twice", input.name),
            ));
        }
    }
    let mut offset = 0usize;
    let mut tensors = Vec::with_capacity(specs.len());
    let mut rows: Option<usize> = None;
    for spec in specs {
        let input = request
            .inputs
            .iter()
            .find(|i| i.name == spec.name)
            .ok_or_else(|| bad("missing_input", format!("input '{}' is missing", spec.name)))?;
        let tensor = decode_input(input, spec, binary, &mut offset)?;
        let n = tensor.rows();
        if *rows.get_or_insert(n) != n {
            return Err(bad(
                "shape_mismatch",
                format!(
                    "input '{}' has {n} rows but other inputs have {}",
                    spec.name,
                    rows.unwrap_or(0)
                ),
            ));
        }
        tensors.push(tensor);
    }
    let rows = rows.unwrap_or(0);
    if rows == 0 {
        return Err(bad(
            "shape_mismatch",
            "the batch is empty: the first axis of the inputs is 0",
        ));
    }
    if rows > max_batch {
        return Err(bad(
            "batch_too_large",
            format!("the batch has {rows} rows; this model takes at most {max_batch} per request"),
        ));
    }
    Ok((tensors, rows))
}

fn decode_input(
    input: &RequestInput,
    spec: &TensorSpec,
    binary: &Bytes,
    offset: &mut usize,
) -> Result<Tensor, ApiError> {
    let name = &input.name;
    if Datatype::parse(&input.datatype) != Some(spec.datatype) {
        return Err(bad(
            "datatype_mismatch",
            format!(
                "input '{name}' has datatype {} but the model expects {}",
                input.datatype, spec.datatype
            ),
        ));
    }
    let shape_ok = input.shape.len() == spec.shape.len()
        && input.shape.first().is_some_and(|&b| b >= 0)
        && input
            .shape
            .iter()
            .zip(&spec.shape)
            .skip(1)
            .all(|(a, b)| a == b);
    if !shape_ok {
        return Err(bad(
            "shape_mismatch",
            format!(
                "input '{name}' has shape {:?} but the model expects {:?} (-1: any batch size)",
                input.shape, spec.shape
            ),
        ));
    }
    let shape: Vec<usize> = input.shape.iter().map(|&d| d as usize).collect();
    let expected = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= 1 << 28)
        .ok_or_else(|| {
            bad(
                "shape_mismatch",
                format!("input '{name}' declares too many elements"),
            )
        })?;
    let data = match (binary_size(input), &input.data) {
        (Some(size), _) => decode_binary(name, spec.datatype, binary, offset, size as usize)?,
        (None, Some(value)) => decode_json(name, spec.datatype, value, expected)?,
        (None, None) => return Err(bad("missing_data", format!("input '{name}' has no data"))),
    };
    if data.len() != expected {
        return Err(bad(
            "shape_mismatch",
            format!(
                "input '{name}' has shape {:?} ({expected} elements) but {} values",
                input.shape,
                data.len()
            ),
        ));
    }
    let first_non_finite = match &data {
        TensorData::F32(v) => v.iter().position(|x| !x.is_finite()),
        TensorData::F64(v) => v.iter().position(|x| !x.is_finite()),
        _ => None,
    };
    if let Some(i) = first_non_finite {
        return Err(bad(
            "non_finite_value",
            format!("input '{name}' element {i} is not a finite number"),
        ));
    }
    Ok(Tensor {
        name: name.clone(),
        shape,
        data,
    })
}

pub(super) fn decode_binary(
    name: &str,
    datatype: Datatype,
    binary: &Bytes,
    offset: &mut usize,
    size: usize,
) -> Result<TensorData, ApiError> {
    let end = offset
        .checked_add(size)
        .filter(|&e| e <= binary.len())
        .ok_or_else(|| {
            bad(
                "shape_mismatch",
                format!(
                    "input '{name}' declares {size} bytes of binary data but the body has fewer"
                ),
            )
        })?;
    let bytes = &binary[*offset..end];
    *offset = end;
    let width = match datatype {
        Datatype::Fp32 | Datatype::Int32 => 4,
        Datatype::Fp64 | Datatype::Int64 => 8,
        Datatype::Bool => 1,
    };
    if bytes.len() % width != 0 {
        return Err(bad(
            "shape_mismatch",
            format!(
                "input '{name}': {} bytes is not a whole number of {datatype} values",
                bytes.len()
            ),
        ));
    }
    let chunks = bytes.chunks_exact(width);
    let arr4 = |c: &[u8]| [c[0], c[1], c[2], c[3]];
    let arr8 = |c: &[u8]| [c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]];
    Ok(match datatype {
        Datatype::Fp32 => TensorData::F32(chunks.map(|c| f32::from_le_bytes(arr4(c))).collect()),
        Datatype::Int32 => TensorData::I32(chunks.map(|c| i32::from_le_bytes(arr4(c))).collect()),
        Datatype::Fp64 => TensorData::F64(chunks.map(|c| f64::from_le_bytes(arr8(c))).collect()),
        Datatype::Int64 => TensorData::I64(chunks.map(|c| i64::from_le_bytes(arr8(c))).collect()),
        Datatype::Bool => TensorData::Bool(chunks.map(|c| c[0] != 0).collect()),
    })
}

/// Converts the flattened JSON data into a typed buffer.
fn decode_json(
    name: &str,
    datatype: Datatype,
    data: &FlatData,
    expected: usize,
) -> Result<TensorData, ApiError> {
    if data.too_deep {
        return Err(bad(
            "invalid_data",
            format!("input '{name}': data is nested too deeply"),
        ));
    }
    let mut out = TensorData::with_capacity(datatype, expected.min(data.values.len()));
    for (i, &value) in data.values.iter().enumerate() {
        push_value(name, i, value, &mut out)?;
    }
    Ok(out)
}

fn push_value(name: &str, i: usize, value: Scalar, out: &mut TensorData) -> Result<(), ApiError> {
    let wrong = |what: &str| {
        bad(
            "invalid_data",
            format!("input '{name}' element {i}: {what}"),
        )
    };
    if value == Scalar::NonFinite {
        return Err(bad(
            "non_finite_value",
            format!("input '{name}' element {i} is not a finite number"),
        ));
    }
    match out {
        TensorData::F32(v) => {
            let x = value.as_f64().ok_or_else(|| wrong("expected a number"))?;
            if x.is_finite() && x.abs() > f64::from(f32::MAX) {
                return Err(bad(
                    "non_finite_value",
                    format!("input '{name}' element {i} is outside the FP32 range"),
                ));
            }
            v.push(x as f32);
        }
        TensorData::F64(v) => v.push(value.as_f64().ok_or_else(|| wrong("expected a number"))?),
        TensorData::I32(v) => {
            let x = value
                .as_i64()
                .and_then(|x| i32::try_from(x).ok())
                .ok_or_else(|| wrong("expected an INT32 integer"))?;
            v.push(x);
        }
        TensorData::I64(v) => v.push(
            value
                .as_i64()
                .ok_or_else(|| wrong("expected an INT64 integer"))?,
        ),
        TensorData::Bool(v) => v.push(
            value
                .as_bool()
                .ok_or_else(|| wrong("expected true or false"))?,
        ),
    }
    Ok(())
}
