//! cofferd: Coffer's serving appliance. Configuration (`config`), the one accept loop
//! (`server`) for the TLS API (`api`) and the admin socket (`admin`), who may call what
//! (`access`), the serving layer between the handlers and the engines (`serving`), the
//! model lifecycle (`lifecycle`), what the daemon watches (`monitoring`), telemetry,
//! metrics and the systemd integration (`systemd`). The engines themselves are the
//! `coffer-score` and `coffer-chat` crates, tied to the daemon in `score` and `chat`.

pub mod access;
pub mod admin;
pub mod api;
pub mod app;
pub use coffer_audit as audit;
pub use coffer_hostcert::atomic_write;
pub mod chat;
pub mod config;
pub mod counted;
pub mod decisions;
pub mod devmode;
pub mod embedding;
pub mod engine_faults;
#[doc(hidden)]
pub mod fuzzing;
pub mod held_body;
pub use coffer_audit::hex_text;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod monitoring;
pub mod native_stderr;
pub mod periodic;
pub mod rate_spec;
pub mod request_id;
pub mod score;
pub mod served;
pub mod server;
pub mod serving;
pub mod systemd;
pub mod telemetry;
pub use coffer_score::tensor;
#[cfg(test)]
mod testutil;
pub mod tls;
