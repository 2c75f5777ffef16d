//! How tough gets the release metadata: over the agent's own hyper + rustls client from
//! the static HTTPS host ([`HttpsTransport`]), or from a copied bundle directory
//! ([`BundleTransport`]). Both bound every file by its role's size limit ([`LIMITS`],
//! the same limits tough is given), and the host by time: no gap between bytes longer
//! than `sync.timeout`, no file longer than `sync.metadata_timeout` in all. A bundle's
//! files are opened only when they are regular files.
//!
//! tough takes any error from `fetch` for `N+1.root.json` as "there is no newer root",
//! so only a missing file (404, or 403 as S3-style hosts answer for one) is reported
//! from `fetch`; every other failure (a stall, a deadline, too many bytes, another
//! status) arrives in the returned stream, where tough reports it as the error it is.
//!
//! Versioned metadata (`N.root.json`, `N.snapshot.json`, `N.targets.json`) never
//! changes under consistent snapshots, so the HTTPS transport keeps each one it fetched
//! and a poll that finds no new release costs one `timestamp.json` and one
//! `N+1.root.json` (404) request.

use std::io::Read as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tough::{Limits, Transport, TransportError, TransportErrorKind, TransportStream};

use crate::transport::{self, Tls};

/// Whether a refusal's text says the host was too slow (a gap past `sync.timeout`, a
/// file past `sync.metadata_timeout`): the transports' own wording.
pub fn is_stall(why: &str) -> bool {
    why.contains("(sync.timeout)") || why.contains("(sync.metadata_timeout)")
}

/// The size limits of each role's metadata: tough's defaults, given to tough and
/// enforced by the transports as bytes arrive.
pub const LIMITS: Limits = Limits {
    max_root_size: 1 << 20,
    max_targets_size: 10 << 20,
    max_timestamp_size: 1 << 20,
    max_snapshot_size: 1 << 20,
    max_root_updates: 1024,
};

/// The most bytes the metadata file `name` may have, by its role.
fn cap(name: &str) -> u64 {
    let role = name.rsplit('.').nth(1).unwrap_or_default();
    match role {
        "root" => LIMITS.max_root_size,
        "timestamp" => LIMITS.max_timestamp_size,
        "snapshot" => LIMITS.max_snapshot_size,
        _ => LIMITS.max_targets_size,
    }
}

fn file_name(url: &url::Url) -> &str {
    url.path_segments()
        .and_then(|mut s| s.next_back())
        .unwrap_or_default()
}

/// Whether a metadata file name is immutable under consistent snapshots.
fn immutable(file: &str) -> bool {
    file.split_once('.').is_some_and(|(v, rest)| {
        !v.is_empty()
            && v.bytes().all(|b| b.is_ascii_digit())
            && matches!(rest, "root.json" | "snapshot.json" | "targets.json")
    })
}

/// A stream that yields `result` once: what tough reads a fetched file from.
fn once(result: Result<Bytes, TransportError>) -> TransportStream {
    Box::pin(futures_util::stream::once(async move { result }))
}

/// tough's transport over the agent's HTTP client, with the versioned-metadata cache.
#[derive(Clone)]
pub struct HttpsTransport {
    tls: Option<Tls>,
    /// Longest gap: for the connection, the answer's head, the next bytes.
    timeout: Duration,
    /// Longest one file may take, whole.
    deadline: Duration,
    cache: Option<PathBuf>,
}

impl std::fmt::Debug for HttpsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpsTransport")
    }
}

/// How a GET of one metadata file ended.
enum Got {
    Body(Bytes),
    Missing,
}

impl HttpsTransport {
    pub fn new(
        tls: Option<Tls>,
        timeout: Duration,
        deadline: Duration,
        cache: Option<PathBuf>,
    ) -> HttpsTransport {
        HttpsTransport {
            tls,
            timeout,
            deadline,
            cache,
        }
    }

    fn cached(&self, url: &url::Url) -> Option<PathBuf> {
        let file = file_name(url);
        immutable(file).then(|| self.cache.as_ref().map(|c| c.join(file)))?
    }

