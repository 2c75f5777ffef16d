//! Getting one release file onto this host, checked against its expected length and
//! sha256: resumable HTTP(S) downloads ([`fetch`]) and copies from an air-gapped bundle
//! ([`copy_verified`]). Bytes land in a partial file; only a file with the expected
//! length and digest is renamed to its destination. A broken download leaves the
//! partial file behind, and the next call resumes it with a `Range` request.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http::{StatusCode, Uri};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::transport::{self, HttpError, Tls};

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

/// The partial file, positioned at its end, and the digest of what it holds.
struct Partial {
    file: File,
    hasher: Sha256,
    from: u64,
}

impl Partial {
    async fn start_over(self, path: &Path) -> Result<Partial, DownloadError> {
        let file = self.file;
        Ok(Partial {
            file: blocking(path, move || truncate(file)).await?,
            hasher: Sha256::new(),
            from: 0,
        })
    }
}

/// Asks for what the partial file lacks and settles on an answer whose body continues
/// it: a ranged request, and when the server answers with the whole file or another
/// range, the partial file is emptied (and the whole file asked for, if needed).
async fn request(
    url: &Uri,
    tls: Option<&Tls>,
    path: &Path,
    kept: Partial,
    limits: &Limits,
) -> Result<(Partial, transport::Streaming), DownloadError> {
    let answer = get(url, tls, kept.from, limits).await?;
    let range = header(&answer.headers, "content-range");
    match decide(kept.from, answer.status, range) {
        Decision::Continue => Ok((kept, answer)),
        Decision::Fail => Err(status_error(&url.to_string(), answer.status)),
        Decision::StartOver { ask_again: false } => Ok((kept.start_over(path).await?, answer)),
        Decision::StartOver { ask_again: true } => {
            drop(answer);
            let kept = kept.start_over(path).await?;
            let answer = get(url, tls, 0, limits).await?;
            if answer.status != StatusCode::OK {
                return Err(status_error(&url.to_string(), answer.status));
            }
            Ok((kept, answer))
        }
    }
}

/// How to go on after the answer to a request from byte `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// The body continues the partial file.
    Continue,
    /// Discard the partial file; the body is the whole file unless `ask_again`.
    StartOver {
        ask_again: bool,
    },
    Fail,
}

fn decide(from: u64, status: StatusCode, content_range: Option<&str>) -> Decision {
    match status {
        StatusCode::OK if from == 0 => Decision::Continue,
        StatusCode::OK => Decision::StartOver { ask_again: false },
        StatusCode::PARTIAL_CONTENT | StatusCode::RANGE_NOT_SATISFIABLE if from > 0 => {
            if status == StatusCode::PARTIAL_CONTENT && range_start(content_range) == Some(from) {
                Decision::Continue
            } else {
                Decision::StartOver { ask_again: true }
            }
        }
        _ => Decision::Fail,
    }
}

/// The first byte of a `Content-Range: bytes START-END/TOTAL`.
fn range_start(value: Option<&str>) -> Option<u64> {
    let rest = value?.trim().strip_prefix("bytes")?.trim_start();
    rest.split('-').next()?.trim().parse().ok()
}

fn header<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn status_error(url: &str, status: StatusCode) -> DownloadError {
    DownloadError::Status {
        url: url.to_string(),
        status,
    }
}

fn too_long(from: &str, expect: &Expected) -> DownloadError {
    DownloadError::TooLong {
        from: from.to_string(),
        expected: expect.len,
    }
}

async fn get(
    url: &Uri,
    tls: Option<&Tls>,
    from: u64,
    limits: &Limits,
) -> Result<transport::Streaming, DownloadError> {
    let range = format!("bytes={from}-");
    let headers: &[(&str, &str)] = if from > 0 {
        &[("range", range.as_str())]
    } else {
        &[]
    };
    transport::get_streaming(url, tls, headers, limits.timeout)
        .await
        .map_err(|source| DownloadError::Http {
            url: url.to_string(),
            source,
        })
}

