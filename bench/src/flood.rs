//! The idle-connection and zero-window flood behind `src/bin/flood.rs`: its arguments,
//! the TLS connections that hold slots, HTTP/2 frames written by hand, and the probe
//! that times fresh clients meanwhile.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

#[derive(Debug, Parser, Clone)]
pub struct Args {
    #[arg(long)]
    pub addr: SocketAddr,
    #[arg(long)]
    pub ca: PathBuf,
    #[arg(long, env = "LOADGEN_KEY")]
    pub key: String,
    /// Idle connections to hold.
    #[arg(long, default_value_t = 2048)]
    pub idle: usize,
    /// Connections per source address (the server's max_connections_per_address).
    #[arg(long, default_value_t = 256)]
    pub per_address: usize,
    /// Zero-window HTTP/2 requests to hold.
    #[arg(long, default_value_t = 128)]
    pub zero_window: usize,
    #[arg(long, default_value = "/v2/models/credit-lr/infer")]
    pub path: String,
    #[arg(long)]
    pub body: PathBuf,
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
}

#[derive(Debug, Default)]
pub struct Counts {
    pub opened: AtomicU64,
    pub closed_by_server: AtomicU64,
    pub failed: AtomicU64,
    pub held_ms: std::sync::Mutex<Vec<u64>>,
}

pub fn connector(ca: &std::path::Path, alpn: &[&[u8]]) -> anyhow::Result<TlsConnector> {
    Ok(TlsConnector::from(crate::client_config_alpn(ca, alpn)?))
}

pub async fn tls_from(
    connector: &TlsConnector,
    source: IpAddr,
    addr: SocketAddr,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let tcp = socket.connect(addr).await?;
    Ok(connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?)
}

pub fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string: 7-bit-prefix length (no Huffman), then the bytes.
pub fn hpack_str(block: &mut Vec<u8>, s: &str) {
    let len = s.len();
    if len < 127 {
        block.push(len as u8);
    } else {
        block.push(127);
        let mut rest = len - 127;
        while rest >= 128 {
            block.push((rest % 128) as u8 | 0x80);
            rest /= 128;
        }
        block.push(rest as u8);
    }
    block.extend_from_slice(s.as_bytes());
}

/// An HPACK literal header field without indexing, new name.
pub fn hpack(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0);
    hpack_str(block, name);
    hpack_str(block, value);
}

/// Preface, SETTINGS with INITIAL_WINDOW_SIZE 0, HEADERS and DATA of one POST.
pub fn zero_window_request(path: &str, key: &str, body: &[u8]) -> Vec<u8> {
    let mut block = Vec::new();
    let auth = format!("Bearer {key}");
    let len = body.len().to_string();
    for (n, v) in [
        (":method", "POST"),
        (":scheme", "https"),
        (":path", path),
        (":authority", "localhost"),
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
        ("content-length", len.as_str()),
    ] {
        hpack(&mut block, n, v);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_frame(&mut out, 0x04, 0, 0, &[0, 4, 0, 0, 0, 0]);
    h2_frame(&mut out, 0x01, 0x04, 1, &block);
    h2_frame(&mut out, 0x00, 0x01, 1, body);
    out
}

/// One slot of the flood: open, send `hello`, hold until the server closes or the end,
/// reopen.
pub async fn hold(
    connector: TlsConnector,
    source: IpAddr,
    args: Arc<Args>,
    hello: Vec<u8>,
    counts: Arc<Counts>,
    end: Instant,
) {
    while Instant::now() < end {
        let Ok(Ok(mut tls)) = tokio::time::timeout(
            end.saturating_duration_since(Instant::now()),
            tls_from(&connector, source, args.addr),
        )
        .await
        else {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        counts.opened.fetch_add(1, Ordering::Relaxed);
        let opened = Instant::now();
        if !hello.is_empty() && tls.write_all(&hello).await.is_err() {
            continue;
        }
        // Read (frames the server sends, never a WINDOW_UPDATE back) until it closes.
        let mut buf = [0u8; 4096];
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, tls.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    counts.closed_by_server.fetch_add(1, Ordering::Relaxed);
                    let ms = opened.elapsed().as_millis() as u64;
                    counts
                        .held_ms
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(ms);
                    break;
                }
                Ok(Ok(_)) => {}
                Err(_) => return,
            }
        }
    }
}

/// Every 500 ms until `end` (after `delay`): a fresh connection from 127.0.0.1 and one
/// `GET /healthz`, timed from the connect to the answer. Returns the times in ms of the
/// answered ones (200) and how many failed or were not answered within 30 s.
pub async fn probe(
    connector: TlsConnector,
    addr: SocketAddr,
    delay: Duration,
    end: Instant,
) -> (Vec<u64>, u64) {
    use http_body_util::{BodyExt as _, Empty};
    tokio::time::sleep(delay).await;
    let (mut times, mut failed) = (Vec::new(), 0);
    while Instant::now() < end {
        let started = Instant::now();
        let once = async {
            let tls = tls_from(&connector, IpAddr::V4(Ipv4Addr::LOCALHOST), addr).await?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
            tokio::spawn(conn);
            let req = http::Request::get("/healthz")
                .header(http::header::HOST, "localhost")
                .body(Empty::<bytes::Bytes>::new())?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let _ = resp.into_body().collect().await?;
            anyhow::Ok(status)
        };
        match tokio::time::timeout(Duration::from_secs(30), once).await {
            Ok(Ok(s)) if s == http::StatusCode::OK => {
                times.push(started.elapsed().as_millis() as u64)
            }
            _ => failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    (times, failed)
}
