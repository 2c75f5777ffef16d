//! `GET /admin/health`: whether cofferd is ready, each component's state, and every
//! model version's requests by outcome since the daemon started (the fleet agent's
//! health gate takes differences).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Requests of one version by outcome, since the daemon started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeCounts {
    pub ok: u64,
    pub client_error: u64,
    pub server_error: u64,
}

/// One version's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionHealth {
    pub model: String,
    pub version: String,
    #[serde(flatten)]
    pub counts: OutcomeCounts,
}

/// One readiness component (a listener, an engine, the GPU watch...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentState {
    pub ready: bool,
    pub detail: String,
}

/// The whole report; always answered with 200.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    pub ready: bool,
    /// Each readiness component's state as `/readyz` shows it.
    #[serde(default)]
    pub components: BTreeMap<String, ComponentState>,
    pub models: Vec<VersionHealth>,
    /// cofferd's version (absent from older daemons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The GPU's health in one word: `disabled`, `absent`, or the worst GPU's
    /// `healthy`, `degraded`, `failed` (absent from older daemons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
}
