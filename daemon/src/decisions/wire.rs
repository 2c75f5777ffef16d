//! A decision's bytes in the store. The sealed body is `b"CDv2"`, the header's fields
//! (time as a little-endian u64, then request id, model, version, key id and the
//! plaintext's SHA-256 in hex, each as a u16 length and UTF-8), the 12-byte nonce and
//! the AES-256-GCM ciphertext. The plaintext is `b"CDp3"` and binary throughout but for
//! what is rare and nested: the time (u64), request id, model and version (each a u16
//! length and UTF-8), the raw attributes and explanation as a u32 length and JSON (length
//! 0 when there are neither), then the inputs and the outputs, each a u32 count and per
//! tensor its name and datatype (u16 length and UTF-8), rank (u32), dimensions (u64 each)
//! and bytes (u32 length). All integers are little-endian. JSON with the tensors in hex
//! cost a third of what keeping a decision costs, and twice the bytes; a JSON head with
//! binary tensors (`b"CDp2"`, the layout before) was still a sixth of the sealing work.
//!
//! Every earlier layout is still read. `CDp2`: a u32 length and the record's JSON without
//! its tensors' data, then each tensor's bytes (inputs, then outputs) as a u32 length and
//! the bytes. The first (a u32 length and the header as JSON, the nonce, the ciphertext of
//! the whole record as JSON with hex tensors), in which decisions moved over from the
//! sled store are kept: its header length is far below 2^24, so its 4th byte is 0 where
//! `CDv2`'s is `2`; its plaintext begins with `{`.

use serde::{Deserialize, Serialize};

use super::record::{
    Decision, DecisionRecord, Header, PlainTensor, RecordedExplanation, RecordedTensor,
};

const BODY: &[u8; 4] = b"CDv2";
const PLAIN: &[u8; 4] = b"CDp3";
const PLAIN_V2: &[u8; 4] = b"CDp2";

fn put_str(out: &mut Vec<u8>, s: &str) {
    let bytes = &s.as_bytes()[..s.len().min(u16::MAX as usize)];
    out.extend((bytes.len() as u16).to_le_bytes());
    out.extend(bytes);
}

/// A cursor over bytes being decoded.
struct Take<'a>(&'a [u8]);

impl<'a> Take<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn u16(&mut self) -> Option<usize> {
        Some(u16::from_le_bytes(self.bytes(2)?.try_into().ok()?) as usize)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes(8)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<usize> {
        Some(u32::from_le_bytes(self.bytes(4)?.try_into().ok()?) as usize)
    }

    fn string(&mut self) -> Option<String> {
        let n = self.u16()?;
        String::from_utf8(self.bytes(n)?.to_vec()).ok()
    }
}

/// Appends the sealed body of a record to `out`.
pub fn encode_sealed_into(out: &mut Vec<u8>, header: &Header, nonce: &[u8; 12], sealed: &[u8]) {
    out.reserve(4 + 8 + 2 * 5 + 160 + 12 + sealed.len());
    put_header(
        out,
        header.at_ms,
        [
            &header.request_id,
            &header.model,
            &header.version,
            &header.key_id,
            &header.sha256,
        ],
    );
    out.extend(nonce);
    out.extend(sealed);
}

/// Appends a sealed body's cleartext header: the layout's mark, the time, and request
/// id, model, version, key id and SHA-256 (hex) in that order.
pub fn put_header(out: &mut Vec<u8>, at_ms: u64, fields: [&str; 5]) {
    out.extend(BODY);
    out.extend(at_ms.to_le_bytes());
    for field in fields {
        put_str(out, field);
    }
}

/// Splits a sealed body of either layout; `None` when it is not one.
pub fn decode_sealed(body: &[u8]) -> Option<(Header, [u8; 12], &[u8])> {
    if body.get(..4)? != BODY {
        return decode_sealed_v1(body);
    }
    let mut t = Take(&body[4..]);
    let at_ms = u64::from_le_bytes(t.bytes(8)?.try_into().ok()?);
    let header = Header {
        request_id: t.string()?,
        at_ms,
        model: t.string()?,
        version: t.string()?,
        key_id: t.string()?,
        sha256: t.string()?,
    };
    let nonce: [u8; 12] = t.bytes(12)?.try_into().ok()?;
    Some((header, nonce, t.0))
}

