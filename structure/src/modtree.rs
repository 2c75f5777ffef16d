//! A crate's module tree, walked from its root file through its `mod` items (test-only
//! ones left out), and the references its modules make to each other.

use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use crate::parse::parse_file;

/// A module's path inside its crate: empty for the crate root, `["gpu", "health"]` for
/// `gpu::health`.
pub(crate) type ModPath = Vec<String>;

/// Where source files come from: the file system for the real check, a map in tests.
pub(crate) trait Source {
    fn read(&self, path: &Path) -> Option<String>;
}

/// Module `from` names a path in module `to` (or an item of `to`) at `file:line`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Reference {
    pub(crate) file: PathBuf,
    pub(crate) line: u32,
    pub(crate) from: ModPath,
    pub(crate) to: ModPath,
    /// The path as written.
    pub(crate) path: String,
}

#[derive(Debug, Default)]
pub(crate) struct ModuleTree {
    pub(crate) modules: BTreeSet<ModPath>,
    /// Files whose module is compiled outside tests too.
    pub(crate) files: Vec<PathBuf>,
    /// Files declared only under `#[cfg(test)]`, or starting with `#![cfg(test)]`.
    pub(crate) test_files: Vec<PathBuf>,
    /// Sorted by file and line.
    pub(crate) references: Vec<Reference>,
}

struct Pending {
    file: PathBuf,
    module: ModPath,
    /// Where `mod x;` in this file looks for `x.rs` and `x/mod.rs`.
    child_dir: PathBuf,
}

/// The file of `mod name;` declared in `p` inside inline modules `inline`.
fn module_file(
    source: &dyn Source,
    p: &Pending,
    inline: &[String],
    name: &str,
    path_attr: Option<&str>,
) -> Option<PathBuf> {
    let inline_dir = inline.iter().fold(p.child_dir.clone(), |d, n| d.join(n));
    let candidates = match path_attr {
        Some(attr) if inline.is_empty() => {
            vec![p.file.parent().unwrap_or(Path::new("")).join(attr)]
        }
        Some(attr) => vec![inline_dir.join(attr)],
        None => vec![
            inline_dir.join(format!("{name}.rs")),
            inline_dir.join(name).join("mod.rs"),
        ],
    };
    candidates.into_iter().find(|f| source.read(f).is_some())
}

/// Resolves `segments` (starting `crate`, `$crate`, `self` or `super`) named in module
/// `from` to the deepest module of `modules` it goes through.
fn resolve(modules: &BTreeSet<ModPath>, from: &[String], segments: &[String]) -> Option<ModPath> {
    let (mut base, rest) = match segments.first()?.as_str() {
        "crate" | "$crate" => (Vec::new(), &segments[1..]),
        "self" => (from.to_vec(), &segments[1..]),
        "super" => {
            let up = segments.iter().take_while(|s| *s == "super").count();
            (
                from.get(..from.len().checked_sub(up)?)?.to_vec(),
                &segments[up..],
            )
        }
        _ => return None,
    };
    for s in rest {
        base.push(s.clone());
        if !modules.contains(&base) {
            base.pop();
            break;
        }
    }
    Some(base)
}

/// Walks the crate whose root file is `root_file`.
pub(crate) fn walk(source: &dyn Source, root_file: &Path) -> ModuleTree {
    let mut tree = ModuleTree::default();
    let mut raw = Vec::new();
    let root_dir = root_file.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut queue = VecDeque::from([Pending {
        file: root_file.to_path_buf(),
        module: Vec::new(),
        child_dir: root_dir,
    }]);
    while let Some(p) = queue.pop_front() {
        let Some(src) = source.read(&p.file) else {
            continue;
        };
        let facts = parse_file(&src);
        if facts.test_only {
            tree.test_files.push(p.file);
            continue;
        }
        tree.modules.insert(p.module.clone());
        tree.files.push(p.file.clone());
        for m in facts.mods {
            let mut module = p.module.clone();
            module.extend(m.inline.iter().cloned());
            module.push(m.name.clone());
            if !m.out_of_line {
                tree.modules.insert(module);
                continue;
            }
            let Some(file) = module_file(source, &p, &m.inline, &m.name, m.path_attr.as_deref())
            else {
                continue;
            };
            if m.test_only {
                tree.test_files.push(file);
                continue;
            }
            let child_dir =
                if m.path_attr.is_some() || file.file_name().is_some_and(|n| n == "mod.rs") {
                    file.parent().unwrap_or(Path::new("")).to_path_buf()
                } else {
                    file.with_extension("")
                };
            queue.push_back(Pending {
                file,
                module,
                child_dir,
            });
        }
        for r in facts.refs {
            let mut from = p.module.clone();
            from.extend(r.inline);
            raw.push((p.file.clone(), from, r.segments, r.line));
        }
    }
    for (file, from, segments, line) in raw {
        if let Some(to) = resolve(&tree.modules, &from, &segments) {
            tree.references.push(Reference {
                file,
                line,
                from,
                to,
                path: segments.join("::"),
            });
        }
    }
    tree.references.sort();
    tree
}

#[cfg(test)]
pub(crate) mod test_source {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};

    use super::Source;

    /// Files held in memory, by path.
    #[derive(Debug, Default)]
    pub(crate) struct Files(pub(crate) BTreeMap<PathBuf, String>);

    impl Files {
        pub(crate) fn new(files: &[(&str, &str)]) -> Self {
            Self(
                files
                    .iter()
                    .map(|(p, s)| (PathBuf::from(p), (*s).to_owned()))
                    .collect(),
            )
        }
    }

    impl Source for Files {
        fn read(&self, path: &Path) -> Option<String> {
            self.0.get(path).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_source::Files;
    use super::*;

    fn names(tree: &ModuleTree) -> Vec<String> {
        tree.modules.iter().map(|m| m.join("::")).collect()
    }

    #[test]
    fn files_folders_inline_and_test_modules() {
        let files = Files::new(&[
            (
                "src/lib.rs",
                "mod a;\nmod b;\n#[cfg(test)]\nmod testutil;\nmod c { pub mod d {} }",
            ),
            ("src/a.rs", "mod x;\n#[cfg(test)]\nmod tests;"),
            ("src/a/x.rs", "use super::super::b::Y;"),
            ("src/a/tests.rs", "use crate::b::Z;"),
            ("src/b/mod.rs", "pub mod y;\n#[path = \"other.rs\"] mod z;"),
            (
                "src/b/y.rs",
                "fn f() { crate::a::x::g(); crate::c::d::h() }",
            ),
            ("src/b/other.rs", "#![cfg(test)]\nuse crate::a::Q;"),
            ("src/testutil.rs", ""),
        ]);
        let tree = walk(&files, Path::new("src/lib.rs"));
        assert_eq!(names(&tree), ["", "a", "a::x", "b", "b::y", "c", "c::d"]);
        let test_files: Vec<_> = tree
            .test_files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        assert_eq!(
            test_files,
            ["src/testutil.rs", "src/a/tests.rs", "src/b/other.rs"]
        );
        let refs: Vec<_> = tree
            .references
            .iter()
            .map(|r| (r.from.join("::"), r.to.join("::"), r.line, r.path.as_str()))
            .collect();
        assert_eq!(
            refs,
            [
                ("a::x".to_owned(), "b".to_owned(), 1, "super::super::b::Y"),
                ("b::y".to_owned(), "a::x".to_owned(), 1, "crate::a::x::g"),
                ("b::y".to_owned(), "c::d".to_owned(), 1, "crate::c::d::h"),
            ]
        );
    }
}
