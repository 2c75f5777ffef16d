//! Writing a small file whole or not at all: a temporary file beside it with the final
//! mode from the start, synced, then renamed over the target. Used for keys and
//! certificates, which must never exist half-written or briefly world-readable.
//!
//! The temporary file has a random name and is created with `O_EXCL | O_NOFOLLOW`: a
//! name planted in the directory beforehand (a symlink to another file, say) makes the
//! write fail instead of sending a secret through it.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rand::RngCore as _;

/// A fresh name beside `path`: `.NAME.RANDOM.tmp`.
fn temporary_beside(path: &Path) -> PathBuf {
    let mut random = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut random);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", hex::encode(random)))
}

/// Replaces `path` with `contents`, mode `mode`, atomically.
pub fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let tmp = temporary_beside(path);
    let nofollow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(nofollow)
        .mode(mode)
        .open(&tmp)?;
    let written = f
        .write_all(contents)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode)))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt as _;

    use super::*;

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let target = dir.path().join("server-key.pem");
        // The name a fixed-name writer would use, planted as a symlink to another file.
        std::os::unix::fs::symlink(&victim, target.with_extension("tmp")).unwrap();
        write_atomically(&target, b"secret", 0o600).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        let meta = std::fs::symlink_metadata(&target).unwrap();
        assert!(meta.file_type().is_file(), "the target is a plain file");
        assert_eq!(meta.mode() & 0o777, 0o600);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name().to_string_lossy().ends_with(".tmp")
                    && e.path() != target.with_extension("tmp")
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
