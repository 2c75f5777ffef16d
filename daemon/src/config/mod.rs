//! cofferd's configuration: the TOML schema (`RawConfig`, parsed with unknown keys
//! refused), the pure validation step that turns it into a typed [`Config`] or a list
//! of [`Problem`]s, and the file checks that `check-config` and start-up run.
//!
//! The three stages follow the house rule: parse → pure `validate()` → I/O in
//! [`check_files`]. Every key and its default is documented in `docs/config.md`.

mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

pub use raw::RawConfig;
pub use validate::validate;

use tracing_subscriber::filter::Targets;

use crate::rate_spec::RateSpec;

/// One thing wrong with a configuration: the key, what is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub what: String,
    pub fix: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}; fix: {}", self.key, self.what, self.fix)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} problem(s) in the configuration", .0.len())]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems to print, one per line.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ConfigError::Read { path, source } => vec![Problem {
                key: path.display().to_string(),
                what: format!("cannot read the file: {source}"),
                fix: "pass the path of a readable TOML file with --config".into(),
            }],
            ConfigError::Invalid(p) => p.clone(),
        }
    }
}

/// How the server asks TLS clients for certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Off,
    Optional,
    Required,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A validated configuration, ready to build the daemon from.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub admission: AdmissionConfig,
    pub state: StateConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub scoring: ScoringConfig,
    pub telemetry: TelemetryConfig,
    pub audit: AuditConfig,
    pub gpu: GpuConfig,
    pub chat: ChatConfig,
    pub embedding: EmbeddingConfig,
    pub decisions: DecisionsConfig,
}

/// Decisions kept on the box (docs/decisions.md).
#[derive(Debug, Clone)]
pub struct DecisionsConfig {
    /// Scoring model names whose every request is recorded.
    pub models: std::collections::BTreeSet<String>,
    /// How long a decision is kept.
    pub retention: Duration,
    /// The directory of the sealing keys (0700; keys 0600).
    pub keys_dir: PathBuf,
}

/// Chat models and their engine (docs/chat.md).
#[derive(Debug, Clone)]
pub struct ChatConfig {
    /// Chat model version directories (manifest + .gguf).
    pub models: Vec<PathBuf>,
    pub engine: ChatSettings,
    /// SSE comment sent on an idle stream this often.
    pub keep_alive: Duration,
}

/// The `[embedding]` section: embedding model version directories and the engine's
/// settings.
#[derive(Debug, Clone)]
pub struct EmbeddingConfig {
    pub models: Vec<PathBuf>,
    pub engine: coffer_chat::embed::EmbedSettings,
}

/// Engine settings from the `[chat]` configuration section: the chat engine's own type,
/// built by [`validate`].
pub use coffer_chat::ChatSettings;

/// GPU health monitoring and what a failed GPU means for each model (docs/gpu.md).
#[derive(Debug, Clone)]
pub struct GpuConfig {
    pub enabled: bool,
    pub interval: Duration,
    /// Consecutive better samples before a GPU's state improves.
    pub recover_after: u32,
    pub thresholds: GpuThresholds,
    /// A scripted timeline replayed instead of NVML (tests and drills).
    pub simulate: Option<PathBuf>,
    /// The models that run on the GPU, by name, with their fallback policy.
    pub models: std::collections::BTreeMap<String, FallbackPolicy>,
    /// The GPU a model names (`gpu.models.NAME.gpu`), by model name.
    pub devices: std::collections::BTreeMap<String, u32>,
}

/// Limits for the GPU's recoverable (degraded) signals.
#[derive(Debug, Clone, Copy)]
pub struct GpuThresholds {
    /// Degraded when the temperature is within this many °C of the slowdown threshold.
    pub temperature_margin_c: u32,
    /// Degraded when this many corrected ECC errors arrive between two samples.
    pub sbe_per_sample: u64,
    /// Degraded when the PCIe replay counter grows by this much between two samples.
    pub pcie_replays_per_sample: u64,
}

/// What requests for a GPU model get while no GPU can take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackPolicy {
    /// 503 `gpu_unavailable` with the reason.
    Fail,
    /// Serve this other loaded model (a CPU variant or distilled student) instead.
    CpuVariant(String),
    /// Serve the same model on the CPU, at most this many requests at once; 503
    /// `gpu_shedding` beyond.
    Shed { max_in_flight: usize },
}

impl FallbackPolicy {
    pub fn as_str(&self) -> &'static str {
        match self {
            FallbackPolicy::Fail => "fail",
            FallbackPolicy::CpuVariant(_) => "cpu-variant",
            FallbackPolicy::Shed { .. } => "shed",
        }
    }
}

/// The audit log (see docs/audit.md).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub enabled: bool,
    pub settings: crate::audit::AuditSettings,
    /// One record per API request (metadata only).
    pub requests: bool,
}

/// What cofferd records for the fleet (see docs/privacy.md).
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    pub enabled: bool,
    /// How often counters are written into the spool.
    pub interval: Duration,
    /// Records the spool keeps before it drops the oldest.
    pub spool_max_records: usize,
    /// Scoring decisions by outcome are recorded only with this epsilon (Laplace noise).
    pub decisions_epsilon: Option<f64>,
    /// The epsilon one period may spend over all noisy counters.
    pub epsilon_per_period: f64,
}

