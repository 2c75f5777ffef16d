//! The TUF trust state this site keeps between polls, made crash-safe.
//!
//! tough keeps its datastore (the newest root, timestamp, snapshot and targets it
//! accepted, and the latest time it saw) by deleting and rewriting files without
//! fsync: a power cut can leave a 0-byte `root.json` (every later poll fails) or none
//! (the agent would start again from the install-time `1.root.json`, and a host that
//! hides the newer roots could then have keys this site saw revoked trusted again).
//!
//! So tough only ever writes a scratch datastore (`sync/tuf/`), filled before each load
//! from the trusted copies in `sync/trusted/`. After a load that succeeded, each file
//! tough left there is written back atomically (temporary file, fsync, rename, fsync of
//! the directory), the copy it replaces kept as `FILE.prev`; a file that is missing or
//! does not parse is passed over for its `.prev`. The version of the newest root this
//! site has verified is recorded on its own (`root-version`, written the same way) and
//! is a floor: a load that ends on an older root is refused, whichever root it started
//! from.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tough::schema::{Root, Signed};

/// The datastore files tough reads and writes.
const FILES: [&str; 5] = [
    "root.json",
    "timestamp.json",
    "snapshot.json",
    "targets.json",
    "latest_known_time.json",
];

/// Why the trust state could not be read, kept, or trusted.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the repository's newest root is version {got}, but this site verified root version \
         {floor} before: refusing to trust an older root (a host hiding newer root metadata, \
         or a damaged trust state in {dir})"
    )]
    OlderRoot { got: u64, floor: u64, dir: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrustError + '_ {
    move |source| TrustError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `bytes` are a usable copy of the datastore file `name`.
fn usable(name: &str, bytes: &[u8]) -> bool {
    if name == "root.json" {
        serde_json::from_slice::<Signed<Root>>(bytes).is_ok()
    } else {
        serde_json::from_slice::<serde_json::Value>(bytes).is_ok()
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one:
/// a temporary file beside it, fsynced, renamed over it, and the directory fsynced.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TrustError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let temp = dir.join(format!(".{name}.writing"));
    let mut file = std::fs::File::create(&temp).map_err(io(&temp))?;
    file.write_all(bytes).map_err(io(&temp))?;
    file.sync_all().map_err(io(&temp))?;
    drop(file);
    std::fs::rename(&temp, path).map_err(io(path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// The trusted copies of the datastore (`sync/trusted/`).
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    pub fn new(sync_dir: &Path) -> TrustStore {
        TrustStore {
            dir: sync_dir.join("trusted"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trusted copy of `name`: the file if usable, else its `.prev` if usable.
    fn best(&self, name: &str) -> Option<Vec<u8>> {
        [name.to_string(), format!("{name}.prev")]
            .iter()
            .find_map(|candidate| {
                let bytes = std::fs::read(self.dir.join(candidate)).ok()?;
                if usable(name, &bytes) {
                    Some(bytes)
                } else {
                    tracing::warn!(file = %self.dir.join(candidate).display(), "trust state file is damaged; passed over");
                    None
                }
            })
    }

    /// The version of the newest root this site verified (0: none yet): the recorded
    /// one, or the trusted root's own if that is higher (either may be lost alone).
    pub fn root_floor(&self) -> u64 {
        let recorded = self.recorded_floor();
        let held = ["root.json", "root.json.prev"]
            .iter()
            .filter_map(|n| std::fs::read(self.dir.join(n)).ok())
            .filter_map(|b| serde_json::from_slice::<Signed<Root>>(&b).ok())
            .map(|r| r.signed.version.get())
            .max()
            .unwrap_or(0);
        recorded.max(held)
    }

    /// Empties `scratch` and fills it with the trusted copies, for tough to load with.
    /// Returns the trusted root to start from, `None` when there is none (the
    /// install-time root then). A trust state that predates this store (tough's own
    /// files in `scratch`) is taken over first.
    pub fn prepare(&self, scratch: &Path) -> Result<Option<Vec<u8>>, TrustError> {
        if !self.dir.exists() {
            self.adopt(scratch)?;
        }
        let _ = std::fs::remove_dir_all(scratch);
        std::fs::create_dir_all(scratch).map_err(io(scratch))?;
        for name in FILES {
            if let Some(bytes) = self.best(name) {
                let to = scratch.join(name);
                std::fs::write(&to, bytes).map_err(io(&to))?;
            }
        }
        Ok(self.best("root.json"))
    }

    /// Makes the store, taking over the usable files of an older agent's datastore
    /// (`old`): built beside it and renamed into place, so it happens once and whole.
    fn adopt(&self, old: &Path) -> Result<(), TrustError> {
        let building = self.dir.with_extension("adopting");
        let _ = std::fs::remove_dir_all(&building);
        std::fs::create_dir_all(&building).map_err(io(&building))?;
        for name in FILES {
            let Ok(bytes) = std::fs::read(old.join(name)) else {
                continue;
            };
            if usable(name, &bytes) {
                write_atomically(&building.join(name), &bytes)?;
            }
        }
        std::fs::rename(&building, &self.dir).map_err(io(&self.dir))?;
        if let Some(parent) = self.dir.parent() {
            std::fs::File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io(parent))?;
        }
        Ok(())
    }

    /// Refuses a loaded root older than the floor.
    pub fn check(&self, loaded_root_version: u64) -> Result<(), TrustError> {
        let floor = self.root_floor();
        if loaded_root_version < floor {
            return Err(TrustError::OlderRoot {
                got: loaded_root_version,
                floor,
                dir: self.dir.clone(),
            });
        }
        Ok(())
    }

    fn recorded_floor(&self) -> u64 {
        std::fs::read_to_string(self.dir.join("root-version"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn raise_floor(&self, version: u64) -> Result<(), TrustError> {
        if version > self.recorded_floor() {
            write_atomically(
                &self.dir.join("root-version"),
                version.to_string().as_bytes(),
            )?;
        }
        Ok(())
    }

    /// After a load that succeeded (and passed [`check`](Self::check)): keeps what
    /// tough left in `scratch`, durably, and raises the root floor.
    pub fn commit(&self, scratch: &Path, loaded_root_version: u64) -> Result<(), TrustError> {
        for name in FILES {
            let trusted = self.dir.join(name);
            let prev = self.dir.join(format!("{name}.prev"));
            match std::fs::read(scratch.join(name)) {
                Ok(bytes) if usable(name, &bytes) => {
                    let current = std::fs::read(&trusted).ok();
                    if current.as_deref() == Some(bytes.as_slice()) {
                        continue;
                    }
                    if let Some(old) = current.filter(|c| usable(name, c)) {
                        write_atomically(&prev, &old)?;
                    }
                    write_atomically(&trusted, &bytes)?;
                }
                Ok(_) => {}
                // tough removed it (timestamp and snapshot after their keys rotated).
                Err(_) => {
                    for path in [&trusted, &prev] {
                        match std::fs::remove_file(path) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(io(path)(e)),
                        }
                    }
                }
            }
        }
        self.raise_floor(loaded_root_version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timestamp.json");
        write_atomically(&path, b"{\"a\":1}").unwrap();
        write_atomically(&path, b"{\"b\":2}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"b\":2}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn a_damaged_copy_is_passed_over_for_the_previous_one_and_the_floor_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::new(dir.path());
        let scratch = dir.path().join("tuf");
        std::fs::create_dir_all(&scratch).unwrap();
        std::fs::write(scratch.join("timestamp.json"), b"{\"v\":1}").unwrap();
        store.prepare(&scratch).unwrap();
        std::fs::write(scratch.join("timestamp.json"), b"{\"v\":1}").unwrap();
        store.commit(&scratch, 3).unwrap();
        std::fs::write(scratch.join("timestamp.json"), b"{\"v\":2}").unwrap();
        store.commit(&scratch, 3).unwrap();
        assert_eq!(store.root_floor(), 3);
        // A torn write of the newest copy: the previous one is used.
        std::fs::write(store.dir().join("timestamp.json"), b"").unwrap();
        store.prepare(&scratch).unwrap();
        assert_eq!(
            std::fs::read(scratch.join("timestamp.json")).unwrap(),
            b"{\"v\":1}"
        );
        // The floor refuses an older root, whatever the files say; an equal one passes.
        assert!(matches!(
            store.check(2),
            Err(TrustError::OlderRoot {
                got: 2,
                floor: 3,
                ..
            })
        ));
        store.check(3).unwrap();
        // A lower version never lowers the floor; it is recorded on its own.
        store.commit(&scratch, 1).unwrap();
        assert_eq!(store.root_floor(), 3);
        assert_eq!(
            std::fs::read_to_string(store.dir().join("root-version")).unwrap(),
            "3"
        );
    }
}