fn decode_sealed_v1(value: &[u8]) -> Option<(Header, [u8; 12], &[u8])> {
    let len = u32::from_le_bytes(value.get(..4)?.try_into().ok()?) as usize;
    let header: Header = serde_json::from_slice(value.get(4..4 + len)?).ok()?;
    let nonce: [u8; 12] = value.get(4 + len..16 + len)?.try_into().ok()?;
    Some((header, nonce, value.get(16 + len..)?))
}

/// The first layout's body (the sled store's values), for the tests that move them.
#[cfg(test)]
pub fn encode_sealed_v1(header: &Header, nonce: &[u8; 12], sealed: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).unwrap_or_default();
    let mut out = (h.len() as u32).to_le_bytes().to_vec();
    out.extend(&h);
    out.extend(nonce);
    out.extend(sealed);
    out
}

/// A tensor without its data, as the plaintext's JSON part holds it (read back; written
/// by [`Heads`]).
#[derive(Deserialize)]
struct TensorHead<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    datatype: std::borrow::Cow<'a, str>,
    shape: Vec<usize>,
}

/// The record without its tensors' data, as read back.
#[derive(Deserialize)]
struct Meta<'a> {
    #[serde(borrow)]
    request_id: std::borrow::Cow<'a, str>,
    at_ms: u64,
    #[serde(borrow)]
    model: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    version: std::borrow::Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    attributes: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(borrow)]
    inputs: Vec<TensorHead<'a>>,
    #[serde(borrow)]
    outputs: Vec<TensorHead<'a>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    explanation: Option<RecordedExplanation>,
}

/// The bytes of a record that are sealed and hashed (`seal.rs` encodes them in place).
#[cfg(test)]
pub fn plaintext(rec: &DecisionRecord) -> Vec<u8> {
    let mut out = Vec::new();
    if plaintext_into(&mut out, &rec.borrowed()).is_err() {
        return Vec::new();
    }
    out
}

/// What a plaintext holds as JSON: what is rare and nested.
#[derive(Serialize, Deserialize)]
struct Extras<A, E> {
    #[serde(skip_serializing_if = "Option::is_none")]
    attributes: Option<A>,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<E>,
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    out.extend((n.min(u32::MAX as usize) as u32).to_le_bytes());
}

fn put_tensors<T: PlainTensor>(out: &mut Vec<u8>, tensors: &[T]) {
    put_u32(out, tensors.len());
    for t in tensors {
        put_str(out, t.name());
        put_str(out, t.datatype());
        put_u32(out, t.shape().len());
        for &d in t.shape() {
            out.extend((d as u64).to_le_bytes());
        }
        put_u32(out, t.data_len());
        t.put_data(out);
    }
}

/// Appends the bytes of a decision that are sealed and hashed to `out` (`CDp3`).
pub fn plaintext_into<T: PlainTensor>(
    out: &mut Vec<u8>,
    d: &Decision<'_, T>,
) -> Result<(), serde_json::Error> {
    let data: usize = d
        .inputs
        .iter()
        .chain(d.outputs)
        .map(|t| 64 + 8 * t.shape().len() + t.data_len())
        .sum();
    out.reserve(64 + d.request_id.len() + data);
    out.extend(PLAIN);
    out.extend(d.at_ms.to_le_bytes());
    put_str(out, d.request_id);
    put_str(out, d.model);
    put_str(out, d.version);
    let len_at = out.len();
    out.extend([0u8; 4]);
    if d.attributes.is_some() || d.explanation.is_some() {
        let extras = Extras {
            attributes: d.attributes,
            explanation: d.explanation,
        };
        serde_json::to_writer(&mut *out, &extras)?;
        let json_len = ((out.len() - len_at - 4) as u32).to_le_bytes();
        out[len_at..len_at + 4].copy_from_slice(&json_len);
    }
    put_tensors(out, d.inputs);
    put_tensors(out, d.outputs);
    Ok(())
}