#[derive(Debug, Clone)]
pub struct ScoringConfig {
    /// Model version directories to serve.
    pub models: Vec<PathBuf>,
    /// Requests that may wait in each model version's batch queue.
    pub queue_capacity: usize,
    /// Rows a drift window needs before its PSI is read and alerted on.
    pub drift_min_rows: u64,
    /// How often drift counts are saved, published and checked.
    pub drift_interval: Duration,
    /// A shadow pass (`activate --require-shadow`): at least this many compared rows...
    pub shadow_min_rows: u64,
    /// ...with at least this decision agreement.
    pub shadow_min_agreement: f64,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub max_connections: usize,
    /// Open connections from one client address at most.
    pub max_connections_per_address: usize,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: Duration,
    /// A connection is asked to close once it is this old.
    pub max_connection_age: Duration,
    /// A streamed response whose client does not read for this long is ended.
    pub stream_stall_timeout: Duration,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct TlsConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    pub max_in_flight: usize,
    /// Requests one API key may have running or waiting.
    pub max_in_flight_per_key: usize,
    pub max_queue: usize,
    pub queue_timeout: Duration,
    pub retry_after: Duration,
    pub default_key_rate: Option<RateSpec>,
}

#[derive(Debug, Clone)]
pub struct StateConfig {
    pub dir: PathBuf,
    /// How often the state directory is probed for space and writability.
    pub check_interval: Duration,
    /// Below this much free space the daemon reports itself not ready.
    pub min_free_bytes: u64,
    /// The content-addressed model store (docs/models.md).
    pub model_store: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub socket: PathBuf,
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    /// Local user names, resolved to uids at start.
    pub allowed_users: Vec<String>,
    /// Local group names (the peer's primary group), resolved to gids at start.
    pub allowed_groups: Vec<String>,
    /// Peers with the `agent` role: only the calls the fleet agent makes.
    pub agent_uids: Vec<u32>,
    pub agent_gids: Vec<u32>,
    pub agent_users: Vec<String>,
    pub agent_groups: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub level: String,
    /// One info line per request (otherwise at debug level).
    pub access: bool,
}

/// Parses a level or `target=level` list, as `log.level` and `RUST_LOG` take it. Every
/// part must name a level, so that a typo such as `inf` is refused, not read as a target.
pub fn parse_log_filter(spec: &str) -> Option<Targets> {
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

/// Parses TOML text into the raw schema. Unknown keys and wrong types are reported with
/// the full key path (`server.lisen`), which serde alone does not give.
pub fn parse(text: &str) -> Result<RawConfig, Problem> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = inner.message().to_string();
        let line = inner
            .span()
            .map(|s| {
                format!(
                    " (line {})",
                    text[..s.start.min(text.len())].matches('\n').count() + 1
                )
            })
            .unwrap_or_default();
        Problem {
            key: if path == "." {
                "(top level)".into()
            } else {
                path
            },
            what: format!("{message}{line}"),
            fix: "correct or remove the key; every key is listed in docs/config.md".into(),
        }
    })
}

/// Reads, parses and validates a configuration file, then checks the files it names.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let raw = parse(&text).map_err(|p| ConfigError::Invalid(vec![p]))?;
    let config = validate(&raw).map_err(ConfigError::Invalid)?;
    let problems = check_files(&config);
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// The I/O half of validation: the files a configuration names exist and can be read.
pub fn check_files(config: &Config) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut readable = |key: &str, path: &Path, what: &str| {
        if let Err(e) = std::fs::File::open(path) {
            problems.push(Problem {
                key: key.into(),
                what: format!("cannot open {} ({e})", path.display()),
                fix: format!("point {key} at {what} readable by cofferd"),
            });
        }
    };
    readable("tls.cert", &config.tls.cert, "a PEM certificate chain");
    readable("tls.key", &config.tls.key, "a PEM private key");
    if let Some(ca) = &config.tls.client_ca {
        readable(
            "tls.client_ca",
            ca,
            "a PEM bundle of client CA certificates",
        );
    }
    for (i, dir) in config.scoring.models.iter().enumerate() {
        if !dir.join("manifest.toml").is_file() {
            problems.push(Problem {
                key: format!("scoring.models[{i}]"),
                what: format!("{} holds no manifest.toml", dir.display()),
                fix: "point it at a model version directory (manifest.toml, model.onnx, eval set)"
                    .into(),
            });
        }
    }
    // cofferd makes a missing socket directory itself (one level, like systemd's
    // RuntimeDirectory=), so only a missing grandparent is a problem.
    if let Some(parent) = config.admin.socket.parent() {
        let grandparent = parent.parent().filter(|g| !g.as_os_str().is_empty());
        if !parent.as_os_str().is_empty()
            && !parent.is_dir()
            && grandparent.is_some_and(|g| !g.is_dir())
        {
            problems.push(Problem {
                key: "admin.socket".into(),
                what: format!("directory {} does not exist", parent.display()),
                fix:
                    "create the directory (systemd: RuntimeDirectory=coffer) or choose another path"
                        .into(),
            });
        }
    }
    problems
}
