//! Loading the fleet's TUF release repository with `tough`: from the static HTTPS host
//! or from a copied bundle directory, through the bounded transports of
//! [`metadata_fetch`](super::metadata_fetch). tough does every TUF check (the root
//! chain, signatures and thresholds, versions against what this site saw before,
//! hashes and lengths of snapshot and targets, and expiry); this module adds the
//! trusted-root bootstrap, the crash-safe trust state around tough's datastore
//! ([`trust`](super::trust)), the bundle grace for expired metadata, and reading
//! [`ReleaseInfo`]s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_release::layout::{CUSTOM_KEY, ReleaseInfo, target_file, target_name};
use tough::{ExpirationEnforcement, Repository, RepositoryLoader};

use super::metadata_fetch::{BundleTransport, HttpsTransport, LIMITS};
use super::trust::{TrustError, TrustStore};
use crate::transport::Tls;

/// Why the release metadata was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("trusted root {path}: {source}")]
    TrustedRoot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a URL this agent can use")]
    Url(String),
    /// tough refused the repository: a signature, threshold, version (rollback),
    /// expiry (freeze), hash or size check failed, or the host could not be reached.
    #[error("release metadata rejected: {0}")]
    Rejected(String),
    #[error(
        "the bundle's metadata expired at {expired} ({ago} ago), beyond sync.bundle_expiry_grace ({grace})"
    )]
    BundleExpired {
        expired: jiff::Timestamp,
        ago: String,
        grace: String,
    },
    #[error("release {name}: {what}")]
    BadRelease { name: String, what: String },
    #[error("trust state: {0}")]
    Trust(#[from] TrustError),
}

/// Where the repository comes from.
#[derive(Debug)]
pub enum Source<'a> {
    /// The static host: base URL (with `metadata/` and `targets/` under it).
    Remote {
        base: &'a http::Uri,
        tls: Option<&'a Tls>,
        /// Longest gap (connection, head, next bytes): `sync.timeout`.
        timeout: Duration,
        /// Longest one metadata file may take, whole: `sync.metadata_timeout`.
        metadata_timeout: Duration,
    },
    /// A copied bundle directory, accepted up to `grace` after its metadata expired.
    Bundle { dir: &'a Path, grace: Duration },
}

impl<'a> Source<'a> {
    /// The release repository at `base`, with the configured time limits.
    pub fn remote(
        base: &'a http::Uri,
        tls: Option<&'a Tls>,
        sync: &crate::config::SyncConfig,
    ) -> Source<'a> {
        Source::Remote {
            base,
            tls,
            timeout: sync.timeout,
            metadata_timeout: sync.metadata_timeout,
        }
    }
}

/// A loaded, verified repository and where its targets are.
#[derive(Debug)]
pub struct Loaded {
    pub repo: Repository,
    /// URL (remote) or directory (bundle) of the targets.
    pub targets_base: String,
}

fn dir_url(dir: &Path) -> Result<url::Url, MetadataError> {
    let abs = std::path::absolute(dir).map_err(|source| MetadataError::State {
        path: dir.to_path_buf(),
        source,
    })?;
    url::Url::from_directory_path(&abs).map_err(|()| MetadataError::Url(abs.display().to_string()))
}

