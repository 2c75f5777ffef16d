//! A JSON-schema `pattern` (ECMA-262 syntax, as OpenAI clients send it) parsed with a
//! real regex parser (`regex-syntax`'s AST) and re-written in the small dialect that
//! llama.cpp's schema converter reads exactly: `^…$`, groups, `|`, `* + ? {m} {m,} {m,n}`
//! after a group, `.`, bracket classes of `\uXXXX` ranges, literals that are ASCII
//! letters, digits or escapes. Whatever that dialect cannot say (look-around, word
//! boundaries, flags, Unicode classes, anchors inside the pattern) is refused here, so the
//! converter never falls back to "any string" or warns with the pattern's text; and the
//! repetitions a pattern may ask for are bounded, so the grammar built from it is too.
//!
//! Refusals never quote the pattern: they name what is wrong with it.

use regex_syntax::ast::{
    self, Assertion, AssertionKind, Ast, ClassBracketed, ClassPerl, ClassPerlKind, ClassSet,
    ClassSetItem, GroupKind, RepetitionKind, RepetitionRange,
};

use super::limits;

/// Why a pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("is not a valid regular expression ({0})")]
    Syntax(String),
    #[error("uses {0}, which cannot be enforced as a grammar")]
    Unsupported(&'static str),
    #[error("repeats {0} times or more; at most {max} (counting nested repetitions multiplied)", max = limits::MAX_REPEAT)]
    TooManyRepeats(u64),
    #[error("repeats something that can be empty")]
    NullableRepeat,
    #[error("nests repetitions more than {max} deep", max = limits::MAX_PATTERN_REPEAT_DEPTH)]
    TooDeep,
    #[error("has a character class of more than {max} ranges", max = limits::MAX_CLASS_RANGES)]
    ClassTooLarge,
    #[error("has an alternation of more than {max} branches", max = limits::MAX_ALTERNATIVES)]
    TooManyAlternatives,
    #[error("becomes a grammar of more than {max} bytes", max = limits::MAX_PATTERN_OUT_BYTES)]
    TooLarge,
}

/// Rewrites `pattern` in the converter's dialect, anchored at both ends (an unanchored
/// side matches anything there, as a JSON-schema pattern means).
pub fn normalize(pattern: &str) -> Result<String, PatternError> {
    if pattern.len() > limits::MAX_PATTERN_BYTES {
        return Err(PatternError::TooLong {
            max: limits::MAX_PATTERN_BYTES,
        });
    }
    let ast = ast::parse::ParserBuilder::new()
        .nest_limit(limits::MAX_PATTERN_NESTING)
        .build()
        .parse(pattern)
        .map_err(|e| PatternError::Syntax(e.kind().to_string()))?;
    let mut items: &[Ast] = match &ast {
        Ast::Concat(c) => &c.asts,
        single => std::slice::from_ref(single),
    };
    let starts = items.first().is_some_and(is_start);
    if starts {
        items = &items[1..];
    }
    let ends = items.last().is_some_and(is_end);
    if ends {
        items = &items[..items.len() - 1];
    }
    let mut body = String::new();
    for item in items {
        body.push_str(&emit(item, 1, 0)?.text);
    }
    let mut out = String::with_capacity(body.len() + 6);
    out.push('^');
    if !starts {
        out.push_str(".*");
    }
    out.push_str(&body);
    if !ends {
        out.push_str(".*");
    }
    out.push('$');
    if out.len() > limits::MAX_PATTERN_OUT_BYTES {
        return Err(PatternError::TooLarge);
    }
    Ok(out)
}

fn is_start(a: &Ast) -> bool {
    matches!(a, Ast::Assertion(x) if matches!(x.kind, AssertionKind::StartLine | AssertionKind::StartText))
}

fn is_end(a: &Ast) -> bool {
    matches!(a, Ast::Assertion(x) if matches!(x.kind, AssertionKind::EndLine | AssertionKind::EndText))
}

/// One emitted piece: its text and whether it can match the empty string.
struct Piece {
    text: String,
    nullable: bool,
}

