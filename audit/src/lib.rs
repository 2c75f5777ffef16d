//! The audit log: append-only, hash-chained JSON-lines records of admin actions, key
//! changes, model lifecycle and per-request metadata (never content), with signed
//! checkpoints and a signed HEAD; `cofferctl audit verify` checks a directory offline.

mod error;
pub mod hex_text;
mod layout;
mod record;
mod retention;
mod signing;
mod verify;
mod writer;

pub use error::{AuditError, VerifyError};
pub use layout::{ANCHOR_FILE, Anchor, Head, segments};
pub use record::{AuditEvent, AuditRecord, GENESIS};
pub use retention::Retention;
pub use signing::{Signer, SigningError};
pub use verify::{Report, verify_dir};
pub use writer::{AuditLog, AuditSettings, FsyncPolicy};

/// Helpers for the audit tests of this module and of the admin API.
#[cfg(any(test, feature = "test-support"))]
pub mod test_support {
    use super::*;
    use std::path::Path;

    /// Settings for a test log in `dir`: a checkpoint every 10 records.
    pub fn settings_for(dir: &Path) -> AuditSettings {
        AuditSettings {
            dir: dir.to_path_buf(),
            fsync: FsyncPolicy::Interval(std::time::Duration::from_millis(50)),
            max_segment_bytes: 1 << 20,
            checkpoint_every: 10,
            retention: Retention::default(),
        }
    }

    /// Opens a log with `settings`, records `n` admin events, closes it; returns the
    /// public key.
    pub fn write_events(settings: AuditSettings, n: u32) -> String {
        let log = AuditLog::open(settings).unwrap();
        for i in 0..n {
            log.record_blocking(AuditEvent::Admin {
                uid: 0,
                role: None,
                action: "keys.create".into(),
                target: format!("key-{i}"),
                status: 201,
            });
        }
        let key = log.public_key().to_string();
        log.close();
        key
    }

    /// Writes `n` records of a kind retention does not keep (request counts), as the
    /// bulk of a real log is; returns the public key.
    pub fn write_filler(settings: AuditSettings, n: u32) -> String {
        let log = AuditLog::open(settings).unwrap();
        for i in 0..n {
            log.record_blocking(AuditEvent::Unauthenticated {
                requests: u64::from(i) + 1000,
            });
        }
        let key = log.public_key().to_string();
        log.close();
        key
    }

    /// Every record in the segment files, in order.
    pub fn all_records(dir: &Path) -> Vec<AuditRecord> {
        segments(dir)
            .unwrap()
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn settings(dir: &Path, max_segment_bytes: u64) -> AuditSettings {
        AuditSettings {
            max_segment_bytes,
            ..test_support::settings_for(dir)
        }
    }

    fn write(dir: &Path, n: u32, max_segment_bytes: u64) {
        test_support::write_events(settings(dir, max_segment_bytes), n);
    }

    fn lines(dir: &Path) -> (std::path::PathBuf, Vec<String>) {
        let path = dir.join("audit-000001.log");
        let text = std::fs::read_to_string(&path).unwrap();
        (path, text.lines().map(str::to_string).collect())
    }

    fn rewrite(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn a_clean_log_verifies_and_continues_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 25, u64::MAX);
        write(dir.path(), 5, u64::MAX);
        let report = verify_dir(dir.path()).unwrap();
        // 30 events, a checkpoint per 10 records and one at each close.
        assert!(report.records >= 33, "{report:?}");
        assert!(report.checkpoints >= 3);
        assert_eq!(report.segments, 1);
    }

    #[test]
    fn modified_deleted_reordered_inserted_and_truncated_records_are_named() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 20, u64::MAX);
        let (path, original) = lines(dir.path());

        let mut modified = original.clone();
        modified[4] = modified[4].replace("key-4", "key-X");
        rewrite(&path, &modified);
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&e, VerifyError::BadRecord { seq: 5, line: 5, what, .. } if what.contains("modified")),
            "{e}"
        );

        let mut deleted = original.clone();
        deleted.remove(6);
        rewrite(&path, &deleted);
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&e, VerifyError::BadRecord { seq: 8, line: 7, what, .. } if what.contains("missing")),
            "{e}"
        );

        let mut reordered = original.clone();
        reordered.swap(2, 3);
        rewrite(&path, &reordered);
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(matches!(&e, VerifyError::BadRecord { line: 3, .. }), "{e}");

        // An inserted record, even with a correct hash of its own, does not link.
        let mut inserted = original.clone();
        let mut forged: AuditRecord = serde_json::from_str(&original[9]).unwrap();
        forged.prev = GENESIS.into();
        forged.hash = forged.compute_hash();
        inserted.insert(9, serde_json::to_string(&forged).unwrap());
        rewrite(&path, &inserted);
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(matches!(&e, VerifyError::BadRecord { line: 10, .. }), "{e}");

        let mut truncated = original.clone();
        truncated.truncate(original.len() - 3);
        rewrite(&path, &truncated);
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(matches!(e, VerifyError::Truncated { .. }), "{e}");

        rewrite(&path, &original);
        verify_dir(dir.path()).unwrap();
    }

    #[test]
    fn rotation_keeps_one_chain_and_a_missing_segment_is_found() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 60, 2_000);
        let report = verify_dir(dir.path()).unwrap();
        assert!(report.segments >= 3, "{report:?}");
        std::fs::remove_file(dir.path().join("audit-000002.log")).unwrap();
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&e, VerifyError::BadRecord { file, what, .. } if file == "audit-000003.log" && what.contains("missing")),
            "{e}"
        );
    }

    #[test]
    fn a_checkpoint_that_falls_on_a_rotation_still_covers_the_record_before_it() {
        // Small segments and frequent checkpoints: some checkpoint is due just as a
        // segment is full, and at every close.
        for max in [600, 900, 1_300] {
            let dir = tempfile::tempdir().unwrap();
            let log = AuditLog::open(AuditSettings {
                checkpoint_every: 3,
                ..settings(dir.path(), max)
            })
            .unwrap();
            for i in 0..40 {
                log.record_blocking(AuditEvent::Admin {
                    uid: 0,
                    role: None,
                    action: "keys.create".into(),
                    target: format!("key-{i}"),
                    status: 201,
                });
            }
            log.close();
            write(dir.path(), 4, max);
            verify_dir(dir.path()).unwrap();
        }
    }

    #[test]
    fn a_torn_last_line_is_cut_off_on_open() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 3, u64::MAX);
        let (path, _) = lines(dir.path());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, b"{\"seq\":99,\"at_").unwrap();
        drop(f);
        write(dir.path(), 2, u64::MAX);
        verify_dir(dir.path()).unwrap();
    }

    #[test]
    fn a_forged_checkpoint_signature_fails() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 12, u64::MAX);
        let (path, mut lines) = lines(dir.path());
        let i = lines
            .iter()
            .position(|l| l.contains("\"checkpoint\""))
            .unwrap();
        let mut r: AuditRecord = serde_json::from_str(&lines[i]).unwrap();
        if let AuditEvent::Checkpoint { signature, .. } = &mut r.event {
            *signature = "00".repeat(64);
        }
        r.hash = r.compute_hash();
        lines[i] = serde_json::to_string(&r).unwrap();
        rewrite(&path, &lines);
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(e.to_string().contains("signature"), "{e}");
    }
}
