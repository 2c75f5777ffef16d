//! Lower-case hex text of short byte strings on hot paths (request ids, audit record
//! hashes): written into a stack buffer at once, where `hex::encode` collects chars one
//! by one.

/// The lower-case hex of `bytes` (up to 32 bytes through the buffer, longer ones through
/// `hex::encode`).
pub fn lower_hex(bytes: &[u8]) -> String {
    let mut out = [0u8; 64];
    let Some(text) = out.get_mut(..bytes.len() * 2) else {
        return hex::encode(bytes);
    };
    match hex::encode_to_slice(bytes, text) {
        Ok(()) => String::from_utf8_lossy(text).into_owned(),
        Err(_) => hex::encode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_hex_crate_at_every_length() {
        let bytes: Vec<u8> = (0u8..=255).rev().collect();
        for n in [0, 1, 8, 31, 32, 33, 64] {
            assert_eq!(
                lower_hex(&bytes[..n]),
                hex::encode(&bytes[..n]),
                "{n} bytes"
            );
        }
    }
}
