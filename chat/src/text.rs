//! Turning generated token pieces into text that can be sent: pieces may end inside a
//! UTF-8 character (held back until complete), and stop strings must neither be sent
//! nor be half-sent before they are recognised (the tail that could still begin one is
//! held back).

/// The text of one generation.
#[derive(Debug, Default)]
pub struct TextAssembler {
    stop: Vec<String>,
    pending_bytes: Vec<u8>,
    text: String,
    sent: usize,
}

/// What a new piece released.
#[derive(Debug, PartialEq, Eq)]
pub enum Released {
    /// Text that may be sent now (possibly empty).
    Text(String),
    /// A stop string appeared: the text before it, and generation ends.
    Stopped(String),
}

impl TextAssembler {
    pub fn new(stop: Vec<String>) -> Self {
        Self {
            stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Self::default()
        }
    }

    /// Adds a token's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Released {
        self.pending_bytes.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending_bytes) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_some() => {
                // Invalid bytes (not just incomplete): replace them rather than stall.
                let lossy = String::from_utf8_lossy(&self.pending_bytes).into_owned();
                self.pending_bytes.clear();
                self.text.push_str(&lossy);
                return self.release();
            }
            Err(e) => e.valid_up_to(),
        };
        let complete: Vec<u8> = self.pending_bytes.drain(..valid).collect();
        // `valid` bytes were checked above.
        self.text
            .push_str(std::str::from_utf8(&complete).unwrap_or_default());
        self.release()
    }

    fn release(&mut self) -> Released {
        // A stop string may start before `sent` only if it began in held-back text, which
        // is never sent; search from the earliest place one could start.
        let longest = self.stop.iter().map(String::len).max().unwrap_or(0);
        let from = floor_char(&self.text, self.sent.saturating_sub(longest));
        let hit = self
            .stop
            .iter()
            .filter_map(|s| self.text[from..].find(s.as_str()).map(|i| from + i))
            .min();
        if let Some(at) = hit {
            let out = self.text[self.sent.min(at)..at].to_string();
            self.sent = at;
            return Released::Stopped(out);
        }
        let hold = longest.saturating_sub(1);
        let safe = floor_char(&self.text, self.text.len().saturating_sub(hold)).max(self.sent);
        let out = self.text[self.sent..safe].to_string();
        self.sent = safe;
        Released::Text(out)
    }

    /// At the end: everything not yet sent.
    pub fn finish(&mut self) -> String {
        if !self.pending_bytes.is_empty() {
            let rest = String::from_utf8_lossy(&self.pending_bytes).into_owned();
            self.pending_bytes.clear();
            self.text.push_str(&rest);
        }
        let out = self.text[self.sent..].to_string();
        self.sent = self.text.len();
        out
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], pieces: &[&[u8]]) -> (String, bool) {
        let mut t = TextAssembler::new(stop.iter().map(|s| s.to_string()).collect());
        let mut out = String::new();
        for p in pieces {
            match t.push(p) {
                Released::Text(s) => out.push_str(&s),
                Released::Stopped(s) => {
                    out.push_str(&s);
                    return (out, true);
                }
            }
        }
        out.push_str(&t.finish());
        (out, false)
    }

    #[test]
    fn split_utf8_is_held_until_complete() {
        let euro = "€".as_bytes();
        let mut t = TextAssembler::new(Vec::new());
        assert_eq!(t.push(&euro[..1]), Released::Text(String::new()));
        assert_eq!(t.push(&euro[1..]), Released::Text("€".into()));
        assert_eq!(
            run(&[], &[b"a", &euro[..2], &euro[2..], b"b"]),
            ("a€b".into(), false)
        );
    }

    #[test]
    fn stop_strings_end_generation_and_are_never_sent() {
        assert_eq!(
            run(&["END"], &[b"hello E", b"N", b"D more"]),
            ("hello ".into(), true)
        );
        assert_eq!(run(&["\n\n"], &[b"a\n", b"\nb"]), ("a".into(), true));
        // A near miss is released once it cannot be a stop string any more.
        assert_eq!(run(&["END"], &[b"EN", b"x"]), ("ENx".into(), false));
        assert_eq!(run(&["stop", "st"], &[b"first"]), ("fir".into(), true));
    }
}
