//! The last check before llama.cpp's grammar parser sees a grammar: its size, and every
//! counted repetition `{m}`, `{m,}`, `{m,n}` in it (outside literals, character classes
//! and comments) well-formed, with `m ≤ n`, and the copies the parser will make of them
//! summed against a budget. An inverted range is what once sent that parser into an
//! endless allocation; this guard does not trust that the converter never writes one.

use super::limits;

/// Why a grammar was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GbnfError {
    #[error("the grammar is {0} bytes; at most {max}", max = limits::MAX_GRAMMAR_BYTES)]
    TooLarge(usize),
    #[error("the grammar has a malformed repetition")]
    Malformed,
    #[error("the grammar has a repetition whose minimum exceeds its maximum")]
    Inverted,
    #[error("the grammar repeats {0} copies in all; at most {max}", max = limits::MAX_GRAMMAR_EXPANSION)]
    Expansion(u64),
}

/// Checks a GBNF grammar; returns the repetition copies it makes.
pub fn check(grammar: &str) -> Result<u64, GbnfError> {
    if grammar.len() > limits::MAX_GRAMMAR_BYTES {
        return Err(GbnfError::TooLarge(grammar.len()));
    }
    let b = grammar.as_bytes();
    let mut i = 0;
    let mut copies: u64 = 0;
    while i < b.len() {
        match b[i] {
            b'"' => i = skip_quoted(b, i + 1, b'"'),
            b'[' => i = skip_quoted(b, i + 1, b']'),
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'}')
                    .map(|p| i + p)
                    .ok_or(GbnfError::Malformed)?;
                copies = copies.saturating_add(repetition(&grammar[i + 1..end])?);
                if copies > limits::MAX_GRAMMAR_EXPANSION {
                    return Err(GbnfError::Expansion(copies));
                }
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    Ok(copies)
}

/// The index after the closing `close`, honouring backslash escapes.
fn skip_quoted(b: &[u8], mut i: usize, close: u8) -> usize {
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            c if c == close => return i + 1,
            _ => i += 1,
        }
    }
    i
}

/// The copies one `{…}` body makes: `m`, `m,` or `m,n`.
fn repetition(body: &str) -> Result<u64, GbnfError> {
    let num = |s: &str| -> Result<u64, GbnfError> {
        let s = s.trim();
        if s.is_empty() || s.len() > 10 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(GbnfError::Malformed);
        }
        s.parse().map_err(|_| GbnfError::Malformed)
    };
    match body.split_once(',') {
        None => num(body),
        Some((m, n)) if n.trim().is_empty() => Ok(num(m)? + 1),
        Some((m, n)) => {
            let (m, n) = (num(m)?, num(n)?);
            if m > n {
                return Err(GbnfError::Inverted);
            }
            Ok(n)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_repetitions_outside_literals_and_classes() {
        let g = "root ::= \"{9,1}\" [{}] a{2,5} b{3} c{4,} # {1,0}\n";
        assert_eq!(check(g), Ok(5 + 3 + 5));
    }

    #[test]
    fn refuses_inverted_malformed_and_oversized() {
        assert_eq!(check("root ::= \"a\"{2,1}"), Err(GbnfError::Inverted));
        assert_eq!(check("root ::= \"a\"{x}"), Err(GbnfError::Malformed));
        assert_eq!(check("root ::= \"a\"{2"), Err(GbnfError::Malformed));
        assert_eq!(
            check("root ::= \"a\"{99999999999}"),
            Err(GbnfError::Malformed)
        );
        assert!(matches!(
            check("root ::= a{0,20001}"),
            Err(GbnfError::Expansion(_))
        ));
        let big = format!("root ::= \"{}\"", "a".repeat(limits::MAX_GRAMMAR_BYTES));
        assert!(matches!(check(&big), Err(GbnfError::TooLarge(_))));
    }
}
