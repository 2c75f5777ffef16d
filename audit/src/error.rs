//! The crate's two errors: [`AuditError`] when the log cannot be written or pruned,
//! [`VerifyError`] for the first problem a verification finds.

use super::signing::SigningError;

/// Audit errors.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("the last audit record in {0} is unreadable; run `cofferctl audit verify`")]
    Corrupt(String),
}

/// The first problem found.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("cannot read {path}: {what}")]
    Io { path: String, what: String },
    #[error("{file}:{line}: record {seq}: {what}")]
    BadRecord {
        file: String,
        line: usize,
        seq: u64,
        what: String,
    },
    #[error("{file}:{line}: not a record: {what}")]
    Unreadable {
        file: String,
        line: usize,
        what: String,
    },
    #[error(
        "the log ends at record {last} but HEAD says record {head} was written: records after {last} were removed"
    )]
    Truncated { last: u64, head: u64 },
    #[error("HEAD: {0}")]
    BadHead(String),
    #[error("PRUNED: {0}")]
    BadAnchor(String),
}
