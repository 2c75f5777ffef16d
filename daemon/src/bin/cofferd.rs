//! `cofferd`: serve the API (`serve`, `serve --dev`) or check a configuration file
//! (`check-config`, used as systemd's `ExecStartPre`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use coffer_models::Kind;
use cofferd::config::{self, LogFormat};
use cofferd::server::Drain;
use cofferd::{app, devmode, logging, native_stderr};
use tracing_subscriber::fmt::writer::BoxMakeWriter;

#[derive(Parser)]
#[command(
    name = "cofferd",
    version,
    about = "Coffer's inference appliance daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the TLS API and the admin socket.
    Serve {
        /// Configuration file (TOML); see docs/config.md.
        #[arg(long, short, required_unless_present = "dev", conflicts_with = "dev")]
        config: Option<PathBuf>,
        /// Dev mode: self-signed CA and certificate, a first API key, loopback only.
        #[arg(long)]
        dev: bool,
        /// Dev mode's data directory.
        #[arg(long, default_value = ".coffer-dev", requires = "dev")]
        data_dir: PathBuf,
        /// Dev mode's listen port or loopback address:port.
        #[arg(long, default_value = "8443", requires = "dev")]
        listen: String,
        /// Dev mode serves every scoring model version found here.
        #[arg(long, default_value = "models/fixtures", requires = "dev")]
        fixtures: PathBuf,
        /// Dev mode serves every chat model version found here (fetching SmolLM2 with
        /// models/fetch-smollm2 when there is none).
        #[arg(long, default_value = "models/chat", requires = "dev")]
        chat: PathBuf,
        /// Dev mode keeps every decision of these scoring models (docs/decisions.md);
        /// repeatable.
        #[arg(long = "record-decisions", requires = "dev")]
        record_decisions: Vec<String>,
        /// Dev mode serves every embedding model version found here (fetching
        /// all-MiniLM-L6-v2 with models/fetch-minilm when there is none).
        #[arg(long, default_value = "models/embedding", requires = "dev")]
        embedding: PathBuf,
    },
    /// Check a configuration file: one line per problem, non-zero exit if any.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
}

/// mimalloc: the request path allocates many small short-lived objects, where it is
/// markedly faster than glibc's allocator on this kind of server (see bench/http).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn dev_listen(listen: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = listen.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    listen.parse().map_err(|_| {
        format!("--listen {listen:?}: give a port (8443) or a loopback address (127.0.0.1:8443)")
    })
}

fn check_config(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(_) => {
            println!("{}: configuration OK", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            for problem in e.problems() {
                eprintln!("{}: {problem}", path.display());
            }
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, dev) = match cli.command {
        Command::CheckConfig { config } => return check_config(&config),
        Command::Serve {
            config: Some(path), ..
        } => match config::load(&path) {
            Ok(c) => (c, None),
            Err(e) => {
                for problem in e.problems() {
                    eprintln!("{}: {problem}", path.display());
                }
                return ExitCode::from(2);
            }
        },
        Command::Serve {
            data_dir,
            listen,
            fixtures,
            chat,
            embedding,
            record_decisions,
            ..
        } => {
            let prepared = dev_listen(&listen).and_then(|addr| {
                let models = devmode::DevModels {
                    scoring: fixtures,
                    record_decisions,
                    chat: devmode::fetched(&chat, Kind::Chat, "models/fetch-smollm2"),
                    embedding: devmode::fetched(&embedding, Kind::Embedding, "models/fetch-minilm"),
                };
                devmode::prepare(&data_dir, addr, models).map_err(|e| e.to_string())
            });
            match prepared {
                Ok((layout, config)) => (config, Some(layout)),
                Err(e) => {
                    eprintln!("cofferd: {e}");
                    return ExitCode::from(2);
                }
            }
        }
    };
    // From here on descriptor 2 is a pipe that withholds native libraries' output; the
    // log writes to the real stderr.
    let real_stderr = match native_stderr::capture() {
        Ok(f) => f,
        Err(e) => {
            eprintln!("cofferd: cannot set up the log (capturing stderr failed: {e})");
            return ExitCode::FAILURE;
        }
    };
    logging::init_with(
        config.log.format,
        &config.log.level,
        BoxMakeWriter::new(Arc::new(real_stderr)),
    );
    native_stderr::install_panic_hook();
    if config.log.format == LogFormat::Text && dev.is_none() {
        tracing::info!(version = env!("CARGO_PKG_VERSION"), "cofferd starting");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cofferd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(config, dev)) {
        Ok(Drain::Complete) => ExitCode::SUCCESS,
        Ok(Drain::TimedOut) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "cofferd could not start");
            ExitCode::FAILURE
        }
    }
}
