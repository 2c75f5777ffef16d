//! Log setup: `tracing` to stderr as text or JSON. Under systemd (`JOURNAL_STREAM` set)
//! text logs drop colours and timestamps, which journald adds itself.
//!
//! Filtering uses `Targets` (`info`, `info,cofferd=debug`) rather than `EnvFilter`: it is
//! checked on every request's span, and `Targets` is several times cheaper there.

use std::io::IsTerminal as _;
use std::str::FromStr as _;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::LogFormat;

/// Parses a level or `target=level` list, as `log.level` and `RUST_LOG` take it. Every
/// part must name a level, so that a typo such as `inf` is refused, not read as a target.
pub fn parse_filter(spec: &str) -> Option<Targets> {
    let levels_ok = spec.split(',').all(|part| {
        let level = part.rsplit_once('=').map_or(part, |(_, l)| l);
        tracing_subscriber::filter::LevelFilter::from_str(level.trim()).is_ok()
    });
    if levels_ok {
        Targets::from_str(spec).ok()
    } else {
        None
    }
}

/// Installs the global subscriber. `RUST_LOG`, when set and valid, overrides `level`.
pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|s| parse_filter(&s))
        .or_else(|| parse_filter(level))
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
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
    use super::parse_filter;

    #[test]
    fn levels_and_target_lists_parse_and_typos_do_not() {
        assert!(parse_filter("info").is_some());
        assert!(parse_filter("warn,cofferd=debug").is_some());
        assert!(parse_filter("inf").is_none());
        assert!(parse_filter("info,cofferd=loud").is_none());
    }
}
