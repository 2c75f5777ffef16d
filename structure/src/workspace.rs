//! The workspace on disk: its members (from the root `Cargo.toml`), their crates, and the
//! checks over them.

use std::fs;
use std::path::{Path, PathBuf};

use crate::cycles::{Cycle, sibling_cycles};
use crate::modtree::{ModuleTree, Source, walk};

/// Reads files relative to the workspace root.
struct Disk<'a>(&'a Path);

impl Source for Disk<'_> {
    fn read(&self, path: &Path) -> Option<String> {
        fs::read_to_string(self.0.join(path)).ok()
    }
}

/// The directory above `start` (or `start`) whose `Cargo.toml` has a `[workspace]`.
pub fn find_root(start: &Path) -> Result<PathBuf, String> {
    start
        .ancestors()
        .find(|d| {
            fs::read_to_string(d.join("Cargo.toml"))
                .is_ok_and(|t| t.lines().any(|l| l.trim() == "[workspace]"))
        })
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("no workspace Cargo.toml above {}", start.display()))
}

/// The strings of the array `key = [ … ]` in the `[workspace]` table of a Cargo.toml.
fn workspace_array(manifest: &str, key: &str) -> Vec<String> {
    let mut in_workspace = false;
    let mut lines = manifest.lines();
    while let Some(line) = lines.next() {
        let line = line.trim();
        if line.starts_with('[') {
            in_workspace = line == "[workspace]";
            continue;
        }
        let Some(value) = line
            .strip_prefix(key)
            .map(str::trim_start)
            .and_then(|v| v.strip_prefix('='))
        else {
            continue;
        };
        if !in_workspace {
            continue;
        }
        let mut text = value.to_owned();
        while !text.contains(']') {
            let Some(next) = lines.next() else { break };
            text.push('\n');
            text.push_str(next);
        }
        let text: String = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        return text
            .split('"')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect();
    }
    Vec::new()
}

/// The workspace members, relative to the root, in the order listed; `dir/*` globs are
/// expanded to the folders under `dir` that hold a Cargo.toml, less `exclude`.
pub fn members(root: &Path) -> Result<Vec<PathBuf>, String> {
    let manifest = fs::read_to_string(root.join("Cargo.toml"))
        .map_err(|e| format!("{}/Cargo.toml: {e}", root.display()))?;
    let exclude: Vec<PathBuf> = workspace_array(&manifest, "exclude")
        .into_iter()
        .map(PathBuf::from)
        .collect();
    let mut out = Vec::new();
    for m in workspace_array(&manifest, "members") {
        match m.strip_suffix("/*") {
            Some(dir) => {
                let entries = fs::read_dir(root.join(dir)).map_err(|e| format!("{m}: {e}"))?;
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| Path::new(dir).join(e.file_name()))
                    .filter(|p| root.join(p).join("Cargo.toml").is_file() && !exclude.contains(p))
                    .collect();
                found.sort();
                out.extend(found);
            }
            None if m.contains(['*', '?', '[']) => {
                return Err(format!("member pattern {m} is not supported"));
            }
            None => out.push(PathBuf::from(m)),
        }
    }
    Ok(out)
}

/// `name = "…"` in the `[package]` table.
fn package_name(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if let Some(rest) = line
            .strip_prefix("name")
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('='))
            && in_package
        {
            return rest.split('"').nth(1).map(str::to_owned);
        }
    }
    None
}

/// A crate of a member: its library, `src/main.rs`, or a binary under `src/bin/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrateRoot {
    /// The package name, with `/bin-name` for a binary under `src/bin/`.
    pub name: String,
    /// The root file, relative to the workspace root.
    pub file: PathBuf,
    /// A `main`: `src/main.rs` or a binary under `src/bin/`.
    pub is_main: bool,
}

/// The crates of the member at `member` (relative to `root`).
pub fn crate_roots(root: &Path, member: &Path) -> Vec<CrateRoot> {
    let manifest = fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap_or_default();
    let package = package_name(&manifest).unwrap_or_else(|| member.display().to_string());
    let src = member.join("src");
    let mut out = Vec::new();
    for (file, is_main) in [("lib.rs", false), ("main.rs", true)] {
        if root.join(&src).join(file).is_file() {
            out.push(CrateRoot {
                name: package.clone(),
                file: src.join(file),
                is_main,
            });
        }
    }
    let mut bins: Vec<(String, PathBuf)> = fs::read_dir(root.join(&src).join("bin"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = src.join("bin").join(&name);
            match name.strip_suffix(".rs") {
                Some(stem) => Some((stem.to_owned(), path)),
                None => root
                    .join(&path)
                    .join("main.rs")
                    .is_file()
                    .then(|| (name, path.join("main.rs"))),
            }
        })
        .collect();
    bins.sort();
    for (bin, file) in bins {
        out.push(CrateRoot {
            name: format!("{package}/{bin}"),
            file,
            is_main: true,
        });
    }
    out
}

