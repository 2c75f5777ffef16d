//! The agent's configuration file (TOML, unknown keys refused), validated into typed
//! settings. Example in docs/telemetry.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Configuration errors: each names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    #[error("{key}: {what}")]
    Invalid { key: &'static str, what: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    site_id: String,
    #[serde(default = "default_state_dir")]
    state_dir: String,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    telemetry: RawTelemetry,
}

fn default_state_dir() -> String {
    "/var/lib/coffer-agent".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDaemon {
    admin_socket: String,
}

impl Default for RawDaemon {
    fn default() -> Self {
        Self {
            admin_socket: "/run/coffer/admin.sock".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTelemetry {
    remote_write_url: Option<String>,
    otlp_logs_url: Option<String>,
    ca_bundle: Option<String>,
    interval: String,
    batch_size: usize,
    backoff_min: String,
    backoff_max: String,
    timeout: String,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            remote_write_url: None,
            otlp_logs_url: None,
            ca_bundle: None,
            interval: "30s".into(),
            batch_size: 500,
            backoff_min: "1s".into(),
            backoff_max: "5m".into(),
            timeout: "10s".into(),
        }
    }
}

/// Validated agent settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Put on every series and log record as `site`.
    pub site_id: String,
    /// Where the agent keeps what it must remember across restarts (the last audit
    /// checkpoint shipped); systemd's `StateDirectory=`.
    pub state_dir: PathBuf,
    pub admin_socket: PathBuf,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Prometheus remote-write endpoint, e.g. `https://prom.example/api/v1/write`.
    pub remote_write_url: Option<http::Uri>,
    /// OTLP/HTTP logs endpoint, e.g. `https://otel.example:4318/v1/logs`.
    pub otlp_logs_url: Option<http::Uri>,
    /// PEM CA bundle for https sinks (the system roots are not read).
    pub ca_bundle: Option<PathBuf>,
    pub interval: Duration,
    pub batch_size: usize,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub timeout: Duration,
}

impl TelemetryConfig {
    /// Whether any sink is configured; without one the agent leaves records spooled.
    pub fn has_sink(&self) -> bool {
        self.remote_write_url.is_some() || self.otlp_logs_url.is_some()
    }
}

fn duration(key: &'static str, value: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(value).map_err(|e| ConfigError::Invalid {
        key,
        what: format!("{value:?} is not a duration ({e}); write e.g. \"30s\""),
    })
}

fn url(key: &'static str, value: Option<&String>) -> Result<Option<http::Uri>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    let uri: http::Uri = value.parse().map_err(|e| ConfigError::Invalid {
        key,
        what: format!("{value:?} is not a URL ({e})"),
    })?;
    match uri.scheme_str() {
        Some("http" | "https") if uri.host().is_some() => Ok(Some(uri)),
        _ => Err(ConfigError::Invalid {
            key,
            what: format!("{value:?} must be an http:// or https:// URL with a host"),
        }),
    }
}

impl AgentConfig {
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text)?;
        let t = &raw.telemetry;
        if t.batch_size == 0 || t.batch_size > 10_000 {
            return Err(ConfigError::Invalid {
                key: "telemetry.batch_size",
                what: format!("{} is outside 1..=10000", t.batch_size),
            });
        }
        let telemetry = TelemetryConfig {
            remote_write_url: url("telemetry.remote_write_url", t.remote_write_url.as_ref())?,
            otlp_logs_url: url("telemetry.otlp_logs_url", t.otlp_logs_url.as_ref())?,
            ca_bundle: t.ca_bundle.as_ref().map(PathBuf::from),
            interval: duration("telemetry.interval", &t.interval)?,
            batch_size: t.batch_size,
            backoff_min: duration("telemetry.backoff_min", &t.backoff_min)?,
            backoff_max: duration("telemetry.backoff_max", &t.backoff_max)?,
            timeout: duration("telemetry.timeout", &t.timeout)?,
        };
        Ok(AgentConfig {
            site_id: raw.site_id,
            state_dir: PathBuf::from(raw.state_dir),
            admin_socket: PathBuf::from(raw.daemon.admin_socket),
            telemetry,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_the_key() {
        let c = AgentConfig::parse(
            "site_id = \"branch-042\"\n[telemetry]\nremote_write_url = \"http://127.0.0.1:9090/api/v1/write\"\n",
        )
        .unwrap();
        assert_eq!(c.site_id, "branch-042");
        assert_eq!(c.telemetry.batch_size, 500);
        let e = AgentConfig::parse("[telemetry]\nremote_write_url = \"ftp://x\"\n").unwrap_err();
        assert!(
            e.to_string().starts_with("telemetry.remote_write_url"),
            "{e}"
        );
        // No sink is valid: records stay spooled in cofferd until one is configured.
        assert!(
            !AgentConfig::parse("[telemetry]\n")
                .unwrap()
                .telemetry
                .has_sink()
        );
        let e = AgentConfig::parse("[telemetry]\nremote_write_urll = \"x\"\n").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
    }
}
