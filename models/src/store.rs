//! The content-addressed on-disk store of model versions: every file content once under
//! `blobs/sha256/`, each version a directory of hard links to its blobs under
//! `versions/<name>/<version>/`, and imports staged under `staging/` so that a version
//! appears only complete, by one `rename(2)`. The layout and the crash-safety argument
//! are in `docs/model-format.md` ("The store on disk").
//!
//! Unix only (hard-link counts, inode numbers, modes). `gc` and `clean_staging` empty
//! `staging/`, so they must not run while an import or a removal is in progress; the
//! caller serializes them (the daemon runs `clean_staging` at start).

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::manifest::{FileEntry, Manifest, ManifestError, valid_name};
use crate::verify::{VerifyError, VersionDir};

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

fn make_dir(path: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_err(path))
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

/// Fsyncs `dir` and every directory below it.
fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map_err(io_err(dir))?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(dir)
}

/// Removes a file, or a directory with its contents.
fn remove_entry(path: &Path) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .map_err(io_err(path))
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

fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Reads up to `total` bytes of `file` from `reader`, hashing them and writing them to
/// `out` if given; reports progress. Returns the bytes read (fewer at early EOF) and
/// the sha256.
fn pump(
    file: &str,
    total: u64,
    reader: &mut dyn Read,
    mut out: Option<(&mut File, &Path)>,
    read_err: &dyn Fn(io::Error) -> StoreError,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(u64, String), StoreError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let (mut done, mut reported) = (0u64, 0u64);
    while done < total {
        let want = usize::try_from(total - done).map_or(CHUNK, |left| left.min(CHUNK));
        let n = read_some(reader, &mut buf[..want]).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        if let Some((sink, path)) = out.as_mut() {
            sink.write_all(&buf[..n]).map_err(io_err(path))?;
        }
        done += n as u64;
        if done - reported >= PROGRESS_STEP && done < total {
            progress(Progress { file, done, total });
            reported = done;
        }
    }
    progress(Progress { file, done, total });
    Ok((done, hex::encode(hasher.finalize())))
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

    /// Removes everything in `staging/` (the leftovers of interrupted imports and
    /// removals); returns the number of entries removed. Call at daemon start.
    pub fn clean_staging(&self) -> Result<usize, StoreError> {
        let staging = self.staging();
        let mut removed = 0;
        for entry in fs::read_dir(&staging).map_err(io_err(&staging))? {
            remove_entry(&entry.map_err(io_err(&staging))?.path())?;
            removed += 1;
        }
        Ok(removed)
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

    /// Import from a directory holding manifest.toml and the files it lists.
    pub fn import_dir(
        &self,
        dir: &Path,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<StoredVersion, StoreError> {
        let manifest_path = dir.join("manifest.toml");
        let text = fs::read_to_string(&manifest_path).map_err(|source| StoreError::Source {
            file: manifest_path.display().to_string(),
            source,
        })?;
        self.import(&text, |store, manifest, staging| {
            for (i, entry) in manifest.files.iter().enumerate() {
                let path = dir.join(&entry.path);
                let source_err = |source| StoreError::Source {
                    file: path.display().to_string(),
                    source,
                };
                let mut file = File::open(&path).map_err(source_err)?;
                store.stage_file(staging, i, entry, &mut file, true, progress)?;
            }
            Ok(())
        })
    }

    /// Import from a stream: `manifest_text` is the manifest; `reader` yields the listed
    /// files' bytes concatenated in the manifest's `files` order, each exactly its
    /// declared size; data after the last file is an error.
    pub fn import_stream(
        &self,
        manifest_text: &str,
        reader: &mut dyn Read,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<StoredVersion, StoreError> {
        self.import(manifest_text, |store, manifest, staging| {
            let last = manifest.files.len().saturating_sub(1);
            for (i, entry) in manifest.files.iter().enumerate() {
                store.stage_file(staging, i, entry, reader, i == last, progress)?;
            }
            Ok(())
        })
    }

    /// Parses the manifest, stages its files with `stage` into a new staging entry,
    /// commits the version, and removes the staging entry whatever happened.
    fn import(
        &self,
        text: &str,
        stage: impl FnOnce(&Store, &Manifest, &Path) -> Result<(), StoreError>,
    ) -> Result<StoredVersion, StoreError> {
        let manifest = Manifest::parse(text)?;
        if self.contains(&manifest.name, &manifest.version) {
            return Err(StoreError::AlreadyInstalled { id: manifest.id() });
        }
        let staging = self.new_staging()?;
        let result = make_dir(&staging.join("version"))
            .and_then(|()| stage(self, &manifest, &staging))
            .and_then(|()| self.commit(&staging, &manifest, text));
        // Whatever is left in staging is garbage; clean_staging and gc catch what this misses.
        let _ = fs::remove_dir_all(&staging);
        let dir = result?;
        Ok(StoredVersion {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            dir,
            manifest_sha256: hex::encode(Sha256::digest(text.as_bytes())),
            bytes: manifest.files.iter().map(|f| f.size).sum(),
            manifest,
        })
    }

    /// Streams one file into `staging/blob-<index>` while hashing, checks size and
    /// sha256, fsyncs it, links it into the blobs (keeping an existing blob) and links
    /// the blob to `staging/version/<path>`. With `must_end`, the reader must be
    /// exhausted after the file.
    fn stage_file(
        &self,
        staging: &Path,
        index: usize,
        entry: &FileEntry,
        reader: &mut dyn Read,
        must_end: bool,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<(), StoreError> {
        let file = entry.path.as_str();
        let source_err = |source| StoreError::Source {
            file: file.to_string(),
            source,
        };
        let tmp = staging.join(format!("blob-{index}"));
        let mut out = File::options()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        let (done, actual) = pump(
            file,
            entry.size,
            reader,
            Some((&mut out, &tmp)),
            &source_err,
            progress,
        )?;
        if done < entry.size {
            return Err(StoreError::Short {
                file: file.to_string(),
                expected: entry.size,
                actual: done,
            });
        }
        if must_end && read_some(reader, &mut [0u8; 1]).map_err(source_err)? > 0 {
            return Err(StoreError::Long {
                file: file.to_string(),
                expected: entry.size,
            });
        }
        if !actual.eq_ignore_ascii_case(&entry.sha256) {
            return Err(StoreError::Hash {
                file: file.to_string(),
                expected: entry.sha256.clone(),
                actual,
            });
        }
        out.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .and_then(|()| out.sync_all())
            .map_err(io_err(&tmp))?;
        drop(out);
        // link(2), unlike rename(2), never replaces an existing blob, whose inode
        // installed versions share: a blob that exists is kept and ours dropped.
        let blob = self.blob_path(&entry.sha256);
        match fs::hard_link(&tmp, &blob) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(&blob)(e)),
        }
        let dest = staging.join("version").join(&entry.path);
        if let Some(parent) = dest.parent() {
            make_dir(parent)?;
        }
        fs::hard_link(&blob, &dest).map_err(io_err(&dest))?;
        fs::remove_file(&tmp).map_err(io_err(&tmp))
    }

    /// Writes the manifest, fsyncs, and renames `staging/version` to its place.
    fn commit(
        &self,
        staging: &Path,
        manifest: &Manifest,
        text: &str,
    ) -> Result<PathBuf, StoreError> {
        let version = staging.join("version");
        let manifest_path = version.join("manifest.toml");
        File::options()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&manifest_path)
            .and_then(|mut f| {
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .map_err(io_err(&manifest_path))?;
        sync_tree(&version)?;
        sync_dir(&self.blob_dir())?;
        let parent = self.versions().join(&manifest.name);
        make_dir(&parent)?;
        sync_dir(&self.versions())?;
        let target = parent.join(&manifest.version);
        if let Err(e) = fs::rename(&version, &target) {
            return Err(
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
                ) {
                    StoreError::AlreadyInstalled { id: manifest.id() }
                } else {
                    io_err(&target)(e)
                },
            );
        }
        sync_dir(&parent)?;
        Ok(target)
    }

    /// The installed directory of `name@version` and its manifest, which must name it.
    fn installed(&self, name: &str, version: &str) -> Result<(PathBuf, Manifest), StoreError> {
        let dir = self.version_dir(name, version)?;
        if !self.contains(name, version) {
            return Err(StoreError::NotInstalled {
                id: format!("{name}@{version}"),
            });
        }
        let path = dir.join("manifest.toml");
        let text = fs::read_to_string(&path).map_err(|source| VerifyError::Read {
            path: path.clone(),
            source,
        })?;
        let manifest = Manifest::parse(&text).map_err(|source| VerifyError::Manifest {
            path: path.clone(),
            source,
        })?;
        if manifest.name != name || manifest.version != version {
            return Err(StoreError::WrongPlace {
                path,
                id: manifest.id(),
            });
        }
        Ok((dir, manifest))
    }

    /// Re-reads every file of an installed version and checks size and sha256 (and that
    /// each is still linked to its blob).
    pub fn verify(
        &self,
        name: &str,
        version: &str,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<VersionDir, StoreError> {
        let (dir, manifest) = self.installed(name, version)?;
        for entry in &manifest.files {
            let path = dir.join(&entry.path);
            let read_err = |source| {
                StoreError::Verify(VerifyError::Read {
                    path: path.clone(),
                    source,
                })
            };
            let blob = self.blob_path(&entry.sha256);
            let meta = fs::symlink_metadata(&path).map_err(read_err)?;
            let linked = fs::symlink_metadata(&blob)
                .is_ok_and(|b| meta.is_file() && (b.dev(), b.ino()) == (meta.dev(), meta.ino()));
            if !linked {
                return Err(StoreError::NotLinked { path, blob });
            }
            if meta.len() != entry.size {
                return Err(size_err(path, entry.size, meta.len()));
            }
            let mut file = File::open(&path).map_err(read_err)?;
            let (done, actual) = pump(
                &entry.path,
                entry.size,
                &mut file,
                None,
                &read_err,
                progress,
            )?;
            if done != entry.size {
                return Err(size_err(path, entry.size, done));
            }
            if !actual.eq_ignore_ascii_case(&entry.sha256) {
                return Err(VerifyError::Hash {
                    path,
                    expected: entry.sha256.clone(),
                    actual,
                }
                .into());
            }
        }
        Ok(VersionDir { dir, manifest })
    }

    /// Cheap open for loading: parses the manifest and checks each file exists with its
    /// size (no hashing).
    pub fn open_version(&self, name: &str, version: &str) -> Result<VersionDir, StoreError> {
        let (dir, manifest) = self.installed(name, version)?;
        for entry in &manifest.files {
            let path = dir.join(&entry.path);
            let size = fs::metadata(&path)
                .map_err(|source| VerifyError::Read {
                    path: path.clone(),
                    source,
                })?
                .len();
            if size != entry.size {
                return Err(size_err(path, entry.size, size));
            }
        }
        Ok(VersionDir { dir, manifest })
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

    /// Removes a version directory atomically (rename into staging, then delete).
    /// Blobs stay until gc.
    pub fn remove(&self, name: &str, version: &str) -> Result<(), StoreError> {
        let dir = self.version_dir(name, version)?;
        let not_installed = || StoreError::NotInstalled {
            id: format!("{name}@{version}"),
        };
        if !self.contains(name, version) {
            return Err(not_installed());
        }
        let trash = self.new_staging()?;
        let result = fs::rename(&dir, trash.join("removed"))
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => not_installed(),
                _ => io_err(&dir)(e),
            })
            .and_then(|()| sync_dir(&self.versions().join(name)));
        // Once renamed the version is gone; what deletion leaves is collected later.
        let _ = fs::remove_dir_all(&trash);
        result
    }

    /// Removes blobs no version links to (nlink == 1) and everything in staging.
    pub fn gc(&self) -> Result<GcReport, StoreError> {
        let mut report = GcReport {
            staging_removed: self.clean_staging()?,
            ..GcReport::default()
        };
        let blobs = self.blob_dir();
        for entry in fs::read_dir(&blobs).map_err(io_err(&blobs))? {
            let path = entry.map_err(io_err(&blobs))?.path();
            let meta = fs::symlink_metadata(&path).map_err(io_err(&path))?;
            if meta.is_file() && meta.nlink() == 1 {
                fs::remove_file(&path).map_err(io_err(&path))?;
                report.blobs_removed += 1;
                report.bytes_freed += meta.len();
            }
        }
        // Name directories left empty by `remove`; a non-empty one stays.
        let versions = self.versions();
        for entry in fs::read_dir(&versions).map_err(io_err(&versions))? {
            let _ = fs::remove_dir(entry.map_err(io_err(&versions))?.path());
        }
        Ok(report)
    }
}

fn size_err(path: PathBuf, expected: u64, actual: u64) -> StoreError {
    StoreError::Verify(VerifyError::Size {
        path,
        expected,
        actual,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::sha256_file;

    fn new_store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(&tmp.path().join("store")).unwrap();
        (tmp, store)
    }

    /// Writes `files` (path, bytes; the first has role model, the rest eval) and a
    /// manifest listing them into `dir`; returns the manifest text.
    fn write_version(dir: &Path, name: &str, version: &str, files: &[(&str, &[u8])]) -> String {
        let mut text = format!(
            "name = \"{name}\"\nversion = \"{version}\"\nkind = \"chat\"\nformat = \"gguf\"\n"
        );
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

    const FILES: &[(&str, &[u8])] = &[("model.gguf", b"weights"), ("eval/text.txt", b"hello")];

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    /// Nothing installed and nothing left in staging.
    fn assert_untouched(store: &Store) {
        assert_eq!(store.list().unwrap(), Vec::<(String, String)>::new());
        assert_eq!(entries(&store.root().join("staging")), 0);
    }

    fn no_progress() -> impl FnMut(Progress<'_>) {
        |_| {}
    }

    #[test]
    fn import_dir_round_trips_and_reports_progress() {
        let (tmp, store) = new_store();
        let src = tmp.path().join("src");
        let text = write_version(&src, "m", "1.0", FILES);
        let mut seen = Vec::new();
        let stored = store
            .import_dir(&src, &mut |p| {
                seen.push((p.file.to_string(), p.done, p.total))
            })
            .unwrap();
        assert_eq!(
            (stored.name.as_str(), stored.version.as_str()),
            ("m", "1.0")
        );
        assert_eq!(stored.dir, store.root().join("versions/m/1.0"));
        assert_eq!(stored.bytes, 12);
        assert_eq!(
            stored.manifest_sha256,
            sha256_file(&src.join("manifest.toml")).unwrap()
        );
        assert_eq!(
            seen,
            [
                ("model.gguf".to_string(), 7, 7),
                ("eval/text.txt".to_string(), 5, 5)
            ]
        );
        assert_eq!(
            fs::read_to_string(stored.dir.join("manifest.toml")).unwrap(),
            text
        );
        assert_eq!(
            fs::read(stored.dir.join("eval/text.txt")).unwrap(),
            b"hello"
        );
        let blob = store
            .root()
            .join("blobs/sha256")
            .join(&stored.manifest.files[0].sha256);
        let meta = fs::metadata(&blob).unwrap();
        assert_eq!((meta.nlink(), meta.mode() & 0o777), (2, 0o444));
        assert!(store.contains("m", "1.0"));
        assert_eq!(
            store.list().unwrap(),
            [("m".to_string(), "1.0".to_string())]
        );
        assert_eq!(entries(&store.root().join("staging")), 0);

        let mut verified = Vec::new();
        let v = store
            .verify("m", "1.0", &mut |p| verified.push((p.done, p.total)))
            .unwrap();
        assert_eq!(v.manifest, stored.manifest);
        assert_eq!(verified, [(7, 7), (5, 5)]);
        let opened = store.open_version("m", "1.0").unwrap();
        assert_eq!(opened.path("model.gguf"), stored.dir.join("model.gguf"));
    }

    #[test]
    fn progress_comes_at_least_every_mib() {
        let (tmp, store) = new_store();
        let big = vec![7u8; (5 << 20) / 2];
        let text = write_version(tmp.path(), "big", "1", &[("m.gguf", &big)]);
        let mut done = vec![0];
        store
            .import_stream(&text, &mut &big[..], &mut |p| done.push(p.done))
            .unwrap();
        assert_eq!(done.last(), Some(&(big.len() as u64)));
        assert!(done.len() >= 4, "{done:?}");
        assert!(
            done.windows(2)
                .all(|w| w[1] > w[0] && w[1] - w[0] <= PROGRESS_STEP)
        );
    }

    #[test]
    fn a_version_installs_once() {
        let (tmp, store) = new_store();
        write_version(tmp.path(), "m", "1", FILES);
        store.import_dir(tmp.path(), &mut no_progress()).unwrap();
        let err = store
            .import_dir(tmp.path(), &mut no_progress())
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyInstalled { id } if id == "m@1"),
            "{err}"
        );
        assert_eq!(entries(&store.root().join("staging")), 0);
        // Refused before any file is read.
        fs::remove_file(tmp.path().join("model.gguf")).unwrap();
        let err = store
            .import_dir(tmp.path(), &mut no_progress())
            .unwrap_err();
        assert!(matches!(err, StoreError::AlreadyInstalled { .. }), "{err}");
    }

    /// Two imports of one version racing: the loser finds the version at commit.
    #[test]
    fn the_commit_refuses_an_installed_version() {
        let (tmp, store) = new_store();
        let text = write_version(tmp.path(), "m", "1", FILES);
        let mut raced = false;
        let err = store
            .import_stream(&text, &mut &b"weightshello"[..], &mut |p| {
                if p.file == "eval/text.txt" && !raced {
                    raced = true;
                    store.import_dir(tmp.path(), &mut no_progress()).unwrap();
                }
            })
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::AlreadyInstalled { id } if id == "m@1"),
            "{err}"
        );
        assert_eq!(entries(&store.root().join("staging")), 0);
        store.verify("m", "1", &mut no_progress()).unwrap();
    }

    #[test]
    fn identical_content_shares_one_blob() {
        let (tmp, store) = new_store();
        for version in ["1", "2"] {
            let src = tmp.path().join(version);
            write_version(&src, "m", version, FILES);
            store.import_dir(&src, &mut no_progress()).unwrap();
        }
        let blobs = store.root().join("blobs/sha256");
        assert_eq!(entries(&blobs), 2);
        let model = sha256_file(&tmp.path().join("1/model.gguf")).unwrap();
        assert_eq!(fs::metadata(blobs.join(model)).unwrap().nlink(), 3);

        // Removing one version frees nothing: the other still links every blob.
        store.remove("m", "1").unwrap();
        assert_eq!(store.gc().unwrap(), GcReport::default());
        store.verify("m", "2", &mut no_progress()).unwrap();
    }

    #[test]
    fn a_corrupted_stream_installs_nothing() {
        let (tmp, store) = new_store();
        let text = write_version(tmp.path(), "m", "1", FILES);
        let mut data = b"weightshello".to_vec();
        data[9] ^= 1;
        let err = store
            .import_stream(&text, &mut &data[..], &mut no_progress())
            .unwrap_err();
        match &err {
            StoreError::Hash {
                file,
                expected,
                actual,
            } => {
                assert_eq!(file, "eval/text.txt");
                assert_ne!(expected, actual);
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("eval/text.txt"));
        assert_untouched(&store);

        let data = b"weightshello";
        store
            .import_stream(&text, &mut &data[..], &mut no_progress())
            .unwrap();
        store.verify("m", "1", &mut no_progress()).unwrap();
    }

    #[test]
    fn short_and_long_streams_are_refused() {
        let (tmp, store) = new_store();
        let text = write_version(tmp.path(), "m", "1", FILES);
        let err = store
            .import_stream(&text, &mut &b"weightshel"[..], &mut no_progress())
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Short { file, expected: 5, actual: 3 } if file == "eval/text.txt"),
            "{err}"
        );
        assert_untouched(&store);
        let err = store
            .import_stream(&text, &mut &b"weightshello!"[..], &mut no_progress())
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Long { file, expected: 5 } if file == "eval/text.txt"),
            "{err}"
        );
        assert_untouched(&store);
    }

    #[test]
    fn import_dir_refuses_missing_and_grown_files() {
        let (tmp, store) = new_store();
        write_version(tmp.path(), "m", "1", FILES);
        fs::write(tmp.path().join("model.gguf"), b"weights+").unwrap();
        let err = store
            .import_dir(tmp.path(), &mut no_progress())
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Long { file, .. } if file == "model.gguf"),
            "{err}"
        );
        fs::remove_file(tmp.path().join("model.gguf")).unwrap();
        let err = store
            .import_dir(tmp.path(), &mut no_progress())
            .unwrap_err();
        assert!(matches!(&err, StoreError::Source { .. }), "{err}");
        assert!(err.to_string().contains("model.gguf"), "{err}");
        assert_untouched(&store);
    }

    #[test]
    fn a_bad_manifest_is_a_manifest_error() {
        let (_tmp, store) = new_store();
        let err = store
            .import_stream("name = \"m\"", &mut &b""[..], &mut no_progress())
            .unwrap_err();
        assert!(matches!(err, StoreError::Manifest(_)), "{err}");
        assert_untouched(&store);
    }

    #[test]
    fn verify_finds_changed_blobs_and_broken_links() {
        let (tmp, store) = new_store();
        write_version(tmp.path(), "m", "1", FILES);
        let stored = store.import_dir(tmp.path(), &mut no_progress()).unwrap();
        let blob = store
            .root()
            .join("blobs/sha256")
            .join(&stored.manifest.files[1].sha256);
        fs::set_permissions(&blob, fs::Permissions::from_mode(0o644)).unwrap();
        File::options()
            .write(true)
            .open(&blob)
            .unwrap()
            .write_all(b"J")
            .unwrap();
        // Same size: the cheap open still succeeds, the full check does not.
        store.open_version("m", "1").unwrap();
        let err = store.verify("m", "1", &mut no_progress()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Verify(VerifyError::Hash { path, .. }) if path.ends_with("eval/text.txt")),
            "{err}"
        );

        // A copy in place of the hard link.
        let model = stored.dir.join("model.gguf");
        fs::remove_file(&model).unwrap();
        fs::write(&model, b"weights").unwrap();
        let err = store.verify("m", "1", &mut no_progress()).unwrap_err();
        assert!(
            matches!(&err, StoreError::NotLinked { path, .. } if *path == model),
            "{err}"
        );

        fs::write(&model, b"weight").unwrap();
        let err = store.open_version("m", "1").unwrap_err();
        assert!(
            matches!(
                &err,
                StoreError::Verify(VerifyError::Size {
                    expected: 7,
                    actual: 6,
                    ..
                })
            ),
            "{err}"
        );
    }

    #[test]
    fn remove_then_gc_frees_the_blobs() {
        let (tmp, store) = new_store();
        write_version(tmp.path(), "m", "1", FILES);
        store.import_dir(tmp.path(), &mut no_progress()).unwrap();
        assert_eq!(store.gc().unwrap(), GcReport::default());
        store.remove("m", "1").unwrap();
        assert!(!store.contains("m", "1"));
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(
            store.remove("m", "1"),
            Err(StoreError::NotInstalled { id }) if id == "m@1"
        ));
        assert!(matches!(
            store.verify("m", "1", &mut no_progress()),
            Err(StoreError::NotInstalled { .. })
        ));
        assert_eq!(
            store.gc().unwrap(),
            GcReport {
                blobs_removed: 2,
                bytes_freed: 12,
                staging_removed: 0
            }
        );
        assert_eq!(entries(&store.root().join("blobs/sha256")), 0);
        assert_eq!(entries(&store.root().join("versions")), 0);
    }

    #[test]
    fn clean_staging_removes_leftovers() {
        let (_tmp, store) = new_store();
        let staging = store.root().join("staging");
        fs::create_dir_all(staging.join("123-456-0/version/eval")).unwrap();
        fs::write(staging.join("123-456-0/blob-0"), b"half").unwrap();
        fs::write(staging.join("stray"), b"x").unwrap();
        assert!(store.list().unwrap().is_empty());
        assert_eq!(store.clean_staging().unwrap(), 2);
        assert_eq!(entries(&staging), 0);
        fs::create_dir(staging.join("again")).unwrap();
        assert_eq!(store.gc().unwrap().staging_removed, 1);
    }

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

    #[test]
    fn the_credit_lr_fixture_imports_and_verifies() {
        let (_tmp, store) = new_store();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/credit-lr/1.0.0");
        let stored = store.import_dir(&fixture, &mut no_progress()).unwrap();
        assert_eq!(stored.manifest.id(), "credit-lr@1.0.0");
        assert_eq!(stored.bytes, 531 + 113_691);
        let v = store
            .verify("credit-lr", "1.0.0", &mut no_progress())
            .unwrap();
        assert_eq!(v.dir, stored.dir);
        assert!(VersionDir::open(&v.dir).is_ok());
    }
}
