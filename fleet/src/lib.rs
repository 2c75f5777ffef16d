//! coffer-fleet: what the fleet agent and the fleet admin's tools share, so that each
//! contract is written once.
//!
//! - [`transport`]: the HTTPS client (rustls, a CA bundle) for the release host, the
//!   telemetry sinks and the fleet's Prometheus.
//! - [`site`]: what one site reports about itself and the Prometheus series it uses;
//!   the agent writes them, everything else reads them.
//! - [`prom`]: instant queries against the fleet's Prometheus.
//! - [`status`]: the fleet-status view built from the site series.

pub mod prom;
pub mod site;
pub mod status;
pub mod transport;
