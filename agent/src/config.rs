//! The agent's configuration file (TOML, unknown keys refused), validated into typed
//! settings. Example in docs/telemetry.md.

use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer_release::layout::Ring;
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
    /// Accept http:// for the release repository and the telemetry sinks (models and
    /// telemetry then travel in clear); warned about at every start.
    #[serde(default)]
    allow_insecure_http: bool,
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    telemetry: RawTelemetry,
    #[serde(default)]
    sync: RawSync,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSync {
    repository_url: Option<String>,
    trusted_root: String,
    ca_bundle: Option<String>,
    ring: String,
    poll_interval: String,
    jitter: String,
    bandwidth_limit: String,
    timeout: String,
    metadata_timeout: String,
    min_rate: String,
    backoff_min: String,
    backoff_max: String,
    health_gate: String,
    health_interval: String,
    max_error_ratio: f64,
    min_requests: u64,
    import_timeout: String,
    bundle_expiry_grace: String,
    change_window: Option<String>,
    time_zone: Option<String>,
}

impl Default for RawSync {
    fn default() -> Self {
        Self {
            repository_url: None,
            trusted_root: "/etc/coffer/fleet-root.json".into(),
            ca_bundle: None,
            ring: "broad".into(),
            poll_interval: "15m".into(),
            jitter: "5m".into(),
            bandwidth_limit: "0".into(),
            timeout: "60s".into(),
            metadata_timeout: "2m".into(),
            min_rate: "16KiB".into(),
            backoff_min: "30s".into(),
            backoff_max: "1h".into(),
            health_gate: "10m".into(),
            health_interval: "5s".into(),
            max_error_ratio: 0.05,
            min_requests: 20,
            import_timeout: "30m".into(),
            bundle_expiry_grace: "0s".into(),
            change_window: None,
            time_zone: None,
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
    /// http:// URLs were allowed (`allow_insecure_http = true`).
    pub allow_insecure_http: bool,
    pub telemetry: TelemetryConfig,
    pub sync: SyncConfig,
}

/// Model sync from the fleet's TUF release repository (`docs/fleet.md`).
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Base URL of the published repository (`metadata/` and `targets/` under it);
    /// `None`: no online sync (bundles can still be imported).
    pub repository_url: Option<http::Uri>,
    /// The root metadata installed out of band (`1.root.json` of the repository); the
    /// agent keeps the newest root it has verified in its state directory.
    pub trusted_root: PathBuf,
    /// PEM CA bundle for an https repository (the system roots are not read).
    pub ca_bundle: Option<PathBuf>,
    pub ring: Ring,
    pub poll_interval: Duration,
    /// Each poll waits a random extra 0..jitter, so a fleet does not poll in step.
    pub jitter: Duration,
    /// Download bandwidth cap in bytes per second; `None`: none.
    pub bandwidth_limit: Option<u64>,
    /// Longest wait for a connection, an answer's head or the next bytes of a body.
    pub timeout: Duration,
    /// Longest one metadata file may take to arrive, whole (a host that drips bytes
    /// just inside `timeout` is cut off here).
    pub metadata_timeout: Duration,
    /// Slowest average rate a release file may arrive at: a transfer gets `timeout`
    /// plus its remaining bytes at this rate, then counts as stalled (the partial file
    /// stays and the next poll resumes it). `None`: no minimum.
    pub min_rate: Option<u64>,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a newly activated version is watched before it counts as good.
    pub health_gate: Duration,
    pub health_interval: Duration,
    /// Above this share of server errors (with at least `min_requests` requests) during
    /// the gate, the version is rolled back.
    pub max_error_ratio: f64,
    pub min_requests: u64,
    /// Longest an import (upload and cofferd's evaluation gate) may take.
    pub import_timeout: Duration,
    /// How long after its metadata expired a copied bundle is still accepted (0: not at
    /// all). Online sync always enforces expiry.
    pub bundle_expiry_grace: Duration,
    /// When a release may be activated (downloads and imports happen any time);
    /// `None`: any time.
    pub change_window: Option<crate::window::ChangeWindow>,
    /// The site's time zone for `change_window` (`sync.time_zone`, an IANA name; the
    /// system's by default).
    pub time_zone: jiff::tz::TimeZone,
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

/// An https:// URL with a host; http:// only where `allow_http` (the
/// `allow_insecure_http` setting).
fn url(
    key: &'static str,
    value: Option<&String>,
    allow_http: bool,
) -> Result<Option<http::Uri>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    let uri: http::Uri = value.parse().map_err(|e| ConfigError::Invalid {
        key,
        what: format!("{value:?} is not a URL ({e})"),
    })?;
    match uri.scheme_str() {
        Some("https") if uri.host().is_some() => Ok(Some(uri)),
        Some("http") if uri.host().is_some() && allow_http => Ok(Some(uri)),
        Some("http") if uri.host().is_some() => Err(ConfigError::Invalid {
            key,
            what: format!(
                "{value:?} is http://: what goes over it would travel in clear and could be \
                 changed on the way; use https://, or set allow_insecure_http = true"
            ),
        }),
        _ => Err(ConfigError::Invalid {
            key,
            what: format!("{value:?} must be an https:// URL with a host"),
        }),
    }
}

impl AgentConfig {
    /// The configured URLs that are http:// (allowed by `allow_insecure_http`), by key:
    /// warned about at every start.
    pub fn insecure_urls(&self) -> Vec<(&'static str, &http::Uri)> {
        [
            ("sync.repository_url", self.sync.repository_url.as_ref()),
            (
                "telemetry.remote_write_url",
                self.telemetry.remote_write_url.as_ref(),
            ),
            (
                "telemetry.otlp_logs_url",
                self.telemetry.otlp_logs_url.as_ref(),
            ),
        ]
        .into_iter()
        .filter_map(|(key, u)| {
            u.filter(|u| u.scheme_str() == Some("http"))
                .map(|u| (key, u))
        })
        .collect()
    }

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
            remote_write_url: url(
                "telemetry.remote_write_url",
                t.remote_write_url.as_ref(),
                raw.allow_insecure_http,
            )?,
            otlp_logs_url: url(
                "telemetry.otlp_logs_url",
                t.otlp_logs_url.as_ref(),
                raw.allow_insecure_http,
            )?,
            ca_bundle: t.ca_bundle.as_ref().map(PathBuf::from),
            interval: duration("telemetry.interval", &t.interval)?,
            batch_size: t.batch_size,
            backoff_min: duration("telemetry.backoff_min", &t.backoff_min)?,
            backoff_max: duration("telemetry.backoff_max", &t.backoff_max)?,
            timeout: duration("telemetry.timeout", &t.timeout)?,
        };
        let sync = sync_config(&raw.sync, raw.allow_insecure_http)?;
        check_site_id(&raw.site_id)?;
        Ok(AgentConfig {
            site_id: raw.site_id,
            state_dir: PathBuf::from(raw.state_dir),
            admin_socket: PathBuf::from(raw.daemon.admin_socket),
            allow_insecure_http: raw.allow_insecure_http,
            telemetry,
            sync,
        })
    }
}

