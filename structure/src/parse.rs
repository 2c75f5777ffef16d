//! What one source file says about modules: the `mod` items it declares, and the
//! `crate::…`, `$crate::…` and `super::…` paths its code names, each attributed to the
//! (possibly inline) module it appears in. Items under `#[cfg(test)]` (test modules,
//! test-only helpers) are skipped; a file whose first attribute is `#![cfg(test)]` is
//! test-only as a whole.

use crate::lex::{Kind, Token, tokenize};

/// A `mod name;` or `mod name { … }` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModDecl {
    /// Inline modules around the item, relative to the file's module.
    pub(crate) inline: Vec<String>,
    pub(crate) name: String,
    /// `mod name;` (the body is another file) rather than `mod name { … }`.
    pub(crate) out_of_line: bool,
    /// The value of a `#[path = "…"]` attribute on the item.
    pub(crate) path_attr: Option<String>,
    /// Declared under `#[cfg(test)]`.
    pub(crate) test_only: bool,
}

/// A path starting with `crate`, `$crate`, `super` or `self`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathRef {
    /// Inline modules around the reference, relative to the file's module.
    pub(crate) inline: Vec<String>,
    /// The segments, `crate`/`$crate`/`super`/`self` included.
    pub(crate) segments: Vec<String>,
    pub(crate) line: u32,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct FileFacts {
    /// `#![cfg(test)]` at the top: nothing else was collected.
    pub(crate) test_only: bool,
    pub(crate) mods: Vec<ModDecl>,
    pub(crate) refs: Vec<PathRef>,
}

fn is_open(t: &Token) -> bool {
    matches!(t.kind, Kind::Punct('(' | '[' | '{'))
}

fn is_close(t: &Token) -> bool {
    matches!(t.kind, Kind::Punct(')' | ']' | '}'))
}

/// The index of the delimiter closing the one opened at `open`.
fn matching(toks: &[Token], open: usize) -> usize {
    let mut depth = 0usize;
    for (k, t) in toks.iter().enumerate().skip(open) {
        if is_open(t) {
            depth += 1;
        } else if is_close(t) {
            depth -= 1;
            if depth == 0 {
                return k;
            }
        }
    }
    toks.len()
}

/// Whether the attribute tokens (inside `#[…]`) are `cfg(test)` or `cfg(all(…, test, …))`.
fn is_cfg_test(attr: &[Token]) -> bool {
    let words: Vec<Option<&str>> = attr.iter().map(Token::ident).collect();
    match words.as_slice() {
        [Some("cfg"), None, Some("test"), None] => true,
        [Some("cfg"), None, Some("all"), None, rest @ ..] => {
            // Only arguments directly inside `all(…)` count: `test` nested in `not(…)` or
            // `any(…)` does not make the item test-only.
            let mut depth = 0i32;
            attr[4..].iter().zip(rest).any(|(t, w)| {
                if is_open(t) {
                    depth += 1;
                } else if is_close(t) {
                    depth -= 1;
                }
                depth == 0 && *w == Some("test")
            })
        }
        _ => false,
    }
}

/// The value of `path = "…"`.
fn path_attr(attr: &[Token]) -> Option<String> {
    match attr {
        [
            a,
            eq,
            Token {
                kind: Kind::Str(p), ..
            },
        ] if a.is_ident("path") && eq.is_punct('=') => Some(p.clone()),
        _ => None,
    }
}

/// The end of the item or statement starting at `i` (one past it): a `;` or the close of
/// a block at its own level, a `,` too when it is not an item of a module (a field, a
/// variant, an argument), or the close of the enclosing delimiter (not consumed).
fn skip_item(toks: &[Token], mut i: usize, module_level: bool) -> usize {
    let mut depth = 0usize;
    while let Some(t) = toks.get(i) {
        if is_open(t) {
            depth += 1;
        } else if is_close(t) {
            if depth == 0 {
                return i;
            }
            depth -= 1;
            if depth == 0 && t.is_punct('}') {
                return i + 1;
            }
        } else if depth == 0 && (t.is_punct(';') || (!module_level && t.is_punct(','))) {
            return i + 1;
        }
        i += 1;
    }
    i
}

/// `[pub[(…)]] mod name ;` at `i`: the name.
fn out_of_line_mod(toks: &[Token], mut i: usize) -> Option<String> {
    if toks.get(i).is_some_and(|t| t.is_ident("pub")) {
        i += 1;
        if toks.get(i).is_some_and(|t| t.is_punct('(')) {
            i = matching(toks, i) + 1;
        }
    }
    let name = toks.get(i + 1)?.ident()?;
    (toks[i].is_ident("mod") && toks.get(i + 2)?.is_punct(';')).then(|| name.to_owned())
}

