//! Getting one release file onto this host, checked against its expected length and
//! sha256: resumable HTTP(S) downloads ([`fetch`]) and copies from an air-gapped bundle
//! ([`copy_verified`]). Bytes land in a partial file; only a file with the expected
//! length and digest is renamed to its destination. A broken download leaves the
//! partial file behind, and the next call resumes it with a `Range` request.
//!
//! This module owns the public types ([`Expected`], [`Limits`], [`Fetched`],
//! [`DownloadError`]) and the file helpers both paths share; `resume` holds the download
//! and its partial file, `request` the ranged request and how to read its answer, `body`
//! the paced, bounded copy of the body onto disk, and `copy` the bundle copy.

mod body;
mod copy;
mod partial;
mod request;
mod resume;
#[cfg(test)]
mod test_server;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::StatusCode;

use crate::transport::HttpError;

pub use self::copy::copy_verified;
pub use self::resume::fetch;

/// Buffer size for hashing and copying local files.
const CHUNK: usize = 1 << 20;

/// What the file must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    pub len: u64,
    pub sha256: [u8; 32],
}

/// How a download may use the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bandwidth cap; `None` for none.
    pub rate_bytes_per_s: Option<u64>,
    /// The longest wait for the answer's head or for the next bytes of its body.
    pub timeout: Duration,
    /// The slowest average rate a transfer may keep: it gets `timeout` plus the bytes
    /// it still needs at this rate, then stops as [`DownloadError::TooSlow`] (the
    /// partial file stays). `None`: no minimum.
    pub min_rate_bytes_per_s: Option<u64>,
}

impl Limits {
    /// How long a transfer of `remaining` bytes may take, whole.
    pub fn allowance(&self, remaining: u64) -> Option<Duration> {
        let rate = self.min_rate_bytes_per_s?.max(1);
        Some(self.timeout + Duration::from_secs_f64(remaining as f64 / rate as f64))
    }
}

/// What a successful [`fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Body bytes received by this call.
    pub bytes_transferred: u64,
    /// Bytes already in the partial file that were kept (0 when it started afresh).
    pub resumed_from: u64,
}

/// Why a file could not be fetched or copied. After `Http`, `Status`, `Transfer`,
/// `Stalled`, `TooSlow` and `Short` the partial file stays for the next attempt; after `TooLong`
/// and `HashMismatch` it is gone.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("GET {url}: {source}")]
    Http { url: String, source: HttpError },
    #[error("GET {url} answered {status}")]
    Status { url: String, status: StatusCode },
    #[error("GET {url}: the transfer broke off after {received} bytes: {source}")]
    Transfer {
        url: String,
        received: u64,
        source: hyper::Error,
    },
    #[error("GET {url}: nothing arrived for {timeout:?}")]
    Stalled { url: String, timeout: Duration },
    #[error(
        "GET {url}: {received} of {wanted} bytes in {allowed:?}, below the minimum average \
         rate of {min_rate} bytes/s (sync.min_rate); the rest resumes next poll"
    )]
    TooSlow {
        url: String,
        received: u64,
        wanted: u64,
        allowed: Duration,
        min_rate: u64,
    },
    #[error("{from}: ended after {got} of {expected} bytes")]
    Short {
        from: String,
        got: u64,
        expected: u64,
    },
    #[error("{from}: more than the expected {expected} bytes")]
    TooLong { from: String, expected: u64 },
    #[error("{from}: sha256 is {actual}, expected {expected}")]
    HashMismatch {
        from: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs file work on a blocking thread; its I/O errors name `path`.
async fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, DownloadError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(io_error(path))
}

fn too_long(from: &str, expect: &Expected) -> DownloadError {
    DownloadError::TooLong {
        from: from.to_string(),
        expected: expect.len,
    }
}

/// Renames and makes the rename durable (fsync of the directory).
fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    match to.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}
