//! Reading infer request bodies: Python's `json` writes `NaN`, `Infinity` and
//! `-Infinity` for non-finite floats, which strict JSON refuses. Those bare tokens are
//! turned into marker strings so that parsing succeeds and validation can name the input
//! that carried them.

use std::borrow::Cow;

/// The string that stands for a non-finite number after [`mark_non_finite`].
pub const NON_FINITE_MARKER: &str = "\u{1}non-finite";

/// Replaces bare `NaN`, `Infinity` and `-Infinity` tokens outside strings.
pub fn mark_non_finite(body: &[u8]) -> Cow<'_, [u8]> {
    let tokens: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    // `-Infinity` contains `Infinity`: two searches cover the three tokens.
    if memchr::memmem::find(body, b"NaN").is_none()
        && memchr::memmem::find(body, b"Infinity").is_none()
    {
        return Cow::Borrowed(body);
    }
    let marker = format!("\"{}\"", NON_FINITE_MARKER.replace('\u{1}', "\\u0001"));
    let mut out = Vec::with_capacity(body.len() + 64);
    let mut in_string = false;
    let mut escaped = false;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
            out.push(b);
            i += 1;
            continue;
        }
        if let Some(t) = tokens.iter().find(|t| body[i..].starts_with(t)) {
            out.extend_from_slice(marker.as_bytes());
            i += t.len();
            continue;
        }
        out.push(b);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_bare_tokens_but_not_strings() {
        let body = br#"{"id":"NaN-id","data":[1.0,NaN,-Infinity,Infinity]}"#;
        let v: serde_json::Value = serde_json::from_slice(&mark_non_finite(body)).unwrap();
        assert_eq!(v["id"], "NaN-id");
        assert_eq!(v["data"][1], NON_FINITE_MARKER);
        assert_eq!(v["data"][2], NON_FINITE_MARKER);
        assert_eq!(v["data"][3], NON_FINITE_MARKER);
        assert!(matches!(mark_non_finite(b"[1,2]"), Cow::Borrowed(_)));
    }
}
