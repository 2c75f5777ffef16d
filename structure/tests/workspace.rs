//! The workspace's structure rules, checked on every `cargo test --workspace`:
//!
//! 1. no module cycles inside a crate: sibling modules (`config` and `gpu`, or
//!    `admin::models` and `admin::server`) never depend on each other both ways, directly
//!    or through other siblings. A lower layer never imports a higher one: config owns its
//!    section types, domain modules depend on config and never the reverse; what two
//!    modules both need moves down into a module of its own;
//! 2. no source file over 800 lines under a crate's `src/`;
//! 3. no `main` (`src/main.rs`, `src/bin/*.rs`) over 200 lines: a main parses arguments
//!    and calls into the library.
//!
//! Each list below names what breaks a rule today and cannot be fixed in the change that
//! brought in the rule, with why. The goal is empty lists: an entry that no longer
//! matches anything fails the test, so it is deleted when its code is fixed.

use std::path::{Path, PathBuf};

use coffer_structure::{find_root, long_files, long_mains, module_cycles};

const FILE_LIMIT: usize = 800;
const MAIN_LIMIT: usize = 200;

/// Module cycles, as `crate: module, module, …` (the modules sorted).
const ALLOWED_CYCLES: &[(&str, &str)] = &[];

/// Files over [`FILE_LIMIT`] lines, relative to the workspace root.
const ALLOWED_LONG_FILES: &[(&str, &str)] = &[];

/// Mains over [`MAIN_LIMIT`] lines, relative to the workspace root.
const ALLOWED_LONG_MAINS: &[(&str, &str)] = &[];

fn root() -> PathBuf {
    find_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("workspace root")
}

/// Fails naming the offenders not allowed, and the allowed entries that match nothing.
fn check(rule: &str, found: Vec<(String, String)>, allowed: &[(&str, &str)]) {
    let offenders: Vec<&str> = found
        .iter()
        .filter(|(key, _)| !allowed.iter().any(|(a, _)| a == key))
        .map(|(_, text)| text.as_str())
        .collect();
    let stale: Vec<&str> = allowed
        .iter()
        .filter(|(a, _)| !found.iter().any(|(key, _)| key == a))
        .map(|(a, _)| *a)
        .collect();
    let mut message = String::new();
    if !offenders.is_empty() {
        message.push_str(&format!(
            "{rule}: {} offender(s):\n{}\n",
            offenders.len(),
            offenders.join("\n")
        ));
    }
    if !stale.is_empty() {
        message.push_str(&format!(
            "{rule}: allow-list entries that no longer match anything (delete them): {}\n",
            stale.join("; ")
        ));
    }
    assert!(message.is_empty(), "\n{message}");
}

#[test]
fn no_module_cycles_within_a_crate() {
    let cycles = module_cycles(&root()).expect("read the workspace");
    let found = cycles.iter().map(|c| (c.key(), c.to_string())).collect();
    check(
        "module cycles (a lower layer must not import a higher one)",
        found,
        ALLOWED_CYCLES,
    );
}

#[test]
fn no_source_file_over_800_lines() {
    let long = long_files(&root(), FILE_LIMIT).expect("read the workspace");
    let found = long
        .into_iter()
        .map(|f| (f.file.clone(), format!("    {}: {} lines", f.file, f.lines)))
        .collect();
    check(
        &format!("files over {FILE_LIMIT} lines (split them by concern)"),
        found,
        ALLOWED_LONG_FILES,
    );
}

#[test]
fn no_main_over_200_lines() {
    let long = long_mains(&root(), MAIN_LIMIT).expect("read the workspace");
    let found = long
        .into_iter()
        .map(|f| (f.file.clone(), format!("    {}: {} lines", f.file, f.lines)))
        .collect();
    check(
        &format!("mains over {MAIN_LIMIT} lines (move the work into the library)"),
        found,
        ALLOWED_LONG_MAINS,
    );
}

#[test]
fn the_workspace_is_found_with_its_members() {
    let members = coffer_structure::members(&root()).expect("members");
    for m in ["daemon", "structure"] {
        assert!(
            members.contains(&PathBuf::from(m)),
            "{m} missing from {members:?}"
        );
    }
}
