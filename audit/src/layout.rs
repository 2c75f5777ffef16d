//! The audit directory's files, which the writer, retention and verification all read:
//! the segments (`audit-NNN.log`, oldest first), the signed `HEAD` and the signed
//! `PRUNED` anchor that retention leaves.

use std::path::{Path, PathBuf};

use super::error::VerifyError;
use super::signing;

/// The signed pointer to the last durable record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub seq: u64,
    pub hash: String,
    pub signature: String,
}

/// The signed statement in `PRUNED`: every record before `first_seq` was removed by
/// retention, and record `first_seq` links to `prev`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Anchor {
    pub first_seq: u64,
    pub prev: String,
    pub signature: String,
}

impl Anchor {
    pub fn verifies(&self, public_key_hex: &str) -> bool {
        signing::verify_pruned(public_key_hex, self.first_seq, &self.prev, &self.signature)
    }
}

/// The anchor's file name in the audit directory.
pub const ANCHOR_FILE: &str = "PRUNED";

/// The segment files of a directory, oldest first.
pub fn segments(dir: &Path) -> Result<Vec<PathBuf>, VerifyError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| VerifyError::Io {
            path: dir.display().to_string(),
            what: e.to_string(),
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads `dir/PRUNED`, if retention ever cut this log.
pub fn read_anchor(dir: &Path) -> Result<Option<Anchor>, String> {
    match std::fs::read_to_string(dir.join(ANCHOR_FILE)) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| e.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}
