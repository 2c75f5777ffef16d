//! A token stream of Rust source good enough for finding paths and module items:
//! comments (doc comments included) are dropped, string, char and number literals become
//! single tokens, so nothing inside them is mistaken for code.

/// One token and the 1-based line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) kind: Kind,
    pub(crate) line: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An identifier or keyword (`r#` of raw identifiers removed).
    Ident(String),
    /// A string literal's text, as written between the quotes (escapes not processed).
    Str(String),
    /// `::`
    PathSep,
    /// Any other single punctuation character.
    Punct(char),
    /// A char, byte or number literal, or a lifetime or label.
    Other,
}

impl Token {
    pub(crate) fn is_punct(&self, c: char) -> bool {
        self.kind == Kind::Punct(c)
    }

    pub(crate) fn is_ident(&self, s: &str) -> bool {
        matches!(&self.kind, Kind::Ident(i) if i == s)
    }

    pub(crate) fn ident(&self) -> Option<&str> {
        match &self.kind {
            Kind::Ident(i) => Some(i),
            _ => None,
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c == '_' || c.is_alphabetic()
}

fn is_ident_continue(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

struct Lexer {
    chars: Vec<char>,
    i: usize,
    line: u32,
    out: Vec<Token>,
}

impl Lexer {
    fn at(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn bump(&mut self) {
        if self.chars.get(self.i) == Some(&'\n') {
            self.line += 1;
        }
        self.i += 1;
    }

    fn push(&mut self, kind: Kind, line: u32) {
        self.out.push(Token { kind, line });
    }

    fn line_comment(&mut self) {
        while let Some(c) = self.at(0) {
            if c == '\n' {
                return;
            }
            self.bump();
        }
    }

    fn block_comment(&mut self) {
        let mut depth = 0usize;
        while let Some(c) = self.at(0) {
            if c == '/' && self.at(1) == Some('*') {
                depth += 1;
                self.bump();
            } else if c == '*' && self.at(1) == Some('/') {
                depth -= 1;
                self.bump();
                if depth == 0 {
                    self.bump();
                    return;
                }
            }
            self.bump();
        }
    }

    /// A quoted string starting at the opening `"`; `hashes` > 0 or `raw` for raw strings.
    fn string(&mut self, raw: bool, hashes: usize) {
        let line = self.line;
        self.bump(); // the opening quote
        let mut text = String::new();
        while let Some(c) = self.at(0) {
            if !raw && c == '\\' {
                text.push(c);
                self.bump();
                if let Some(e) = self.at(0) {
                    text.push(e);
                    self.bump();
                }
                continue;
            }
            if c == '"' && (0..hashes).all(|k| self.at(1 + k) == Some('#')) {
                self.bump();
                for _ in 0..hashes {
                    self.bump();
                }
                break;
            }
            text.push(c);
            self.bump();
        }
        self.push(Kind::Str(text), line);
    }

    /// `r"…"`, `r#"…"#`: the number of `#` if a raw string starts `k` chars ahead.
    fn raw_string_hashes(&self, k: usize) -> Option<usize> {
        let mut n = 0;
        while self.at(k + n) == Some('#') {
            n += 1;
        }
        (self.at(k + n) == Some('"')).then_some(n)
    }

    fn quote(&mut self) {
        let line = self.line;
        // 'x', '\n', '\u{..}' are chars; 'a (no closing quote right after one char) a lifetime.
        if self.at(1) == Some('\\') {
            self.bump(); // the quote
            self.bump(); // the backslash
            self.bump(); // the escaped char, which may be a quote
            while let Some(c) = self.at(0) {
                self.bump();
                if c == '\'' {
                    break;
                }
            }
        } else if self.at(2) == Some('\'') {
            self.bump();
            self.bump();
            self.bump();
        } else {
            self.bump();
            while self.at(0).is_some_and(is_ident_continue) {
                self.bump();
            }
        }
        self.push(Kind::Other, line);
    }

    fn word(&mut self) {
        let line = self.line;
        let mut s = String::new();
        while let Some(c) = self.at(0).filter(|c| is_ident_continue(*c)) {
            s.push(c);
            self.bump();
        }
        self.push(Kind::Ident(s), line);
    }

    fn number(&mut self) {
        let line = self.line;
        while let Some(c) = self.at(0) {
            let fraction = c == '.' && self.at(1).is_some_and(|d| d.is_ascii_digit());
            if !(is_ident_continue(c) || fraction) {
                break;
            }
            self.bump();
        }
        self.push(Kind::Other, line);
    }

    fn run(mut self) -> Vec<Token> {
        while let Some(c) = self.at(0) {
            match c {
                c if c.is_whitespace() => self.bump(),
                '/' if self.at(1) == Some('/') => self.line_comment(),
                '/' if self.at(1) == Some('*') => self.block_comment(),
                '"' => self.string(false, 0),
                '\'' => self.quote(),
                'r' if self.raw_string_hashes(1).is_some() => {
                    let hashes = self.raw_string_hashes(1).unwrap_or(0);
                    self.bump();
                    for _ in 0..hashes {
                        self.bump();
                    }
                    self.string(true, hashes);
                }
                'r' if self.at(1) == Some('#') && self.at(2).is_some_and(is_ident_start) => {
                    self.bump();
                    self.bump();
                    self.word();
                }
                'b' | 'c' if self.at(1) == Some('"') => {
                    self.bump();
                    self.string(false, 0);
                }
                'b' if self.at(1) == Some('\'') => {
                    self.bump();
                    self.quote();
                }
                'b' | 'c' if self.at(1) == Some('r') && self.raw_string_hashes(2).is_some() => {
                    let hashes = self.raw_string_hashes(2).unwrap_or(0);
                    self.bump();
                    self.bump();
                    for _ in 0..hashes {
                        self.bump();
                    }
                    self.string(true, hashes);
                }
                c if is_ident_start(c) => self.word(),
                c if c.is_ascii_digit() => self.number(),
                ':' if self.at(1) == Some(':') => {
                    let line = self.line;
                    self.bump();
                    self.bump();
                    self.push(Kind::PathSep, line);
                }
                c => {
                    let line = self.line;
                    self.bump();
                    self.push(Kind::Punct(c), line);
                }
            }
        }
        self.out
    }
}

/// The tokens of `src`, comments dropped.
pub(crate) fn tokenize(src: &str) -> Vec<Token> {
    Lexer {
        chars: src.chars().collect(),
        i: 0,
        line: 1,
        out: Vec::new(),
    }
    .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idents(src: &str) -> Vec<String> {
        tokenize(src)
            .iter()
            .filter_map(|t| t.ident().map(str::to_owned))
            .collect()
    }

    #[test]
    fn comments_strings_and_chars_hide_their_contents() {
        let src = "a // crate::x\n/* b /* nested crate::y */ still */ c \"crate::z\" r#\"q\"# 'd' '\\'' e 'f g";
        assert_eq!(idents(src), ["a", "c", "e", "g"]);
    }

    #[test]
    fn lines_are_counted_across_comments_and_strings() {
        let toks = tokenize("a\n/*\n*/\n\"x\ny\"\nb");
        assert_eq!(toks.last().map(|t| t.line), Some(6));
    }

    #[test]
    fn raw_identifiers_and_path_separators() {
        let toks = tokenize("r#type::b");
        assert_eq!(toks[0].kind, Kind::Ident("type".into()));
        assert_eq!(toks[1].kind, Kind::PathSep);
    }
}
