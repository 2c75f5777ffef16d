//! What the release steps share, below all of them: how long each role's metadata stays
//! valid ([`Expiries`]), what a publish made live ([`Published`]), the TUF spec version
//! and version numbers, reading a root, and loading a metadata tree as an agent does.
//! `init`, `publish`, `root` (rotate-key) and `stage` build on this module; it uses none
//! of them.

use std::num::NonZeroU64;
use std::path::Path;
use std::time::Duration;

use tough::schema::{Root, Signed};
use tough::{ExpirationEnforcement, FilesystemTransport, Repository, RepositoryLoader};

use crate::ReleaseError;

/// How long each role's metadata stays valid from the moment it is signed.
#[derive(Debug, Clone, Copy)]
pub struct Expiries {
    pub root: Duration,
    pub targets: Duration,
    pub snapshot: Duration,
    pub timestamp: Duration,
}

impl Default for Expiries {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        Expiries {
            root: Duration::from_secs(365 * DAY),
            targets: Duration::from_secs(90 * DAY),
            snapshot: Duration::from_secs(30 * DAY),
            timestamp: Duration::from_secs(DAY),
        }
    }
}

/// What a publish made live.
#[derive(Debug, Clone)]
pub struct Published {
    pub root_version: u64,
    pub targets_version: u64,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
    /// The earliest expiry among the published roles: the repository must be published
    /// again (or its timestamp re-signed) before then.
    pub expires: jiff::Timestamp,
    pub releases: usize,
    /// The steps that did not complete after the release went live, each saying what is
    /// left to do; empty when everything did. The release is live either way.
    pub unfinished: Vec<String>,
}

impl Published {
    pub fn is_complete(&self) -> bool {
        self.unfinished.is_empty()
    }
}

/// The moment `from_now` from now, as metadata expiries are written.
pub(crate) fn expiry(from_now: Duration) -> Result<jiff::Timestamp, ReleaseError> {
    let span = jiff::SignedDuration::try_from(from_now)
        .map_err(|e| ReleaseError::Usage(format!("expiry {from_now:?}: {e}")))?;
    jiff::Timestamp::now()
        .checked_add(span)
        .map_err(|e| ReleaseError::Usage(format!("expiry {from_now:?}: {e}")))
}

/// The randomness signing takes.
pub(crate) fn rng() -> aws_lc_rs::rand::SystemRandom {
    aws_lc_rs::rand::SystemRandom::new()
}

/// The TUF specification version the metadata is written under.
pub(crate) const SPEC_VERSION: &str = "1.0.0";

/// A metadata version number (versions start at 1).
pub(crate) fn nz(v: u64) -> NonZeroU64 {
    NonZeroU64::new(v).unwrap_or(NonZeroU64::MIN)
}

/// Reads a signed root file (not verified: see [`load_from`]).
pub(crate) fn read_root(path: &Path) -> Result<Signed<Root>, ReleaseError> {
    let bytes = std::fs::read(path).map_err(|source| ReleaseError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ReleaseError::Metadata {
        path: path.to_path_buf(),
        what: e.to_string(),
    })
}

/// Loads metadata from one directory, trusting its `1.root.json`, with the target files
/// in another. Relative paths are taken from the current directory.
pub(crate) async fn load_from(
    metadata: &Path,
    targets: &Path,
    expiry: ExpirationEnforcement,
) -> Result<Repository, ReleaseError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ReleaseError::Io { path, source }
    };
    let root_path = metadata.join("1.root.json");
    let root = std::fs::read(&root_path).map_err(io(&root_path))?;
    let url = |dir: &Path| {
        let dir = std::path::absolute(dir).map_err(io(dir))?;
        url::Url::from_directory_path(&dir)
            .map_err(|()| ReleaseError::Usage(format!("{} cannot be a file URL", dir.display())))
    };
    let datastore = tempfile::tempdir().map_err(io(&std::env::temp_dir()))?;
    RepositoryLoader::new(&root, url(metadata)?, url(targets)?)
        .transport(FilesystemTransport)
        .datastore(datastore.path())
        .expiration_enforcement(expiry)
        .load()
        .await
        .map_err(ReleaseError::tuf(format!("loading {}", metadata.display())))
}
