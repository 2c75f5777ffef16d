//! The telemetry records that may leave the branch: a closed, typed allowlist shared by
//! cofferd (which writes them into its spool) and coffer-agent (which ships them).
//! Nothing else is a record. The only strings are route templates, model names and
//! versions, engine names and a few fixed codes; [`Record::sanitized`] runs each of them
//! through the redaction once more, so even a model named after a card number leaves as
//! `[PAN]`.

use serde::{Deserialize, Serialize};

use crate::redact;

/// One telemetry record as spooled and shipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The spool's sequence number: unique per appliance, so a sink can drop repeats.
    pub seq: u64,
    /// When the record was made, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub body: RecordBody,
}

/// The allowlist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RecordBody {
    /// Requests answered since start, by route template and status code (cumulative).
    Requests {
        route: String,
        status: u16,
        count: u64,
    },
    /// Request latency by route template: cumulative histogram (finite upper bounds in
    /// seconds; the +Inf bucket is `count`).
    Latency {
        route: String,
        buckets: Vec<(f64, u64)>,
        sum_seconds: f64,
        count: u64,
    },
    /// Rows scored since start by model version (cumulative).
    RowsScored {
        model: String,
        version: String,
        rows: u64,
    },
    /// Scoring decisions in one period by outcome, with Laplace noise (ε per period).
    Decisions {
        model: String,
        version: String,
        outcome: Outcome,
        count: u64,
        epsilon: f64,
    },
    /// Drift of a scoring model version in one window: PSI of the score and of each
    /// feature against the release's reference (aggregates over at least the configured
    /// minimum of rows); `rows` only with Laplace noise, when decision noise is set.
    Drift {
        model: String,
        version: String,
        window: String,
        rows: Option<u64>,
        psi: Vec<(String, f64)>,
    },
    /// A model version being served, and by which engine.
    ActiveModel {
        model: String,
        version: String,
        engine: String,
    },
    /// A lifecycle event.
    Event {
        event: EventKind,
        model: Option<String>,
        version: Option<String>,
    },
    /// Records the spool dropped (oldest first) because it was full (cumulative).
    SpoolDropped { count: u64 },
}

/// The side of the manifest's decision threshold a score fell on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    AtOrAbove,
    Below,
}

/// Lifecycle events (fixed codes, no free text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Started,
    Stopping,
    ModelLoaded,
    Activation,
    Rollback,
    GateFailure,
    GpuIncident,
    DriftAlert,
    /// The fleet agent's model sync failed a poll (metadata refused, a host or cofferd
    /// unreachable, a download cut), reported by the agent.
    SyncFailure,
    /// A release transfer from the fleet's host was cut off as too slow (a stall, or
    /// below the minimum rate / past the metadata deadline), reported by the agent.
    SyncStalled,
    /// cofferd held a version under a released name whose manifest differs from the
    /// signed release: not activated, reported by the agent.
    ImpostorVersion,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Started => "started",
            EventKind::Stopping => "stopping",
            EventKind::ModelLoaded => "model_loaded",
            EventKind::Activation => "activation",
            EventKind::Rollback => "rollback",
            EventKind::GateFailure => "gate_failure",
            EventKind::GpuIncident => "gpu_incident",
            EventKind::DriftAlert => "drift_alert",
            EventKind::SyncFailure => "sync_failure",
            EventKind::SyncStalled => "sync_stalled",
            EventKind::ImpostorVersion => "impostor_version",
        }
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::AtOrAbove => "at_or_above",
            Outcome::Below => "below",
        }
    }
}

fn clean(s: &mut String) {
    if let std::borrow::Cow::Owned(r) = redact(s) {
        *s = r;
    }
}

impl Record {
    /// The record with every string passed through the redaction.
    pub fn sanitized(mut self) -> Record {
        match &mut self.body {
            RecordBody::Requests { route, .. } | RecordBody::Latency { route, .. } => clean(route),
            RecordBody::RowsScored { model, version, .. }
            | RecordBody::Decisions { model, version, .. } => {
                clean(model);
                clean(version);
            }
            RecordBody::ActiveModel {
                model,
                version,
                engine,
            } => {
                clean(model);
                clean(version);
                clean(engine);
            }
            RecordBody::Event { model, version, .. } => {
                model.iter_mut().for_each(clean);
                version.iter_mut().for_each(clean);
            }
            RecordBody::Drift {
                model,
                version,
                window,
                psi,
                ..
            } => {
                clean(model);
                clean(version);
                clean(window);
                psi.iter_mut().for_each(|(name, _)| clean(name));
            }
            RecordBody::SpoolDropped { .. } => {}
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_redacted_and_unknown_fields_refused() {
        let r = Record {
            seq: 1,
            at_ms: 2,
            body: RecordBody::ActiveModel {
                model: "model-4111111111111111".into(),
                version: "1.0.0".into(),
                engine: "tract".into(),
            },
        }
        .sanitized();
        assert_eq!(
            r.body,
            RecordBody::ActiveModel {
                model: "model-[PAN]".into(),
                version: "1.0.0".into(),
                engine: "tract".into()
            }
        );
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), r);
        let extra = json.replace("\"engine\"", "\"note\":\"free text\",\"engine\"");
        assert!(serde_json::from_str::<Record>(&extra).is_err());
    }
}
