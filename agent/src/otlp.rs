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
            Some(json!({
                "timeUnixNano": nanos,
                "observedTimeUnixNano": nanos,
                "severityNumber": 9,
                "severityText": "INFO",
                "body": { "stringValue": event.as_str() },
                "attributes": attributes,
            }))
        })
        .collect();
    if logs.is_empty() {
        return None;
    }
    let mut resource = vec![attr("service.name", "cofferd")];
    if !site.is_empty() {
        resource.push(attr("coffer.site", site));
    }
    Some(json!({
        "resourceLogs": [{
            "resource": { "attributes": resource },
            "scopeLogs": [{
                "scope": { "name": "coffer", "version": env!("CARGO_PKG_VERSION") },
                "logRecords": logs,
            }],
        }],
    }))
}
