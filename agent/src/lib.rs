//! coffer-agent: the fleet agent of a Coffer appliance.
//!
//! - **telemetry egress** ([`egress`]): ships allowlisted, redacted records from
//!   cofferd's spool (read over its admin socket) to Prometheus remote-write
//!   ([`remote_write`]) and OTLP/HTTP ([`otlp`]) with at-least-once delivery and backoff.
//! - **audit checkpoints** ([`checkpoints`]): cofferd's signed audit checkpoints leave
//!   the appliance as OTLP logs, so that a truncated or rewritten audit log shows.
//! - **model sync** ([`sync`]): TUF-signed releases from a static HTTPS host or a copied
//!   bundle, resumable downloads, health-gated activation with rollback
//!   (`docs/fleet.md`).
//! - **the site's report** ([`site_report`]): what this site runs and how its rollout
//!   stands, as series and transition events for the fleet's monitoring.
//! - **when to activate** ([`window`]): change windows, release not-before times and
//!   paced rollouts, which model sync and the configuration both use.

pub mod checkpoints;
pub mod config;
pub mod egress;
pub mod otlp;
pub mod remote_write;
pub mod site_report;
pub mod sync;
pub mod systemd;
pub mod window;

/// The HTTPS client the agent shares with the fleet admin's tools.
pub use coffer_fleet::transport;

pub use config::AgentConfig;
