//! The decision store's admin calls (`cofferctl decisions`): one decision by request
//! id, a list by model and time, a replay that re-scores recorded decisions with the
//! recorded version, an export (redacted for a dispute file), and key rotation. Every
//! call is recorded in the audit log, reads included.

use serde::{Deserialize, Serialize};

/// A decision's cleartext header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionSummary {
    pub request_id: String,
    pub at_ms: u64,
    pub model: String,
    pub version: String,
    pub key_id: String,
    /// SHA-256 of the sealed plaintext, as the audit log's `decision` record has it.
    pub sha256: String,
}

/// `GET /admin/decisions?model=M&since_ms=T&limit=N`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionList {
    pub decisions: Vec<DecisionSummary>,
}

/// One opened decision: its header and the record (`docs/decisions.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionDetail {
    #[serde(flatten)]
    pub summary: DecisionSummary,
    pub record: serde_json::Value,
}

/// `GET /admin/decisions/{request_id}` and `GET /admin/decisions-export`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecords {
    /// Attribute values and input tensors withheld (`[REDACTED]`); scores, reasons and
    /// hashes kept.
    pub redacted: bool,
    pub decisions: Vec<DecisionDetail>,
}

/// `POST /admin/decisions-replay`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayRequest {
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub since_ms: u64,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    10_000
}

/// What a replay found: every output bit for bit equal, or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayReport {
    pub replayed: u64,
    pub identical: u64,
    /// Request ids whose outputs differ now.
    pub differing: Vec<String>,
    /// Request ids whose recorded version could not be loaded.
    pub unavailable: Vec<String>,
}

/// `POST /admin/decision-keys`: a new key seals new decisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRotated {
    pub key_id: String,
    pub keys: Vec<String>,
}
