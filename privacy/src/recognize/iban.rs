//! International Bank Account Numbers: country code, two check digits, the national
//! part; the length fixed per country (the IBAN registry's lengths for the countries
//! listed) and the ISO 7064 mod-97 check equal to 1.

/// IBANs.
#[derive(Debug)]
pub struct Iban;

const LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NL", 18),
    (b"NO", 15),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
];

impl Iban {
    /// The IBAN length of a country, if it uses IBANs.
    pub fn length(country: &[u8]) -> Option<usize> {
        LENGTHS
            .iter()
            .find(|(c, _)| c.as_slice() == country)
            .map(|(_, n)| *n)
    }

    /// The mod-97 check over an upper-case alphanumeric IBAN.
    pub fn mod97(iban: &[u8]) -> bool {
        let rotated = iban[4..].iter().chain(&iban[..4]);
        let mut rem = 0u32;
        for &c in rotated {
            match c {
                b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
                b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A' + 10)) % 97,
                _ => return false,
            }
        }
        rem == 1
    }

    /// Whether `iban` (upper-case ASCII, no separators) is a valid IBAN.
    pub fn check(iban: &[u8]) -> bool {
        iban.len() >= 15
            && iban[..2].iter().all(u8::is_ascii_uppercase)
            && iban[2..4].iter().all(u8::is_ascii_digit)
            && Self::length(&iban[..2]) == Some(iban.len())
            && Self::mod97(iban)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_examples_pass_and_changes_fail() {
        for iban in [
            "DE89370400440532013000",
            "GB82WEST12345698765432",
            "FR1420041010050500013M02606",
            "NL91ABNA0417164300",
            "CH9300762011623852957",
        ] {
            assert!(Iban::check(iban.as_bytes()), "{iban}");
        }
        assert!(!Iban::check(b"DE89370400440532013001"), "one digit changed");
        assert!(!Iban::check(b"DE8937040044053201300"), "short for DE");
        assert!(!Iban::check(b"ZZ89370400440532013000"), "no such country");
    }
}
