//! Verifying an audit directory: every segment in order, every record's hash and link to
//! the one before, the sequence without gaps or repeats, every checkpoint's signature,
//! and the signed `HEAD` (the last record known durable), which exposes records cut off
//! the end. The first bad record is named by its file, line and sequence number.

use std::path::Path;

use super::error::VerifyError;
use super::layout::{Anchor, Head, read_anchor, segments};
use super::record::{AuditEvent, AuditRecord, GENESIS};
use super::signing;

/// What a clean verification saw.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub segments: usize,
    pub records: u64,
    pub checkpoints: u64,
    pub last_seq: u64,
    /// Retention removed the records before this one (the signed `PRUNED` anchor); the
    /// chain was verified from there.
    pub pruned_before: Option<u64>,
}

/// Verifies `dir` against the public key in `dir/signing.pub`.
pub fn verify_dir(dir: &Path) -> Result<Report, VerifyError> {
    let read = |p: &Path| {
        std::fs::read_to_string(p).map_err(|e| VerifyError::Io {
            path: p.display().to_string(),
            what: e.to_string(),
        })
    };
    let public_key = read(&dir.join("signing.pub"))?.trim().to_string();
    let mut report = Report {
        segments: 0,
        records: 0,
        checkpoints: 0,
        last_seq: 0,
        pruned_before: None,
    };
    let mut prev = GENESIS.to_string();
    let anchor: Option<Anchor> = read_anchor(dir).map_err(VerifyError::BadAnchor)?;
    if let Some(a) = &anchor {
        if !a.verifies(&public_key) {
            return Err(VerifyError::BadAnchor(
                "its signature does not verify".into(),
            ));
        }
    }
    let head: Option<Head> = match std::fs::read_to_string(dir.join("HEAD")) {
        Ok(text) => {
            Some(serde_json::from_str(&text).map_err(|e| VerifyError::BadHead(e.to_string()))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(VerifyError::BadHead(e.to_string())),
    };
    if let Some(h) = &head {
        if !signing::verify(&public_key, h.seq, &h.hash, &h.signature) {
            return Err(VerifyError::BadHead("its signature does not verify".into()));
        }
    }
    for path in segments(dir)? {
        report.segments += 1;
        let file = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = read(&path)?;
        for (i, line) in text.lines().enumerate() {
            let line_no = i + 1;
            let record: AuditRecord =
                serde_json::from_str(line).map_err(|e| VerifyError::Unreadable {
                    file: file.clone(),
                    line: line_no,
                    what: e.to_string(),
                })?;
            let bad = |what: String| VerifyError::BadRecord {
                file: file.clone(),
                line: line_no,
                seq: record.seq,
                what,
            };
            // The log starts at record 1, or at or before where retention cut it (the
            // anchor): a crash in the middle of a retention run leaves some of the
            // segments before the cut. Records before the cut are then authenticated by
            // the chain reaching the anchor's signed hash.
            if report.records == 0 && record.seq > 1 {
                match anchor.as_ref() {
                    Some(a) if record.seq <= a.first_seq => {
                        report.last_seq = record.seq - 1;
                        report.pruned_before = Some(record.seq);
                        prev = record.prev.clone();
                    }
                    Some(a) => {
                        return Err(bad(format!(
                            "records {}..{} are missing (deleted after the retention cut)",
                            a.first_seq,
                            record.seq - 1
                        )));
                    }
                    None => {
                        return Err(bad(format!(
                            "records 1..{} are missing (deleted)",
                            record.seq - 1
                        )));
                    }
                }
            }
            if let Some(a) = &anchor {
                if a.first_seq == record.seq && a.prev != record.prev {
                    return Err(bad("does not link to the hash PRUNED signed".into()));
                }
            }
            let expected = report.last_seq + 1;
            if record.seq < expected {
                return Err(bad(format!(
                    "comes after record {}: reordered or repeated",
                    report.last_seq
                )));
            }
            if record.seq > expected {
                return Err(bad(format!(
                    "records {expected}..{} are missing (deleted)",
                    record.seq - 1
                )));
            }
            if record.prev != prev {
                return Err(bad(
                    "does not link to the record before it (inserted, deleted or reordered)".into(),
                ));
            }
            if record.compute_hash() != record.hash {
                return Err(bad("its content does not match its hash (modified)".into()));
            }
            if let AuditEvent::Checkpoint {
                upto_seq,
                upto_hash,
                signature,
            } = &record.event
            {
                if *upto_seq + 1 != record.seq || *upto_hash != prev {
                    return Err(bad("checkpoint does not cover the record before it".into()));
                }
                if !signing::verify(&public_key, *upto_seq, upto_hash, signature) {
                    return Err(bad("checkpoint signature does not verify".into()));
                }
                report.checkpoints += 1;
            }
            if let Some(h) = &head {
                if h.seq == record.seq && h.hash != record.hash {
                    return Err(bad("differs from the record HEAD signed".into()));
                }
            }
            prev = record.hash.clone();
            report.last_seq = record.seq;
            report.records += 1;
        }
    }
    if let Some(a) = &anchor {
        if report.pruned_before.is_some() && a.first_seq > report.last_seq + 1 {
            return Err(VerifyError::BadAnchor(format!(
                "retention kept records from {} on, but the log ends at record {}",
                a.first_seq, report.last_seq
            )));
        }
    }
    if let Some(h) = &head {
        if h.seq > report.last_seq {
            return Err(VerifyError::Truncated {
                last: report.last_seq,
                head: h.seq,
            });
        }
    }
    Ok(report)
}
