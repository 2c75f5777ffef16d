//! coffer-agent: the fleet agent of a Coffer appliance.
//!
//! It will own two jobs, each behind its own module as it lands:
//! - **model sync**: poll a TUF-signed release repository on a static HTTPS host (or a
//!   copied bundle for air-gapped sites), download targets with HTTP Range resume while
//!   verifying hashes, hand versions to cofferd over its admin socket, watch the health
//!   gate and roll back on failure;
//! - **telemetry egress**: ship allowlisted, redacted records from cofferd's spool to
//!   Prometheus remote-write and OTLP/HTTP with at-least-once delivery.
//!
//! Nothing is implemented yet; this crate holds the place in the workspace.
