//! `coffer-release fleet-status`: the fleet's rollout from its Prometheus, as tables or
//! JSON, once or again every `--watch` interval.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use coffer_fleet::prom::Prometheus;
use coffer_fleet::status::{FleetStatus, Options};

use super::args::PrometheusArgs;

/// The client the arguments describe.
pub fn prometheus(args: &PrometheusArgs) -> anyhow::Result<Prometheus> {
    Prometheus::new(
        &args.prometheus,
        args.prometheus_ca.as_deref(),
        args.prometheus_token_file.as_deref(),
        args.query_timeout,
    )
    .context("the fleet's Prometheus")
}

/// Prints the view once, or every `watch` until interrupted. Exit status 0 when the
/// view was read; a query that fails is an error once, and a line to stderr (then the
/// next try) under `--watch`.
pub async fn run(
    args: &PrometheusArgs,
    opts: &Options,
    json: bool,
    watch: Option<Duration>,
    list: usize,
) -> anyhow::Result<ExitCode> {
    let prom = prometheus(args)?;
    let clear = watch.is_some() && !json && std::io::stdout().is_terminal();
    loop {
        match FleetStatus::fetch(&prom, opts).await {
            Ok(view) => {
                if clear {
                    print!("\x1b[2J\x1b[H");
                }
                if json {
                    println!("{}", serde_json::to_string(&view)?);
                } else {
                    print!("{}", view.render(list));
                }
            }
            Err(e) if watch.is_some() => eprintln!("coffer-release: fleet-status: {e}"),
            Err(e) => return Err(e).context("fleet-status"),
        }
        let Some(every) = watch else {
            return Ok(ExitCode::SUCCESS);
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(every) => {}
        }
    }
}
