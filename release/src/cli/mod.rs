//! The `coffer-release` command line: [`Cli`] (options and subcommands, paths made
//! absolute once) and [`run`], which runs one subcommand and says what it did. The
//! binary (`src/main.rs`) only parses arguments, starts the runtime and calls [`run`].
//!
//! Exit status: 0 done; 1 failed, and nothing was published; 2 the command line was
//! refused (clap); [`LIVE_BUT_UNFINISHED`] published (the release is live) but a later
//! step did not complete, as the message says.

mod args;
mod commands;
mod fleet_status;
mod halting;
mod progress;

pub use args::{Cli, Command, ExpiryArgs, HaltKeyDir, KeyDir, PrometheusArgs};
pub use commands::{LIVE_BUT_UNFINISHED, run};
