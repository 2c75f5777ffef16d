//! The agent's command line: its subcommands (`run`, `sync`, `import-bundle`,
//! telemetry and checkpoint one-shots) and what each does, for `main` to call.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer_agent::AgentConfig;
use coffer_agent::transport::Tls;

#[derive(Parser)]
#[command(name = "coffer-agent", version, about = "Coffer's fleet agent")]
pub struct Cli {
    /// Agent configuration file.
    #[arg(long, short, default_value = "/etc/coffer/agent.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the configuration file (and the CA bundle it names); non-zero exit on a
    /// problem. systemd runs it as `ExecStartPre`.
    CheckConfig,
    /// Ship telemetry from cofferd's spool (and its audit checkpoints) to the configured
    /// sinks until stopped.
    Telemetry {
        /// Deliver what is spooled now and exit (non-zero if a batch could not be sent).
        #[arg(long)]
        once: bool,
    },
    /// Ship telemetry and keep models in step with the fleet's release repository until
    /// stopped (what the systemd service runs).
    Run,
    /// Model sync from the release repository (`sync.repository_url`) until stopped.
    Sync {
        /// One cycle, then exit: non-zero if it failed; prints what it did.
        #[arg(long)]
        once: bool,
    },
    /// Apply a release bundle copied from `coffer-release export-bundle` (air-gapped
    /// sites): the same TUF checks, downloads replaced by verified copies.
    ImportBundle {
        /// The bundle directory (with `metadata/` and `targets/`).
        dir: PathBuf,
    },
    /// Print what model sync last did for each model.
    SyncStatus,
    /// Check a shipped audit checkpoint's signature (no configuration needed); exit
    /// status 1 if it does not verify.
    VerifyCheckpoint {
        /// The appliance's key (`coffer.audit.public_key`, hex ed25519).
        #[arg(long)]
        public_key: String,
        /// `coffer.audit.upto_seq`.
        #[arg(long)]
        upto_seq: u64,
        /// `coffer.audit.upto_hash`.
        #[arg(long)]
        upto_hash: String,
        /// `coffer.audit.signature`.
        #[arg(long)]
        signature: String,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Command::VerifyCheckpoint {
        public_key,
        upto_seq,
        upto_hash,
        signature,
    } = &cli.command
    {
        return Ok(
            if coffer_agent::checkpoints::verify(public_key, *upto_seq, upto_hash, signature) {
                println!("checkpoint OK: the chain up to record {upto_seq} ends in {upto_hash}");
                ExitCode::SUCCESS
            } else {
                println!("checkpoint signature does not verify");
                ExitCode::FAILURE
            },
        );
    }
    let config = AgentConfig::load(&cli.config)?;
    for (key, url) in config.insecure_urls() {
        tracing::warn!(
            key,
            %url,
            "INSECURE: http:// allowed by allow_insecure_http = true; what goes over it travels in clear and can be changed on the way"
        );
    }
    let tls = match &config.telemetry.ca_bundle {
        Some(path) => Some(Tls::from_bundle(path)?),
        None => None,
    };
    let sync_tls = match &config.sync.ca_bundle {
        Some(path) => Some(Tls::from_bundle(path)?),
        None => None,
    };
    let once = match cli.command {
        Command::CheckConfig => {
            if config.sync.repository_url.is_some() {
                std::fs::metadata(&config.sync.trusted_root).map_err(|e| {
                    anyhow::anyhow!(
                        "sync.trusted_root {}: {e}",
                        config.sync.trusted_root.display()
                    )
                })?;
            }
            println!("{}: configuration OK", cli.config.display());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Telemetry { once } => once,
        Command::Sync { once } => {
            return sync_command(&config, sync_tls.as_ref(), once).await;
        }
        Command::ImportBundle { dir } => {
            let source = coffer_agent::sync::Source::Bundle {
                dir: &dir,
                grace: config.sync.bundle_expiry_grace,
            };
            return report(coffer_agent::sync::cycle(&config, &source).await);
        }
        Command::SyncStatus => {
            let state =
                coffer_agent::sync::state::SyncState::load(&coffer_agent::sync::sync_dir(&config));
            println!("{}", serde_json::to_string_pretty(&state)?);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Run => {
            run_all(&config, tls.as_ref(), sync_tls.as_ref()).await;
            return Ok(ExitCode::SUCCESS);
        }
        Command::VerifyCheckpoint { .. } => return Ok(ExitCode::SUCCESS),
    };
    if !config.telemetry.has_sink() {
        if once {
            anyhow::bail!(
                "no telemetry sink is configured (telemetry.remote_write_url, telemetry.otlp_logs_url)"
            );
        }
        tracing::warn!(
            "no telemetry sink is configured: telemetry stays spooled in cofferd until one is"
        );
    }
    if once {
        let mut total = 0;
        loop {
            let d = coffer_agent::egress::deliver_once(&config, tls.as_ref()).await?;
            total += d.records;
            if d.records == 0 || d.pending == 0 {
                break;
            }
        }
        println!("delivered {total} records");
        if config.telemetry.otlp_logs_url.is_some() {
            let s = coffer_agent::checkpoints::ship(&config, tls.as_ref()).await?;
            println!("shipped {} audit checkpoints", s.checkpoints);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let stop = stop_signal();
    if config.telemetry.has_sink() && config.telemetry.otlp_logs_url.is_none() {
        tracing::warn!(
            "audit checkpoints are shipped as OTLP logs and telemetry.otlp_logs_url is not set: they stay on the appliance"
        );
    }
    coffer_agent::systemd::ready();
    coffer_agent::systemd::spawn_watchdog();
    if config.telemetry.has_sink() {
        coffer_agent::egress::run(&config, tls.as_ref(), stop).await;
    } else {
        stop.await;
    }
    coffer_agent::systemd::stopping();
    Ok(ExitCode::SUCCESS)
}

/// Prints a cycle's steps; failure (or a release rolled back or refused) is exit 1.
fn report(
    result: Result<Vec<coffer_agent::sync::Step>, coffer_agent::sync::SyncError>,
) -> anyhow::Result<ExitCode> {
    use coffer_agent::sync::state::OutcomeKind;
    let steps = result?;
    if steps.is_empty() {
        println!("models are as the release repository says; nothing to do");
    }
    let mut bad = false;
    for s in &steps {
        bad |= !matches!(
            s.kind,
            OutcomeKind::Active
                | OutcomeKind::Pinned
                | OutcomeKind::AwaitingWindow
                | OutcomeKind::AwaitingHaltList
                | OutcomeKind::Halted
        );
        println!(
            "{}@{}: {:?}: {} ({} bytes fetched)",
            s.model, s.version, s.kind, s.detail, s.bytes
        );
    }
    Ok(if bad {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn sync_command(
    config: &AgentConfig,
    tls: Option<&Tls>,
    once: bool,
) -> anyhow::Result<ExitCode> {
    let Some(base) = config.sync.repository_url.as_ref() else {
        anyhow::bail!("sync.repository_url is not set");
    };
    if once {
        let source = coffer_agent::sync::Source::remote(base, tls, &config.sync);
        return report(coffer_agent::sync::cycle(config, &source).await);
    }
    coffer_agent::systemd::ready();
    coffer_agent::systemd::spawn_watchdog();
    coffer_agent::sync::run(config, tls, None, stop_signal()).await;
    coffer_agent::systemd::stopping();
    Ok(ExitCode::SUCCESS)
}

async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// Telemetry and model sync side by side until SIGTERM.
async fn run_all(config: &AgentConfig, tls: Option<&Tls>, sync_tls: Option<&Tls>) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    if !config.telemetry.has_sink() {
        tracing::warn!(
            "no telemetry sink is configured: telemetry stays spooled in cofferd until one is"
        );
    }
    if config.sync.repository_url.is_none() {
        tracing::info!(
            "sync.repository_url is not set: no online model sync (bundles can be imported)"
        );
    }
    coffer_agent::systemd::ready();
    coffer_agent::systemd::spawn_watchdog();
    let telemetry = async {
        if config.telemetry.has_sink() {
            coffer_agent::egress::run(config, tls, stopped(rx.clone())).await;
        }
    };
    let polled = tokio::sync::Notify::new();
    let sync = coffer_agent::sync::run(config, sync_tls, Some(&polled), stopped(rx.clone()));
    let site_report = async {
        if config.telemetry.has_sink() {
            coffer_agent::site_report::run(config, tls, &polled, stopped(rx.clone())).await;
        }
    };
    let signal = async {
        stop_signal().await;
        let _ = tx.send(true);
    };
    tokio::join!(telemetry, sync, site_report, signal);
    coffer_agent::systemd::stopping();
}
