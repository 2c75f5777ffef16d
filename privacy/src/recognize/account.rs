//! Account-number-like digit runs: 12 or more digits (contiguous or grouped with one
//! consistent separator) that no more specific recognizer claimed. Bank account numbers
//! carry no public check digit, so length is the signal; runs glued to Latin letters
//! (order and reference codes such as `DD202403070042`) and runs named by an order label
//! (`订单号 …`, `order no. …`) are left alone.

/// Long digit runs.
#[derive(Debug)]
pub struct AccountNumber;

/// The fewest digits a run needs to count as an account number.
pub const MIN_DIGITS: usize = 12;

impl AccountNumber {
    pub fn check(digits: &[u8], glued_to_letters: bool) -> bool {
        !glued_to_letters
            && (MIN_DIGITS..=34).contains(&digits.len())
            && digits.iter().all(u8::is_ascii_digit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_runs_only() {
        assert!(AccountNumber::check(b"6217000012345678901", false));
        assert!(AccountNumber::check(b"123456789012", false));
        assert!(!AccountNumber::check(b"12345678901", false));
        assert!(!AccountNumber::check(b"123456789012", true));
    }
}
