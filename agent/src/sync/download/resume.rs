//! The resumable download ([`fetch`]): from the partial file and what it already holds
//! (`partial`), the request for the rest, then the final digest check and durable rename.

use std::path::Path;

use http::Uri;
use sha2::{Digest as _, Sha256};

use super::body::{Writer, pump};
use super::partial::{Partial, open_partial};
use super::request::{header, request};
use super::{
    DownloadError, Expected, Fetched, Limits, blocking, io_error, rename_durably, too_long,
};
use crate::transport::Tls;

/// Downloads `url` to `dest` by way of `partial` (same file system), resuming what an
/// earlier call left in `partial`. See the module documentation.
pub async fn fetch(
    url: &Uri,
    tls: Option<&Tls>,
    partial: &Path,
    dest: &Path,
    expect: &Expected,
    limits: &Limits,
) -> Result<Fetched, DownloadError> {
    let name = url.to_string();
    let (len, owned) = (expect.len, partial.to_path_buf());
    let mut kept = blocking(partial, move || open_partial(&owned, len)).await?;
    if kept.from == expect.len {
        if <[u8; 32]>::from(kept.hasher.clone().finalize()) == expect.sha256 {
            // What an earlier call left is the whole file: nothing to fetch.
            finish(partial, dest, kept.hasher, expect, &name).await?;
            return Ok(Fetched {
                bytes_transferred: 0,
                resumed_from: kept.from,
            });
        }
        kept = kept.start_over(partial).await?;
    }
    let (Partial { file, hasher, from }, mut answer) =
        request(url, tls, partial, kept, limits).await?;
    let announced = header(&answer.headers, "content-length").and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| from.saturating_add(n) > expect.len) {
        drop(file);
        remove(partial).await?;
        return Err(too_long(&name, expect));
    }
    let writer = Writer::start(file, hasher);
    let pumped = pump(&mut answer.body, &writer, from, expect, limits, &name).await;
    let hasher = writer.finish(partial).await;
    match pumped {
        Ok(received) => {
            finish(partial, dest, hasher?, expect, &name).await?;
            Ok(Fetched {
                bytes_transferred: received,
                resumed_from: from,
            })
        }
        Err(e @ DownloadError::TooLong { .. }) => {
            remove(partial).await?;
            Err(e)
        }
        // A failed write explains a closed channel better than the channel does.
        Err(e) => Err(hasher.err().unwrap_or(e)),
    }
}

async fn remove(path: &Path) -> Result<(), DownloadError> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_error(path)(e)),
        _ => Ok(()),
    }
}

