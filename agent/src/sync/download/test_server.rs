//! Test helpers for the download's unit tests: a hand-written HTTP/1.1 server that can
//! cut connections, ignore or misreport ranges, leave out lengths and drip its bytes,
//! and the blobs, expectations and paths the tests fetch with.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Uri;
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::{DownloadError, Expected, Fetched, Limits, fetch};

pub(super) const MIB: usize = 1 << 20;

pub(super) fn blob(len: usize) -> Arc<Vec<u8>> {
    Arc::new(
        (0..len as u64)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect(),
    )
}

pub(super) fn expected(data: &[u8]) -> Expected {
    Expected {
        len: data.len() as u64,
        sha256: Sha256::digest(data).into(),
    }
}

/// How the test server misbehaves.
#[derive(Debug, Default)]
pub(super) struct Behaviour {
    /// Answer every request with 200 and the whole blob.
    pub(super) ignore_range: bool,
    /// Answer ranged requests with a `Content-Range` from 0.
    pub(super) wrong_range: bool,
    /// Leave out `Content-Length` (the body ends when the connection closes).
    pub(super) no_length: bool,
    /// Close the first answer's connection after this many body bytes.
    pub(super) cut_after: Mutex<Option<usize>>,
    /// Send the body 100 bytes at a time with this pause between: a host that keeps
    /// each gap short and the whole transfer endless.
    pub(super) drip: Option<Duration>,
    /// The `Range` header of each request.
    pub(super) ranges: Mutex<Vec<Option<String>>>,
}

/// A one-request-per-connection HTTP/1.1 server for `data` on 127.0.0.1:0, written
/// by hand so that it can cut connections and lie about lengths.
pub(super) async fn serve(data: Arc<Vec<u8>>, behaviour: Arc<Behaviour>) -> Uri {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(answer(stream, Arc::clone(&data), Arc::clone(&behaviour)));
        }
    });
    format!("http://{addr}/models/blob.bin").parse().unwrap()
}

async fn answer(mut stream: tokio::net::TcpStream, data: Arc<Vec<u8>>, b: Arc<Behaviour>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let range = head
        .lines()
        .find_map(|l| l.strip_prefix("range:"))
        .map(|v| v.trim().to_string());
    b.ranges.lock().unwrap().push(range.clone());
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok())
        .filter(|_| !b.ignore_range);
    let total = data.len();
    let (status, from, extra) = match start {
        Some(s) if s >= total => {
            let h = format!("content-range: bytes */{total}\r\n");
            ("416 Range Not Satisfiable", total, h)
        }
        Some(s) => {
            let shown = if b.wrong_range { 0 } else { s };
            let h = format!("content-range: bytes {shown}-{}/{total}\r\n", total - 1);
            ("206 Partial Content", s, h)
        }
        None => ("200 OK", 0, String::new()),
    };
    let body = &data[from..];
    let length = if b.no_length {
        String::new()
    } else {
        format!("content-length: {}\r\n", body.len())
    };
    let reply = format!("HTTP/1.1 {status}\r\n{length}{extra}connection: close\r\n\r\n");
    if stream.write_all(reply.as_bytes()).await.is_err() {
        return;
    }
    let cut = b.cut_after.lock().unwrap().take();
    let body = &body[..cut.unwrap_or(body.len()).min(body.len())];
    if let Some(pause) = b.drip {
        for piece in body.chunks(100) {
            if stream.write_all(piece).await.is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
        }
    } else {
        let _ = stream.write_all(body).await;
    }
    let _ = stream.shutdown().await;
}

pub(super) fn limits() -> Limits {
    Limits {
        rate_bytes_per_s: None,
        timeout: Duration::from_secs(10),
        min_rate_bytes_per_s: None,
    }
}

pub(super) struct Paths {
    _dir: tempfile::TempDir,
    pub(super) partial: PathBuf,
    pub(super) dest: PathBuf,
}

pub(super) fn paths() -> Paths {
    let dir = tempfile::tempdir().unwrap();
    Paths {
        partial: dir.path().join("blob.bin.partial"),
        dest: dir.path().join("blob.bin"),
        _dir: dir,
    }
}

pub(super) async fn fetch_to(
    url: &Uri,
    p: &Paths,
    expect: &Expected,
) -> Result<Fetched, DownloadError> {
    fetch(url, None, &p.partial, &p.dest, expect, &limits()).await
}
