//! Lifecycle events as OTLP/HTTP logs, in OTLP's JSON encoding (`application/json`,
//! lowerCamelCase fields, 64-bit integers as strings), one log record per event with
//! the spool sequence number as `coffer.seq` so a collector can drop repeats.

use coffer_privacy::telemetry::{Record, RecordBody};
use serde_json::{Value, json};

pub const HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("user-agent", "coffer-agent"),
];

pub(crate) fn attr(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

/// The `ExportLogsServiceRequest` for the event records of a batch, or `None` if the
/// batch has no events.
pub fn build(records: &[Record], site: &str) -> Option<Value> {
    let logs: Vec<Value> = records
        .iter()
        .filter_map(|r| {
            let RecordBody::Event {
                event,
                model,
                version,
            } = &r.body
            else {
                return None;
            };
            let nanos = (u128::from(r.at_ms) * 1_000_000).to_string();
            let mut attributes = vec![
                attr("coffer.event", event.as_str()),
                attr("coffer.seq", &r.seq.to_string()),
            ];
            if let Some(m) = model {
                attributes.push(attr("coffer.model", m));
            }
            if let Some(v) = version {
                attributes.push(attr("coffer.version", v));
            }
            Some(record(&nanos, event.as_str(), attributes))
        })
        .collect();
    if logs.is_empty() {
        return None;
    }
    Some(envelope("cofferd", site, logs))
}

/// One INFO log record at `nanos` (a decimal string).
fn record(nanos: &str, body: &str, attributes: Vec<Value>) -> Value {
    json!({
        "timeUnixNano": nanos,
        "observedTimeUnixNano": nanos,
        "severityNumber": 9,
        "severityText": "INFO",
        "body": { "stringValue": body },
        "attributes": attributes,
    })
}

/// The request around `logs`, from `service` at `site`.
fn envelope(service: &str, site: &str, logs: Vec<Value>) -> Value {
    let mut resource = vec![attr("service.name", service)];
    if !site.is_empty() {
        resource.push(attr("coffer.site", site));
    }
    json!({
        "resourceLogs": [{
            "resource": { "attributes": resource },
            "scopeLogs": [{
                "scope": { "name": "coffer", "version": env!("CARGO_PKG_VERSION") },
                "logRecords": logs,
            }],
        }],
    })
}

/// A change in a site's state that the fleet should see as an event: a release's state
/// (`subject` = `release`, with model and version) or the sync's (`subject` = `sync`).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub subject: &'static str,
    pub model: Option<String>,
    pub version: Option<String>,
    /// `None` on the agent's first report since it started.
    pub from: Option<String>,
    pub to: String,
}

/// The `ExportLogsServiceRequest` for a site report's transitions (service
/// `coffer-agent`), or `None` if there are none.
pub fn transitions(changes: &[Transition], site: &str, at_ms: u64) -> Option<Value> {
    if changes.is_empty() {
        return None;
    }
    let nanos = (u128::from(at_ms) * 1_000_000).to_string();
    let logs: Vec<Value> = changes
        .iter()
        .map(|t| {
            let mut attributes = vec![
                attr("coffer.event", "site_transition"),
                attr("coffer.subject", t.subject),
                attr("coffer.to", &t.to),
            ];
            if let Some(from) = &t.from {
                attributes.push(attr("coffer.from", from));
            }
            if let Some(m) = &t.model {
                attributes.push(attr("coffer.model", m));
            }
            if let Some(v) = &t.version {
                attributes.push(attr("coffer.version", v));
            }
            record(&nanos, &format!("{} {}", t.subject, t.to), attributes)
        })
        .collect();
    Some(envelope("coffer-agent", site, logs))
}
