//! One recorded decision (what a scoring request sent, what the model saw and answered,
//! the explanation, and which version decided) and the cleartext header it is stored
//! under, with nothing personal in it (time, model, version, key id, the plaintext's
//! SHA-256). Their bytes in the store are `wire.rs`'s.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tensor::{Tensor, TensorData};

/// A tensor as the engine saw or gave it: its bytes little-endian, so a replay feeds the
/// model exactly the same bits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedTensor {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<usize>,
    /// The elements, little-endian (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub data: Vec<u8>,
}

/// Bytes as lower-case hex text in JSON.
mod hex_bytes {
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::hex_text::lower_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        hex::decode(text.as_bytes()).map_err(serde::de::Error::custom)
    }
}

/// Appends each element's little-endian bytes.
fn put_le(data: &TensorData, out: &mut Vec<u8>) {
    fn le<const N: usize, T: Copy>(out: &mut Vec<u8>, v: &[T], to_le: fn(T) -> [u8; N]) {
        let start = out.len();
        out.resize(start + v.len() * N, 0);
        for (bytes, x) in out[start..].chunks_exact_mut(N).zip(v) {
            bytes.copy_from_slice(&to_le(*x));
        }
    }
    match data {
        TensorData::F32(v) => le(out, v, f32::to_le_bytes),
        TensorData::F64(v) => le(out, v, f64::to_le_bytes),
        TensorData::I32(v) => le(out, v, i32::to_le_bytes),
        TensorData::I64(v) => le(out, v, i64::to_le_bytes),
        TensorData::Bool(v) => out.extend(v.iter().map(|x| u8::from(*x))),
    }
}

/// How many bytes [`put_le`] appends.
fn le_len(data: &TensorData) -> usize {
    let width = match data {
        TensorData::F32(_) | TensorData::I32(_) => 4,
        TensorData::F64(_) | TensorData::I64(_) => 8,
        TensorData::Bool(_) => 1,
    };
    data.len() * width
}

/// A tensor as a decision's plaintext holds it: name, datatype, shape and its elements'
/// little-endian bytes. Both the tensors the scoring path has and recorded ones are.
pub trait PlainTensor {
    fn name(&self) -> &str;
    fn datatype(&self) -> &str;
    fn shape(&self) -> &[usize];
    fn data_len(&self) -> usize;
    fn put_data(&self, out: &mut Vec<u8>);
}

impl PlainTensor for RecordedTensor {
    fn name(&self) -> &str {
        &self.name
    }
    fn datatype(&self) -> &str {
        &self.datatype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
    fn put_data(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.data);
    }
}

impl PlainTensor for Tensor {
    fn name(&self) -> &str {
        &self.name
    }
    fn datatype(&self) -> &str {
        self.data.datatype().as_str()
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data_len(&self) -> usize {
        le_len(&self.data)
    }
    fn put_data(&self, out: &mut Vec<u8>) {
        put_le(&self.data, out);
    }
}

impl RecordedTensor {
    pub fn of(t: &Tensor) -> RecordedTensor {
        let mut bytes = Vec::with_capacity(le_len(&t.data));
        put_le(&t.data, &mut bytes);
        RecordedTensor {
            name: t.name.clone(),
            datatype: t.data.datatype().as_str().to_string(),
            shape: t.shape.clone(),
            data: bytes,
        }
    }

    /// The tensor again; `None` when the record is malformed.
    pub fn tensor(&self) -> Option<Tensor> {
        let bytes = &self.data;
        let datatype = coffer_models::Datatype::parse(&self.datatype)?;
        let data = match datatype {
            coffer_models::Datatype::Fp32 => TensorData::F32(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            coffer_models::Datatype::Fp64 => TensorData::F64(
                bytes
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            coffer_models::Datatype::Int32 => TensorData::I32(
                bytes
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            coffer_models::Datatype::Int64 => TensorData::I64(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            ),
            coffer_models::Datatype::Bool => {
                TensorData::Bool(bytes.iter().map(|b| *b != 0).collect())
            }
        };
        (data.len() == self.shape.iter().product::<usize>()).then(|| Tensor {
            name: self.name.clone(),
            shape: self.shape.clone(),
            data,
        })
    }
}

/// The explanation given with the decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedExplanation {
    pub method: String,
    pub attributes: Vec<String>,
    pub base_value: f64,
    pub margin: Vec<f64>,
    pub contributions: Vec<Vec<f64>>,
    pub reason_codes: Vec<Vec<String>>,
}

/// The explanation of a request's rows, as recorded.
pub fn explanation(
    explainer: &coffer_score::Explainer,
    rows: &[coffer_score::Explanation],
) -> RecordedExplanation {
    let names = explainer.attributes();
    RecordedExplanation {
        method: explainer.method().to_string(),
        attributes: names.to_vec(),
        base_value: explainer.base_value(),
        margin: rows.iter().map(|r| r.margin).collect(),
        contributions: rows.iter().map(|r| r.contributions.clone()).collect(),
        reason_codes: rows
            .iter()
            .map(|r| r.reasons.iter().map(|&a| names[a].clone()).collect())
            .collect(),
    }
}

/// A decision, in the clear (only ever in memory or in an export).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    pub request_id: String,
    pub at_ms: u64,
    pub model: String,
    pub version: String,
    /// The raw attributes as the client sent them (one array per attribute), when it
    /// sent attributes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<serde_json::Map<String, serde_json::Value>>,
    /// What the model saw.
    pub inputs: Vec<RecordedTensor>,
    /// What it answered (every output).
    pub outputs: Vec<RecordedTensor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explanation: Option<RecordedExplanation>,
}

/// A decision as it is sealed, borrowed from whoever holds it: the scoring path (its
/// own tensors, no copy into recorded form) or a [`DecisionRecord`].
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a, T: PlainTensor> {
    pub request_id: &'a str,
    pub at_ms: u64,
    pub model: &'a str,
    pub version: &'a str,
    pub attributes: Option<&'a serde_json::Map<String, serde_json::Value>>,
    pub inputs: &'a [T],
    pub outputs: &'a [T],
    pub explanation: Option<&'a RecordedExplanation>,
}

impl DecisionRecord {
    pub fn borrowed(&self) -> Decision<'_, RecordedTensor> {
        Decision {
            request_id: &self.request_id,
            at_ms: self.at_ms,
            model: &self.model,
            version: &self.version,
            attributes: self.attributes.as_ref(),
            inputs: &self.inputs,
            outputs: &self.outputs,
            explanation: self.explanation.as_ref(),
        }
    }
}

/// The cleartext header of a sealed record: the admin API's summary of a decision,
/// stored as it is answered (the plaintext's SHA-256 is the one the audit log's
/// `decision` record carries).
pub use coffer_admin_api::decisions::DecisionSummary as Header;

/// Now, in ms since the epoch: the time decisions are recorded and expire by.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    crate::hex_text::lower_hex(&Sha256::digest(bytes))
}