fn all_crates(root: &Path) -> Result<Vec<(PathBuf, CrateRoot)>, String> {
    let mut out = Vec::new();
    for member in members(root)? {
        for c in crate_roots(root, &member) {
            out.push((member.clone(), c));
        }
    }
    Ok(out)
}

fn module_tree(root: &Path, krate: &CrateRoot) -> ModuleTree {
    walk(&Disk(root), &krate.file)
}

/// The module cycles of every crate of the workspace.
pub fn module_cycles(root: &Path) -> Result<Vec<Cycle>, String> {
    let mut out = Vec::new();
    for (_, krate) in all_crates(root)? {
        out.extend(sibling_cycles(
            &krate.name,
            &module_tree(root, &krate).references,
        ));
    }
    Ok(out)
}

/// A file and its number of lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongFile {
    /// Relative to the workspace root, `/`-separated.
    pub file: String,
    pub lines: usize,
}

fn line_count(root: &Path, file: &Path) -> Result<usize, String> {
    let text =
        fs::read_to_string(root.join(file)).map_err(|e| format!("{}: {e}", file.display()))?;
    Ok(text.lines().count())
}

fn slash(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether the first lines mark the file as generated.
fn generated(text: &str) -> bool {
    text.lines().take(5).any(|l| {
        l.contains("@generated")
            || l.contains("DO NOT EDIT")
            || l.contains("automatically generated")
    })
}

fn rust_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(root.join(dir)) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let path = dir.join(e.file_name());
        let name = e.file_name();
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            if name != "tests" && name != "benches" {
                rust_files(root, &path, out);
            }
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Files under the members' `src/` longer than `limit` lines, less `tests/` and
/// `benches/` folders, test-only `tests.rs` modules and generated files.
pub fn long_files(root: &Path, limit: usize) -> Result<Vec<LongFile>, String> {
    let mut out = Vec::new();
    for member in members(root)? {
        let mut test_files = Vec::new();
        for krate in crate_roots(root, &member) {
            test_files.extend(module_tree(root, &krate).test_files);
        }
        let mut files = Vec::new();
        rust_files(root, &member.join("src"), &mut files);
        for file in files {
            if file.file_name().is_some_and(|n| n == "tests.rs") && test_files.contains(&file) {
                continue;
            }
            let text = fs::read_to_string(root.join(&file))
                .map_err(|e| format!("{}: {e}", file.display()))?;
            let lines = text.lines().count();
            if lines > limit && !generated(&text) {
                out.push(LongFile {
                    file: slash(&file),
                    lines,
                });
            }
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

/// Mains (`src/main.rs`, binaries under `src/bin/`) longer than `limit` lines.
pub fn long_mains(root: &Path, limit: usize) -> Result<Vec<LongFile>, String> {
    let mut out = Vec::new();
    for (_, krate) in all_crates(root)? {
        if krate.is_main {
            let lines = line_count(root, &krate.file)?;
            if lines > limit {
                out.push(LongFile {
                    file: slash(&krate.file),
                    lines,
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_excludes_over_several_lines() {
        let manifest = "[package]\nmembers = [\"no\"]\n[workspace]\nresolver = \"3\"\nmembers = [\n  \"a\", # the first\n  \"b/*\",\n]\nexclude = [\"b/x\"]\n";
        assert_eq!(workspace_array(manifest, "members"), ["a", "b/*"]);
        assert_eq!(workspace_array(manifest, "exclude"), ["b/x"]);
    }

    #[test]
    fn package_names() {
        assert_eq!(
            package_name("[package]\ndescription = \"d\"\nname = \"cofferd\"\n[lib]\nname = \"x\"")
                .as_deref(),
            Some("cofferd")
        );
    }

    #[test]
    fn generated_files_are_recognised() {
        assert!(generated(
            "// This file is @generated by prost-build.\nfn x() {}"
        ));
        assert!(!generated("//! Hand written.\n"));
    }
}
