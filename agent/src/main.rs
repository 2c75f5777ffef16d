//! `coffer-agent`: the fleet agent's command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use coffer_agent::AgentConfig;
use coffer_agent::transport::Tls;

#[derive(Parser)]
#[command(name = "coffer-agent", version, about = "Coffer's fleet agent")]
struct Cli {
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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
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
    let tls = match &config.telemetry.ca_bundle {
        Some(path) => Some(Tls::from_bundle(path)?),
        None => None,
    };
    let once = match cli.command {
        Command::CheckConfig => {
            println!("{}: configuration OK", cli.config.display());
            return Ok(ExitCode::SUCCESS);
        }
        Command::Telemetry { once } => once,
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
    let stop = async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
        }
    };
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

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coffer-agent: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coffer-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
