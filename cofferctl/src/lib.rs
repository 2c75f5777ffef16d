//! `cofferctl`: the branch admin's command line for a running cofferd, over its admin
//! Unix socket (through [`coffer_admin_api::AdminClient`]). Human tables by default,
//! `--json` for scripts. `redact`, `audit verify` and `tls host-cert` need no daemon.
//!
//! [`args`] is the command line, [`locate`] finds the socket and the audit directory,
//! [`commands`] runs each subcommand, [`print`] renders answers for people and
//! [`format`] the values in them, [`progress`] draws the transfer bars.

pub mod args;
pub mod commands;
pub mod format;
pub mod locate;
pub mod output;
pub mod print;
pub mod progress;

use std::process::ExitCode;

use args::{AuditCommand, Cli, Command};
use coffer_admin_api::AdminClient;

/// Runs one command line; the exit code is the command's.
pub fn run(cli: Cli) -> ExitCode {
    match &cli.command {
        Command::Redact => return commands::offline::redact_stdin(),
        Command::Audit(AuditCommand::Verify { dir }) => {
            return commands::offline::audit_verify(&cli, dir.as_deref());
        }
        Command::Tls(command) => return commands::offline::tls_host_cert(command),
        Command::Keys(_) | Command::Models(_) | Command::Decisions(_) => {}
    }
    // One worker besides this thread: the import's file reader finishes only after the
    // connection task, run by the worker, has dropped the request body (when cofferd
    // answers early: the version exists, a schema change is refused).
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cofferctl: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let socket = match locate::socket(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cofferctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let client = AdminClient::new(socket);
    runtime.block_on(async {
        match cli.command {
            Command::Keys(command) => commands::keys::run(&client, cli.json, command).await,
            Command::Models(command) => commands::models::run(&client, cli.json, command).await,
            Command::Decisions(command) => {
                commands::decisions::run(&client, cli.json, command).await
            }
            Command::Redact | Command::Audit(_) | Command::Tls(_) => ExitCode::SUCCESS,
        }
    })
}
