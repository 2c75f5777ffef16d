//! E-mail addresses: a local part of `[A-Za-z0-9._%+-]`, `@` (or its full-width form),
//! and a domain with at least one dot and an alphabetic top-level label. Found from the
//! `@` outwards, so surrounding Chinese text needs no word boundary.

/// E-mail addresses.
#[derive(Debug)]
pub struct EmailAddress;

fn local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn domain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
}

impl EmailAddress {
    /// The char range of the address around the `@` at `at`, if there is one.
    pub fn around(chars: &[char], at: usize) -> Option<(usize, usize)> {
        let mut start = at;
        while start > 0 && local_char(chars[start - 1]) {
            start -= 1;
        }
        while start < at && chars[start] == '.' {
            start += 1;
        }
        let mut end = at + 1;
        while end < chars.len() && domain_char(chars[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(chars[end - 1], '.' | '-') {
            end -= 1;
        }
        if start == at || end == at + 1 {
            return None;
        }
        let domain = &chars[at + 1..end];
        let last_dot = domain.iter().rposition(|&c| c == '.')?;
        let tld = &domain[last_dot + 1..];
        let ok = last_dot > 0 && tld.len() >= 2 && tld.iter().all(char::is_ascii_alphabetic);
        ok.then_some((start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(s: &str) -> Option<String> {
        let chars: Vec<char> = s.chars().collect();
        let at = chars.iter().position(|&c| c == '@')?;
        EmailAddress::around(&chars, at).map(|(a, b)| chars[a..b].iter().collect())
    }

    #[test]
    fn addresses_in_text() {
        assert_eq!(
            find("请联系zhang.san+x@bank-a.com.cn。谢谢").as_deref(),
            Some("zhang.san+x@bank-a.com.cn")
        );
        assert_eq!(find("mail a@b.io.").as_deref(), Some("a@b.io"));
        assert_eq!(find("@handle"), None);
        assert_eq!(find("x@localhost"), None);
        assert_eq!(find("x@host.123"), None);
    }
}
