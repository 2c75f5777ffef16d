//! Admin handler for the audit log's signed checkpoints, which the agent ships off the
//! appliance (docs/audit.md, "Checkpoints leave the appliance"):
//! `GET /admin/audit/checkpoints?after=SEQ&limit=N`.
//!
//! The checkpoints are read from the segment files, off the async workers, without the
//! writer: it keeps appending while they are read, so a last line without its newline
//! (being written, or torn by a crash) is left alone. Segments that end at or before
//! `after` are skipped by their first record, so a poll reads the newest segment, not
//! the whole history.

use std::fs::File;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use coffer_admin_api::telemetry::Checkpoints;
use http::{StatusCode, Uri};
use serde::Deserialize;

use super::{AdminFailure, AdminState};
use crate::audit::{AuditEvent, AuditRecord, VerifyError, segments};

/// Checkpoints per answer unless `?limit=N` asks otherwise.
const DEFAULT_LIMIT: usize = 100;
/// The most checkpoints one answer holds.
const MAX_LIMIT: usize = 1_000;

/// How a checkpoint record's line starts its event (the writer's compact JSON); only
/// lines holding it are parsed.
const CHECKPOINT_TAG: &[u8] = b"\"kind\":\"checkpoint\"";

/// One signed checkpoint as the admin API lists it (the wire form coffer-agent reads).
pub use coffer_privacy::checkpoint::Checkpoint;

