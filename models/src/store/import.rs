//! Importing a version: staging each file (streamed, hashed, size-checked, linked into
//! the blobs) under a fresh `staging/` entry, then committing the version directory with
//! one `rename(2)` into `versions/<name>/<version>`.

use std::fs::{self, File};
use std::io::{self, Read, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::fsio::{make_dir, pump, read_some, sync_dir, sync_tree};
use super::{FILE_MODE, Progress, Store, StoreError, StoredVersion, io_err};
use crate::manifest::{FileEntry, Manifest};

impl Store {
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
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt as _;
    use std::path::Path;

    use super::super::test_support::{
        FILES, assert_untouched, entries, new_store, no_progress, write_version,
    };
    use super::super::{GcReport, PROGRESS_STEP, StoreError};
    use crate::verify::{VersionDir, sha256_file};

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
    fn the_credit_lr_fixture_imports_and_verifies() {
        let (_tmp, store) = new_store();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/credit-lr/1.0.0");
        let stored = store.import_dir(&fixture, &mut no_progress()).unwrap();
        assert_eq!(stored.manifest.id(), "credit-lr@1.0.0");
        let listed: u64 = stored
            .manifest
            .files
            .iter()
            .map(|f| std::fs::metadata(fixture.join(&f.path)).unwrap().len())
            .sum();
        assert_eq!(stored.bytes, listed);
        let v = store
            .verify("credit-lr", "1.0.0", &mut no_progress())
            .unwrap();
        assert_eq!(v.dir, stored.dir);
        assert!(VersionDir::open(&v.dir).is_ok());
    }
}