/// `10MiB`, `500k`, `0` (none): bytes per second.
fn rate(key: &'static str, value: &str) -> Result<Option<u64>, ConfigError> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().trim_end_matches("/s") {
        "" | "b" => 1,
        "k" | "kb" => 1000,
        "kib" => 1024,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => {
            return Err(ConfigError::Invalid {
                key,
                what: format!("{value:?}: write bytes per second, e.g. \"10MiB\" (0: no limit)"),
            });
        }
    };
    let n: u64 = num.parse().map_err(|_| ConfigError::Invalid {
        key,
        what: format!("{value:?}: write bytes per second, e.g. \"10MiB\" (0: no limit)"),
    })?;
    Ok(match n.saturating_mul(mult) {
        0 => None,
        r => Some(r),
    })
}

/// A site id names a site, never a person: letters, digits, `.`, `_` and `-`, up to 64,
/// starting with a letter or digit (so no e-mail address, no name with spaces).
fn check_site_id(id: &str) -> Result<(), ConfigError> {
    let ok = id.is_empty()
        || (id.len() <= 64
            && id.starts_with(|c: char| c.is_ascii_alphanumeric())
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            key: "site_id",
            what: format!(
                "{id:?}: a site id names a site, not a person: letters, digits, '.', '_' and '-' (up to 64), e.g. \"branch-042\""
            ),
        })
    }
}

