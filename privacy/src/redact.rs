//! Redaction: every identifier the recognizers find is replaced by its typed tag
//! (`[PAN]`, `[CN_ID]`, …), whole, so no part of a number is left behind.

use std::borrow::Cow;

use crate::recognize::{Finding, find};

/// `text` with every identifier replaced by its tag; borrowed when there was none.
pub fn redact(text: &str) -> Cow<'_, str> {
    let findings = find(text);
    if findings.is_empty() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(replace(text, &findings))
}

/// Replaces `findings` (in text order, not overlapping) by their tags.
pub fn replace(text: &str, findings: &[Finding]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in findings {
        out.push_str(&text[at..f.start]);
        out.push_str(f.kind.tag());
        at = f.end;
    }
    out.push_str(&text[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_whole_numbers_in_chinese_and_english_text() {
        let cases = [
            ("卡号6222021234567890124请核对", "卡号[PAN]请核对"),
            ("card 4111 1111 1111 1111 ok", "card [PAN] ok"),
            (
                "card ４１１１－１１１１－１１１１－１１１１.",
                "card [PAN].",
            ),
            ("身份证11010519491231002X，", "身份证[CN_ID]，"),
            ("手机+86 138 1234 5678。", "手机[PHONE]。"),
            ("call 138.1234.5678 now", "call [PHONE] now"),
            ("电话＋86 138-1234-5678", "电话[PHONE]"),
            ("IBAN DE89 3704 0044 0532 0130 00 paid", "IBAN [IBAN] paid"),
            ("邮箱zhang.san@bank.cn联系", "邮箱[EMAIL]联系"),
            ("from 10.20.30.40:443", "from [IP]:443"),
            ("from fe80::1ff:fe23:4567:890a now", "from [IP] now"),
            ("账户6217 0000 1234 5678 901 余额", "账户[PAN] 余额"),
            ("账号 0123 4567 8901 23", "账号 [ACCOUNT]"),
            (
                "on 2024-03-07 paid ¥12,345.67 order ORD-2024-000123",
                "on 2024-03-07 paid ¥12,345.67 order ORD-2024-000123",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }
}
