//! Helpers shared by the store's unit tests: a store in a temporary directory and
//! versions written to import from.

use std::fs;
use std::path::Path;

use super::{Progress, Store};
use crate::verify::sha256_file;

pub(super) fn new_store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    (tmp, store)
}

/// Writes `files` (path, bytes; the first has role model, the rest eval) and a
/// manifest listing them into `dir`; returns the manifest text.
pub(super) fn write_version(
    dir: &Path,
    name: &str,
    version: &str,
    files: &[(&str, &[u8])],
) -> String {
    let mut text =
        format!("name = \"{name}\"\nversion = \"{version}\"\nkind = \"chat\"\nformat = \"gguf\"\n");
    for (i, (path, bytes)) in files.iter().enumerate() {
        let full = dir.join(path);
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        fs::write(&full, bytes).unwrap();
        let role = if i == 0 { "model" } else { "eval" };
        text += &format!(
            "[[files]]\npath = \"{path}\"\nsha256 = \"{}\"\nsize = {}\nrole = \"{role}\"\n",
            sha256_file(&full).unwrap(),
            bytes.len()
        );
    }
    fs::write(dir.join("manifest.toml"), &text).unwrap();
    text
}

pub(super) const FILES: &[(&str, &[u8])] =
    &[("model.gguf", b"weights"), ("eval/text.txt", b"hello")];

pub(super) fn entries(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

/// Nothing installed and nothing left in staging.
pub(super) fn assert_untouched(store: &Store) {
    assert_eq!(store.list().unwrap(), Vec::<(String, String)>::new());
    assert_eq!(entries(&store.root().join("staging")), 0);
}

pub(super) fn no_progress() -> impl FnMut(Progress<'_>) {
    |_| {}
}