/// Loads and verifies the repository. `state` is the agent's sync state directory: the
/// trust state (`trusted/`, with tough's scratch datastore `tuf/`) and the metadata
/// cache (`metadata-cache/`) live there.
pub async fn load(
    source: &Source<'_>,
    trusted_root: &Path,
    state: &Path,
) -> Result<Loaded, MetadataError> {
    let datastore = state.join("tuf");
    let cache = state.join("metadata-cache");
    std::fs::create_dir_all(&cache).map_err(|source| MetadataError::State {
        path: cache.clone(),
        source,
    })?;
    // The newest root this site verified, else the one installed with the agent.
    let trust = TrustStore::new(state);
    let root = match trust.prepare(&datastore)? {
        Some(root) => root,
        None => std::fs::read(trusted_root).map_err(|source| MetadataError::TrustedRoot {
            path: trusted_root.to_path_buf(),
            source,
        })?,
    };
    let (loader_meta, loader_targets, targets_base) = match source {
        Source::Remote { base, .. } => {
            let b = base.to_string();
            let b = if b.ends_with('/') { b } else { format!("{b}/") };
            let parse = |s: String| url::Url::parse(&s).map_err(|_| MetadataError::Url(s));
            (
                parse(format!("{b}metadata/"))?,
                parse(format!("{b}targets/"))?,
                format!("{b}targets/"),
            )
        }
        Source::Bundle { dir, .. } => (
            dir_url(&dir.join("metadata"))?,
            dir_url(&dir.join("targets"))?,
            dir.join("targets").display().to_string(),
        ),
    };
    let loader = RepositoryLoader::new(&root, loader_meta, loader_targets)
        .datastore(&datastore)
        .limits(LIMITS);
    let result = match source {
        Source::Remote {
            tls,
            timeout,
            metadata_timeout,
            ..
        } => {
            loader
                .transport(HttpsTransport::new(
                    tls.cloned(),
                    *timeout,
                    *metadata_timeout,
                    Some(cache.clone()),
                ))
                .load()
                .await
        }
        Source::Bundle { grace, .. } => {
            let enforcement = if grace.is_zero() {
                ExpirationEnforcement::Safe
            } else {
                // Expiry is checked below, against the grace; every other check stays.
                ExpirationEnforcement::Unsafe
            };
            loader
                .transport(BundleTransport)
                .expiration_enforcement(enforcement)
                .load()
                .await
        }
    };
    let repo = match result {
        Ok(r) => r,
        Err(e) => {
            // A damaged cache entry would fail every load: start it afresh.
            let _ = std::fs::remove_dir_all(&cache);
            return Err(MetadataError::Rejected(chain(&e)));
        }
    };
    let root_version = repo.root().signed.version.get();
    trust.check(root_version)?;
    if let Source::Bundle { grace, .. } = source {
        check_grace(&repo, *grace)?;
    }
    trust.commit(&datastore, root_version)?;
    Ok(Loaded { repo, targets_base })
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

fn check_grace(repo: &Repository, grace: Duration) -> Result<(), MetadataError> {
    let earliest = coffer_release::publish::earliest_expiry(repo);
    let now = jiff::Timestamp::now();
    if earliest >= now {
        return Ok(());
    }
    let ago = now.duration_since(earliest);
    let ago_std = Duration::try_from(ago).unwrap_or(Duration::MAX);
    if ago_std > grace {
        return Err(MetadataError::BundleExpired {
            expired: earliest,
            ago: humantime::format_duration(Duration::from_secs(ago_std.as_secs())).to_string(),
            grace: humantime::format_duration(grace).to_string(),
        });
    }
    tracing::warn!(
        expired = %earliest,
        "the bundle's metadata has expired; accepted within sync.bundle_expiry_grace"
    );
    Ok(())
}

/// One file of a release, with what TUF signed about it.
#[derive(Debug, Clone)]
pub struct ReleaseFile {
    /// Relative to the version directory.
    pub path: String,
    pub len: u64,
    pub sha256: [u8; 32],
    /// Relative to the targets base (consistent-snapshot name).
    pub location: String,
}

/// A release with its files, as the verified targets metadata lists it.
#[derive(Debug, Clone)]
pub struct Release {
    pub info: ReleaseInfo,
    pub files: Vec<ReleaseFile>,
}

/// Every release in the verified targets metadata. A manifest target whose release
/// information is malformed or whose files are not all signed targets is an error: the
/// admin's tool never writes one.
pub fn releases(repo: &Repository) -> Result<Vec<Release>, MetadataError> {
    // Only the top-level targets role releases: whatever a delegated role signs (none
    // is delegated today) never becomes a release.
    let top = &repo.targets().signed.targets;
    let by_name: std::collections::HashMap<&str, &tough::schema::Target> =
        top.iter().map(|(n, t)| (n.raw(), t)).collect();
    let mut out = Vec::new();
    for (name, target) in top {
        let Some(custom) = target.custom.get(CUSTOM_KEY) else {
            continue;
        };
        let bad = |what: String| MetadataError::BadRelease {
            name: name.raw().to_string(),
            what,
        };
        let info: ReleaseInfo = serde_json::from_value(custom.clone())
            .map_err(|e| bad(format!("release information: {e}")))?;
        if name.raw() != target_name(&info.model, &info.version, "manifest.toml") {
            return Err(bad(format!(
                "carries the release of {}@{}",
                info.model, info.version
            )));
        }
        let mut files = Vec::new();
        for path in &info.files {
            let tname = target_name(&info.model, &info.version, path);
            let t = by_name
                .get(tname.as_str())
                .copied()
                .ok_or_else(|| bad(format!("{tname} is not a signed target")))?;
            let sha: [u8; 32] = (t.hashes.sha256.as_ref() as &[u8])
                .try_into()
                .map_err(|_| bad(format!("{tname} has no sha256 of 32 bytes")))?;
            files.push(ReleaseFile {
                path: path.clone(),
                len: t.length,
                sha256: sha,
                location: target_file(&hex::encode(sha), &tname),
            });
        }
        out.push(Release { info, files });
    }
    out.sort_by_key(|r| r.info.seq);
    Ok(out)
}