/// A path of `::`-separated identifiers (and `$crate`) starting at `i`: its segments and
/// the index after it.
fn path_at(toks: &[Token], mut i: usize) -> (Vec<String>, usize) {
    let mut segments = Vec::new();
    loop {
        if toks.get(i).is_some_and(|t| t.is_punct('$'))
            && toks.get(i + 1).is_some_and(|t| t.is_ident("crate"))
        {
            segments.push("$crate".to_owned());
            i += 2;
        } else if let Some(s) = toks.get(i).and_then(Token::ident) {
            segments.push(s.to_owned());
            i += 1;
        } else {
            break;
        }
        if !toks.get(i).is_some_and(|t| t.kind == Kind::PathSep) {
            break;
        }
        i += 1;
    }
    (segments, i)
}

/// One use tree starting at `i`, with `prefix` before it; pushes the full paths it names
/// (with the line of their last segment) and returns the index after it.
fn use_tree(
    toks: &[Token],
    i: usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, u32)>,
) -> usize {
    let line = toks.get(i).map_or(0, |t| t.line);
    let mut i = i;
    if toks.get(i).is_some_and(|t| t.kind == Kind::PathSep) {
        i += 1; // `::std::…`: an external crate, never this one
    }
    let (segments, mut i) = path_at(toks, i);
    let mut path = prefix.to_vec();
    path.extend(segments);
    let line = toks.get(i.saturating_sub(1)).map_or(line, |t| t.line);
    match toks.get(i) {
        Some(t) if t.is_punct('{') => {
            i += 1;
            while let Some(t) = toks.get(i) {
                if t.is_punct('}') {
                    return i + 1;
                }
                if t.is_punct(',') {
                    i += 1;
                    continue;
                }
                let next = use_tree(toks, i, &path, out);
                i = if next == i { i + 1 } else { next };
            }
            return i;
        }
        Some(t) if t.is_punct('*') => i += 1,
        Some(t) if t.is_ident("as") => i += 2,
        _ => {}
    }
    if path.last().is_some_and(|s| s == "self") && path.len() > 1 {
        path.pop();
    }
    if !path.is_empty() {
        out.push((path, line));
    }
    i
}

