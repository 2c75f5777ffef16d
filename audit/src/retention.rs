//! Audit retention: when the segments outgrow `audit.max_total_bytes` or the oldest are
//! older than `audit.max_age`, the oldest closed segments are removed, never the one
//! being written. Before a file goes, a signed anchor (`PRUNED`: the first record kept
//! and the hash it links to) is written atomically, so that `cofferctl audit verify`
//! tells a retention cut from a deleted segment. A crash between the anchor and the
//! deletions leaves a log that still verifies; the next rotation finishes the job.
//! Admin and lifecycle records are not lost with their segment: before it goes, the
//! writer appends each as a `carried` record (its original sequence number, time and
//! hash) to the live segment and makes them durable. A crash between carrying and
//! removing can carry a record twice; both copies name the same original.

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::error::AuditError;
use super::layout::{ANCHOR_FILE, Anchor, segments};
use super::record::AuditRecord;
use super::signing::Signer;

/// How much of the log is kept. Both limits off keeps everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Past this many bytes of segments (0: no limit), the oldest go.
    pub max_total_bytes: u64,
    /// Segments last written longer ago than this go.
    pub max_age: Option<Duration>,
}

impl Retention {
    pub fn is_off(&self) -> bool {
        self.max_total_bytes == 0 && self.max_age.is_none()
    }
}

/// What one pruning removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Pruned {
    pub segments: u64,
    pub bytes: u64,
    pub before_seq: u64,
    pub reason: &'static str,
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

struct Segment {
    path: PathBuf,
    bytes: u64,
    modified: SystemTime,
}

/// What retention will remove: the oldest closed segments, the first record kept (to
/// anchor on), and why.
pub(super) struct Plan {
    cut: Vec<Segment>,
    first: AuditRecord,
    reason: &'static str,
}

/// The oldest closed segments of `dir` that `retention` no longer keeps, if any.
/// `current` (the segment being written) is never among them; its first record must be
/// on disk (the caller flushes first).
pub(super) fn plan(
    dir: &Path,
    current: &Path,
    retention: Retention,
    now: SystemTime,
) -> Result<Option<Plan>, AuditError> {
    if retention.is_off() {
        return Ok(None);
    }
    let mut all = Vec::new();
    for path in segments(dir).map_err(|e| AuditError::Corrupt(e.to_string()))? {
        let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
        all.push(Segment {
            bytes: meta.len(),
            modified: meta.modified().unwrap_or(now),
            path,
        });
    }
    let mut total: u64 = all.iter().map(|s| s.bytes).sum();
    let too_old = |s: &Segment| {
        retention
            .max_age
            .is_some_and(|age| now.duration_since(s.modified).is_ok_and(|d| d > age))
    };
    let mut cut = 0;
    let mut reason = "size";
    for s in all.iter().take_while(|s| s.path.as_path() != current) {
        let over = retention.max_total_bytes > 0 && total > retention.max_total_bytes;
        if !over && !too_old(s) {
            break;
        }
        if !over {
            reason = "age";
        }
        total -= s.bytes;
        cut += 1;
    }
    // Something must remain to anchor on: the segment being written at least.
    if cut == 0 || cut >= all.len() {
        return Ok(None);
    }
    // Anchor on the first kept segment that has a record (one created by a rotation just
    // before a crash may still be empty).
    let first = loop {
        match first_record(&all[cut].path)? {
            Some(r) => break r,
            None if cut > 1 => cut -= 1,
            None => return Ok(None),
        }
    };
    all.truncate(cut);
    Ok(Some(Plan {
        cut: all,
        first,
        reason,
    }))
}

/// The records of the planned segments that last (`AuditEvent::lasts`): admin and
/// lifecycle events, to be carried forward before their segments go. At most
/// [`MAX_CARRIED`], the newest.
pub(super) fn lasting(plan: &Plan) -> Result<Vec<AuditRecord>, AuditError> {
    let mut out = Vec::new();
    for s in &plan.cut {
        let file = File::open(&s.path).map_err(io_err(&s.path))?;
        for line in BufReader::new(file).lines() {
            let line = line.map_err(io_err(&s.path))?;
            if line.trim().is_empty() {
                continue;
            }
            let record: AuditRecord = serde_json::from_str(&line)
                .map_err(|_| AuditError::Corrupt(s.path.display().to_string()))?;
            if record.event.lasts() {
                out.push(record);
            }
        }
    }
    if out.len() > MAX_CARRIED {
        tracing::warn!(
            records = out.len(),
            kept = MAX_CARRIED,
            "audit retention: more admin and lifecycle records than it carries; the oldest go"
        );
        out.drain(..out.len() - MAX_CARRIED);
    }
    Ok(out)
}

/// Admin and lifecycle records one pruning carries forward at most.
pub const MAX_CARRIED: usize = 10_000;

