//! A closed-loop HTTPS (or, with `--plain`, HTTP) load generator: N keep-alive HTTP/1.1 connections, each sending
//! the next request as soon as the previous answer arrives, for a fixed time after a
//! warm-up. Prints one JSON line: requests/s, latency percentiles, status counts.

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser as _;
use coffer_bench::loadgen::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio_rustls::TlsConnector;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let connector = match (&args.ca, args.plain) {
            (Some(ca), false) => Some(TlsConnector::from(coffer_bench::client_config(ca)?)),
            _ => None,
        };
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