/// `mult`: how many copies the enclosing counted repetitions make of this piece;
/// `depth`: how many repetitions enclose it.
fn emit(ast: &Ast, mult: u64, depth: usize) -> Result<Piece, PatternError> {
    Ok(match ast {
        Ast::Empty(_) => Piece {
            text: String::new(),
            nullable: true,
        },
        Ast::Literal(l) => Piece {
            text: literal(l.c),
            nullable: false,
        },
        Ast::Dot(_) => Piece {
            text: ".".into(),
            nullable: false,
        },
        Ast::ClassPerl(p) => Piece {
            text: class(p.negated, &perl_ranges(p))?,
            nullable: false,
        },
        Ast::ClassBracketed(b) => Piece {
            text: bracketed(b)?,
            nullable: false,
        },
        Ast::ClassUnicode(_) => return Err(PatternError::Unsupported("a Unicode class")),
        Ast::Assertion(a) => return Err(assertion(a)),
        Ast::Flags(_) => return Err(PatternError::Unsupported("inline flags")),
        Ast::Group(g) => {
            if let GroupKind::NonCapturing(flags) = &g.kind {
                if !flags.items.is_empty() {
                    return Err(PatternError::Unsupported("inline flags"));
                }
            }
            let inner = emit(&g.ast, mult, depth)?;
            group(inner)
        }
        Ast::Concat(c) => {
            let mut text = String::new();
            let mut nullable = true;
            for a in &c.asts {
                let p = emit(a, mult, depth)?;
                text.push_str(&p.text);
                nullable &= p.nullable;
            }
            Piece { text, nullable }
        }
        Ast::Alternation(alt) => alternation(&alt.asts, mult, depth)?,
        Ast::Repetition(r) => repetition(r, mult, depth)?,
    })
}

fn alternation(asts: &[Ast], mult: u64, depth: usize) -> Result<Piece, PatternError> {
    if asts.len() > limits::MAX_ALTERNATIVES {
        return Err(PatternError::TooManyAlternatives);
    }
    let mut branches = Vec::with_capacity(asts.len());
    let mut has_empty = false;
    let mut nullable = false;
    for a in asts {
        let p = emit(a, mult, depth)?;
        nullable |= p.nullable;
        if p.text.is_empty() {
            has_empty = true;
        } else {
            branches.push(p.text);
        }
    }
    if branches.is_empty() {
        return Ok(Piece {
            text: String::new(),
            nullable: true,
        });
    }
    // An empty branch goes last: the converter writes it as a trailing `|`, a form
    // llama.cpp's grammar parser itself uses for optional rules.
    let mut text = format!("({}", branches.join("|"));
    if has_empty {
        text.push('|');
    }
    text.push(')');
    Ok(Piece { text, nullable })
}

fn repetition(r: &ast::Repetition, mult: u64, depth: usize) -> Result<Piece, PatternError> {
    if depth + 1 > limits::MAX_PATTERN_REPEAT_DEPTH {
        return Err(PatternError::TooDeep);
    }
    // (min, max): None is unbounded.
    let (min, max): (u32, Option<u32>) = match &r.op.kind {
        RepetitionKind::ZeroOrOne => (0, Some(1)),
        RepetitionKind::ZeroOrMore => (0, None),
        RepetitionKind::OneOrMore => (1, None),
        RepetitionKind::Range(RepetitionRange::Exactly(n)) => (*n, Some(*n)),
        RepetitionKind::Range(RepetitionRange::AtLeast(n)) => (*n, None),
        RepetitionKind::Range(RepetitionRange::Bounded(m, n)) => (*m, Some(*n)),
    };
    if max.is_some_and(|n| n < min) {
        // regex-syntax refuses this already; the converter would not.
        return Err(PatternError::Syntax(
            "a repetition range whose minimum exceeds its maximum".into(),
        ));
    }
    // Counted repetitions are expanded into copies by llama.cpp's grammar parser.
    let copies = u64::from(max.unwrap_or(min).max(1));
    let inner_mult = mult.saturating_mul(copies);
    if inner_mult > limits::MAX_REPEAT {
        return Err(PatternError::TooManyRepeats(inner_mult));
    }
    let inner = emit(&r.ast, inner_mult, depth + 1)?;
    if inner.text.is_empty() || max == Some(0) {
        return Ok(Piece {
            text: String::new(),
            nullable: true,
        });
    }
    if inner.nullable && max != Some(1) {
        return Err(PatternError::NullableRepeat);
    }
    let op = match (min, max) {
        (0, Some(1)) => "?".to_string(),
        (0, None) => "*".to_string(),
        (1, None) => "+".to_string(),
        (m, None) => format!("{{{m},}}"),
        (m, Some(n)) if m == n => format!("{{{m}}}"),
        (m, Some(n)) => format!("{{{m},{n}}}"),
    };
    Ok(Piece {
        text: format!("({}){op}", inner.text),
        nullable: min == 0 || inner.nullable,
    })
}

