//! Holds cofferd's connection and admission slots the way an attacker without manners
//! would, for `--seconds`: `--idle` TLS connections that finish the handshake and send
//! nothing (half of them only the HTTP/2 preface and an empty SETTINGS frame), spread
//! over loopback source addresses 127.0.0.2… `--per-address` at a time, each reopened as
//! soon as the server closes it; and `--zero-window` HTTP/2 requests (POST `--path` with
//! `--body`) whose client advertises a zero flow-control window and never reads. Prints
//! one JSON line: connections opened, closed by the server, and the median time the
//! server took to close an idle one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;
use tokio_rustls::TlsConnector;

#[derive(Parser, Clone)]
struct Args {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    ca: PathBuf,
    #[arg(long, env = "LOADGEN_KEY")]
    key: String,
    /// Idle connections to hold.
    #[arg(long, default_value_t = 2048)]
    idle: usize,
    /// Connections per source address (the server's max_connections_per_address).
    #[arg(long, default_value_t = 256)]
    per_address: usize,
    /// Zero-window HTTP/2 requests to hold.
    #[arg(long, default_value_t = 128)]
    zero_window: usize,
    #[arg(long, default_value = "/v2/models/credit-lr/infer")]
    path: String,
    #[arg(long)]
    body: PathBuf,
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
}

#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    closed_by_server: AtomicU64,
    failed: AtomicU64,
    held_ms: std::sync::Mutex<Vec<u64>>,
}

fn connector(ca: &std::path::Path, alpn: &[&[u8]]) -> anyhow::Result<TlsConnector> {
    Ok(TlsConnector::from(coffer_bench::client_config_alpn(
        ca, alpn,
    )?))
}

async fn tls_from(
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

fn h2_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// An HPACK string: 7-bit-prefix length (no Huffman), then the bytes.
fn hpack_str(block: &mut Vec<u8>, s: &str) {
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
fn hpack(block: &mut Vec<u8>, name: &str, value: &str) {
    block.push(0);
    hpack_str(block, name);
    hpack_str(block, value);
}

/// Preface, SETTINGS with INITIAL_WINDOW_SIZE 0, HEADERS and DATA of one POST.
fn zero_window_request(path: &str, key: &str, body: &[u8]) -> Vec<u8> {
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
async fn hold(
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
async fn probe(
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Arc::new(Args::parse());
    let body = std::fs::read(&args.body).context("--body")?;
    let plain = connector(&args.ca, &[b"http/1.1"])?;
    let h2 = connector(&args.ca, &[b"h2"])?;
    let counts = Arc::new(Counts::default());
    let end = Instant::now() + Duration::from_secs_f64(args.seconds);
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0".to_vec();
    let request = zero_window_request(&args.path, &args.key, &body);
    let mut tasks = Vec::new();
    let slots = args.idle + args.zero_window;
    for i in 0..slots {
        let source = IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            (2 + i / args.per_address / 250) as u8,
            (2 + (i / args.per_address) % 250) as u8,
        ));
        let (connector, hello) = if i >= args.idle {
            (h2.clone(), request.clone())
        } else if i % 2 == 1 {
            (h2.clone(), preface.clone())
        } else {
            (plain.clone(), Vec::new())
        };
        tasks.push(tokio::spawn(hold(
            connector,
            source,
            Arc::clone(&args),
            hello,
            Arc::clone(&counts),
            end,
        )));
    }
    let probes = tokio::spawn(probe(plain.clone(), args.addr, Duration::from_secs(2), end));
    for t in tasks {
        let _ = t.await;
    }
    let (mut probe_ms, probe_failed) = probes.await.unwrap_or_default();
    probe_ms.sort_unstable();
    let pct = |v: &[u64], p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    let mut held = counts
        .held_ms
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    held.sort_unstable();
    let median = held.get(held.len() / 2).copied().unwrap_or(0);
    println!(
        "{}",
        serde_json::json!({
            "slots": slots,
            "opened": counts.opened.load(Ordering::Relaxed),
            "closed_by_server": counts.closed_by_server.load(Ordering::Relaxed),
            "failed_to_open": counts.failed.load(Ordering::Relaxed),
            "median_ms_until_closed": median,
            "healthz_probes": probe_ms.len(),
            "healthz_failed": probe_failed,
            "healthz_p50_ms": pct(&probe_ms, 0.5),
            "healthz_p99_ms": pct(&probe_ms, 0.99),
            "healthz_max_ms": probe_ms.last().copied().unwrap_or(0),
        })
    );
    Ok(())
}
