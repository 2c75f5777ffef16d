//! Loading the fleet's TUF release repository with `tough`: from the static HTTPS host
//! over the agent's own hyper + rustls transport (the configured CA bundle, no system
//! roots), or from a copied bundle directory. tough does every TUF check (the root
//! chain, signatures and thresholds, versions against what this site saw before —
//! kept in the datastore under the state directory —, hashes and lengths of snapshot
//! and targets, and expiry); this module adds the transport, the trusted-root
//! bootstrap, the bundle grace for expired metadata, and reading [`ReleaseInfo`]s.
//!
//! Versioned metadata (`N.root.json`, `N.snapshot.json`, `N.targets.json`) never
//! changes under consistent snapshots, so the transport keeps each one it fetched and
//! a poll that finds no new release costs one `timestamp.json` and one `N+1.root.json`
//! (404) request.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use coffer_models::release::layout::{CUSTOM_KEY, ReleaseInfo, target_file, target_name};
use http_body_util::BodyExt as _;
use tough::{
    ExpirationEnforcement, FilesystemTransport, Repository, RepositoryLoader, Transport,
    TransportError, TransportErrorKind,
};

use crate::transport::{self, Tls};

/// The most bytes one metadata file may have (tough's own limits are lower for most).
const MAX_METADATA: usize = 64 << 20;

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
}

/// tough's transport over the agent's HTTP client, with the versioned-metadata cache.
#[derive(Clone)]
pub struct HttpsTransport {
    tls: Option<Tls>,
    timeout: Duration,
    cache: Option<PathBuf>,
}

impl std::fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpsTransport")
    }
}

/// Whether a metadata file name is immutable under consistent snapshots.
fn immutable(file: &str) -> bool {
    file.split_once('.').is_some_and(|(v, rest)| {
        !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            && matches!(rest, "root.json" | "snapshot.json" | "targets.json")
    })
}

impl HttpsTransport {
    pub fn new(tls: Option<Tls>, timeout: Duration, cache: Option<PathBuf>) -> HttpsTransport {
        HttpsTransport {
            tls,
            timeout,
            cache,
        }
    }

    fn cached(&self, url: &url::Url) -> Option<PathBuf> {
        let file = url.path_segments()?.next_back()?;
        immutable(file).then(|| self.cache.as_ref().map(|c| c.join(file)))?
    }

    async fn get(&self, url: &url::Url) -> Result<Bytes, TransportError> {
        let other = |e: String| TransportError::new_with_cause(TransportErrorKind::Other, url, e);
        let uri: http::Uri = url.as_str().parse().map_err(|e| other(format!("{e}")))?;
        let reply = transport::get_streaming(&uri, self.tls.as_ref(), &[], self.timeout)
            .await
            .map_err(|e| other(e.to_string()))?;
        if reply.status == http::StatusCode::NOT_FOUND {
            return Err(TransportError::new(TransportErrorKind::FileNotFound, url));
        }
        if reply.status != http::StatusCode::OK {
            return Err(other(format!("answered {}", reply.status)));
        }
        let mut body = reply.body;
        let mut out = Vec::new();
        loop {
            let frame = tokio::time::timeout(self.timeout, body.frame())
                .await
                .map_err(|_| other(format!("no data for {:?}", self.timeout)))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| other(e.to_string()))?;
            if let Some(data) = frame.data_ref() {
                if out.len() + data.len() > MAX_METADATA {
                    return Err(other(format!("larger than {MAX_METADATA} bytes")));
                }
                out.extend_from_slice(data);
            }
        }
        Ok(Bytes::from(out))
    }
}

#[tough::async_trait]
impl Transport for HttpsTransport {
    async fn fetch(&self, url: url::Url) -> Result<tough::TransportStream, TransportError> {
        let cache = self.cached(&url);
        let bytes = match cache.as_ref().and_then(|p| std::fs::read(p).ok()) {
            Some(hit) => Bytes::from(hit),
            None => {
                let fresh = self.get(&url).await?;
                if let Some(path) = &cache {
                    // Best effort: a failed cache write only costs a fetch next time.
                    let tmp = path.with_extension("tmp");
                    if std::fs::write(&tmp, &fresh).is_ok() {
                        let _ = std::fs::rename(&tmp, path);
                    }
                }
                fresh
            }
        };
        Ok(Box::pin(futures_util::stream::once(
            async move { Ok(bytes) },
        )))
    }
}

/// Where the repository comes from.
#[derive(Debug)]
pub enum Source<'a> {
    /// The static host: base URL (with `metadata/` and `targets/` under it).
    Remote {
        base: &'a http::Uri,
        tls: Option<&'a Tls>,
        timeout: Duration,
    },
    /// A copied bundle directory, accepted up to `grace` after its metadata expired.
    Bundle { dir: &'a Path, grace: Duration },
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
/// datastore (`tuf/`, newest root and the versions seen) and the metadata cache
/// (`metadata-cache/`) live there.
pub async fn load(
    source: &Source<'_>,
    trusted_root: &Path,
    state: &Path,
) -> Result<Loaded, MetadataError> {
    let datastore = state.join("tuf");
    let cache = state.join("metadata-cache");
    for d in [&datastore, &cache] {
        std::fs::create_dir_all(d).map_err(|source| MetadataError::State {
            path: d.clone(),
            source,
        })?;
    }
    // The newest root this site verified, else the one installed with the agent.
    let known = datastore.join("root.json");
    let root_path = if known.exists() {
        known
    } else {
        trusted_root.to_path_buf()
    };
    let root = std::fs::read(&root_path).map_err(|source| MetadataError::TrustedRoot {
        path: root_path.clone(),
        source,
    })?;
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
    let loader = RepositoryLoader::new(&root, loader_meta, loader_targets).datastore(&datastore);
    let result = match source {
        Source::Remote { tls, timeout, .. } => {
            loader
                .transport(HttpsTransport::new(
                    tls.cloned(),
                    *timeout,
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
                .transport(FilesystemTransport)
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
    if let Source::Bundle { grace, .. } = source {
        check_grace(&repo, *grace)?;
    }
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
    let earliest = coffer_models::release::publish::earliest_expiry(repo);
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
    let by_name: std::collections::HashMap<&str, &tough::schema::Target> =
        repo.all_targets().map(|(n, t)| (n.raw(), t)).collect();
    let mut out = Vec::new();
    for (name, target) in repo.all_targets() {
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

#[cfg(test)]
mod tests {
    use super::immutable;

    #[test]
    fn only_versioned_metadata_is_cached() {
        assert!(immutable("3.targets.json"));
        assert!(immutable("12.root.json"));
        assert!(immutable("7.snapshot.json"));
        assert!(!immutable("timestamp.json"));
        assert!(!immutable("x.targets.json"));
        assert!(!immutable(".targets.json"));
        assert!(!immutable("3.other.json"));
    }
}
