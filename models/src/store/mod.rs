//! The content-addressed on-disk store of model versions: every file content once under
//! `blobs/sha256/`, each version a directory of hard links to its blobs under
//! `versions/<name>/<version>/`, and imports staged under `staging/` so that a version
//! appears only complete, by one `rename(2)`. The layout and the crash-safety argument
//! are in `docs/model-format.md` ("The store on disk").
//!
//! Unix only (hard-link counts, inode numbers, modes). `gc` and `clean_staging` empty
//! `staging/`, so they must not run while an import or a removal is in progress; the
//! caller serializes them (the daemon runs `clean_staging` at start).
//!
//! This module owns the public types, the store's layout (which path is which) and the
//! listing of installed versions; the operations live beside it: [`import`] (staging and
//! committing a version), [`check`] (verify and open an installed version), [`gc`]
//! (remove, gc, clean staging) and `fsio` (directory fsyncs and the hashing pump).

mod check;
mod fsio;
mod gc;
mod import;
#[cfg(test)]
mod test_support;

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::manifest::{Manifest, ManifestError, valid_name};
use crate::verify::VerifyError;

use self::fsio::make_dir;

/// Progress is reported at least this often (bytes) and at each file's end.
const PROGRESS_STEP: u64 = 1 << 20;
/// Read and write buffer size.
const CHUNK: usize = 1 << 20;
const DIR_MODE: u32 = 0o750;
const FILE_MODE: u32 = 0o444;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the disk is full: cannot write {path}: {source}")]
    DiskFull { path: PathBuf, source: io::Error },
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("{id} is already installed")]
    AlreadyInstalled { id: String },
    #[error("{id} is not installed")]
    NotInstalled { id: String },
    #[error("{name:?} is not a valid model name or version: use 1-64 of a-z, 0-9, '.', '_', '-'")]
    BadName { name: String },
    #[error("cannot read {file} from the source: {source}")]
    Source { file: String, source: io::Error },
    #[error("{file}: the source ended after {actual} bytes, the manifest says {expected}")]
    Short {
        file: String,
        expected: u64,
        actual: u64,
    },
    #[error("{file}: the source goes on after the {expected} bytes the manifest says")]
    Long { file: String, expected: u64 },
    #[error("{file}: sha256 is {actual}, the manifest says {expected}")]
    Hash {
        file: String,
        expected: String,
        actual: String,
    },
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("{path} is no longer a hard link to its blob {blob}")]
    NotLinked { path: PathBuf, blob: PathBuf },
    #[error("{path} holds the manifest of {id}")]
    WrongPlace { path: PathBuf, id: String },
}

/// Maps a store-side I/O error; ENOSPC and EDQUOT become [`StoreError::DiskFull`].
fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| {
        let full = matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        );
        let path = path.to_path_buf();
        if full {
            StoreError::DiskFull { path, source }
        } else {
            StoreError::Io { path, source }
        }
    }
}

/// Bytes of one file done out of its total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress<'a> {
    /// The file's path as the manifest lists it.
    pub file: &'a str,
    pub done: u64,
    pub total: u64,
}

/// A version just imported.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    pub name: String,
    pub version: String,
    /// `ROOT/versions/<name>/<version>`.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// sha256 (hex) of the exact manifest text stored.
    pub manifest_sha256: String,
    /// Sum of the listed files' sizes.
    pub bytes: u64,
}

/// What [`Store::gc`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub staging_removed: usize,
}

/// The store under one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn check_names(name: &str, version: &str) -> Result<(), StoreError> {
    for s in [name, version] {
        if !valid_name(s) {
            return Err(StoreError::BadName {
                name: s.to_string(),
            });
        }
    }
    Ok(())
}

impl Store {
    /// Opens the store at `root`, creating `blobs/sha256`, `versions` and `staging`
    /// (mode 0750) if missing.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let store = Store {
            root: root.to_path_buf(),
        };
        for dir in [store.blob_dir(), store.versions(), store.staging()] {
            make_dir(&dir)?;
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blob_dir().join(sha256.to_ascii_lowercase())
    }

    fn versions(&self) -> PathBuf {
        self.root.join("versions")
    }

    fn staging(&self) -> PathBuf {
        self.root.join("staging")
    }

    /// A new, empty, uniquely named directory under `staging/`.
    fn new_staging(&self) -> Result<PathBuf, StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self
            .staging()
            .join(format!("{}-{nanos}-{n}", std::process::id()));
        DirBuilder::new()
            .mode(DIR_MODE)
            .create(&path)
            .map_err(io_err(&path))?;
        Ok(path)
    }

    /// `ROOT/versions/<name>/<version>`; a name or version that is not a valid name
    /// (see [`valid_name`]) is refused.
    pub fn version_dir(&self, name: &str, version: &str) -> Result<PathBuf, StoreError> {
        check_names(name, version)?;
        Ok(self.versions().join(name).join(version))
    }

    /// Whether `name@version` is installed (false for invalid names).
    pub fn contains(&self, name: &str, version: &str) -> bool {
        self.version_dir(name, version)
            .is_ok_and(|dir| fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir()))
    }

    /// (name, version) of every version directory present, sorted.
    pub fn list(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::new();
        let versions = self.versions();
        for name in fs::read_dir(&versions).map_err(io_err(&versions))? {
            let name = name.map_err(io_err(&versions))?;
            let Some(name_str) = name.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !valid_name(&name_str) || !name.file_type().map_err(io_err(&versions))?.is_dir() {
                continue;
            }
            let name_dir = name.path();
            for version in fs::read_dir(&name_dir).map_err(io_err(&name_dir))? {
                let version = version.map_err(io_err(&name_dir))?;
                let is_dir = version.file_type().map_err(io_err(&name_dir))?.is_dir();
                match version.file_name().to_str() {
                    Some(v) if is_dir && valid_name(v) => {
                        out.push((name_str.clone(), v.to_string()))
                    }
                    _ => {}
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{new_store, no_progress};
    use super::*;

    #[test]
    fn bad_names_are_refused() {
        let (_tmp, store) = new_store();
        for (name, version) in [
            ("../x", "1"),
            ("a/b", "1"),
            ("M", "1"),
            ("m", ".."),
            ("m", ""),
        ] {
            let bad = |r: Result<(), StoreError>| matches!(r, Err(StoreError::BadName { .. }));
            assert!(
                bad(store.version_dir(name, version).map(drop)),
                "{name} {version}"
            );
            assert!(bad(store.remove(name, version)), "{name} {version}");
            assert!(bad(store
                .verify(name, version, &mut no_progress())
                .map(drop)));
            assert!(bad(store.open_version(name, version).map(drop)));
            assert!(!store.contains(name, version));
        }
    }

    #[test]
    fn a_full_disk_is_its_own_error() {
        let path = Path::new("/store/blobs/x");
        for e in [
            io::Error::from(io::ErrorKind::StorageFull),
            io::Error::from_raw_os_error(28),
            io::Error::from_raw_os_error(122), // EDQUOT
        ] {
            let err = io_err(path)(e);
            assert!(matches!(err, StoreError::DiskFull { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.contains("disk is full") && msg.contains("/store/blobs/x"),
                "{msg}"
            );
        }
        let err = io_err(path)(io::Error::from(io::ErrorKind::PermissionDenied));
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    }
}
