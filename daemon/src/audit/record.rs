//! What the audit log records: typed events (admin actions, key changes, model
//! lifecycle, per-request metadata, checkpoints) in hash-chained records. Never request
//! or response content: only ids, routes, model versions, status, sizes and latency.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuditEvent {
    /// The daemon started (with its signing key's public half) or is stopping.
    Started {
        public_key: String,
    },
    Stopping,
    /// An admin API call through the socket, by the peer's uid.
    Admin {
        uid: u32,
        action: String,
        target: String,
        status: u16,
    },
    /// A model version loaded to serve.
    ModelLoaded {
        model: String,
        version: String,
    },
    /// A model version became the served one of its name (`action`: activate,
    /// rollback, start), with the variant chosen for this host.
    ModelActivated {
        model: String,
        version: String,
        variant: Option<String>,
        previous: Option<String>,
        action: String,
        actor: String,
    },
    /// A drift reading of a served scoring version got worse (`docs/drift.md`).
    DriftAlert {
        model: String,
        version: String,
        window: String,
        distribution: String,
        psi: f64,
        reading: String,
    },
    /// A GPU's health state changed (docs/gpu.md).
    GpuState {
        gpu: u32,
        uuid: String,
        from: String,
        to: String,
        reason: String,
    },
    /// One API request's metadata.
    Request {
        request_id: String,
        key_id: Option<String>,
        route: String,
        model: Option<String>,
        status: u16,
        request_bytes: u64,
        response_bytes: u64,
        latency_us: u64,
    },
    /// A signed statement that the chain up to `upto_seq` ends in `upto_hash`.
    Checkpoint {
        upto_seq: u64,
        upto_hash: String,
        signature: String,
    },
    /// A new segment file starts; the chain continues across it.
    Rotated {
        previous_segment: String,
    },
    /// Retention removed the oldest segments (`reason`: `size` or `age`): every record
    /// before `before_seq` is gone, and the signed `PRUNED` anchor says so.
    Pruned {
        segments: u64,
        bytes: u64,
        before_seq: u64,
        reason: String,
    },
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    pub seq: u64,
    pub at_ms: u64,
    /// The previous record's hash (64 zeros before the first).
    pub prev: String,
    pub event: AuditEvent,
    /// SHA-256 over `prev` and this record's canonical JSON without `hash`.
    pub hash: String,
}

/// The hash before the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Serialize)]
struct Unhashed<'a> {
    seq: u64,
    at_ms: u64,
    prev: &'a str,
    event: &'a AuditEvent,
}

impl AuditRecord {
    /// The hash this record must carry.
    pub fn compute_hash(&self) -> String {
        let body = serde_json::to_vec(&Unhashed {
            seq: self.seq,
            at_ms: self.at_ms,
            prev: &self.prev,
            event: &self.event,
        })
        .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(self.prev.as_bytes());
        h.update(&body);
        hex::encode(h.finalize())
    }

    /// A new record chained after `prev`.
    pub fn chained(seq: u64, at_ms: u64, prev: &str, event: AuditEvent) -> AuditRecord {
        let mut r = AuditRecord {
            seq,
            at_ms,
            prev: prev.to_string(),
            event,
            hash: String::new(),
        };
        r.hash = r.compute_hash();
        r
    }
}
