//! The configuration file's schema exactly as written in TOML, with its defaults.
//! Every table refuses unknown keys. Values stay strings where validation parses them
//! (durations, addresses, rates), so that one bad value is reported with its key.

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub tls: RawTls,
    pub admission: RawAdmission,
    pub state: RawState,
    pub admin: RawAdmin,
    pub log: RawLog,
    pub scoring: RawScoring,
    pub telemetry: RawTelemetry,
    pub audit: RawAudit,
    pub gpu: RawGpu,
    pub chat: RawChat,
    pub embedding: RawEmbedding,
    pub decisions: RawDecisions,
}

/// `[decisions]`: which scoring models' decisions are kept (docs/decisions.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDecisions {
    pub models: Vec<String>,
    pub retention: String,
    pub keys_dir: String,
}

impl Default for RawDecisions {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            retention: "25months".into(),
            keys_dir: String::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawChat {
    pub models: Vec<String>,
    pub slots: usize,
    pub context: usize,
    pub n_batch: u32,
    pub threads: Option<usize>,
    pub threads_beside_scoring: Option<usize>,
    pub scoring_quiet: String,
    pub max_queue: usize,
    pub n_gpu_layers: RawGpuLayers,
    pub gpu_headroom_mib: u64,
    pub keep_alive: String,
    pub prefix_reuse: bool,
    pub prefix_cache_bytes: u64,
}

impl Default for RawChat {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            slots: 4,
            context: 2048,
            n_batch: 512,
            threads: None,
            threads_beside_scoring: None,
            scoring_quiet: "2s".into(),
            max_queue: 16,
            n_gpu_layers: RawGpuLayers::Word("auto".into()),
            gpu_headroom_mib: 768,
            keep_alive: "10s".into(),
            prefix_reuse: true,
            prefix_cache_bytes: 256 << 20,
        }
    }
}

/// `chat.n_gpu_layers`: a number of layers or the word `auto`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawGpuLayers {
    Number(u32),
    Word(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawEmbedding {
    pub models: Vec<String>,
    pub threads: Option<usize>,
    pub batch_tokens: usize,
    pub max_sequences: usize,
    pub max_queue: usize,
    pub n_gpu_layers: u32,
}

impl Default for RawEmbedding {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            threads: None,
            batch_tokens: 512,
            max_sequences: 64,
            max_queue: 64,
            n_gpu_layers: 0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawGpu {
    pub enabled: bool,
    pub interval: String,
    pub recover_after: u32,
    pub temperature_margin_c: u32,
    pub sbe_per_sample: u64,
    pub pcie_replays_per_sample: u64,
    pub simulate: Option<String>,
    pub models: std::collections::BTreeMap<String, RawGpuModel>,
}

impl Default for RawGpu {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: "5s".into(),
            recover_after: 3,
            temperature_margin_c: 5,
            sbe_per_sample: 10,
            pcie_replays_per_sample: 100,
            simulate: None,
            models: std::collections::BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGpuModel {
    pub policy: String,
    /// The GPU (index) the model runs on; unset: any GPU's failure applies to it.
    pub gpu: Option<u32>,
    pub cpu_variant: Option<String>,
    pub shed_max_in_flight: Option<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    pub enabled: bool,
    pub dir: Option<String>,
    pub fsync: String,
    pub fsync_interval: String,
    pub max_segment_bytes: u64,
    pub max_total_bytes: u64,
    pub max_age: Option<String>,
    pub checkpoint_every: u64,
    pub requests: bool,
}

impl Default for RawAudit {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            fsync: "interval".into(),
            fsync_interval: "1s".into(),
            max_segment_bytes: 64 << 20,
            max_total_bytes: 8 << 30,
            max_age: None,
            checkpoint_every: 1000,
            requests: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTelemetry {
    pub enabled: bool,
    pub interval: String,
    pub spool_max_records: usize,
    pub decisions_epsilon: Option<f64>,
    pub epsilon_per_period: f64,
}

impl Default for RawTelemetry {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: "60s".into(),
            spool_max_records: 100_000,
            decisions_epsilon: None,
            epsilon_per_period: 4.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawScoring {
    pub models: Vec<String>,
    pub queue_capacity: usize,
    pub drift_min_rows: u64,
    pub drift_interval: String,
    pub shadow_min_rows: u64,
    pub shadow_min_agreement: f64,
}

impl Default for RawScoring {
    fn default() -> Self {
        Self {
            models: Vec::new(),
            queue_capacity: 256,
            drift_min_rows: 500,
            drift_interval: "30s".into(),
            shadow_min_rows: 500,
            shadow_min_agreement: 0.95,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub request_timeout: String,
    pub header_read_timeout: String,
    pub tls_handshake_timeout: String,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub idle_timeout: String,
    pub max_connection_age: String,
    pub stream_stall_timeout: String,
    pub max_body_bytes: usize,
    pub shutdown_grace: String,
}

impl Default for RawServer {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8443".into(),
            request_timeout: "60s".into(),
            header_read_timeout: "10s".into(),
            tls_handshake_timeout: "10s".into(),
            max_connections: 1024,
            max_connections_per_address: 256,
            idle_timeout: "60s".into(),
            max_connection_age: "1h".into(),
            stream_stall_timeout: "30s".into(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    pub cert: Option<String>,
    pub key: Option<String>,
    pub client_auth: String,
    pub client_ca: Option<String>,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            client_auth: "off".into(),
            client_ca: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmission {
    pub max_in_flight: usize,
    pub max_in_flight_per_key: Option<usize>,
    pub max_queue: usize,
    pub queue_timeout: String,
    pub retry_after: String,
    pub default_key_rate: Option<String>,
}

impl Default for RawAdmission {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            max_in_flight_per_key: None,
            max_queue: 256,
            queue_timeout: "5s".into(),
            retry_after: "1s".into(),
            default_key_rate: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawState {
    pub dir: String,
    pub check_interval: String,
    pub min_free_bytes: u64,
    /// The model store; default `<dir>/models`.
    pub model_store: Option<String>,
}

impl Default for RawState {
    fn default() -> Self {
        Self {
            dir: "/var/lib/coffer".into(),
            check_interval: "5s".into(),
            min_free_bytes: 64 << 20,
            model_store: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAdmin {
    pub socket: String,
    pub allowed_uids: Vec<u32>,
    pub allowed_gids: Vec<u32>,
    pub allowed_users: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub agent_uids: Vec<u32>,
    pub agent_gids: Vec<u32>,
    pub agent_users: Vec<String>,
    pub agent_groups: Vec<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        Self {
            socket: "/run/coffer/admin.sock".into(),
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            agent_uids: Vec::new(),
            agent_gids: Vec::new(),
            agent_users: Vec::new(),
            agent_groups: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
    pub level: String,
    pub access: bool,
}

impl Default for RawLog {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
            access: false,
        }
    }
}
