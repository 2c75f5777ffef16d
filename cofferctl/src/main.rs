//! `cofferctl`: parse the command line and run it; everything else is in the library.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    cofferctl::run(cofferctl::args::Cli::parse())
}