/// Compares the digest of the complete partial file and renames it to `dest`; a
/// mismatch deletes it.
async fn finish(
    partial: &Path,
    dest: &Path,
    hasher: Sha256,
    expect: &Expected,
    from: &str,
) -> Result<(), DownloadError> {
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != expect.sha256 {
        remove(partial).await?;
        return Err(DownloadError::HashMismatch {
            from: from.to_string(),
            expected: hex::encode(expect.sha256),
            actual: hex::encode(actual),
        });
    }
    let (src, to) = (partial.to_path_buf(), dest.to_path_buf());
    blocking(dest, move || rename_durably(&src, &to)).await
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use sha2::{Digest as _, Sha256};

    use super::super::test_server::{Behaviour, MIB, blob, expected, fetch_to, paths, serve};
    use super::super::{DownloadError, Fetched};

    #[tokio::test]
    async fn a_full_download_verifies() {
        let data = blob(MIB);
        let url = serve(Arc::clone(&data), Arc::default()).await;
        let p = paths();
        let got = fetch_to(&url, &p, &expected(&data)).await.unwrap();
        assert_eq!(
            got,
            Fetched {
                bytes_transferred: MIB as u64,
                resumed_from: 0
            }
        );
        assert_eq!(std::fs::read(&p.dest).unwrap(), *data);
        assert!(!p.partial.exists());
    }

    #[tokio::test]
    async fn a_cut_download_resumes_where_it_stopped() {
        let data = blob(MIB);
        let b = Arc::new(Behaviour {
            cut_after: Mutex::new(Some(300_000)),
            ..Behaviour::default()
        });
        let url = serve(Arc::clone(&data), Arc::clone(&b)).await;
        let p = paths();
        let err = fetch_to(&url, &p, &expected(&data)).await.unwrap_err();
        assert!(matches!(err, DownloadError::Transfer { .. }), "{err}");
        assert!(!p.dest.exists());
        let kept = std::fs::metadata(&p.partial).unwrap().len();
        assert!(kept > 0 && kept <= 300_000, "{kept}");
        assert_eq!(std::fs::read(&p.partial).unwrap(), data[..kept as usize]);

        let got = fetch_to(&url, &p, &expected(&data)).await.unwrap();
        assert_eq!(got.resumed_from, kept);
        assert_eq!(got.bytes_transferred, MIB as u64 - kept);
        assert_eq!(std::fs::read(&p.dest).unwrap(), *data);
        assert!(!p.partial.exists());
        let ranges = b.ranges.lock().unwrap().clone();
        assert_eq!(ranges, vec![None, Some(format!("bytes={kept}-"))]);
    }

    #[tokio::test]
    async fn a_server_that_ignores_range_still_gives_the_right_file() {
        let data = blob(MIB);
        let b = Arc::new(Behaviour {
            ignore_range: true,
            ..Behaviour::default()
        });
        let url = serve(Arc::clone(&data), b).await;
        let p = paths();
        std::fs::write(&p.partial, &data[..123_456]).unwrap();
        let got = fetch_to(&url, &p, &expected(&data)).await.unwrap();
        assert_eq!(got.resumed_from, 0);
        assert_eq!(got.bytes_transferred, MIB as u64);
        assert_eq!(std::fs::read(&p.dest).unwrap(), *data);
    }

    #[tokio::test]
    async fn a_range_from_elsewhere_starts_over() {
        let data = blob(MIB);
        let b = Arc::new(Behaviour {
            wrong_range: true,
            ..Behaviour::default()
        });
        let url = serve(Arc::clone(&data), Arc::clone(&b)).await;
        let p = paths();
        std::fs::write(&p.partial, &data[..1000]).unwrap();
        let got = fetch_to(&url, &p, &expected(&data)).await.unwrap();
        assert_eq!(got.resumed_from, 0);
        assert_eq!(std::fs::read(&p.dest).unwrap(), *data);
        let ranges = b.ranges.lock().unwrap().clone();
        assert_eq!(ranges, vec![Some("bytes=1000-".into()), None]);
    }

    #[tokio::test]
    async fn a_complete_partial_needs_no_request() {
        let data = blob(64 * 1024);
        let b = Arc::new(Behaviour::default());
        let url = serve(Arc::clone(&data), Arc::clone(&b)).await;
        let p = paths();
        std::fs::write(&p.partial, &*data).unwrap();
        let got = fetch_to(&url, &p, &expected(&data)).await.unwrap();
        assert_eq!(got.bytes_transferred, 0);
        assert_eq!(std::fs::read(&p.dest).unwrap(), *data);
        assert!(b.ranges.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_wrong_digest_leaves_nothing() {
        let data = blob(MIB);
        let url = serve(Arc::clone(&data), Arc::default()).await;
        let p = paths();
        let mut expect = expected(&data);
        expect.sha256[0] ^= 1;
        let err = fetch_to(&url, &p, &expect).await.unwrap_err();
        match err {
            DownloadError::HashMismatch {
                expected, actual, ..
            } => {
                assert_eq!(expected, hex::encode(expect.sha256));
                assert_eq!(actual, hex::encode(Sha256::digest(&*data)));
            }
            other => panic!("{other}"),
        }
        assert!(!p.dest.exists());
        assert!(!p.partial.exists());
    }

    #[tokio::test]
    async fn more_bytes_than_expected_are_refused() {
        let data = blob(MIB);
        let mut expect = expected(&data[..MIB - 10]);
        // Announced by Content-Length: refused before the body.
        let url = serve(Arc::clone(&data), Arc::default()).await;
        let p = paths();
        let err = fetch_to(&url, &p, &expect).await.unwrap_err();
        assert!(matches!(err, DownloadError::TooLong { .. }), "{err}");
        assert!(!p.partial.exists() && !p.dest.exists());
        // Not announced: refused as the bytes arrive.
        let b = Arc::new(Behaviour {
            no_length: true,
            ..Behaviour::default()
        });
        let url = serve(Arc::clone(&data), b).await;
        expect.len = 500_000;
        let err = fetch_to(&url, &p, &expect).await.unwrap_err();
        assert!(matches!(err, DownloadError::TooLong { .. }), "{err}");
        assert!(!p.partial.exists() && !p.dest.exists());
    }

    #[tokio::test]
    async fn a_short_body_without_length_is_kept_for_later() {
        let data = blob(MIB);
        let b = Arc::new(Behaviour {
            no_length: true,
            cut_after: Mutex::new(Some(200_000)),
            ..Behaviour::default()
        });
        let url = serve(Arc::clone(&data), b).await;
        let p = paths();
        let err = fetch_to(&url, &p, &expected(&data)).await.unwrap_err();
        assert!(
            matches!(err, DownloadError::Short { got: 200_000, .. }),
            "{err}"
        );
        assert_eq!(std::fs::metadata(&p.partial).unwrap().len(), 200_000);
        let got = fetch_to(&url, &p, &expected(&data)).await.unwrap();
        assert_eq!(got.resumed_from, 200_000);
        assert_eq!(std::fs::read(&p.dest).unwrap(), *data);
    }
}
