//! `coffer-agent`: the fleet agent's command line ([`cli`]); this file sets up logging
//! and the runtime and runs the parsed command.

mod cli;

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // Under systemd the journal stamps each line itself and shows escape codes as they
    // are: plain lines there, colours only on a terminal.
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(!journald && std::io::stderr().is_terminal());
    if journald {
        log.without_time().init();
    } else {
        log.init();
    }
    let cli = cli::Cli::parse();
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
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coffer-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
