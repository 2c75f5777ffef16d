//! The telemetry spool as the agent drains it (`GET /admin/telemetry?max=N`,
//! `POST /admin/telemetry/ack`) and the audit checkpoints it ships
//! (`GET /admin/audit/checkpoints?after=SEQ&limit=N`).

use coffer_privacy::checkpoint::Checkpoint;
use coffer_privacy::telemetry::Record;
use serde::{Deserialize, Serialize};

/// The oldest records of the spool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    /// `FIRST-LAST` sequence numbers; empty when there is nothing to send.
    pub batch_id: String,
    pub records: Vec<Record>,
    /// Records dropped because the spool was full, since it was created.
    pub dropped_total: u64,
    /// Records waiting, this batch included.
    pub pending: usize,
}

/// The body of `POST /admin/telemetry/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub batch_id: String,
}

/// The answer to an ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acked {
    pub removed: usize,
}

/// `GET /admin/audit/checkpoints`: the key that verifies them and the checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoints {
    /// Hex ed25519 public key.
    pub public_key: String,
    pub checkpoints: Vec<Checkpoint>,
}
