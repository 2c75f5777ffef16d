//! IP addresses: dotted IPv4 (four parts, each at most 255) and IPv6 in any of its
//! textual forms (`::` compression, embedded IPv4), parsed by the standard library.

use std::net::Ipv6Addr;

/// IP addresses.
#[derive(Debug)]
pub struct IpAddress;

impl IpAddress {
    /// Four dot-separated parts of 1 to 3 digits, each at most 255.
    pub fn ipv4(parts: &[&[u8]]) -> bool {
        parts.len() == 4
            && parts.iter().all(|p| {
                (1..=3).contains(&p.len())
                    && p.iter().all(u8::is_ascii_digit)
                    && p.iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0')) <= 255
            })
    }

    /// The longest IPv6 address at the start of `candidate` (chars of `[0-9A-Fa-f:.]`),
    /// as a char count.
    pub fn ipv6_prefix(candidate: &[char]) -> Option<usize> {
        if candidate.iter().filter(|&&c| c == ':').count() < 2 {
            return None;
        }
        let text: String = candidate.iter().collect();
        (2..=text.len())
            .rev()
            .find(|&n| text[..n].parse::<Ipv6Addr>().is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6() {
        let parts = |s: &'static str| s.split('.').map(str::as_bytes).collect::<Vec<_>>();
        assert!(IpAddress::ipv4(&parts("192.168.1.20")));
        assert!(!IpAddress::ipv4(&parts("192.168.1.256")));
        assert!(!IpAddress::ipv4(&parts("2024.03.07")));
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(
            IpAddress::ipv6_prefix(&chars("2001:db8::8a2e:370:7334")),
            Some(23)
        );
        assert_eq!(IpAddress::ipv6_prefix(&chars("fe80::1.")), Some(7));
        assert_eq!(IpAddress::ipv6_prefix(&chars("::ffff:10.0.0.1")), Some(15));
        assert_eq!(IpAddress::ipv6_prefix(&chars("12:30:45")), None);
    }
}
