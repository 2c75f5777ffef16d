//! Checking installed versions: the full re-hash of every file against its manifest and
//! blob link ([`Store::verify`]) and the cheap size-only open for loading
//! ([`Store::open_version`]).

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;

use super::fsio::pump;
use super::{Progress, Store, StoreError};
use crate::manifest::Manifest;
use crate::verify::{VerifyError, VersionDir};

impl Store {
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
    use std::fs::{self, File};
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    use super::super::StoreError;
    use super::super::test_support::{FILES, new_store, no_progress, write_version};
    use crate::verify::VerifyError;

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
}
