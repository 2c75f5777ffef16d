//! Prompt prefixes kept across restarts: the KV state of a system prompt that requests
//! share, saved by llama.cpp (`llama_state_seq_save_file`, which also records the
//! tokens) under `STATE_DIR/chat-prefix/<version key>/`, and loaded into the engine's
//! free slots when the version starts. The version key names the model version, its
//! variant and the model file's sha256, so a changed version never loads another's
//! state. Only the leading system message(s) are kept (the application's text, not a
//! customer's: never a conversation). The files of every version together stay within
//! `chat.prefix_cache_bytes`, the least recently used removed first. Files are written
//! under a temporary name and renamed, so a crash leaves none half-made; one that
//! llama.cpp refuses to load is removed.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

/// A saved prefix, as found on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedPrefix {
    pub path: PathBuf,
    pub bytes: u64,
    pub modified: SystemTime,
}

/// One version's prefix files, and the budget shared with every other version's.
#[derive(Debug, Clone)]
pub struct PrefixStore {
    root: PathBuf,
    dir: PathBuf,
    budget: u64,
}

/// The file a prefix of `tokens` is saved under (the sha256 of its token ids).
fn file_name(tokens: &[i32]) -> String {
    let mut h = Sha256::new();
    for t in tokens {
        h.update(t.to_le_bytes());
    }
    format!("{}.kv", &hex::encode(h.finalize())[..32])
}

fn files(dir: &Path) -> Vec<SavedPrefix> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "kv"))
        .filter_map(|e| {
            let md = e.metadata().ok()?;
            md.is_file().then(|| SavedPrefix {
                path: e.path(),
                bytes: md.len(),
                modified: md.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect()
}

impl PrefixStore {
    /// The store of one version under `root`; `None` when the budget is 0 (off).
    pub fn new(root: &Path, version_key: &str, budget: u64) -> Option<PrefixStore> {
        (budget > 0).then(|| PrefixStore {
            root: root.to_path_buf(),
            dir: root.join(version_key),
            budget,
        })
    }

    /// This version's saved prefixes, most recently used first.
    pub fn saved(&self) -> Vec<SavedPrefix> {
        let mut all = files(&self.dir);
        all.sort_by_key(|s| std::cmp::Reverse(s.modified));
        all
    }

    /// Bytes this version's saved prefixes take.
    pub fn bytes(&self) -> u64 {
        files(&self.dir).iter().map(|s| s.bytes).sum()
    }

    /// Whether a prefix of `tokens` is saved.
    pub fn has(&self, tokens: &[i32]) -> bool {
        self.dir.join(file_name(tokens)).is_file()
    }

    /// Saves a prefix: `write` writes the state to the path it is given (a temporary
    /// name); the file is then renamed into place and the budget enforced. Returns the
    /// bytes saved.
    pub fn save(
        &self,
        tokens: &[i32],
        write: impl FnOnce(&Path) -> Result<(), String>,
    ) -> Result<u64, String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("{}: {e}", self.dir.display()))?;
        let name = file_name(tokens);
        let temp = self.dir.join(format!(".{name}.writing"));
        let done = self.dir.join(&name);
        let result = write(&temp).and_then(|()| {
            std::fs::rename(&temp, &done).map_err(|e| format!("{}: {e}", done.display()))
        });
        if let Err(e) = result {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        let bytes = std::fs::metadata(&done).map(|m| m.len()).unwrap_or(0);
        self.enforce_budget(&done);
        Ok(bytes)
    }

    /// Marks a saved prefix as used now (it is evicted last).
    pub fn touch(&self, path: &Path) {
        if let Ok(f) = std::fs::File::options().append(true).open(path) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Removes a saved prefix that cannot be used.
    pub fn discard(&self, path: &Path) {
        let _ = std::fs::remove_file(path);
    }

    /// Removes the least recently used files of every version until all fit the budget
    /// (`keep`, just saved, goes last), and empty version directories.
    fn enforce_budget(&self, keep: &Path) {
        let mut all: Vec<SavedPrefix> = std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|e| files(&e.path()))
            .collect();
        all.sort_by_key(|s| (s.path == keep, s.modified));
        let mut total: u64 = all.iter().map(|s| s.bytes).sum();
        for s in &all {
            if total <= self.budget {
                break;
            }
            if std::fs::remove_file(&s.path).is_ok() {
                total -= s.bytes;
                if let Some(dir) = s.path.parent() {
                    let _ = std::fs::remove_dir(dir);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_bytes(n: usize) -> impl FnOnce(&Path) -> Result<(), String> {
        move |p: &Path| std::fs::write(p, vec![7u8; n]).map_err(|e| e.to_string())
    }

    #[test]
    fn saves_by_token_hash_and_keeps_every_version_within_the_budget() {
        let dir = tempfile::tempdir().unwrap();
        assert!(PrefixStore::new(dir.path(), "m@1", 0).is_none());
        let a = PrefixStore::new(dir.path(), "m@1", 250).unwrap();
        let b = PrefixStore::new(dir.path(), "m@2", 250).unwrap();
        assert_eq!(a.save(&[1, 2, 3], write_bytes(100)).unwrap(), 100);
        assert!(a.has(&[1, 2, 3]) && !a.has(&[1, 2]) && !b.has(&[1, 2, 3]));
        std::thread::sleep(std::time::Duration::from_millis(20));
        b.save(&[4], write_bytes(100)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        // Over the budget: the least recently used (version 1's) goes, the new one stays.
        a.save(&[5, 6], write_bytes(100)).unwrap();
        assert!(!a.has(&[1, 2, 3]) && a.has(&[5, 6]) && b.has(&[4]));
        assert_eq!(a.bytes() + b.bytes(), 200);
        // A failed write leaves nothing.
        assert!(a.save(&[9], |_: &Path| Err("disk full".into())).is_err());
        assert!(!a.has(&[9]));
        assert_eq!(
            std::fs::read_dir(dir.path().join("m@1")).unwrap().count(),
            1
        );
    }
}
