//! Each subcommand: the call it makes and how its answer is shown.

pub mod decisions;
pub mod keys;
pub mod models;
pub mod offline;
mod transfer;
