//! Chinese resident identity numbers: the 18-character form (region, birth date
//! YYYYMMDD, sequence, ISO 7064 MOD 11-2 check character `0-9` or `X`) and the legacy
//! 15-digit form (region, YYMMDD in the 1900s, sequence).

/// Resident ID numbers.
#[derive(Debug)]
pub struct ChineseResidentId;

/// Province codes (first two digits) in use.
const PROVINCES: [u8; 34] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
];

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK: &[u8; 11] = b"10X98765432";

fn number(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
}

/// Whether year/month/day is a real calendar date.
pub fn valid_date(year: u32, month: u32, day: u32) -> bool {
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&day)
}

impl ChineseResidentId {
    /// The MOD 11-2 check character for the first 17 digits.
    pub fn check_char(first17: &[u8]) -> u8 {
        let sum: u32 = first17
            .iter()
            .zip(WEIGHTS)
            .map(|(d, w)| u32::from(d - b'0') * w)
            .sum();
        CHECK[(sum % 11) as usize]
    }

    fn region_ok(digits: &[u8]) -> bool {
        PROVINCES.contains(&(number(&digits[..2]) as u8))
    }

    /// The 18-character form; `id` is ASCII, the last character may be `X` or `x`.
    pub fn check18(id: &[u8]) -> bool {
        if id.len() != 18 || !id[..17].iter().all(u8::is_ascii_digit) {
            return false;
        }
        let last = id[17].to_ascii_uppercase();
        if !(last.is_ascii_digit() || last == b'X') || !Self::region_ok(id) {
            return false;
        }
        let year = number(&id[6..10]);
        (1900..=2100).contains(&year)
            && valid_date(year, number(&id[10..12]), number(&id[12..14]))
            && Self::check_char(&id[..17]) == last
    }

    /// The legacy 15-digit form (no check character; birth year 19YY).
    pub fn check15(id: &[u8]) -> bool {
        id.len() == 15
            && id.iter().all(u8::is_ascii_digit)
            && Self::region_ok(id)
            && valid_date(
                1900 + number(&id[6..8]),
                number(&id[8..10]),
                number(&id[10..12]),
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eighteen_character_form() {
        // Check character computed by hand: the GB 11643 example number.
        assert!(ChineseResidentId::check18(b"11010519491231002X"));
        assert!(ChineseResidentId::check18(b"11010519491231002x"));
        assert!(
            !ChineseResidentId::check18(b"110105194912310021"),
            "wrong check"
        );
        assert!(
            !ChineseResidentId::check18(b"110105194913310027"),
            "month 13"
        );
        assert!(
            !ChineseResidentId::check18(b"99010519491231002X"),
            "no province 99"
        );
        let mut id = b"44030019900229123".to_vec();
        id.push(ChineseResidentId::check_char(&id));
        assert!(!ChineseResidentId::check18(&id), "1990 is not a leap year");
        let mut id = b"44030020000229123".to_vec();
        id.push(ChineseResidentId::check_char(&id));
        assert!(ChineseResidentId::check18(&id), "2000 is");
    }

    #[test]
    fn fifteen_digit_form() {
        assert!(ChineseResidentId::check15(b"110105491231002"));
        assert!(!ChineseResidentId::check15(b"110105491331002"));
        assert!(!ChineseResidentId::check15(b"000105491231002"));
    }
}
