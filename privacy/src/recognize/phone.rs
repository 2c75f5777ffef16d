//! Telephone numbers: Chinese mobile numbers (11 digits, `1[3-9]`, with or without the
//! `+86`/`0086`/`86` country prefix) and international numbers written with `+` or `00`
//! and a country code (E.164: at most 15 digits).

/// Phone numbers.
#[derive(Debug)]
pub struct PhoneNumber;

impl PhoneNumber {
    /// A Chinese mobile number without country prefix.
    pub fn cn_mobile(digits: &[u8]) -> bool {
        digits.len() == 11
            && digits[0] == b'1'
            && (b'3'..=b'9').contains(&digits[1])
            && digits.iter().all(u8::is_ascii_digit)
    }

    /// A Chinese mobile number behind its country prefix (`86` or `0086`).
    pub fn cn_with_prefix(digits: &[u8]) -> bool {
        digits
            .strip_prefix(b"0086")
            .or(digits.strip_prefix(b"86"))
            .is_some_and(Self::cn_mobile)
    }

    /// `digits` as written, `plus` when a `+` stood before them.
    pub fn check(digits: &[u8], plus: bool) -> bool {
        if !digits.iter().all(u8::is_ascii_digit) {
            return false;
        }
        if plus {
            return (8..=15).contains(&digits.len());
        }
        if Self::cn_mobile(digits) {
            return true;
        }
        if Self::cn_with_prefix(digits) {
            return true;
        }
        // `00` international access prefix, a country code and the national number.
        digits.len() >= 11 && digits.len() <= 17 && digits.starts_with(b"00") && digits[2] != b'0'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mobile_and_international() {
        assert!(PhoneNumber::check(b"13812345678", false));
        assert!(PhoneNumber::check(b"8613812345678", false));
        assert!(PhoneNumber::check(b"008613812345678", false));
        assert!(PhoneNumber::check(b"442079460958", true));
        assert!(PhoneNumber::check(b"00442079460958", false));
        assert!(
            !PhoneNumber::check(b"12812345678", false),
            "12x is not mobile"
        );
        assert!(!PhoneNumber::check(b"1381234567", false), "10 digits");
        assert!(!PhoneNumber::check(b"1234567", true), "too short after +");
        assert!(!PhoneNumber::check(b"1234567890123456", true), "over E.164");
    }
}
