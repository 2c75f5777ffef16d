//! The normalised view of a text that the recognizers read: full-width ASCII forms
//! (digits, letters, `@`, `.`, `-`, `+`, `:`) become ASCII, every kind of dash becomes
//! `-`, and the spaces people put inside numbers (ideographic, no-break, thin) become
//! a plain space. Each normalised character remembers the byte span it came from, so
//! that a finding maps back onto the original text exactly.

/// A text as the recognizers see it.
#[derive(Debug)]
pub struct Normalized {
    pub chars: Vec<char>,
    /// For each char, its byte range in the original text.
    pub spans: Vec<(usize, usize)>,
}

/// Maps one character onto its plain ASCII form where it has one.
pub fn fold(c: char) -> char {
    match c {
        // Full-width forms of the printable ASCII range.
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        '\u{3000}' | '\u{00A0}' | '\u{2007}' | '\u{2009}' | '\u{202F}' | '\u{200A}' => ' ',
        '\u{2010}'..='\u{2015}' | '\u{2212}' | '\u{FE63}' => '-',
        '\u{FE52}' => '.',
        _ => c,
    }
}

impl Normalized {
    pub fn new(text: &str) -> Self {
        let mut chars = Vec::with_capacity(text.len());
        let mut spans = Vec::with_capacity(text.len());
        for (i, c) in text.char_indices() {
            chars.push(fold(c));
            spans.push((i, i + c.len_utf8()));
        }
        Normalized { chars, spans }
    }

    /// The byte range in the original text of chars `start..end`.
    pub fn byte_range(&self, start: usize, end: usize) -> (usize, usize) {
        (self.spans[start].0, self.spans[end - 1].1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_full_width_and_keeps_byte_spans() {
        let n = Normalized::new("号１３８－Ｘ\u{3000}a");
        assert_eq!(n.chars, vec!['号', '1', '3', '8', '-', 'X', ' ', 'a']);
        assert_eq!(n.byte_range(1, 4), (3, 12));
        assert_eq!(n.byte_range(7, 8), (21, 22));
    }
}
