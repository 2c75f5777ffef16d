//! Building Open Inference Protocol responses: infer results (JSON, or JSON plus binary
//! tensors for outputs that ask for it) and model metadata.

use axum::response::{IntoResponse, Response};
use bytes::{BufMut as _, Bytes, BytesMut};
use http::header;
use serde_json::{Value, json};

use super::request::InferRequest;
use crate::score::{LoadedModel, Tensor, TensorData};

fn data_json(data: &TensorData) -> Value {
    match data {
        TensorData::F32(v) => json!(v),
        TensorData::F64(v) => json!(v),
        TensorData::I32(v) => json!(v),
        TensorData::I64(v) => json!(v),
        TensorData::Bool(v) => json!(v),
    }
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

/// The infer response for `outputs` (already filtered to the requested ones).
pub fn infer(model: &LoadedModel, request: &InferRequest, outputs: &[Tensor]) -> Response {
    let mut binary = BytesMut::new();
    let entries: Vec<Value> = outputs
        .iter()
        .map(|t| {
            let mut entry = json!({
                "name": t.name,
                "datatype": t.data.datatype().as_str(),
                "shape": t.shape,
            });
            if wants_binary(request, &t.name) {
                let before = binary.len();
                data_bytes(&t.data, &mut binary);
                entry["parameters"] = json!({ "binary_data_size": binary.len() - before });
            } else {
                entry["data"] = data_json(&t.data);
            }
            entry
        })
        .collect();
    let mut body = json!({
        "model_name": model.manifest.name,
        "model_version": model.manifest.version,
        "outputs": entries,
    });
    if let Some(id) = &request.id {
        body["id"] = json!(id);
    }
    let json_bytes = body.to_string().into_bytes();
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

/// Model metadata: `versions` lists what this answer covers.
pub fn metadata(model: &LoadedModel, versions: Vec<String>) -> Value {
    json!({
        "name": model.manifest.name,
        "versions": versions,
        "platform": model.engine.platform(),
        "inputs": model.engine.inputs().iter().map(tensor_meta).collect::<Vec<_>>(),
        "outputs": model.engine.outputs().iter().map(tensor_meta).collect::<Vec<_>>(),
    })
}
