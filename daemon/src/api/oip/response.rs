//! Building Open Inference Protocol responses: infer results (JSON, or JSON plus binary
//! tensors for outputs that ask for it) and model metadata.

use axum::response::{IntoResponse, Response};
use bytes::{BufMut as _, Bytes, BytesMut};
use http::header;
use serde::{Serialize, Serializer};
use serde_json::{Value, json};

use super::explanation_json::{ExplanationOutput, ExplanationParameters, explanation};
use super::request::InferRequest;
use crate::api::{ApiError, ErrorKind, Family};
use crate::score::LoadedModel;
use crate::tensor::{Tensor, TensorData};

/// Tensor data written as a flat JSON array.
struct DataJson<'a>(&'a TensorData);

impl Serialize for DataJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            TensorData::F32(v) => v.serialize(s),
            TensorData::F64(v) => v.serialize(s),
            TensorData::I32(v) => v.serialize(s),
            TensorData::I64(v) => v.serialize(s),
            TensorData::Bool(v) => v.serialize(s),
        }
    }
}

#[derive(Serialize)]
struct BinaryParameters {
    binary_data_size: usize,
}

#[derive(Serialize)]
struct OutputEntry<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [usize],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<BinaryParameters>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<DataJson<'a>>,
}

/// An output: a model tensor, or one of the explanation's (always JSON).
#[derive(Serialize)]
#[serde(untagged)]
enum Output<'a> {
    Tensor(OutputEntry<'a>),
    Explanation(ExplanationOutput<'a>),
}

#[derive(Serialize)]
struct InferBody<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<ExplanationParameters<'a>>,
    outputs: Vec<Output<'a>>,
}

fn data_bytes(data: &TensorData, out: &mut BytesMut) {
    match data {
        TensorData::F32(v) => v.iter().for_each(|x| out.put_f32_le(*x)),
        TensorData::F64(v) => v.iter().for_each(|x| out.put_f64_le(*x)),
        TensorData::I32(v) => v.iter().for_each(|x| out.put_i32_le(*x)),
        TensorData::I64(v) => v.iter().for_each(|x| out.put_i64_le(*x)),
        TensorData::Bool(v) => v.iter().for_each(|x| out.put_u8(u8::from(*x))),
    }
}

fn wants_binary(request: &InferRequest, name: &str) -> bool {
    let flag = |p: &Option<serde_json::Map<String, Value>>, key: &str| {
        p.as_ref().and_then(|m| m.get(key)).and_then(Value::as_bool)
    };
    let per_output = request
        .outputs
        .iter()
        .flatten()
        .find(|o| o.name == name)
        .and_then(|o| flag(&o.parameters, "binary_data"));
    per_output.unwrap_or_else(|| flag(&request.parameters, "binary_data_output").unwrap_or(false))
}

/// The infer response for `outputs` (already filtered to the requested ones), and the
/// rows' explanations when the request asked for them.
pub fn infer(
    model: &LoadedModel,
    request: &InferRequest,
    outputs: &[Tensor],
    explained: Option<(&coffer_score::Explainer, &[coffer_score::Explanation])>,
) -> Response {
    let mut binary = BytesMut::new();
    let mut entries: Vec<Output> = outputs
        .iter()
        .map(|t| {
            let mut entry = OutputEntry {
                name: &t.name,
                datatype: t.data.datatype().as_str(),
                shape: &t.shape,
                parameters: None,
                data: None,
            };
            if wants_binary(request, &t.name) {
                let before = binary.len();
                data_bytes(&t.data, &mut binary);
                entry.parameters = Some(BinaryParameters {
                    binary_data_size: binary.len() - before,
                });
            } else {
                entry.data = Some(DataJson(&t.data));
            }
            Output::Tensor(entry)
        })
        .collect();
    let parameters = explained.map(|(explainer, rows)| {
        let (parameters, extra) = explanation(explainer, rows);
        entries.extend(extra.into_iter().map(Output::Explanation));
        parameters
    });
    let body = InferBody {
        id: request.id.as_deref(),
        model_name: &model.manifest.name,
        model_version: &model.manifest.version,
        parameters,
        outputs: entries,
    };
    let json_bytes = match serde_json::to_vec(&body) {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::error!(error = %e, "infer response not serialisable");
            return ApiError::new(ErrorKind::Internal, "", Family::InferenceProtocol)
                .into_response();
        }
    };
    if binary.is_empty() {
        return ([(header::CONTENT_TYPE, "application/json")], json_bytes).into_response();
    }
    let header_len = json_bytes.len();
    let mut all = BytesMut::with_capacity(header_len + binary.len());
    all.extend_from_slice(&json_bytes);
    all.extend_from_slice(&binary);
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (
                header::HeaderName::from_static("inference-header-content-length"),
                header_len.to_string(),
            ),
        ],
        Bytes::from(all),
    )
        .into_response()
}

fn tensor_meta(spec: &coffer_models::TensorSpec) -> Value {
    json!({ "name": spec.name, "datatype": spec.datatype.as_str(), "shape": spec.shape })
}

/// A raw attribute as a client sends it: one value per row, its datatype, and for a
/// category the values it takes.
fn attribute_meta(a: &coffer_models::manifest::attributes::AttributeSpec) -> Value {
    use coffer_models::manifest::attributes::ValueType;
    let mut v = json!({
        "name": a.name,
        "datatype": match a.value_type { ValueType::Number => "FP64", ValueType::Category => "BYTES" },
        "shape": [-1],
        "required": a.missing.is_none(),
    });
    if a.value_type == ValueType::Category {
        v["categories"] = json!(a.allowed().collect::<Vec<_>>());
    }
    v
}

/// Model metadata: `versions` lists what this answer covers. A model with a feature
/// specification lists its raw `attributes` too (an extension of the protocol's
/// metadata; clients that do not know it ignore it).
pub fn metadata(model: &LoadedModel, versions: Vec<String>) -> Value {
    let mut v = json!({
        "name": model.manifest.name,
        "versions": versions,
        "platform": model.engine.platform(),
        "inputs": model.engine.inputs().iter().map(tensor_meta).collect::<Vec<_>>(),
        "outputs": model.engine.outputs().iter().map(tensor_meta).collect::<Vec<_>>(),
    });
    if let Some(encoder) = &model.attributes {
        v["attributes"] = encoder.attributes().map(attribute_meta).collect();
    }
    v
}
