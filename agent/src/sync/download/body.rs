//! Moving an answer's body onto disk: [`pump`] reads it frame by frame, bounded by the
//! expected length and watched for stalls and a too-slow average, paced by [`Pacer`];
//! [`Writer`] appends and hashes on a blocking thread.

use std::fs::File;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{DownloadError, Expected, Limits, io_error, too_long};

/// Appends to the partial file and hashes on a blocking thread, fed through a bounded
/// channel; [`Writer::finish`] fsyncs and hands back the hasher.
pub(super) struct Writer {
    tx: mpsc::Sender<Bytes>,
    task: tokio::task::JoinHandle<std::io::Result<Sha256>>,
}

impl Writer {
    pub(super) fn start(file: File, hasher: Sha256) -> Writer {
        let (tx, mut rx) = mpsc::channel::<Bytes>(8);
        let task = tokio::task::spawn_blocking(move || {
            let (mut file, mut hasher) = (file, hasher);
            while let Some(chunk) = rx.blocking_recv() {
                file.write_all(&chunk)?;
                hasher.update(&chunk);
            }
            file.sync_all()?;
            Ok(hasher)
        });
        Writer { tx, task }
    }

    /// Whether the chunk was taken; `false` when the writer stopped on an error, which
    /// [`Writer::finish`] returns.
    async fn write(&self, chunk: Bytes) -> bool {
        self.tx.send(chunk).await.is_ok()
    }

    pub(super) async fn finish(self, path: &Path) -> Result<Sha256, DownloadError> {
        drop(self.tx);
        self.task
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r)
            .map_err(io_error(path))
    }
}

/// Moves the body into the writer, paced and bounded by `expect.len`; returns the body
/// bytes received, which complete the file.
pub(super) async fn pump(
    body: &mut Incoming,
    writer: &Writer,
    from: u64,
    expect: &Expected,
    limits: &Limits,
    url: &str,
) -> Result<u64, DownloadError> {
    let mut pacer = limits.rate_bytes_per_s.map(Pacer::new);
    let mut received = 0u64;
    let wanted = expect.len.saturating_sub(from);
    let allowed = limits.allowance(wanted);
    let deadline = allowed.map(|a| Instant::now() + a);
    let too_slow = |received| DownloadError::TooSlow {
        url: url.to_string(),
        received,
        wanted,
        allowed: allowed.unwrap_or_default(),
        min_rate: limits.min_rate_bytes_per_s.unwrap_or_default(),
    };
    loop {
        let gap = Instant::now() + limits.timeout;
        let wait_until = deadline.map_or(gap, |d| d.min(gap));
        let frame = match tokio::time::timeout_at(wait_until, body.frame()).await {
            Ok(frame) => frame,
            Err(_) if wait_until < gap => return Err(too_slow(received)),
            Err(_) => {
                return Err(DownloadError::Stalled {
                    url: url.to_string(),
                    timeout: limits.timeout,
                });
            }
        };
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|source| DownloadError::Transfer {
            url: url.to_string(),
            received,
            source,
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let n = data.len() as u64;
        if from + received + n > expect.len {
            return Err(too_long(url, expect));
        }
        if let Some(pacer) = pacer.as_mut() {
            pacer.take(n).await;
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            // The bytes in hand are kept for the resume.
            let _ = writer.write(data).await;
            return Err(too_slow(received + n));
        }
        if !writer.write(data).await {
            return Err(DownloadError::Short {
                from: url.to_string(),
                got: from + received,
                expected: expect.len,
            });
        }
        received += n;
    }
    if from + received < expect.len {
        return Err(DownloadError::Short {
            from: url.to_string(),
            got: from + received,
            expected: expect.len,
        });
    }
    Ok(received)
}

/// A token bucket that starts empty and holds at most an eighth of a second of
/// bandwidth; a chunk larger than what is in it runs into debt and sleeps it off.
struct Pacer {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        let rate = rate.max(1) as f64;
        Pacer {
            rate,
            burst: (rate / 8.0).max(16.0 * 1024.0),
            tokens: 0.0,
            last: Instant::now(),
        }
    }

    async fn take(&mut self, n: u64) {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst) - n as f64;
        self.last = now;
        if self.tokens < 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(-self.tokens / self.rate)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::time::Instant;

    use super::super::test_server::{Behaviour, MIB, blob, expected, paths, serve};
    use super::super::{DownloadError, Limits, fetch};

    #[tokio::test]
    async fn a_drip_below_the_minimum_rate_is_cut_off_and_kept_for_the_resume() {
        let data = blob(16 * 1024);
        let b = Arc::new(Behaviour {
            drip: Some(Duration::from_millis(100)),
            ..Behaviour::default()
        });
        let url = serve(Arc::clone(&data), b).await;
        let p = paths();
        let limits = Limits {
            rate_bytes_per_s: None,
            timeout: Duration::from_secs(1),
            min_rate_bytes_per_s: Some(16 * 1024),
        };
        let started = Instant::now();
        let err = fetch(&url, None, &p.partial, &p.dest, &expected(&data), &limits)
            .await
            .unwrap_err();
        let took = started.elapsed();
        // Every gap is 100 ms, far inside the 1 s timeout: only the whole-transfer
        // allowance (1 s + 16 KiB at 16 KiB/s) ends it.
        let DownloadError::TooSlow {
            received, allowed, ..
        } = err
        else {
            panic!("{err}");
        };
        assert_eq!(allowed, Duration::from_secs(2));
        assert!(took >= allowed && took < Duration::from_secs(4), "{took:?}");
        assert!(received > 0 && received < 16 * 1024, "{received}");
        assert_eq!(std::fs::metadata(&p.partial).unwrap().len(), received);
        assert!(!p.dest.exists());
    }

    #[tokio::test]
    async fn the_rate_limit_paces_the_transfer() {
        let data = blob(256 * 1024);
        let url = serve(Arc::clone(&data), Arc::default()).await;
        let p = paths();
        let limits = Limits {
            rate_bytes_per_s: Some(MIB as u64),
            timeout: Duration::from_secs(10),
            min_rate_bytes_per_s: None,
        };
        let started = std::time::Instant::now();
        fetch(&url, None, &p.partial, &p.dest, &expected(&data), &limits)
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert_eq!(std::fs::read(&p.dest).unwrap(), *data);
    }
}