fn take_tensors(t: &mut Take<'_>) -> Option<Vec<RecordedTensor>> {
    let n = t.u32()?;
    // Each tensor takes at least 12 bytes: no count claims more than there are.
    let mut tensors = Vec::with_capacity(n.min(t.0.len() / 12));
    for _ in 0..n {
        let name = t.string()?;
        let datatype = t.string()?;
        let rank = t.u32()?;
        let mut shape = Vec::with_capacity(rank.min(t.0.len() / 8));
        for _ in 0..rank {
            shape.push(usize::try_from(t.u64()?).ok()?);
        }
        let len = t.u32()?;
        tensors.push(RecordedTensor {
            name,
            datatype,
            shape,
            data: t.bytes(len)?.to_vec(),
        });
    }
    Some(tensors)
}

/// A `CDp3` plaintext after its mark.
fn from_plaintext_v3(bytes: &[u8]) -> Option<DecisionRecord> {
    let mut t = Take(bytes);
    let at_ms = t.u64()?;
    let request_id = t.string()?;
    let model = t.string()?;
    let version = t.string()?;
    let json_len = t.u32()?;
    let extras: Extras<serde_json::Map<String, serde_json::Value>, RecordedExplanation> =
        match json_len {
            0 => Extras {
                attributes: None,
                explanation: None,
            },
            n => serde_json::from_slice(t.bytes(n)?).ok()?,
        };
    let inputs = take_tensors(&mut t)?;
    let outputs = take_tensors(&mut t)?;
    t.0.is_empty().then_some(DecisionRecord {
        request_id,
        at_ms,
        model,
        version,
        attributes: extras.attributes,
        inputs,
        outputs,
        explanation: extras.explanation,
    })
}

/// The heads of tensors, serialized as a JSON array as they are met (`CDp2`).
#[cfg(test)]
struct Heads<'a, T>(&'a [T]);

#[cfg(test)]
impl<T: PlainTensor> Serialize for Heads<'_, T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Head<'a> {
            name: &'a str,
            datatype: &'a str,
            shape: &'a [usize],
        }
        s.collect_seq(self.0.iter().map(|t| Head {
            name: t.name(),
            datatype: t.datatype(),
            shape: t.shape(),
        }))
    }
}

/// Appends a decision's plaintext in the `CDp2` layout (written before `CDp3`), for the
/// tests that read it back.
#[cfg(test)]
fn plaintext_v2_into<T: PlainTensor>(
    out: &mut Vec<u8>,
    d: &Decision<'_, T>,
) -> Result<(), serde_json::Error> {
    #[derive(Serialize)]
    #[serde(bound = "")]
    struct MetaRef<'a, T: PlainTensor> {
        request_id: &'a str,
        at_ms: u64,
        model: &'a str,
        version: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        attributes: Option<&'a serde_json::Map<String, serde_json::Value>>,
        inputs: Heads<'a, T>,
        outputs: Heads<'a, T>,
        #[serde(skip_serializing_if = "Option::is_none")]
        explanation: Option<&'a RecordedExplanation>,
    }
    let meta = MetaRef {
        request_id: d.request_id,
        at_ms: d.at_ms,
        model: d.model,
        version: d.version,
        attributes: d.attributes,
        inputs: Heads(d.inputs),
        outputs: Heads(d.outputs),
        explanation: d.explanation,
    };
    let data: usize = d
        .inputs
        .iter()
        .chain(d.outputs)
        .map(|t| 4 + t.data_len())
        .sum();
    out.reserve(8 + 384 + data);
    let start = out.len();
    out.extend(PLAIN_V2);
    out.extend([0u8; 4]);
    serde_json::to_writer(&mut *out, &meta)?;
    let json_len = ((out.len() - start - 8) as u32).to_le_bytes();
    out[start + 4..start + 8].copy_from_slice(&json_len);
    for t in d.inputs.iter().chain(d.outputs) {
        out.extend((t.data_len() as u32).to_le_bytes());
        t.put_data(out);
    }
    Ok(())
}

