//! Log setup: `tracing` to stderr as text or JSON. Under systemd (`JOURNAL_STREAM` set)
//! text logs drop colours and timestamps, which journald adds itself.
//!
//! Filtering uses `Targets` (`info`, `info,cofferd=debug`) rather than `EnvFilter`: it is
//! checked on every request's span, and `Targets` is several times cheaper there.
//!
//! The level a setting names applies to Coffer's own crates. Other crates' events stay at
//! `warn` or above, and rustls's are off, unless the setting names their target: at debug
//! h2 logs a malformed `:authority` as sent, and rustls warns with an illegal SNI name as
//! sent, both before any key is checked (`docs/privacy.md`).

use std::io::IsTerminal as _;

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, parse_log_filter};

/// Coffer's own crates: the configured level applies to them as written.
const OWN_TARGETS: [&str; 8] = [
    "cofferd",
    "coffer_chat",
    "coffer_engine",
    "coffer_models",
    "coffer_privacy",
    "coffer_score",
    "coffer_trees",
    "coffer_agent",
];

/// Crates whose log lines can quote what a client sent, off unless named.
const QUIET_TARGETS: [&str; 2] = ["rustls", "tokio_rustls"];

/// The filter for a parsed spec: its default level for Coffer's crates, at most `warn`
/// for other crates and off for [`QUIET_TARGETS`], except targets the spec names.
pub fn confine(spec: &Targets) -> Targets {
    let level = spec.default_level().unwrap_or(LevelFilter::INFO);
    let mut out = Targets::new().with_default(level.min(LevelFilter::WARN));
    for target in OWN_TARGETS {
        out = out.with_target(target, level);
    }
    for target in QUIET_TARGETS {
        out = out.with_target(target, LevelFilter::OFF);
    }
    out.with_targets(spec.iter())
}

/// Installs the global subscriber writing to stderr. `RUST_LOG`, when set and valid,
/// overrides `level`.
pub fn init(format: LogFormat, level: &str) {
    init_with(format, level, BoxMakeWriter::new(std::io::stderr));
}

/// [`init`] with another writer (the real stderr once `native_stderr` has captured
/// descriptor 2).
pub fn init_with(format: LogFormat, level: &str, writer: BoxMakeWriter) {
    let spec = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| parse_log_filter(&s))
        .or_else(|| parse_log_filter(level))
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let filter = confine(&spec);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false);
    let registry = tracing_subscriber::registry().with(filter);
    let result = match (format, journald) {
        (LogFormat::Json, _) => registry.with(layer.json().flatten_event(true)).try_init(),
        (LogFormat::Text, true) => registry
            .with(layer.with_ansi(false).without_time())
            .try_init(),
        (LogFormat::Text, false) => registry
            .with(layer.with_ansi(std::io::stderr().is_terminal()))
            .try_init(),
    };
    // A subscriber may already be installed (tests); that one is kept.
    let _ = result;
}

#[cfg(test)]
mod tests {
    use tracing::Level;
    use tracing_subscriber::filter::Targets;

    use super::confine;
    use crate::config::parse_log_filter;

    fn enabled(t: &Targets, target: &str, level: Level) -> bool {
        t.would_enable(target, &level)
    }

    #[test]
    fn debug_is_for_coffer_crates_and_named_targets_only() {
        let t = confine(&parse_log_filter("debug").unwrap());
        assert!(enabled(&t, "cofferd::server", Level::DEBUG));
        assert!(enabled(&t, "coffer_models::store", Level::DEBUG));
        assert!(!enabled(&t, "h2::server", Level::DEBUG));
        assert!(enabled(&t, "h2::server", Level::WARN));
        assert!(!enabled(&t, "rustls::msgs::handshake", Level::WARN));
        assert!(!enabled(&t, "rustls::msgs::handshake", Level::ERROR));
        let named = confine(&parse_log_filter("info,h2=debug,rustls=warn").unwrap());
        assert!(enabled(&named, "h2::server", Level::DEBUG));
        assert!(enabled(&named, "rustls::msgs::handshake", Level::WARN));
        assert!(!enabled(&named, "cofferd::server", Level::DEBUG));
        let quiet = confine(&parse_log_filter("error").unwrap());
        assert!(!enabled(&quiet, "hyper::proto", Level::WARN));
    }
}