fn group(inner: Piece) -> Piece {
    if inner.text.is_empty() {
        return inner;
    }
    Piece {
        text: format!("({})", inner.text),
        nullable: inner.nullable,
    }
}

fn assertion(a: &Assertion) -> PatternError {
    PatternError::Unsupported(match a.kind {
        AssertionKind::StartLine
        | AssertionKind::StartText
        | AssertionKind::EndLine
        | AssertionKind::EndText => "an anchor inside the pattern",
        _ => "a word boundary",
    })
}

/// A literal character: ASCII letters and digits as they are, everything else as an
/// escape both the converter and llama.cpp's grammar parser read as that character.
fn literal(c: char) -> String {
    if c.is_ascii_alphanumeric() {
        c.to_string()
    } else {
        escape(c)
    }
}

fn escape(c: char) -> String {
    let v = u32::from(c);
    if v <= 0xFFFF {
        format!("\\u{v:04X}")
    } else {
        format!("\\U{v:08X}")
    }
}

/// ECMA-262's `\d`, `\w` and `\s` (ASCII, as JSON Schema's regular expressions use them).
fn perl_ranges(p: &ClassPerl) -> Vec<(char, char)> {
    match p.kind {
        ClassPerlKind::Digit => vec![('0', '9')],
        ClassPerlKind::Word => vec![('0', '9'), ('A', 'Z'), ('_', '_'), ('a', 'z')],
        ClassPerlKind::Space => vec![('\t', '\r'), (' ', ' ')],
    }
}

fn bracketed(b: &ClassBracketed) -> Result<String, PatternError> {
    let mut ranges = Vec::new();
    match &b.kind {
        ClassSet::Item(item) => set_item(item, &mut ranges)?,
        ClassSet::BinaryOp(_) => {
            return Err(PatternError::Unsupported("class set operations"));
        }
    }
    class(b.negated, &ranges)
}

fn set_item(item: &ClassSetItem, out: &mut Vec<(char, char)>) -> Result<(), PatternError> {
    match item {
        ClassSetItem::Empty(_) => {}
        ClassSetItem::Literal(l) => out.push((l.c, l.c)),
        ClassSetItem::Range(r) => out.push((r.start.c, r.end.c)),
        ClassSetItem::Perl(p) if !p.negated => out.extend(perl_ranges(p)),
        ClassSetItem::Perl(_) => {
            return Err(PatternError::Unsupported("a negated class inside brackets"));
        }
        ClassSetItem::Ascii(_) => return Err(PatternError::Unsupported("a POSIX class")),
        ClassSetItem::Unicode(_) => return Err(PatternError::Unsupported("a Unicode class")),
        ClassSetItem::Bracketed(_) => {
            return Err(PatternError::Unsupported("nested brackets"));
        }
        ClassSetItem::Union(u) => {
            for i in &u.items {
                set_item(i, out)?;
            }
        }
    }
    if out.len() > limits::MAX_CLASS_RANGES {
        return Err(PatternError::ClassTooLarge);
    }
    Ok(())
}

