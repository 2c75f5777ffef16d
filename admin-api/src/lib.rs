//! The admin API of cofferd's Unix socket, written once: every request body and answer
//! as a type ([`keys`], [`models`], [`decisions`], [`reports`], [`health`], [`telemetry`], [`sync`],
//! [`error`]), every path built by [`path`], and the one client ([`client`]) that
//! `cofferctl` and `coffer-agent` call it with, import streaming included. cofferd's
//! handlers answer with the same types, so the three programs cannot disagree on a
//! field's name or meaning.

pub mod client;
pub mod decisions;
pub mod error;
pub mod health;
pub mod keys;
pub mod models;
pub mod path;
pub mod reports;
pub mod sync;
pub mod telemetry;

pub use client::{AdminClient, ClientError};
pub use error::{ErrorBody, ErrorDetail};

/// Where cofferd's admin socket is unless its configuration says otherwise.
pub const DEFAULT_SOCKET: &str = "/run/coffer/admin.sock";
