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
    /// An admin API call through the socket, by the peer's uid and role (`admin`,
    /// `agent`, or none for a peer that may not use the socket), refused calls included.
    Admin {
        uid: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
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
    /// A panic on a model version's engine thread was contained (`part`: the scoring
    /// batch or the chat decode step); the work in hand failed, the engine carried on.
    EngineFault {
        model: String,
        version: String,
        part: String,
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
        /// A scoring decision kept in the decision store (docs/decisions.md): the SHA-256
        /// of its sealed plaintext, so that a stored decision cannot be altered
        /// unnoticed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decision_sha256: Option<String>,
    },
    /// The decision store removed the decisions older than its retention: every decision
    /// recorded before `before_ms` is gone on purpose.
    DecisionsPruned {
        removed: u64,
        before_ms: u64,
    },
    /// The decision store has a new sealing key, `key_id`; `previous` had sealed (at
    /// most) `sealed` records and still opens them. `reason`: `limit` (the store's own:
    /// the key sealed its share) or `admin` (asked for; the `admin` record beside it
    /// names the caller).
    DecisionKeyRotated {
        previous: String,
        key_id: String,
        sealed: u64,
        reason: String,
    },
    /// Requests that carried no valid key (401s, `/healthz`, unknown routes) since the
    /// previous such record: counted, not recorded one by one, so that anonymous traffic
    /// cannot fill the log and push admin records out through retention.
    Unauthenticated {
        requests: u64,
    },
    /// An admin or lifecycle record carried forward when retention removed its segment:
    /// the original's sequence number, time and hash, and its event.
    Carried {
        seq: u64,
        at_ms: u64,
        hash: String,
        event: Box<AuditEvent>,
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

impl AuditEvent {
    /// Admin and lifecycle events: few, and kept past retention (carried forward into
    /// the live segment when their own segment is removed). Per-request records, counts,
    /// checkpoints, rotations and prunings (one per rotation under load) are not.
    pub fn lasts(&self) -> bool {
        !matches!(
            self,
            AuditEvent::Request { .. }
                | AuditEvent::Unauthenticated { .. }
                | AuditEvent::Checkpoint { .. }
                | AuditEvent::Rotated { .. }
                | AuditEvent::Pruned { .. }
        )
    }
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

    /// A new record chained after `prev`, with its JSON line (newline included),
    /// serialized once: the line is the hashed body with `hash` appended, the same bytes
    /// as serializing the record.
    pub fn chained_line(seq: u64, at_ms: u64, prev: &str, event: &AuditEvent) -> (String, Vec<u8>) {
        let mut line = serde_json::to_vec(&Unhashed {
            seq,
            at_ms,
            prev,
            event,
        })
        .unwrap_or_default();
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        h.update(&line);
        let hash = crate::hex_text::lower_hex(&h.finalize());
        line.pop(); // the closing brace
        line.extend_from_slice(b",\"hash\":\"");
        line.extend_from_slice(hash.as_bytes());
        line.extend_from_slice(b"\"}\n");
        (hash, line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_the_serialized_record() {
        let events = [
            AuditEvent::Stopping,
            AuditEvent::Request {
                request_id: "9f2c".into(),
                key_id: None,
                route: "/v2/models/{model}/infer \"quoted\" \u{e9}".into(),
                model: Some("credit-lr@1.0.0".into()),
                status: 200,
                request_bytes: 1311,
                response_bytes: 118,
                latency_us: 412,
                decision_sha256: Some("ab".repeat(32)),
            },
        ];
        for event in events {
            let (hash, line) = AuditRecord::chained_line(7, 1_764_400_000_000, GENESIS, &event);
            let mut record = AuditRecord {
                seq: 7,
                at_ms: 1_764_400_000_000,
                prev: GENESIS.into(),
                event,
                hash: String::new(),
            };
            record.hash = record.compute_hash();
            assert_eq!(hash, record.hash);
            let mut expected = serde_json::to_vec(&record).unwrap();
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }
}
