//! A closed-loop HTTPS load generator: N keep-alive HTTP/1.1 connections, each sending
//! the next request as soon as the previous answer arrives, for a fixed time after a
//! warm-up. Prints one JSON line: requests/s, latency percentiles, status counts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Parser, Clone)]
struct Args {
    /// Server address, e.g. 127.0.0.1:8443.
    #[arg(long)]
    addr: SocketAddr,
    /// Request path.
    #[arg(long, default_value = "/v2")]
    path: String,
    /// PEM CA that signed the server certificate (for name `localhost`).
    #[arg(long)]
    ca: PathBuf,
    /// Bearer token; none by default.
    #[arg(long, env = "LOADGEN_KEY")]
    key: Option<String>,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// POST this file's bytes as a JSON body instead of a GET.
    #[arg(long)]
    body: Option<PathBuf>,
    /// Open loop: send this many requests per second in all, spread over the
    /// connections (each paces itself; a late request goes at once). 0: closed loop.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Worker threads of the generator itself.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

struct ConnResult {
    latencies_us: Vec<u32>,
    /// Latencies of 200 answers only.
    ok_latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

async fn connection(
    args: Args,
    body: Bytes,
    connector: TlsConnector,
    start: Instant,
    end: Instant,
) -> anyhow::Result<ConnResult> {
    let open = || async {
        let tcp = TcpStream::connect(args.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = connector
            .connect(ServerName::try_from("localhost")?, tcp)
            .await?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(conn);
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

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[idx]) / 1000.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let connector = TlsConnector::from(coffer_bench::client_config(&args.ca)?);
        let body = match &args.body {
            Some(path) => Bytes::from(std::fs::read(path).context("reading --body")?),
            None => Bytes::new(),
        };
        let start = Instant::now() + Duration::from_secs_f64(args.warmup);
        let end = start + Duration::from_secs_f64(args.seconds);
        let tasks: Vec<_> = (0..args.connections)
            .map(|_| tokio::spawn(connection(args.clone(), body.clone(), connector.clone(), start, end)))
            .collect();
        let mut latencies = Vec::new();
        let mut ok_latencies = Vec::new();
        let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
        let mut errors = 0;
        for task in tasks {
            let r = task.await.context("connection task")?.context("connection")?;
            latencies.extend(r.latencies_us);
            ok_latencies.extend(r.ok_latencies_us);
            for (s, n) in r.statuses {
                *statuses.entry(s).or_default() += n;
            }
            errors += r.errors;
        }
        latencies.sort_unstable();
        ok_latencies.sort_unstable();
        let ok = statuses.get(&200).copied().unwrap_or(0);
        let statuses = statuses
            .iter()
            .map(|(s, n)| format!("\"{s}\":{n}"))
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "{{\"requests\":{},\"ok\":{},\"errors\":{},\"rps\":{:.1},\"p50_ms\":{:.3},\"p99_ms\":{:.3},\"p99_ok_ms\":{:.3},\"statuses\":{{{}}}}}",
            latencies.len(),
            ok,
            errors,
            latencies.len() as f64 / args.seconds,
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&ok_latencies, 0.99),
            statuses
        );
        anyhow::Ok(())
    })
}