/// Collects the module items and paths of one file.
pub(crate) fn parse_file(src: &str) -> FileFacts {
    let toks = tokenize(src);
    let mut facts = FileFacts::default();
    // Open delimiters, and the inline modules open around the current token with the
    // delimiter depth of their body.
    let mut delims = 0usize;
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut pending_test = false;
    let mut pending_path: Option<String> = None;
    let mut i = 0;
    let names = |inline: &[(String, usize)]| -> Vec<String> {
        inline.iter().map(|(n, _)| n.clone()).collect()
    };
    while let Some(t) = toks.get(i) {
        let module_level = delims == inline.last().map_or(0, |m| m.1);
        if t.is_punct('#') {
            let inner = toks.get(i + 1).is_some_and(|t| t.is_punct('!'));
            let open = i + 1 + usize::from(inner);
            if toks.get(open).is_some_and(|t| t.is_punct('[')) {
                let close = matching(&toks, open);
                let attr = &toks[open + 1..close.min(toks.len())];
                if is_cfg_test(attr) {
                    if !inner {
                        pending_test = true;
                    } else if delims == 0 {
                        return FileFacts {
                            test_only: true,
                            ..FileFacts::default()
                        };
                    }
                }
                if let Some(p) = path_attr(attr) {
                    pending_path = Some(p);
                }
                i = close + 1;
                continue;
            }
        }
        if pending_test {
            if let Some(name) = out_of_line_mod(&toks, i) {
                facts.mods.push(ModDecl {
                    inline: names(&inline),
                    name,
                    out_of_line: true,
                    path_attr: pending_path.take(),
                    test_only: true,
                });
            }
            i = skip_item(&toks, i, module_level);
            pending_test = false;
            pending_path = None;
            continue;
        }
        match &t.kind {
            Kind::Ident(w) if w == "mod" => {
                if let Some(name) = toks.get(i + 1).and_then(Token::ident) {
                    let after = toks.get(i + 2);
                    let block = after.is_some_and(|t| t.is_punct('{'));
                    if block || after.is_some_and(|t| t.is_punct(';')) {
                        facts.mods.push(ModDecl {
                            inline: names(&inline),
                            name: name.to_owned(),
                            out_of_line: !block,
                            path_attr: pending_path.take(),
                            test_only: false,
                        });
                        if block {
                            delims += 1;
                            inline.push((name.to_owned(), delims));
                        }
                        i += 3;
                        continue;
                    }
                }
            }
            Kind::Ident(w) if w == "use" && !toks.get(i + 1).is_some_and(|t| t.is_punct('<')) => {
                let mut paths = Vec::new();
                let end = use_tree(&toks, i + 1, &[], &mut paths);
                for (segments, line) in paths {
                    facts.refs.push(PathRef {
                        inline: names(&inline),
                        segments,
                        line,
                    });
                }
                i = skip_item(&toks, end, true);
                continue;
            }
            Kind::Ident(w) if matches!(w.as_str(), "crate" | "super" | "self") => {
                // `pub(in crate::a)` restricts visibility; it is not a use of `a`.
                let visibility = i >= 3
                    && toks[i - 1].is_ident("in")
                    && toks[i - 2].is_punct('(')
                    && toks[i - 3].is_ident("pub");
                let (segments, end) = path_at(&toks, i);
                if segments.len() > 1 && !visibility {
                    facts.refs.push(PathRef {
                        inline: names(&inline),
                        segments,
                        line: t.line,
                    });
                }
                if end > i {
                    i = end;
                    continue;
                }
            }
            Kind::Punct('$') => {
                let (segments, end) = path_at(&toks, i);
                if segments.len() > 1 {
                    facts.refs.push(PathRef {
                        inline: names(&inline),
                        segments,
                        line: t.line,
                    });
                }
                if end > i {
                    i = end;
                    continue;
                }
            }
            Kind::Punct('(' | '[' | '{') => delims += 1,
            Kind::Punct(')' | ']' | '}') => {
                if inline.last().is_some_and(|m| m.1 == delims) {
                    inline.pop();
                }
                delims = delims.saturating_sub(1);
            }
            Kind::Punct(';') => pending_path = None,
            _ => {}
        }
        i += 1;
    }
    facts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(src: &str) -> Vec<String> {
        parse_file(src)
            .refs
            .iter()
            .map(|r| r.segments.join("::"))
            .collect()
    }

    #[test]
    fn use_trees_expand_to_full_paths() {
        let src = "use crate::{a::{self, B}, b::c as d, e::*};\nuse super::f::G;\nuse std::io;";
        assert_eq!(
            paths(src),
            [
                "crate::a",
                "crate::a::B",
                "crate::b::c",
                "crate::e",
                "super::f::G",
                "std::io"
            ]
        );
    }

    #[test]
    fn paths_in_code_and_macros_count() {
        let src =
            "fn f() -> crate::a::B { crate::c::d::<u8>(); $crate::m::n!(); super::super::x::y() }";
        assert_eq!(
            paths(src),
            [
                "crate::a::B",
                "crate::c::d",
                "$crate::m::n",
                "super::super::x::y"
            ]
        );
    }

    #[test]
    fn visibility_and_comments_and_strings_do_not_count() {
        let src = "pub(crate) fn f() {}\npub(in crate::a) fn g() {}\n/// see [`crate::b::C`]\n// crate::d\nconst S: &str = \"crate::e\";";
        assert!(paths(src).is_empty());
    }

    #[test]
    fn test_only_items_are_skipped() {
        let src = "#[cfg(test)]\nmod tests { use crate::a::B; }\n#[cfg(test)] use crate::b::C;\n#[cfg(all(test, unix))] fn h() { crate::c::d() }\n#[cfg(not(test))] fn k() { crate::e::f() }\nstruct S { #[cfg(test)] x: crate::g::H, y: crate::i::J }";
        assert_eq!(paths(src), ["crate::e::f", "crate::i::J"]);
    }

    #[test]
    fn test_only_files_are_marked() {
        let facts = parse_file("//! Tests.\n#![cfg(test)]\nuse crate::a::B;");
        assert!(facts.test_only);
        assert!(facts.refs.is_empty());
    }

    #[test]
    fn module_items_and_inline_modules() {
        let src = "pub mod a;\n#[cfg(test)]\nmod tests;\n#[path = \"x.rs\"]\npub(crate) mod b;\nmod c { mod d; fn f() { super::a::g() } }\nfn h() { crate::b::i() }";
        let facts = parse_file(src);
        let mods: Vec<_> = facts
            .mods
            .iter()
            .map(|m| {
                (
                    m.inline.join("::"),
                    m.name.as_str(),
                    m.out_of_line,
                    m.test_only,
                )
            })
            .collect();
        assert_eq!(
            mods,
            [
                (String::new(), "a", true, false),
                (String::new(), "tests", true, true),
                (String::new(), "b", true, false),
                (String::new(), "c", false, false),
                ("c".to_owned(), "d", true, false),
            ]
        );
        assert_eq!(facts.mods[2].path_attr.as_deref(), Some("x.rs"));
        let refs: Vec<_> = facts
            .refs
            .iter()
            .map(|r| (r.inline.join("::"), r.segments.join("::"), r.line))
            .collect();
        assert_eq!(
            refs,
            [
                ("c".to_owned(), "super::a::g".to_owned(), 6),
                (String::new(), "crate::b::i".to_owned(), 7)
            ]
        );
    }
}
