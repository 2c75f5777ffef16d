//! Request ids: UUIDv7 (RFC 9562), so an id is unique (74 random bits) and carries the
//! millisecond it was made. The decision store finds a decision by its id through that
//! time, without an index of its own (docs/decisions.md).

use rand::RngCore as _;

/// A fresh id for a request made now.
pub fn new() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut rng = rand::thread_rng();
    of(ms, rng.next_u64(), rng.next_u32())
}

fn of(ms: u64, random: u64, more: u32) -> String {
    let time = ms & 0xffff_ffff_ffff;
    let rand_a = more & 0x0fff;
    let rand_b = random & 0x3fff_ffff_ffff_ffff;
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        time >> 16,
        time & 0xffff,
        rand_a,
        0x8000 | (rand_b >> 48),
        rand_b & 0xffff_ffff_ffff
    )
}

/// The millisecond a request id was made at; `None` for an id not made by [`new`].
pub fn time_ms(id: &str) -> Option<u64> {
    let b = id.as_bytes();
    let well_formed = b.len() == 36
        && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-')
        && b[14] == b'7'
        && matches!(b[19], b'8' | b'9' | b'a' | b'b')
        && b.iter()
            .enumerate()
            .all(|(i, c)| [8, 13, 18, 23].contains(&i) || matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    if !well_formed {
        return None;
    }
    u64::from_str_radix(&format!("{}{}", &id[..8], &id[9..13]), 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_v7_carrying_their_time_and_differ() {
        let id = of(1_765_000_000_123, u64::MAX, u32::MAX);
        assert_eq!(id, "019af232-b27b-7fff-bfff-ffffffffffff");
        assert_eq!(time_ms(&id), Some(1_765_000_000_123));
        let (a, b) = (new(), new());
        assert_ne!(a, b);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(time_ms(&a).unwrap().abs_diff(now) < 60_000);
        for not_ours in [
            "0123456789abcdef",
            "019af7d4-dd7b-4fff-bfff-ffffffffffff",
            "019af7d4-dd7b-7fff-7fff-ffffffffffff",
            "019AF7D4-dd7b-7fff-bfff-ffffffffffff",
        ] {
            assert_eq!(time_ms(not_ours), None, "{not_ours}");
        }
    }
}
