//! Decisions: the list table, a shown decision, the replay report, a key rotation.

use coffer_admin_api::decisions::{DecisionList, DecisionRecords, KeyRotated, ReplayReport};

use super::line;
use crate::format::time_ms;

/// `decisions list`.
pub fn list(l: &DecisionList) -> String {
    let mut out = String::new();
    line!(
        out,
        "{:<24} {:<38} {:<24} {:<10} SHA256",
        "TIME",
        "REQUEST",
        "MODEL",
        "KEY"
    );
    for d in &l.decisions {
        line!(
            out,
            "{:<24} {:<38} {:<24} {:<10} {}",
            time_ms(d.at_ms),
            d.request_id,
            format!("{}@{}", d.model, d.version),
            d.key_id,
            &d.sha256[..16.min(d.sha256.len())]
        );
    }
    line!(out, "{} decisions", l.decisions.len());
    out
}

/// `decisions show`: the header, then the record as JSON.
pub fn records(r: &DecisionRecords) -> String {
    let mut out = String::new();
    for d in &r.decisions {
        let s = &d.summary;
        line!(out, "request {}  at {}", s.request_id, time_ms(s.at_ms));
        line!(
            out,
            "decided by {}@{}  sealed with {}",
            s.model,
            s.version,
            s.key_id
        );
        line!(out, "sha256 {}", s.sha256);
        line!(
            out,
            "{}",
            serde_json::to_string_pretty(&d.record).unwrap_or_default()
        );
    }
    out
}

/// `decisions replay`.
pub fn replay(r: &ReplayReport) -> String {
    let mut out = String::new();
    line!(
        out,
        "replayed {}: {} identical, {} differing, {} whose version is gone",
        r.replayed,
        r.identical,
        r.differing.len(),
        r.unavailable.len()
    );
    for id in &r.differing {
        line!(out, "differs: {id}");
    }
    for id in &r.unavailable {
        line!(out, "not replayable: {id}");
    }
    out
}

/// `decisions rotate-key`.
pub fn rotated(k: &KeyRotated) -> String {
    let mut out = String::new();
    line!(
        out,
        "new decisions are sealed with {}; keys kept: {}",
        k.key_id,
        k.keys.join(", ")
    );
    out
}
