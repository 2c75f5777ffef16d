//! Holds cofferd's connection and admission slots the way an attacker without manners
//! would, for `--seconds`: `--idle` TLS connections that finish the handshake and send
//! nothing (half of them only the HTTP/2 preface and an empty SETTINGS frame), spread
//! over loopback source addresses 127.0.0.2… `--per-address` at a time, each reopened as
//! soon as the server closes it; and `--zero-window` HTTP/2 requests (POST `--path` with
//! `--body`) whose client advertises a zero flow-control window and never reads. Prints
//! one JSON line: connections opened, closed by the server, and the median time the
//! server took to close an idle one.

use anyhow::Context as _;
use clap::Parser as _;
use coffer_bench::flood::*;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