/// Opens (or creates) the partial file and hashes what it holds. A file longer than `len` cannot be a prefix of the
/// expected one and is truncated.
fn open_partial(path: &Path, len: u64) -> std::io::Result<Partial> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let have = file.metadata()?.len();
    if have > len {
        return Ok(Partial {
            file: truncate(file)?,
            hasher: Sha256::new(),
            from: 0,
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut hashed = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        hashed += n as u64;
    }
    file.seek(SeekFrom::End(0))?;
    Ok(Partial {
        file,
        hasher,
        from: hashed,
    })
}

fn truncate(mut file: File) -> std::io::Result<File> {
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
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

/// Renames and makes the rename durable (fsync of the directory).
fn rename_durably(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    match to.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => File::open(".")?.sync_all(),
    }
}

/// Appends to the partial file and hashes on a blocking thread, fed through a bounded
/// channel; [`Writer::finish`] fsyncs and hands back the hasher.
struct Writer {
    tx: mpsc::Sender<Bytes>,
    task: tokio::task::JoinHandle<std::io::Result<Sha256>>,
}

impl Writer {
    fn start(file: File, hasher: Sha256) -> Writer {
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

    async fn finish(self, path: &Path) -> Result<Sha256, DownloadError> {
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
async fn pump(
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

/// Copies a local file (an air-gapped bundle's) to `dest` through a temporary file
/// beside it (`.NAME.copying`), hashing as it goes; only a copy with the expected
/// length and digest is renamed to `dest`. Blocking: call it from a blocking thread.
/// Returns the bytes copied.
pub fn copy_verified(src: &Path, dest: &Path, expect: &Expected) -> Result<u64, DownloadError> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = dest.with_file_name(format!(".{name}.copying"));
    let result = copy_into(src, &temp, expect).and_then(|copied| {
        rename_durably(&temp, dest)
            .map(|()| copied)
            .map_err(io_error(dest))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn copy_into(src: &Path, temp: &Path, expect: &Expected) -> Result<u64, DownloadError> {
    let from = src.display().to_string();
    // A bundle's file: a FIFO or device in its place must not block or feed the copy.
    let mut input = super::regular::open(src).map_err(io_error(src))?;
    let mut output = File::create(temp).map_err(io_error(temp))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut copied = 0u64;
    loop {
        let n = input.read(&mut buf).map_err(io_error(src))?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > expect.len {
            return Err(too_long(&from, expect));
        }
        hasher.update(&buf[..n]);
        output.write_all(&buf[..n]).map_err(io_error(temp))?;
    }
    if copied < expect.len {
        return Err(DownloadError::Short {
            from,
            got: copied,
            expected: expect.len,
        });
    }
    let actual: [u8; 32] = hasher.finalize().into();
    if actual != expect.sha256 {
        return Err(DownloadError::HashMismatch {
            from,
            expected: hex::encode(expect.sha256),
            actual: hex::encode(actual),
        });
    }
    output.sync_all().map_err(io_error(temp))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    const MIB: usize = 1 << 20;

    fn blob(len: usize) -> Arc<Vec<u8>> {
        Arc::new(
            (0..len as u64)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        )
    }

    fn expected(data: &[u8]) -> Expected {
        Expected {
            len: data.len() as u64,
            sha256: Sha256::digest(data).into(),
        }
    }

    /// How the test server misbehaves.
    #[derive(Debug, Default)]
    struct Behaviour {
        /// Answer every request with 200 and the whole blob.
        ignore_range: bool,
        /// Answer ranged requests with a `Content-Range` from 0.
        wrong_range: bool,
        /// Leave out `Content-Length` (the body ends when the connection closes).
        no_length: bool,
        /// Close the first answer's connection after this many body bytes.
        cut_after: Mutex<Option<usize>>,
        /// Send the body 100 bytes at a time with this pause between: a host that keeps
        /// each gap short and the whole transfer endless.
        drip: Option<Duration>,
        /// The `Range` header of each request.
        ranges: Mutex<Vec<Option<String>>>,
    }

    /// A one-request-per-connection HTTP/1.1 server for `data` on 127.0.0.1:0, written
    /// by hand so that it can cut connections and lie about lengths.
    async fn serve(data: Arc<Vec<u8>>, behaviour: Arc<Behaviour>) -> Uri {
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

    fn limits() -> Limits {
        Limits {
            rate_bytes_per_s: None,
            timeout: Duration::from_secs(10),
            min_rate_bytes_per_s: None,
        }
    }

    struct Paths {
        _dir: tempfile::TempDir,
        partial: PathBuf,
        dest: PathBuf,
    }

    fn paths() -> Paths {
        let dir = tempfile::tempdir().unwrap();
        Paths {
            partial: dir.path().join("blob.bin.partial"),
            dest: dir.path().join("blob.bin"),
            _dir: dir,
        }
    }

    async fn fetch_to(url: &Uri, p: &Paths, expect: &Expected) -> Result<Fetched, DownloadError> {
        fetch(url, None, &p.partial, &p.dest, expect, &limits()).await
    }

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

    #[test]
    fn answers_decide_how_to_go_on() {
        use StatusCode as S;
        assert_eq!(decide(0, S::OK, None), Decision::Continue);
        assert_eq!(decide(0, S::PARTIAL_CONTENT, None), Decision::Fail);
        assert_eq!(
            decide(5, S::PARTIAL_CONTENT, Some("bytes 5-9/10")),
            Decision::Continue
        );
        assert_eq!(
            decide(5, S::PARTIAL_CONTENT, Some("bytes 0-9/10")),
            Decision::StartOver { ask_again: true }
        );
        assert_eq!(
            decide(5, S::PARTIAL_CONTENT, None),
            Decision::StartOver { ask_again: true }
        );
        assert_eq!(
            decide(5, S::OK, None),
            Decision::StartOver { ask_again: false }
        );
        assert_eq!(
            decide(5, S::RANGE_NOT_SATISFIABLE, Some("bytes */3")),
            Decision::StartOver { ask_again: true }
        );
        assert_eq!(decide(5, S::NOT_FOUND, None), Decision::Fail);
    }

    #[test]
    fn copies_are_verified() {
        let data = blob(3 * MIB + 17);
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        let dest = dir.path().join("dest.bin");
        std::fs::write(&src, &*data).unwrap();
        assert_eq!(
            copy_verified(&src, &dest, &expected(&data)).unwrap(),
            data.len() as u64
        );
        assert_eq!(std::fs::read(&dest).unwrap(), *data);
        std::fs::remove_file(&dest).unwrap();

        let mut tampered = data.to_vec();
        tampered[MIB] ^= 0x40;
        std::fs::write(&src, &tampered).unwrap();
        let err = copy_verified(&src, &dest, &expected(&data)).unwrap_err();
        assert!(matches!(err, DownloadError::HashMismatch { .. }), "{err}");
        tampered.push(0);
        std::fs::write(&src, &tampered).unwrap();
        let err = copy_verified(&src, &dest, &expected(&data)).unwrap_err();
        assert!(matches!(err, DownloadError::TooLong { .. }), "{err}");
        std::fs::write(&src, &data[..100]).unwrap();
        let err = copy_verified(&src, &dest, &expected(&data)).unwrap_err();
        assert!(
            matches!(err, DownloadError::Short { got: 100, .. }),
            "{err}"
        );
        assert!(!dest.exists());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the source is left");
    }
}