fn class(negated: bool, ranges: &[(char, char)]) -> Result<String, PatternError> {
    if ranges.len() > limits::MAX_CLASS_RANGES {
        return Err(PatternError::ClassTooLarge);
    }
    let mut s = String::from("[");
    if negated {
        s.push('^');
    }
    for &(lo, hi) in ranges {
        s.push_str(&escape(lo));
        if hi != lo {
            s.push('-');
            s.push_str(&escape(hi));
        }
    }
    s.push(']');
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchored_patterns_keep_their_meaning_in_the_converter_dialect() {
        assert_eq!(normalize("^ab$").unwrap(), "^ab$");
        assert_eq!(normalize("^a.c$").unwrap(), "^a.c$");
        assert_eq!(
            normalize(r"^\d{3}-\d{4}$").unwrap(),
            r"^([\u0030-\u0039]){3}\u002D([\u0030-\u0039]){4}$"
        );
        assert_eq!(normalize("^(?:x|y)+$").unwrap(), "^(((x|y)))+$");
        assert_eq!(
            normalize("^[^a-c_]?$").unwrap(),
            r"^([^\u0061-\u0063\u005F])?$"
        );
        assert_eq!(normalize("^(a|)b$").unwrap(), "^((a|))b$");
    }

    #[test]
    fn an_unanchored_side_matches_anything() {
        assert_eq!(normalize("ab").unwrap(), "^.*ab.*$");
        assert_eq!(normalize("^ab").unwrap(), "^ab.*$");
        assert_eq!(normalize("ab$").unwrap(), "^.*ab$");
    }

    #[test]
    fn inverted_and_huge_repetitions_are_refused() {
        // The pattern that made llama.cpp's grammar parser allocate without end.
        assert!(matches!(
            normalize("^a{2,1}$"),
            Err(PatternError::Syntax(_))
        ));
        assert!(matches!(
            normalize("^a{0,100000}$"),
            Err(PatternError::TooManyRepeats(_))
        ));
        assert!(matches!(
            normalize("^(a{100}){100}$"),
            Err(PatternError::TooManyRepeats(10_000))
        ));
        assert!(matches!(
            normalize("^a{5000,}$"),
            Err(PatternError::TooManyRepeats(_))
        ));
        assert!(normalize("^(a{10}){100}$").is_ok());
    }

    #[test]
    fn nested_and_empty_repetitions() {
        assert_eq!(normalize("^(a*)*$"), Err(PatternError::NullableRepeat));
        assert_eq!(normalize("^(a?)+$"), Err(PatternError::NullableRepeat));
        assert!(normalize("^([a-z]+\\.)+[a-z]+$").is_ok());
        assert_eq!(normalize("^((((a+)+)+)+)+$"), Err(PatternError::TooDeep));
        assert_eq!(normalize("^()*x$").unwrap(), "^x$");
    }

    #[test]
    fn what_the_converter_cannot_say_is_refused_without_quoting_the_pattern() {
        for (p, what) in [
            ("^a\\bb$", "a word boundary"),
            ("^a^b$", "an anchor inside the pattern"),
            ("^(?i)ab$", "inline flags"),
            ("^\\p{L}$", "a Unicode class"),
            ("^[[:alpha:]]$", "a POSIX class"),
            ("^[a-z&&[^x]]$", "class set operations"),
        ] {
            assert_eq!(normalize(p), Err(PatternError::Unsupported(what)), "{p}");
        }
        let e = normalize("^4111111111111111(?=x)$")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("4111"), "{e}");
        assert!(matches!(normalize("^(a$"), Err(PatternError::Syntax(_))));
    }

    #[test]
    fn sizes_are_bounded() {
        assert!(matches!(
            normalize(&"a".repeat(600)),
            Err(PatternError::TooLong { .. })
        ));
        let many: String = (0..70)
            .map(|i| format!("\\x{{{:x}}}", 0x100 + 2 * i))
            .collect();
        assert_eq!(
            normalize(&format!("^[{many}]$")),
            Err(PatternError::ClassTooLarge)
        );
        let alts = vec!["a"; 100].join("|");
        assert_eq!(
            normalize(&format!("^({alts})$")),
            Err(PatternError::TooManyAlternatives)
        );
    }
}
