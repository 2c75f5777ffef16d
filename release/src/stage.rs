//! Publishing in two phases, so that a failure never leaves the admin unsure whether a
//! release is live: new metadata is first written to `REPO/.publish/metadata/` beside a
//! copy of the root chain and loaded from there as an agent would load it (trusting
//! `1.root.json`; the target files are read from `public/targets/`). Only a staged tree
//! that loads is moved into `public/metadata/`, one file at a time by atomic rename, in
//! the order the caller gives: files nothing points at yet first, `timestamp.json` (the
//! commit) last. The staging directory is removed when the [`Stage`] is dropped.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use tough::{ExpirationEnforcement, Repository};

use crate::ReleaseError;
use crate::common::load_from;
use crate::layout::METADATA_DIR;
use crate::repo::Repo;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReleaseError + '_ {
    move |source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A staged copy of the metadata a publish is about to make live.
#[derive(Debug)]
pub(crate) struct Stage {
    dir: PathBuf,
    staged: PathBuf,
    live: PathBuf,
    targets: PathBuf,
}

impl Stage {
    /// A fresh `REPO/.publish/metadata/` holding the published roots 1 to `root_version`.
    pub(crate) fn new(repo: &Repo, root_version: u64) -> Result<Stage, ReleaseError> {
        let dir = repo.dir.join(".publish");
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&dir)(e)),
            _ => {}
        }
        let stage = Stage {
            staged: dir.join(METADATA_DIR),
            dir,
            live: repo.metadata(),
            targets: repo.targets_dir(),
        };
        std::fs::create_dir_all(&stage.staged).map_err(io(&stage.staged))?;
        for v in 1..=root_version {
            stage.copy_in(&format!("{v}.root.json"))?;
        }
        Ok(stage)
    }

    /// The staged metadata directory.
    pub(crate) fn metadata(&self) -> &Path {
        &self.staged
    }

    /// Stages a new file.
    pub(crate) fn put(&self, name: &str, bytes: &[u8]) -> Result<(), ReleaseError> {
        let path = self.staged.join(name);
        std::fs::write(&path, bytes).map_err(io(&path))
    }

    /// Stages a copy of a published file (one the staged tree refers to unchanged).
    pub(crate) fn copy_in(&self, name: &str) -> Result<(), ReleaseError> {
        let from = self.live.join(name);
        std::fs::copy(&from, self.staged.join(name)).map_err(io(&from))?;
        Ok(())
    }

    /// Loads the staged tree as an agent would (root chain from `1.root.json`, every
    /// signature, version and expiry).
    pub(crate) async fn verify(&self) -> Result<Repository, ReleaseError> {
        load_from(&self.staged, &self.targets, ExpirationEnforcement::Safe).await
    }

    /// Moves a staged file into `public/metadata/`: temporary file, fsync, rename. On an
    /// error the published file is untouched (a rename happens entirely or not at all).
    pub(crate) fn land(&self, name: &str) -> Result<(), ReleaseError> {
        let from = self.staged.join(name);
        let bytes = std::fs::read(&from).map_err(io(&from))?;
        let to = self.live.join(name);
        let tmp = self.live.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(&bytes).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &to).map_err(io(&to))
    }

    /// Removes files that landed before a later one failed (nothing refers to them).
    pub(crate) fn unland(&self, names: &[String]) {
        for name in names {
            let _ = std::fs::remove_file(self.live.join(name));
        }
    }

    /// Flushes `public/metadata/` (the renames) to disk.
    pub(crate) fn sync(&self) -> Result<(), ReleaseError> {
        std::fs::File::open(&self.live)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.live))
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
