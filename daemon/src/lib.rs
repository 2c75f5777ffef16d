//! cofferd: Coffer's serving appliance. This crate holds everything the `cofferd` and
//! `cofferctl` binaries run: configuration, the TLS API and its admission control, API
//! keys, the admin socket, metrics, readiness and the systemd lifecycle. Engines (chat,
//! scoring), the model lifecycle and GPU health plug into the router and readiness map
//! built here.

pub mod admin;
pub mod admission;
pub mod api;
pub mod app;
pub use coffer_audit as audit;
pub use coffer_hostcert::atomic_write;
pub mod chat;
pub mod config;
pub mod counted;
pub mod devmode;
pub mod drift;
pub mod engine_faults;
#[doc(hidden)]
pub mod fuzzing;
pub mod gpu;
pub mod held_body;
pub use coffer_audit::hex_text;
pub mod keys;
pub mod lifecycle;
pub mod logging;
pub mod manager;
pub mod metrics;
pub mod native_stderr;
pub mod periodic;
pub mod rate_spec;
pub mod readiness;
pub mod registry;
pub mod score;
pub mod served;
pub mod server;
pub mod serving;
pub mod shadow;
pub mod statewatch;
pub mod telemetry;
pub use coffer_score::tensor;
#[cfg(test)]
mod testutil;
pub mod tls;
