//! `coffer-release`: the fleet admin's tool to build, sign and publish the TUF release
//! repository that coffer-agent pulls from, rotate its keys and export bundles for
//! air-gapped sites. See `docs/fleet.md`; the subcommands are
//! [`coffer_release::cli`].
//!
//! Paths are made absolute once, before anything runs. Exit status: 0 done; 1 failed,
//! and nothing was published; 2 the command line was refused; 3 published (the release
//! is live) but a later step did not complete, as the message says.

use std::process::ExitCode;

use clap::Parser as _;
use coffer_release::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = match Cli::parse().resolve() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("coffer-release: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("coffer-release: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("coffer-release: {e:#}");
            ExitCode::FAILURE
        }
    }
}
