//! A decision sealed into its segment frame in one buffer, which is all the request path
//! does for a decision before handing the frame to the appender: the frame head
//! (`segment.rs`), the cleartext header (`wire.rs`) with room for the plaintext's
//! SHA-256, the nonce's place, the plaintext encoded where it will be encrypted, hashed,
//! sealed in place with the current key, the tag, then the frame's length and CRC. The
//! bytes are those `segment::sealed_frame` builds from the parts; without the copies and
//! allocations between them, which cost as much as the cryptography.

use sha2::{Digest, Sha256};

use super::keyring::{KeyError, Keyring};
use super::record::{Decision, PlainTensor};
use super::segment::{FRAME_HEAD, close_frame};
use super::wire;

/// Where the plaintext's SHA-256 (hex) goes until it is known.
const SHA_PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const SHA_HEX: usize = SHA_PLACEHOLDER.len();
const NONCE: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("a decision could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The associated data a record is sealed with: its time and request id, so a sealed
/// payload cannot be moved onto another record.
pub fn aad(at_ms: u64, request_id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + request_id.len());
    k.extend(at_ms.to_be_bytes());
    k.extend(request_id.as_bytes());
    k
}

/// Replaces `out` with the frame of `rec` sealed with `ring`'s current key; returns the
/// plaintext's SHA-256 (hex).
pub fn seal_into<T: PlainTensor>(
    out: &mut Vec<u8>,
    rec: &Decision<'_, T>,
    ring: &Keyring,
) -> Result<String, SealError> {
    out.clear();
    out.extend([0u8; FRAME_HEAD]);
    let key_id = ring.current();
    wire::put_header(
        out,
        rec.at_ms,
        [
            rec.request_id,
            rec.model,
            rec.version,
            key_id,
            SHA_PLACEHOLDER,
        ],
    );
    let sha_at = out.len() - SHA_HEX;
    let nonce_at = out.len();
    out.extend([0u8; NONCE]);
    let plain_at = out.len();
    wire::plaintext_into(out, rec)?;
    let sha256 = crate::hex_text::lower_hex(&Sha256::digest(&out[plain_at..]));
    out[sha_at..nonce_at].copy_from_slice(sha256.as_bytes());
    let (nonce, tag) = ring.seal_in_place(
        key_id,
        &aad(rec.at_ms, rec.request_id),
        &mut out[plain_at..],
    )?;
    out[nonce_at..plain_at].copy_from_slice(&nonce);
    out.extend_from_slice(tag.as_ref());
    close_frame(out);
    Ok(sha256)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::record::{DecisionRecord, Header, RecordedTensor, sha256_hex};
    use crate::decisions::segment::sealed_frame;
    use crate::tensor::{Tensor, TensorData};

    #[test]
    fn the_one_buffer_frame_is_the_frame_built_from_its_parts_and_opens() {
        let tmp = tempfile::tempdir().unwrap();
        let ring = Keyring::open_or_create(&tmp.path().join("keys")).unwrap();
        let rec = DecisionRecord {
            request_id: "019af232-b27b-7fff-bfff-ffffffffffff".into(),
            at_ms: 1_765_000_000_123,
            model: "credit-lr".into(),
            version: "1.0.0".into(),
            attributes: None,
            inputs: vec![RecordedTensor::of(&Tensor {
                name: "features".into(),
                shape: vec![1, 2],
                data: TensorData::F32(vec![0.5, -3.0]),
            })],
            outputs: vec![],
            explanation: None,
        };
        // A buffer used before is replaced, not appended to.
        let mut out = b"left over".to_vec();
        let sha = seal_into(&mut out, &rec.borrowed(), &ring).unwrap();
        let plain = wire::plaintext(&rec);
        assert_eq!(sha, sha256_hex(&plain));

        let (header, nonce, sealed) = wire::decode_sealed(&out[FRAME_HEAD..]).unwrap();
        let opened = ring
            .open(
                &header.key_id,
                &aad(rec.at_ms, &rec.request_id),
                nonce,
                sealed,
            )
            .unwrap();
        assert_eq!(opened, plain);
        let expected = Header {
            request_id: rec.request_id.clone(),
            at_ms: rec.at_ms,
            model: rec.model.clone(),
            version: rec.version.clone(),
            key_id: ring.current().into(),
            sha256: sha,
        };
        assert_eq!(header, expected);
        assert_eq!(sealed_frame(&expected, &nonce, sealed), out);
    }
}