    async fn get(&self, url: &url::Url) -> Result<Got, String> {
        let uri: http::Uri = url.as_str().parse().map_err(|e| format!("{e}"))?;
        let reply = transport::get_streaming(&uri, self.tls.as_ref(), &[], self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        if matches!(
            reply.status,
            http::StatusCode::NOT_FOUND | http::StatusCode::FORBIDDEN
        ) {
            return Ok(Got::Missing);
        }
        if reply.status != http::StatusCode::OK {
            return Err(format!("answered {}", reply.status));
        }
        let limit = cap(file_name(url));
        let mut body = reply.body;
        let mut out = Vec::new();
        loop {
            let frame = tokio::time::timeout(self.timeout, body.frame())
                .await
                .map_err(|_| format!("no data for {:?} (sync.timeout)", self.timeout))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|e| e.to_string())?;
            if let Some(data) = frame.data_ref() {
                if (out.len() + data.len()) as u64 > limit {
                    return Err(format!("larger than {limit} bytes, its role's limit"));
                }
                out.extend_from_slice(data);
            }
        }
        Ok(Got::Body(Bytes::from(out)))
    }
}

#[tough::async_trait]
impl Transport for HttpsTransport {
    async fn fetch(&self, url: url::Url) -> Result<TransportStream, TransportError> {
        let cache = self.cached(&url);
        if let Some(hit) = cache.as_ref().and_then(|p| std::fs::read(p).ok()) {
            return Ok(once(Ok(Bytes::from(hit))));
        }
        let got = match tokio::time::timeout(self.deadline, self.get(&url)).await {
            Ok(got) => got,
            Err(_) => Err(format!(
                "not complete after {:?} (sync.metadata_timeout)",
                self.deadline
            )),
        };
        match got {
            Ok(Got::Body(fresh)) => {
                if let Some(path) = &cache {
                    // Best effort: a failed cache write only costs a fetch next time.
                    let tmp = path.with_extension("tmp");
                    if std::fs::write(&tmp, &fresh).is_ok() {
                        let _ = std::fs::rename(&tmp, path);
                    }
                }
                Ok(once(Ok(fresh)))
            }
            Ok(Got::Missing) => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
            Err(why) => Ok(once(Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url,
                why,
            )))),
        }
    }
}

/// tough's transport for a copied bundle: `file://` URLs, regular files only, each
/// within its role's size limit.
#[derive(Debug, Clone, Copy)]
pub struct BundleTransport;

fn read_bundle_file(url: &url::Url) -> Result<Option<Bytes>, String> {
    let path = url
        .to_file_path()
        .map_err(|()| format!("{url} is not a local file"))?;
    let file = match super::regular::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let limit = cap(file_name(url));
    let mut out = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if out.len() as u64 > limit {
        return Err(format!(
            "{} is larger than {limit} bytes, its role's limit",
            path.display()
        ));
    }
    Ok(Some(Bytes::from(out)))
}

#[tough::async_trait]
impl Transport for BundleTransport {
    async fn fetch(&self, url: url::Url) -> Result<TransportStream, TransportError> {
        if url.scheme() != "file" {
            return Err(TransportError::new(
                TransportErrorKind::UnsupportedUrlScheme,
                url,
            ));
        }
        let read_url = url.clone();
        let read = tokio::task::spawn_blocking(move || read_bundle_file(&read_url))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match read {
            Ok(Some(bytes)) => Ok(once(Ok(bytes))),
            Ok(None) => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
            Err(why) => Ok(once(Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url,
                why,
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn each_role_has_its_size_limit() {
        assert_eq!(cap("2.root.json"), 1 << 20);
        assert_eq!(cap("root.json"), 1 << 20);
        assert_eq!(cap("timestamp.json"), 1 << 20);
        assert_eq!(cap("4.snapshot.json"), 1 << 20);
        assert_eq!(cap("4.targets.json"), 10 << 20);
    }

    #[tokio::test]
    async fn a_fifo_in_a_bundle_is_refused_at_once() {
        use futures_util::StreamExt as _;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("timestamp.json");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let url = url::Url::from_file_path(&fifo).unwrap();
        let mut stream = tokio::time::timeout(Duration::from_secs(5), BundleTransport.fetch(url))
            .await
            .expect("does not block")
            .unwrap();
        let err = stream.next().await.unwrap().unwrap_err();
        assert!(format!("{err:?}").contains("FIFO"), "{err:?}");
    }
}
