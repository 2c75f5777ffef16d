//! The store's low-level file work: creating directories with the store's mode,
//! fsyncing directories and trees, removing entries, and `pump`, the loop that reads a
//! file's bytes, hashes them, optionally writes them out and reports progress.

use std::fs::{self, DirBuilder, File};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{CHUNK, DIR_MODE, PROGRESS_STEP, Progress, StoreError, io_err};

pub(super) fn make_dir(path: &Path) -> Result<(), StoreError> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
        .map_err(io_err(path))
}

pub(super) fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err(path))
}

/// Fsyncs `dir` and every directory below it.
pub(super) fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if entry.file_type().map_err(io_err(dir))?.is_dir() {
            sync_tree(&entry.path())?;
        }
    }
    sync_dir(dir)
}

/// Removes a file, or a directory with its contents.
pub(super) fn remove_entry(path: &Path) -> Result<(), StoreError> {
    let meta = fs::symlink_metadata(path).map_err(io_err(path))?;
    if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    }
    .map_err(io_err(path))
}

pub(super) fn read_some(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
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
pub(super) fn pump(
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
