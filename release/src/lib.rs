//! coffer-release: the fleet release repository and the fleet admin's `coffer-release`
//! tool. The repository is TUF (root, targets, snapshot, timestamp; threshold
//! signatures; expiries; consistent snapshots) written with `tough`, as Bottlerocket's
//! updates are; model versions in it are coffer-models' manifests and files.
//!
//! [`layout`] is the contract with coffer-agent; [`keys`] the signing keys; the admin's
//! operations: [`repo`] (add, promote, withdraw: staged changes), [`init`], [`publish`]
//! (through `stage`: nothing is published that an agent would refuse), [`root`]
//! (rotate-key) and [`bundle`] (export-bundle); what the steps share sits below them in
//! `common`. [`cli`] is the `coffer-release` command line (`src/main.rs` only parses
//! arguments and runs it). The repository is plain files: any static HTTPS host serves
//! it. See `docs/fleet.md`.

pub mod bundle;
pub mod cli;
mod common;
pub mod halts;
pub mod init;
pub mod keys;
pub mod layout;
pub mod publish;
pub mod repo;
pub mod root;
mod stage;
pub mod watch;

use std::path::PathBuf;

/// What can go wrong while building, signing or exporting a release repository.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("key: {0}")]
    Key(String),
    #[error("{path}: {what}")]
    Metadata { path: PathBuf, what: String },
    #[error("{what}: {source}")]
    Tuf {
        what: String,
        source: Box<tough::error::Error>,
    },
    #[error("{dir}: {source}")]
    Version {
        dir: PathBuf,
        source: coffer_models::VerifyError,
    },
}

impl ReleaseError {
    pub(crate) fn tuf(what: impl Into<String>) -> impl FnOnce(tough::error::Error) -> ReleaseError {
        let what = what.into();
        move |source| ReleaseError::Tuf {
            what,
            source: Box::new(source),
        }
    }
}

/// What the release modules' tests share.
#[cfg(test)]
pub(crate) mod testutil {
    use std::path::Path;

    /// The names in a directory, sorted.
    pub fn names(dir: &Path) -> Vec<String> {
        let mut all: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        all.sort();
        all
    }
}
