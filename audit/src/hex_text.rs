//! Lower-case hex text on hot paths (audit record hashes, recorded decisions' tensors):
//! written into a buffer at once, where `hex::encode` collects chars one by one.

/// The lower-case hex of `bytes`, written into one allocation of the right size (its
/// UTF-8 check is the word-at-a-time ASCII one).
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut text = vec![0u8; bytes.len() * 2];
    match hex::encode_to_slice(bytes, &mut text) {
        Ok(()) => String::from_utf8(text).unwrap_or_else(|_| hex::encode(bytes)),
        Err(_) => hex::encode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_hex_crate_at_every_length() {
        let bytes: Vec<u8> = (0u8..=255).rev().collect();
        for n in [0, 1, 8, 31, 32, 33, 64, 255] {
            assert_eq!(
                lower_hex(&bytes[..n]),
                hex::encode(&bytes[..n]),
                "{n} bytes"
            );
        }
    }
}