/// Why the checkpoints could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointReadError {
    #[error("cannot list the audit segments: {0}")]
    List(VerifyError),
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The first record's sequence number only.
#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// The next complete line of `reader` into `line` (newline included); `false` at the
/// end or at a last line without its newline.
fn next_line(
    reader: &mut BufReader<File>,
    line: &mut Vec<u8>,
    path: &Path,
) -> Result<bool, CheckpointReadError> {
    line.clear();
    let n = reader
        .read_until(b'\n', line)
        .map_err(|source| CheckpointReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(n > 0 && line.last() == Some(&b'\n'))
}

/// A segment opened for reading; `None` if it is gone (removed by an operator since
/// the directory was listed).
fn open(path: &Path) -> Result<Option<BufReader<File>>, CheckpointReadError> {
    match File::open(path) {
        Ok(f) => Ok(Some(BufReader::with_capacity(64 * 1024, f))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CheckpointReadError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The sequence number of a segment's first record, if it has a complete one.
fn first_seq(path: &Path) -> Result<Option<u64>, CheckpointReadError> {
    let Some(mut reader) = open(path)? else {
        return Ok(None);
    };
    let mut line = Vec::new();
    if !next_line(&mut reader, &mut line, path)? {
        return Ok(None);
    }
    Ok(serde_json::from_slice::<SeqOnly>(&line).ok().map(|r| r.seq))
}

/// Appends the checkpoints of one segment with a sequence number above `after` to
/// `out`, until `out` holds `limit`.
fn scan(
    path: &Path,
    after: u64,
    limit: usize,
    out: &mut Vec<Checkpoint>,
) -> Result<(), CheckpointReadError> {
    let Some(mut reader) = open(path)? else {
        return Ok(());
    };
    let mut line = Vec::new();
    while out.len() < limit && next_line(&mut reader, &mut line, path)? {
        if memchr::memmem::find(&line, CHECKPOINT_TAG).is_none() {
            continue;
        }
        let record: AuditRecord = match serde_json::from_slice(&line) {
            Ok(r) => r,
            Err(e) => {
                // Not this reader's to judge: `cofferctl audit verify` names it.
                tracing::warn!(file = %path.display(), error = %e, "audit: an unreadable line that looks like a checkpoint; skipped");
                continue;
            }
        };
        if record.seq <= after {
            continue;
        }
        if let AuditEvent::Checkpoint {
            upto_seq,
            upto_hash,
            signature,
        } = record.event
        {
            out.push(Checkpoint {
                seq: record.seq,
                at_ms: record.at_ms,
                upto_seq,
                upto_hash,
                signature,
            });
        }
    }
    Ok(())
}

/// The checkpoint records of the audit directory `dir` with a sequence number above
/// `after`, oldest first, at most `limit`. Blocking: file reads.
pub fn read_checkpoints(
    dir: &Path,
    after: u64,
    limit: usize,
) -> Result<Vec<Checkpoint>, CheckpointReadError> {
    let files = segments(dir).map_err(CheckpointReadError::List)?;
    let mut out = Vec::new();
    let mut next_first: Option<u64> = None;
    // Newest first to learn each segment's successor's first record; then oldest first.
    let mut wanted = Vec::with_capacity(files.len());
    for path in files.iter().rev() {
        // Every record of a segment comes before its successor's first record.
        let ends_by_after = next_first.is_some_and(|n| n <= after.saturating_add(1));
        if ends_by_after {
            break;
        }
        wanted.push(path);
        next_first = first_seq(path)?.or(next_first);
    }
    for path in wanted.into_iter().rev() {
        if out.len() >= limit {
            break;
        }
        scan(path, after, limit, &mut out)?;
    }
    Ok(out)
}

/// `after` (default 0) and `limit` (default 100, 1 to 1000) from the query.
fn params(uri: &Uri) -> Result<(u64, usize), AdminFailure> {
    let mut after = 0;
    let mut limit = DEFAULT_LIMIT;
    for pair in uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let ok = if let Some(v) = pair.strip_prefix("after=") {
            v.parse().map(|n| after = n).is_ok()
        } else if let Some(v) = pair.strip_prefix("limit=") {
            v.parse()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .map(|n| limit = n)
                .is_some()
        } else {
            false
        };
        if !ok {
            return Err(AdminFailure {
                status: StatusCode::BAD_REQUEST,
                code: "bad_query",
                message: format!(
                    "'{pair}': the parameters are after (a sequence number) and limit (1 to {MAX_LIMIT})"
                ),
            });
        }
    }
    Ok((after, limit))
}

/// `GET /admin/audit/checkpoints?after=SEQ&limit=N`: the public key that verifies the
/// checkpoints, and the checkpoint records after `SEQ`, oldest first.
pub async fn checkpoints(State(state): State<Arc<AdminState>>, uri: Uri) -> Response {
    let (after, limit) = match params(&uri) {
        Ok(p) => p,
        Err(f) => return f.into_response(),
    };
    let Some(audit) = &state.audit else {
        return AdminFailure {
            status: StatusCode::NOT_FOUND,
            code: "audit_disabled",
            message: "the audit log is off (audit.enabled = false)".into(),
        }
        .into_response();
    };
    let public_key = audit.public_key().to_string();
    let dir = audit.dir().to_path_buf();
    match tokio::task::spawn_blocking(move || read_checkpoints(&dir, after, limit)).await {
        Ok(Ok(list)) => Json(Checkpoints {
            public_key,
            checkpoints: list,
        })
        .into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "audit checkpoints could not be read");
            AdminFailure {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "audit_unreadable",
                message: "the audit log could not be read; see the daemon log".into(),
            }
            .into_response()
        }
        Err(_) => AdminFailure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "audit_unreadable",
            message: "the checkpoint read did not finish".into(),
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::test_support::{all_records, write_events};
    use crate::audit::{AuditSettings, FsyncPolicy, verify_dir};
    use std::time::Duration;

    fn write(dir: &Path, n: u32, max_segment_bytes: u64) -> String {
        write_events(
            AuditSettings {
                dir: dir.to_path_buf(),
                fsync: FsyncPolicy::Interval(Duration::from_millis(50)),
                max_segment_bytes,
                checkpoint_every: 4,
                retention: crate::audit::Retention::default(),
            },
            n,
        )
    }

    /// Every checkpoint in the files, found the slow way.
    fn all_checkpoints(dir: &Path) -> Vec<Checkpoint> {
        all_records(dir)
            .into_iter()
            .filter_map(|r| match r.event {
                AuditEvent::Checkpoint {
                    upto_seq,
                    upto_hash,
                    signature,
                } => Some(Checkpoint {
                    seq: r.seq,
                    at_ms: r.at_ms,
                    upto_seq,
                    upto_hash,
                    signature,
                }),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn lists_checkpoints_after_a_seq_across_segments_and_ignores_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let key = write(dir.path(), 50, 1_500);
        write(dir.path(), 7, 1_500);
        verify_dir(dir.path()).unwrap();
        assert!(segments(dir.path()).unwrap().len() >= 3);
        let all = all_checkpoints(dir.path());
        assert!(all.len() >= 12, "{}", all.len());

        assert_eq!(read_checkpoints(dir.path(), 0, MAX_LIMIT).unwrap(), all);
        for (i, c) in all.iter().enumerate() {
            // After each checkpoint's seq (and after the record before it), the rest.
            assert_eq!(
                read_checkpoints(dir.path(), c.seq, MAX_LIMIT).unwrap(),
                all[i + 1..]
            );
            assert_eq!(
                read_checkpoints(dir.path(), c.seq - 1, MAX_LIMIT).unwrap(),
                all[i..]
            );
        }
        assert_eq!(read_checkpoints(dir.path(), 0, 3).unwrap(), all[..3]);
        assert!(
            read_checkpoints(dir.path(), u64::MAX, MAX_LIMIT)
                .unwrap()
                .is_empty()
        );

        // Each verifies with the appliance's key as the agent checks it: the same
        // signed statement on both sides.
        for c in &all {
            assert_eq!(c.upto_seq + 1, c.seq);
            assert!(coffer_agent::checkpoints::verify(
                &key,
                c.upto_seq,
                &c.upto_hash,
                &c.signature
            ));
            assert!(!coffer_agent::checkpoints::verify(
                &key,
                c.upto_seq + 1,
                &c.upto_hash,
                &c.signature
            ));
        }

        // A line being written (or torn by a crash) is not read.
        let last = segments(dir.path()).unwrap().pop().unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&last)
            .unwrap();
        let torn = format!(
            "{{\"seq\":999,\"at_ms\":1,\"prev\":\"x\",\"event\":{{\"kind\":\"checkpoint\",\"upto_seq\":998,\"upto_hash\":\"{}\"",
            "0".repeat(64)
        );
        std::io::Write::write_all(&mut f, torn.as_bytes()).unwrap();
        drop(f);
        assert_eq!(read_checkpoints(dir.path(), 0, MAX_LIMIT).unwrap(), all);
    }

    #[test]
    fn an_empty_directory_has_none_and_the_query_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_checkpoints(dir.path(), 0, 10).unwrap().is_empty());
        let uri = |q: &str| q.parse::<Uri>().unwrap();
        assert_eq!(
            params(&uri("/admin/audit/checkpoints")).unwrap(),
            (0, DEFAULT_LIMIT)
        );
        assert_eq!(
            params(&uri("/admin/audit/checkpoints?after=42&limit=7")).unwrap(),
            (42, 7)
        );
        for bad in ["after=-1", "limit=0", "limit=1001", "max=3", "after"] {
            let e = params(&uri(&format!("/admin/audit/checkpoints?{bad}"))).unwrap_err();
            assert_eq!(e.code, "bad_query", "{bad}");
        }
    }
}