fn sync_config(s: &RawSync, allow_http: bool) -> Result<SyncConfig, ConfigError> {
    let ring = s.ring.parse().map_err(|what| ConfigError::Invalid {
        key: "sync.ring",
        what,
    })?;
    if !(0.0..=1.0).contains(&s.max_error_ratio) {
        return Err(ConfigError::Invalid {
            key: "sync.max_error_ratio",
            what: format!("{} is outside 0..=1", s.max_error_ratio),
        });
    }
    let c = SyncConfig {
        repository_url: url("sync.repository_url", s.repository_url.as_ref(), allow_http)?,
        trusted_root: PathBuf::from(&s.trusted_root),
        ca_bundle: s.ca_bundle.as_ref().map(PathBuf::from),
        ring,
        poll_interval: duration("sync.poll_interval", &s.poll_interval)?,
        jitter: duration("sync.jitter", &s.jitter)?,
        bandwidth_limit: rate("sync.bandwidth_limit", &s.bandwidth_limit)?,
        timeout: duration("sync.timeout", &s.timeout)?,
        metadata_timeout: duration("sync.metadata_timeout", &s.metadata_timeout)?,
        min_rate: rate("sync.min_rate", &s.min_rate)?,
        backoff_min: duration("sync.backoff_min", &s.backoff_min)?,
        backoff_max: duration("sync.backoff_max", &s.backoff_max)?,
        health_gate: duration("sync.health_gate", &s.health_gate)?,
        health_interval: duration("sync.health_interval", &s.health_interval)?,
        max_error_ratio: s.max_error_ratio,
        min_requests: s.min_requests,
        import_timeout: duration("sync.import_timeout", &s.import_timeout)?,
        bundle_expiry_grace: duration("sync.bundle_expiry_grace", &s.bundle_expiry_grace)?,
        change_window: s
            .change_window
            .as_deref()
            .map(crate::window::ChangeWindow::parse)
            .transpose()
            .map_err(|what| ConfigError::Invalid {
                key: "sync.change_window",
                what,
            })?,
        time_zone: match &s.time_zone {
            None => jiff::tz::TimeZone::system(),
            Some(name) => jiff::tz::TimeZone::get(name).map_err(|e| ConfigError::Invalid {
                key: "sync.time_zone",
                what: format!("{name:?} is not a time zone this system knows (an IANA name such as \"Europe/Berlin\"): {e}"),
            })?,
        },
    };
    if c.poll_interval.is_zero() || c.health_interval.is_zero() || c.backoff_min.is_zero() {
        return Err(ConfigError::Invalid {
            key: "sync",
            what: "poll_interval, health_interval and backoff_min must be above zero".into(),
        });
    }
    if c.timeout.is_zero() || c.metadata_timeout.is_zero() {
        return Err(ConfigError::Invalid {
            key: "sync",
            what: "timeout and metadata_timeout must be above zero".into(),
        });
    }
    if let (Some(min), Some(cap)) = (c.min_rate, c.bandwidth_limit) {
        if min > cap {
            return Err(ConfigError::Invalid {
                key: "sync.min_rate",
                what: format!(
                    "{min} bytes/s is above sync.bandwidth_limit ({cap} bytes/s): every \
                     download would count as stalled"
                ),
            });
        }
    }
    if c.backoff_max < c.backoff_min {
        return Err(ConfigError::Invalid {
            key: "sync.backoff_max",
            what: "is below sync.backoff_min".into(),
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses_with_the_key() {
        let c = AgentConfig::parse(
            "site_id = \"branch-042\"\n[telemetry]\nremote_write_url = \"https://127.0.0.1:9090/api/v1/write\"\n",
        )
        .unwrap();
        assert_eq!(c.site_id, "branch-042");
        for bad in ["jane.doe@bank.example", "Jane Doe", "-x", &"a".repeat(65)] {
            let err = AgentConfig::parse(&format!("site_id = {bad:?}\n")).unwrap_err();
            assert!(err.to_string().starts_with("site_id: "), "{bad}: {err}");
        }
        assert!(c.insecure_urls().is_empty());
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

    #[test]
    fn sync_settings_parse_and_refuse_with_the_key() {
        let c = AgentConfig::parse(
            "[sync]\nrepository_url = \"https://releases.example/coffer/\"\nring = \"canary\"\nbandwidth_limit = \"10MiB\"\n",
        )
        .unwrap();
        assert_eq!(c.sync.ring, Ring::Canary);
        assert_eq!(c.sync.bandwidth_limit, Some(10 << 20));
        assert_eq!(c.sync.bundle_expiry_grace, Duration::ZERO);
        assert_eq!(AgentConfig::parse("").unwrap().sync.bandwidth_limit, None);
        for (text, key) in [
            ("[sync]\nring = \"beta\"\n", "sync.ring"),
            (
                "[sync]\nbandwidth_limit = \"fast\"\n",
                "sync.bandwidth_limit",
            ),
            ("[sync]\nmax_error_ratio = 2.0\n", "sync.max_error_ratio"),
            ("[sync]\nbackoff_max = \"1s\"\n", "sync.backoff_max"),
            ("[sync]\nhealth_gate = \"soon\"\n", "sync.health_gate"),
            ("[sync]\nmin_rate = \"slow\"\n", "sync.min_rate"),
            (
                "[sync]\nbandwidth_limit = \"8KiB\"\nmin_rate = \"16KiB\"\n",
                "sync.min_rate",
            ),
            ("[sync]\nmetadata_timeout = \"0s\"\n", "sync"),
        ] {
            let e = AgentConfig::parse(text).unwrap_err().to_string();
            assert!(e.starts_with(key), "{text}: {e}");
        }
    }

    #[test]
    fn http_is_refused_unless_allowed_and_then_listed_for_the_warning() {
        for (text, key) in [
            (
                "[sync]\nrepository_url = \"http://releases.example/coffer/\"\n",
                "sync.repository_url",
            ),
            (
                "[telemetry]\nremote_write_url = \"http://prom.example/api/v1/write\"\n",
                "telemetry.remote_write_url",
            ),
            (
                "[telemetry]\notlp_logs_url = \"http://otel.example:4318/v1/logs\"\n",
                "telemetry.otlp_logs_url",
            ),
        ] {
            let e = AgentConfig::parse(text).unwrap_err().to_string();
            assert!(
                e.starts_with(key) && e.contains("allow_insecure_http"),
                "{text}: {e}"
            );
            let allowed =
                AgentConfig::parse(&format!("allow_insecure_http = true\n{text}")).unwrap();
            let insecure = allowed.insecure_urls();
            assert_eq!(insecure.len(), 1, "{text}");
            assert_eq!(insecure[0].0, key);
        }
        let c = AgentConfig::parse("").unwrap();
        assert_eq!(c.sync.min_rate, Some(16 * 1024));
        assert_eq!(c.sync.metadata_timeout, Duration::from_secs(120));
    }
}
