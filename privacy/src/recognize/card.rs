//! Payment card numbers (PAN): 13 to 19 digits that pass the Luhn check, and UnionPay
//! numbers (prefix 62, 16 to 19 digits), which do not always carry a Luhn digit.

/// How sure a card match is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardMatch {
    /// The Luhn check digit is right.
    Luhn,
    /// A UnionPay-shaped number without a valid Luhn digit.
    UnionPay,
}

/// Card numbers.
#[derive(Debug)]
pub struct CardNumber;

impl CardNumber {
    /// The Luhn (mod 10) check over ASCII digits.
    pub fn luhn(digits: &[u8]) -> bool {
        let mut sum = 0u32;
        for (i, d) in digits.iter().rev().enumerate() {
            if !d.is_ascii_digit() {
                return false;
            }
            let mut v = u32::from(d - b'0');
            if i % 2 == 1 {
                v *= 2;
                if v > 9 {
                    v -= 9;
                }
            }
            sum += v;
        }
        sum % 10 == 0
    }

    /// Whether `digits` (ASCII digits only) is a card number.
    pub fn check(digits: &[u8]) -> Option<CardMatch> {
        if !(13..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        if Self::luhn(digits) {
            return Some(CardMatch::Luhn);
        }
        (digits.len() >= 16 && digits.starts_with(b"62")).then_some(CardMatch::UnionPay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_valid_numbers_of_every_length() {
        for pan in [
            "4111111111111111",
            "5500005555555559",
            "378282246310005",
            "6011111111111117",
            "4222222222222",
        ] {
            assert_eq!(
                CardNumber::check(pan.as_bytes()),
                Some(CardMatch::Luhn),
                "{pan}"
            );
        }
    }

    #[test]
    fn unionpay_without_luhn_and_refusals() {
        assert_eq!(
            CardNumber::check(b"6222021234567890124"),
            Some(CardMatch::UnionPay)
        );
        assert!(!CardNumber::luhn(b"6222021234567890124"));
        assert_eq!(CardNumber::check(b"4111111111111112"), None);
        assert_eq!(CardNumber::check(b"411111111111"), None, "12 digits");
        assert_eq!(
            CardNumber::check(b"62220212345678901234"),
            None,
            "20 digits"
        );
        assert_eq!(
            CardNumber::check(b"622202123456789"),
            None,
            "UnionPay needs 16+"
        );
    }
}