/// Removes the planned segments: the signed anchor first, then the files.
pub(super) fn apply(dir: &Path, plan: Plan, signer: &Signer) -> Result<Pruned, AuditError> {
    let anchor = Anchor {
        first_seq: plan.first.seq,
        prev: plan.first.prev.clone(),
        signature: signer.sign_pruned(plan.first.seq, &plan.first.prev),
    };
    write_anchor(dir, &anchor)?;
    let mut bytes = 0;
    for s in &plan.cut {
        std::fs::remove_file(&s.path).map_err(io_err(&s.path))?;
        bytes += s.bytes;
    }
    Ok(Pruned {
        segments: plan.cut.len() as u64,
        bytes,
        before_seq: plan.first.seq,
        reason: plan.reason,
    })
}

fn first_record(path: &Path) -> Result<Option<AuditRecord>, AuditError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut line = String::new();
    BufReader::new(file)
        .read_line(&mut line)
        .map_err(io_err(path))?;
    if !line.ends_with('\n') {
        return Ok(None);
    }
    serde_json::from_str(line.trim_end())
        .map(Some)
        .map_err(|_| AuditError::Corrupt(path.display().to_string()))
}

/// Write, fsync, rename, fsync the directory: the anchor is there before any segment
/// goes.
fn write_anchor(dir: &Path, anchor: &Anchor) -> Result<(), AuditError> {
    let tmp = dir.join("PRUNED.tmp");
    let path = dir.join(ANCHOR_FILE);
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(serde_json::to_string(anchor).unwrap_or_default().as_bytes())
        .map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{all_records, write_filler};
    use super::super::{AuditEvent, AuditLog, AuditSettings, FsyncPolicy, verify_dir};
    use super::*;
    use crate::layout::read_anchor;

    fn settings(dir: &Path, retention: Retention) -> AuditSettings {
        AuditSettings {
            dir: dir.to_path_buf(),
            fsync: FsyncPolicy::Interval(Duration::from_millis(50)),
            max_segment_bytes: 2_000,
            checkpoint_every: 10,
            retention,
        }
    }

    fn write(dir: &Path, n: u32, retention: Retention) {
        write_filler(settings(dir, retention), n);
    }

    fn names(dir: &Path) -> Vec<String> {
        segments(dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    fn total_bytes(dir: &Path) -> u64 {
        segments(dir)
            .unwrap()
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .sum()
    }

    fn pruned_records(dir: &Path) -> Vec<AuditEvent> {
        all_records(dir)
            .into_iter()
            .map(|r| r.event)
            .filter(|e| matches!(e, AuditEvent::Pruned { .. }))
            .collect()
    }

    #[test]
    fn admin_records_are_carried_past_retention_and_the_log_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(settings(dir.path(), BY_SIZE)).unwrap();
        log.record_blocking(AuditEvent::Admin {
            uid: 0,
            role: None,
            action: "keys.create".into(),
            target: "app".into(),
            status: 201,
        });
        log.close();
        write(dir.path(), 300, BY_SIZE);
        write(dir.path(), 300, BY_SIZE);
        assert!(!names(dir.path()).contains(&"audit-000001.log".to_string()));
        let records = all_records(dir.path());
        let carried: Vec<_> = records
            .iter()
            .filter_map(|r| match &r.event {
                AuditEvent::Carried { seq, event, .. } => Some((*seq, event.as_ref().clone())),
                _ => None,
            })
            .collect();
        assert!(
            carried.iter().any(|(seq, e)| *seq < 5
                && matches!(e, AuditEvent::Admin { action, .. } if action == "keys.create")),
            "{carried:?}"
        );
        // Carried again by a later pruning as the same original, not nested.
        assert!(
            carried
                .iter()
                .all(|(_, e)| !matches!(e, AuditEvent::Carried { .. }))
        );
        assert!(total_bytes(dir.path()) <= BY_SIZE.max_total_bytes + 2_500);
        verify_dir(dir.path()).unwrap();
    }

    const BY_SIZE: Retention = Retention {
        max_total_bytes: 6_000,
        max_age: None,
    };

    #[test]
    fn size_retention_keeps_the_newest_segments_and_they_verify_from_the_anchor() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 300, BY_SIZE);
        let kept = names(dir.path());
        assert!(!kept.contains(&"audit-000001.log".to_string()), "{kept:?}");
        // The limit holds up to the segment that was being filled when it was checked.
        assert!(total_bytes(dir.path()) <= BY_SIZE.max_total_bytes + 2_500);
        let report = verify_dir(dir.path()).unwrap();
        let anchor = read_anchor(dir.path()).unwrap().unwrap();
        assert_eq!(report.pruned_before, Some(anchor.first_seq));
        assert!(anchor.first_seq > 1);
        // The log says what retention removed, and why.
        let pruned = pruned_records(dir.path());
        assert!(
            pruned
                .iter()
                .any(|e| matches!(e, AuditEvent::Pruned { reason, segments, .. } if reason == "size" && *segments >= 1)),
            "{pruned:?}"
        );
    }

    #[test]
    fn a_segment_deleted_after_the_cut_or_a_replayed_anchor_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 150, BY_SIZE);
        let old_anchor = std::fs::read(dir.path().join(ANCHOR_FILE)).unwrap();
        write(dir.path(), 150, BY_SIZE);
        verify_dir(dir.path()).unwrap();

        // An older (genuinely signed) anchor put back: the records between the two cuts
        // are reported missing.
        let anchor = std::fs::read(dir.path().join(ANCHOR_FILE)).unwrap();
        assert_ne!(anchor, old_anchor);
        std::fs::write(dir.path().join(ANCHOR_FILE), &old_anchor).unwrap();
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("deleted after the retention cut"),
            "{e}"
        );
        std::fs::write(dir.path().join(ANCHOR_FILE), &anchor).unwrap();

        // The oldest kept segment deleted by hand.
        let oldest = segments(dir.path()).unwrap()[0].clone();
        std::fs::remove_file(&oldest).unwrap();
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("deleted after the retention cut"),
            "{e}"
        );
    }

    #[test]
    fn a_forged_anchor_fails_its_signature() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 200, BY_SIZE);
        let mut anchor = read_anchor(dir.path()).unwrap().unwrap();
        // Claim a later cut, as if more had been removed by retention.
        let next = segments(dir.path()).unwrap()[1].clone();
        let r = first_record(&next).unwrap().unwrap();
        anchor.first_seq = r.seq;
        anchor.prev = r.prev;
        std::fs::write(
            dir.path().join(ANCHOR_FILE),
            serde_json::to_string(&anchor).unwrap(),
        )
        .unwrap();
        std::fs::remove_file(&segments(dir.path()).unwrap()[0]).unwrap();
        let e = verify_dir(dir.path()).unwrap_err();
        assert!(
            matches!(&e, crate::VerifyError::BadAnchor(w) if w.contains("signature")),
            "{e}"
        );
    }

    #[test]
    fn a_lowered_limit_applies_at_start_and_an_archive_of_the_removed_segments_verifies_with_the_rest()
     {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 200, Retention::default());
        let before = names(dir.path());
        assert!(before.len() >= 6, "{before:?}");
        // The site archives its segments (copies them elsewhere), then lowers the limit.
        let archive = tempfile::tempdir().unwrap();
        for name in &before {
            std::fs::copy(dir.path().join(name), archive.path().join(name)).unwrap();
        }
        write(dir.path(), 1, BY_SIZE);
        let after = names(dir.path());
        assert!(after.len() < before.len(), "{after:?}");
        assert!(verify_dir(dir.path()).unwrap().pruned_before.is_some());

        // Archive + live log: one chain from the first record, through the cut.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, archive.path().join(p.file_name().unwrap())).unwrap();
        }
        let report = verify_dir(archive.path()).unwrap();
        assert_eq!(report.pruned_before, None);
        assert!(report.segments > after.len());
    }

    #[test]
    fn age_retention_removes_old_segments_on_a_quiet_appliance() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 200, Retention::default());
        let files = segments(dir.path()).unwrap();
        let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86_400);
        for f in &files[..2] {
            File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(two_days_ago)
                .unwrap();
        }
        let by_age = Retention {
            max_total_bytes: 0,
            max_age: Some(Duration::from_secs(86_400)),
        };
        // Opening applies retention at once; nothing else is written.
        let log = AuditLog::open(settings(dir.path(), by_age)).unwrap();
        log.close();
        let after = segments(dir.path()).unwrap();
        // The two old ones went (closing may have rotated into a new one).
        assert!(!after.contains(&files[0]) && !after.contains(&files[1]));
        assert_eq!(after[0], files[2]);
        verify_dir(dir.path()).unwrap();
        let pruned = pruned_records(dir.path());
        assert!(
            matches!(pruned.as_slice(), [AuditEvent::Pruned { reason, segments: 2, .. }] if reason == "age"),
            "{pruned:?}"
        );
    }

    #[test]
    fn a_crash_after_the_anchor_and_before_the_deletions_still_verifies() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 200, Retention::default());
        let files = segments(dir.path()).unwrap();
        let signer = Signer::load_or_create(dir.path()).unwrap();
        let first = first_record(&files[3]).unwrap().unwrap();
        write_anchor(
            dir.path(),
            &Anchor {
                first_seq: first.seq,
                prev: first.prev.clone(),
                signature: signer.sign_pruned(first.seq, &first.prev),
            },
        )
        .unwrap();
        // Nothing deleted yet: the whole chain from record 1, consistent with the anchor.
        assert_eq!(verify_dir(dir.path()).unwrap().pruned_before, None);
        // Some of the deletions done (oldest first): the rest links up to the anchor.
        std::fs::remove_file(&files[0]).unwrap();
        std::fs::remove_file(&files[1]).unwrap();
        let second = first_record(&files[2]).unwrap().unwrap();
        assert_eq!(
            verify_dir(dir.path()).unwrap().pruned_before,
            Some(second.seq)
        );
        // ... and a record edited there is still caught by that link.
        let text = std::fs::read_to_string(&files[2]).unwrap();
        let edited = text.replacen("\"requests\":1", "\"requests\":9", 1);
        std::fs::write(&files[2], &edited).unwrap();
        assert!(verify_dir(dir.path()).is_err());
        std::fs::write(&files[2], &text).unwrap();
        std::fs::remove_file(&files[2]).unwrap();
        assert_eq!(
            verify_dir(dir.path()).unwrap().pruned_before,
            Some(first.seq)
        );
    }
}