/// A record from its plaintext, of any layout; `None` when malformed.
pub fn from_plaintext(bytes: &[u8]) -> Option<DecisionRecord> {
    match bytes.get(..4)? {
        m if m == PLAIN => return from_plaintext_v3(&bytes[4..]),
        m if m != PLAIN_V2 => return serde_json::from_slice(bytes).ok(),
        _ => {}
    }
    let mut t = Take(&bytes[4..]);
    let n = t.u32()?;
    let meta: Meta = serde_json::from_slice(t.bytes(n)?).ok()?;
    let mut tensor = |head: TensorHead| -> Option<RecordedTensor> {
        let n = t.u32()?;
        Some(RecordedTensor {
            name: head.name.into_owned(),
            datatype: head.datatype.into_owned(),
            shape: head.shape,
            data: t.bytes(n)?.to_vec(),
        })
    };
    let inputs = meta
        .inputs
        .into_iter()
        .map(&mut tensor)
        .collect::<Option<Vec<_>>>()?;
    let outputs = meta
        .outputs
        .into_iter()
        .map(&mut tensor)
        .collect::<Option<Vec<_>>>()?;
    t.0.is_empty().then_some(DecisionRecord {
        request_id: meta.request_id.into_owned(),
        at_ms: meta.at_ms,
        model: meta.model.into_owned(),
        version: meta.version.into_owned(),
        attributes: meta.attributes,
        inputs,
        outputs,
        explanation: meta.explanation,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::{Tensor, TensorData};

    fn record() -> DecisionRecord {
        DecisionRecord {
            request_id: "019af232-b27b-7fff-bfff-ffffffffffff".into(),
            at_ms: 1_765_000_000_123,
            model: "credit-lr".into(),
            version: "1.0.0".into(),
            attributes: Some(serde_json::from_str(r#"{"purpose": ["car (new)"]}"#).unwrap()),
            inputs: vec![RecordedTensor::of(&Tensor {
                name: "features".into(),
                shape: vec![1, 3],
                data: TensorData::F32(vec![0.1, -7.25, f32::MIN_POSITIVE]),
            })],
            outputs: vec![RecordedTensor::of(&Tensor {
                name: "probability".into(),
                shape: vec![1],
                data: TensorData::F64(vec![0.3]),
            })],
            explanation: None,
        }
    }

    #[test]
    fn the_scoring_paths_tensors_encode_as_their_recorded_form_does() {
        let mut rec = record();
        for (name, data) in [
            ("count", TensorData::I64(vec![-2, 1 << 40])),
            ("flag", TensorData::Bool(vec![true, false])),
            ("code", TensorData::I32(vec![7, -7])),
        ] {
            rec.inputs.push(RecordedTensor::of(&Tensor {
                name: name.into(),
                shape: vec![2],
                data,
            }));
        }
        let inputs: Vec<Tensor> = rec.inputs.iter().map(|t| t.tensor().unwrap()).collect();
        let outputs: Vec<Tensor> = rec.outputs.iter().map(|t| t.tensor().unwrap()).collect();
        let d = Decision {
            request_id: &rec.request_id,
            at_ms: rec.at_ms,
            model: &rec.model,
            version: &rec.version,
            attributes: rec.attributes.as_ref(),
            inputs: &inputs,
            outputs: &outputs,
            explanation: None,
        };
        let mut out = b"before".to_vec();
        plaintext_into(&mut out, &d).unwrap();
        assert_eq!(&out[..6], b"before");
        assert_eq!(&out[6..], plaintext(&rec));
    }

    fn explained(mut rec: DecisionRecord) -> DecisionRecord {
        rec.explanation = Some(RecordedExplanation {
            method: "linear".into(),
            attributes: vec!["purpose".into(), "duration".into()],
            base_value: -0.5,
            margin: vec![0.25],
            contributions: vec![vec![0.5, 0.25]],
            reason_codes: vec![vec!["purpose".into()]],
        });
        rec
    }

    #[test]
    fn every_layout_reads_back_bit_for_bit() {
        let bare = DecisionRecord {
            attributes: None,
            ..record()
        };
        for rec in [record(), bare.clone(), explained(record()), explained(bare)] {
            let plain = plaintext(&rec);
            assert_eq!(&plain[..4], PLAIN);
            assert_eq!(from_plaintext(&plain), Some(rec.clone()));
            // The layout before, with a JSON head.
            let mut v2 = Vec::new();
            plaintext_v2_into(&mut v2, &rec.borrowed()).unwrap();
            assert_eq!(&v2[..4], PLAIN_V2);
            assert!(v2.len() > plain.len());
            assert_eq!(from_plaintext(&v2), Some(rec.clone()));
            // Cut anywhere, or with bytes after it: not a record.
            for cut in 4..plain.len() {
                assert_eq!(from_plaintext(&plain[..cut]), None, "cut at {cut}");
            }
            let mut longer = plain.clone();
            longer.push(0);
            assert_eq!(from_plaintext(&longer), None);
        }
        // Neither attributes nor an explanation: no JSON at all (its length is 0).
        let mut bare = record();
        bare.attributes = None;
        let json_at = 4 + 8 + 2 * 3 + bare.request_id.len() + bare.model.len() + bare.version.len();
        assert_eq!(&plaintext(&bare)[json_at..json_at + 4], &[0; 4]);
        assert_ne!(&plaintext(&record())[json_at..json_at + 4], &[0; 4]);
    }

    #[test]
    fn a_count_or_length_beyond_the_bytes_is_malformed_without_allocating_it() {
        let rec = record();
        let plain = plaintext(&rec);
        // The inputs' count, after the attributes' JSON.
        let json_at = 4 + 8 + 2 * 3 + rec.request_id.len() + rec.model.len() + rec.version.len();
        let json_len = u32::from_le_bytes(plain[json_at..json_at + 4].try_into().unwrap());
        let count_at = json_at + 4 + json_len as usize;
        assert_eq!(&plain[count_at..count_at + 4], &1u32.to_le_bytes());
        for huge in [u32::MAX, 1 << 30] {
            let mut bad = plain.clone();
            bad[count_at..count_at + 4].copy_from_slice(&huge.to_le_bytes());
            assert_eq!(from_plaintext(&bad), None);
            let mut bad = plain.clone();
            bad[json_at..json_at + 4].copy_from_slice(&huge.to_le_bytes());
            assert_eq!(from_plaintext(&bad), None);
        }
    }

    #[test]
    fn the_layouts_before_read_back_bit_for_bit() {
        let rec = record();
        let plain = plaintext(&rec);
        // The first layout's JSON, tensors in hex.
        let v1 = serde_json::to_vec(&rec).unwrap();
        assert!(String::from_utf8_lossy(&v1).contains("cdcccc3d"));
        assert_eq!(from_plaintext(&v1), Some(rec.clone()));
        // Cut short, or with bytes after it: not a record.
        assert_eq!(from_plaintext(&plain[..plain.len() - 1]), None);
        let mut longer = plain.clone();
        longer.push(0);
        assert_eq!(from_plaintext(&longer), None);

        let header = Header {
            request_id: rec.request_id.clone(),
            at_ms: rec.at_ms,
            model: rec.model.clone(),
            version: rec.version.clone(),
            key_id: "k000001".into(),
            sha256: super::super::record::sha256_hex(&plain),
        };
        let mut body = Vec::new();
        encode_sealed_into(&mut body, &header, &[9; 12], b"ciphertext");
        let (h, nonce, sealed) = decode_sealed(&body).unwrap();
        assert_eq!(
            (h, nonce, sealed),
            (header.clone(), [9; 12], &b"ciphertext"[..])
        );
        let v1 = encode_sealed_v1(&header, &[9; 12], b"ciphertext");
        assert_eq!(v1[3], 0);
        let (h, nonce, sealed) = decode_sealed(&v1).unwrap();
        assert_eq!((h, nonce, sealed), (header, [9; 12], &b"ciphertext"[..]));
        assert!(decode_sealed(&body[..20]).is_none());
    }
}
