//! What cofferd measures about served scoring models and shows on request: drift
//! (`GET /admin/models/{name}/drift`) and shadow evaluation
//! (`PUT|GET|DELETE /admin/models/{name}/shadow`).

use serde::{Deserialize, Serialize};

/// PSI of one distribution in one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Psi {
    /// `score` or the feature's name.
    pub name: String,
    pub psi: f64,
    /// `stable`, `watch` or `act`; `too few rows` below the minimum.
    pub reading: String,
}

/// One window's drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowReport {
    /// `hour`, `day`, `previous hour`, `previous day`.
    pub window: String,
    /// Unix seconds.
    pub start: u64,
    pub rows: u64,
    pub score: Option<Psi>,
    /// Features by descending CSI.
    pub features: Vec<Psi>,
}

/// Drift of one served model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReport {
    pub model: String,
    pub version: String,
    pub psi_watch: f64,
    pub psi_act: f64,
    pub min_rows: u64,
    pub windows: Vec<WindowReport>,
}

/// `GET /admin/models/{name}/drift`: each served version's drift.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftAnswer {
    pub model: String,
    pub versions: Vec<DriftReport>,
}

/// The body of `PUT /admin/models/{name}/shadow`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowRequest {
    pub version: String,
    /// The share of requests compared, above 0 and at most 1.
    pub fraction: f64,
}

/// What a shadow run has measured so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShadowStats {
    /// Requests sampled.
    pub requests: u64,
    /// Rows compared.
    pub rows: u64,
    /// Rows on the same side of the decision threshold.
    pub agree: u64,
    pub sum_abs_diff: f64,
    pub max_abs_diff: f64,
    /// Sampled requests not compared because the candidate's queue was full.
    pub skipped: u64,
    /// Sampled requests the candidate failed on (an error, or other outputs).
    pub failed: u64,
    pub active_bins: Vec<u64>,
    pub candidate_bins: Vec<u64>,
}

/// A shadow comparison of a candidate against the active version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShadowReport {
    pub model: String,
    pub candidate: String,
    pub active: String,
    pub fraction: f64,
    /// Unix milliseconds.
    pub started_at_ms: u64,
    pub decision_threshold: f64,
    pub rows: u64,
    pub agreement: Option<f64>,
    pub mean_abs_diff: Option<f64>,
    pub max_abs_diff: f64,
    /// PSI of the candidate's score distribution against the active version's.
    pub score_psi: Option<f64>,
    pub stats: ShadowStats,
}
