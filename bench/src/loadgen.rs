//! The load generator behind `src/bin/loadgen.rs`: its arguments, one keep-alive
//! connection's request loop, and the latency percentiles.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, Parser, Clone)]
pub struct Args {
    /// Server address, e.g. 127.0.0.1:8443.
    #[arg(long)]
    pub addr: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/v2")]
    pub path: String,
    /// PEM CA that signed the server certificate (for name `localhost`).
    #[arg(long, required_unless_present = "plain")]
    pub ca: Option<PathBuf>,
    /// Plain HTTP instead of TLS (for peers that serve no TLS; `--ca` is then unused).
    #[arg(long)]
    pub plain: bool,
    /// Bearer token; none by default.
    #[arg(long, env = "LOADGEN_KEY")]
    pub key: Option<String>,
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    pub warmup: f64,
    /// POST this file's bytes as a JSON body instead of a GET.
    #[arg(long)]
    pub body: Option<PathBuf>,
    /// Open loop: send this many requests per second in all, spread over the
    /// connections (each paces itself; a late request goes at once). 0: closed loop.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Worker threads of the generator itself.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

#[derive(Debug)]
pub struct ConnResult {
    pub latencies_us: Vec<u32>,
    /// Latencies of 200 answers only.
    pub ok_latencies_us: Vec<u32>,
    pub statuses: BTreeMap<u16, u64>,
    pub errors: u64,
}

pub async fn connection(
    args: Args,
    body: Bytes,
    connector: Option<TlsConnector>,
    start: Instant,
    end: Instant,
) -> anyhow::Result<ConnResult> {
    let open = || async {
        let tcp = TcpStream::connect(args.addr).await?;
        tcp.set_nodelay(true)?;
        let sender = match &connector {
            None => {
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                tokio::spawn(conn);
                sender
            }
            Some(connector) => {
                let tls = connector
                    .connect(ServerName::try_from("localhost")?, tcp)
                    .await?;
                let (sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
                tokio::spawn(conn);
                sender
            }
        };
        anyhow::Ok(sender)
    };
    let mut sender = open().await?;
    let mut result = ConnResult {
        latencies_us: Vec::new(),
        ok_latencies_us: Vec::new(),
        statuses: BTreeMap::new(),
        errors: 0,
    };
    let interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(args.connections as f64 / args.rate));
    let mut next = Instant::now();
    loop {
        if let Some(every) = interval {
            tokio::time::sleep_until(next.into()).await;
            next += every;
        }
        // A keep-alive connection the server closed while it was idle (its header
        // read timeout) is reopened, as any HTTP client does; not an error.
        if sender.ready().await.is_err() {
            sender = open().await?;
        }
        let sent = Instant::now();
        if sent >= end {
            break;
        }
        let method = if args.body.is_some() {
            http::Method::POST
        } else {
            http::Method::GET
        };
        let mut req = http::Request::builder()
            .method(method)
            .uri(&args.path)
            .header("host", "localhost")
            .header("content-type", "application/json");
        if let Some(key) = &args.key {
            req = req.header("authorization", format!("Bearer {key}"));
        }
        let outcome = async {
            let resp = sender
                .send_request(req.body(Full::new(body.clone()))?)
                .await?;
            let status = resp.status().as_u16();
            resp.into_body().collect().await?;
            anyhow::Ok(status)
        }
        .await;
        if sent < start {
            continue;
        }
        match outcome {
            Ok(status) => {
                *result.statuses.entry(status).or_default() += 1;
                let us = sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                result.latencies_us.push(us);
                if status == 200 {
                    result.ok_latencies_us.push(us);
                }
            }
            Err(_) => {
                result.errors += 1;
                break;
            }
        }
    }
    Ok(result)
}

pub fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx]) / 1000.0
}
