//! The decision store: sealed records appended to segment files in `<state>/decisions/`
//! (`segment.rs`, written by `appender.rs`), each segment's summary in sled
//! (`decision_segments`). One decision costs a memory copy on the request's path and a
//! share of one write per batch; a lookup by request id reads the segments around the
//! time the id carries (`crate::request_id`); retention removes whole segments, and
//! reads hide decisions past the retention before their segment goes. Nothing in the
//! clear but the headers (time, request id, `model@version`, key id, SHA-256).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::Duration;

use super::appender::{AppendError, Appender, Rolling, Target};
use super::key_rotation::{AutoRotation, ROTATE_AFTER};
use super::keyring::{KeyError, Keyring};
use super::record::{Decision, DecisionRecord, Header, PlainTensor, sha256_hex};
use super::seal::{SealError, aad, seal_into};
use super::segment::{self, SegmentError, SegmentMeta};
use super::wire::{decode_sealed, from_plaintext};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("decision store: {0}")]
    Sled(#[from] sled::Error),
    #[error("decision store {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Segment(#[from] SegmentError),
    #[error(transparent)]
    Migrate(#[from] super::migrate::MigrateError),
    #[error(transparent)]
    Append(#[from] AppendError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("a decision of {0} bytes is larger than a record may be")]
    TooLarge(usize),
    #[error("decision record {0} is malformed")]
    Malformed(String),
    #[error("decision record {0} does not match its hash: altered")]
    Altered(String),
}

/// A frame's decoded header, nonce and ciphertext.
type Sealed<'a> = (Header, [u8; 12], &'a [u8]);

/// How far after the time a request id carries its decision may be recorded (the
/// request's deadline is far shorter).
const ID_WINDOW_MS: u64 = 24 * 3600 * 1000;

/// The largest frame buffer a thread keeps for the next decision.
const KEPT_FRAME_BYTES: usize = 64 << 10;

pub struct DecisionStore {
    dir: PathBuf,
    metas: sled::Tree,
    appender: Appender,
    /// Read-locked to seal and open (both take `&self`); written only to rotate.
    keyring: RwLock<Keyring>,
    retention: Duration,
    /// When the store makes a new key by itself.
    rotation: AutoRotation,
}

impl std::fmt::Debug for DecisionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionStore")
            .field("dir", &self.dir)
            .field("retention", &self.retention)
            .finish()
    }
}

fn meta_key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// Keeps a segment's summary in sled, flushed.
fn keep_summary(metas: &sled::Tree, meta: &SegmentMeta) -> Result<(), sled::Error> {
    metas.insert(
        meta_key(meta.seq),
        serde_json::to_vec(meta).unwrap_or_default(),
    )?;
    metas.flush().map(drop)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The segments on disk, summarized: those the daemon was writing when it stopped are
/// read again (a torn last frame cut off); a summary whose file is gone is dropped
/// with an error in the log.
fn load_segments(dir: &Path, metas: &sled::Tree) -> Result<Vec<SegmentMeta>, StoreError> {
    let mut known = BTreeMap::new();
    for item in metas.iter() {
        let (k, v) = item?;
        let meta: SegmentMeta = serde_json::from_slice(&v)
            .map_err(|_| StoreError::Malformed(format!("segment summary {k:?}")))?;
        known.insert(meta.seq, meta);
    }
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match segment::seq_of(&name) {
            Some(seq) => on_disk.push(seq),
            None if name.ends_with(".tmp") => {
                let _ = std::fs::remove_file(entry.path());
            }
            None => {}
        }
    }
    on_disk.sort_unstable();
    let mut out = Vec::new();
    for seq in &on_disk {
        let meta = match known.remove(seq) {
            Some(m) => m,
            None => {
                let path = segment::path(dir, *seq);
                let created = std::fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_millis() as u64);
                let meta = segment::recover(&path, *seq, created)?;
                if meta.count == 0 {
                    std::fs::remove_file(&path).map_err(io(&path))?;
                    continue;
                }
                keep_summary(metas, &meta)?;
                meta
            }
        };
        out.push(meta);
    }
    for (seq, meta) in known {
        tracing::error!(
            segment = seq,
            decisions = meta.count,
            "a decision segment is missing from the store directory; its decisions cannot be read"
        );
        metas.remove(meta_key(seq))?;
    }
    metas.flush()?;
    Ok(out)
}

impl DecisionStore {
    pub fn open(
        db: &sled::Db,
        dir: &Path,
        keyring: Keyring,
        retention: Duration,
    ) -> Result<DecisionStore, StoreError> {
        DecisionStore::open_with(db, dir, keyring, retention, Rolling::default())
    }

    pub fn open_with(
        db: &sled::Db,
        dir: &Path,
        keyring: Keyring,
        retention: Duration,
        rolling: Rolling,
    ) -> Result<DecisionStore, StoreError> {
        {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io(dir))?;
        }
        super::migrate::from_sled_trees(db, dir)?;
        let metas = db.open_tree("decision_segments")?;
        let segments = load_segments(dir, &metas)?;
        let next_seq = segments.last().map_or(1, |m| m.seq + 1).max(1);
        let sealed_into = metas.clone();
        let appender = Appender::start(
            segments,
            Target {
                dir: dir.to_path_buf(),
                rolling,
                next_seq,
                on_sealed: Box::new(move |meta| {
                    keep_summary(&sealed_into, meta).map_err(|e| e.to_string())
                }),
            },
        )
        .map_err(io(dir))?;
        // Which key sealed the records kept is not counted: all count against the
        // current one, so a restart never resets what it has sealed.
        keyring.set_sealed(appender.segments().iter().map(|m| m.count).sum());
        Ok(DecisionStore {
            dir: dir.to_path_buf(),
            metas,
            appender,
            keyring: RwLock::new(keyring),
            retention,
            rotation: AutoRotation::new(ROTATE_AFTER),
        })
    }

    /// A store that rotates its key after `n` records (the tests' small limit).
    #[cfg(test)]
    pub fn with_rotate_after(mut self, n: u64) -> DecisionStore {
        self.rotation = AutoRotation::new(n);
        self
    }

    /// Key rotations are recorded in `audit` from now on.
    pub fn audited_by(mut self, audit: Option<std::sync::Arc<crate::audit::AuditLog>>) -> Self {
        self.rotation.audited_by(audit);
        self
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keyring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seals and stores a decision; returns the plaintext's SHA-256 (hex). An error
    /// means it is not kept.
    pub fn record<T: PlainTensor>(&self, rec: &Decision<'_, T>) -> Result<String, StoreError> {
        thread_local! {
            /// The frame being built: one buffer per thread, kept between decisions.
            static FRAME: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let (kept, rotation_due) = FRAME.with_borrow_mut(|frame| {
            let (sealed, rotation_due) = {
                let ring = self.ring();
                let sealed = seal_into(frame, rec, &ring);
                (sealed, self.rotation.due(&ring))
            };
            let kept = (|| {
                let sha256 = sealed?;
                if frame.len() - segment::FRAME_HEAD > segment::MAX_BODY {
                    return Err(StoreError::TooLarge(frame.len()));
                }
                self.appender
                    .append(rec.at_ms, rec.model, rec.version, frame)?;
                Ok(sha256)
            })();
            if kept.is_err() {
                // It may hold the plaintext (sealing failed after encoding it).
                frame.fill(0);
            }
            frame.clear();
            if frame.capacity() > KEPT_FRAME_BYTES {
                *frame = Vec::new();
            }
            (kept, rotation_due)
        });
        if rotation_due {
            self.rotation.rotate_when_due(&self.keyring);
        }
        kept
    }

    /// Decisions before this time are past the retention: not read, removed with their
    /// segment.
    fn cut(&self) -> u64 {
        super::record::now_ms().saturating_sub(self.retention.as_millis() as u64)
    }

    /// Opens and checks a sealed record whose header is decoded.
    fn open_sealed(
        &self,
        (header, nonce, sealed): Sealed<'_>,
    ) -> Result<(Header, DecisionRecord), StoreError> {
        let name = || header.request_id.clone();
        let plain = self.ring().open(
            &header.key_id,
            &aad(header.at_ms, &header.request_id),
            nonce,
            sealed,
        )?;
        if sha256_hex(&plain) != header.sha256 {
            return Err(StoreError::Altered(name()));
        }
        let rec = from_plaintext(&plain).ok_or_else(|| StoreError::Malformed(name()))?;
        if (&rec.model, &rec.version) != (&header.model, &header.version) {
            return Err(StoreError::Altered(name()));
        }
        Ok((header, rec))
    }

    /// Reads `segments` in order, frame by frame (header decoded), until `each` says
    /// stop.
    fn scan(
        &self,
        segments: &[SegmentMeta],
        each: &mut dyn FnMut(Sealed<'_>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        for meta in segments {
            let mut failed = None;
            let mut more = true;
            let read = segment::read(
                &segment::path(&self.dir, meta.seq),
                Some(meta.bytes),
                false,
                &mut |_, body| {
                    let step = decode_sealed(body)
                        .ok_or_else(|| StoreError::Malformed("(unreadable)".into()))
                        .and_then(&mut *each);
                    match step {
                        Ok(go) => {
                            more = go;
                            go
                        }
                        Err(e) => {
                            failed = Some(e);
                            false
                        }
                    }
                },
            );
            match read {
                Ok(_) => {}
                // Removed by retention since the list was taken.
                Err(SegmentError::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound
                        && !self.appender.segments().iter().any(|m| m.seq == meta.seq) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if !more {
                break;
            }
        }
        Ok(())
    }

    /// Every decision recorded under a request id, oldest first, opened and checked.
    pub fn get(&self, request_id: &str) -> Result<Vec<(Header, DecisionRecord)>, StoreError> {
        let cut = self.cut();
        let segments: Vec<SegmentMeta> = match crate::request_id::time_ms(request_id) {
            // Recorded after the id was made (a minute's leeway for a clock stepped
            // back), within the window.
            Some(t) => self
                .appender
                .written()?
                .into_iter()
                .filter(|m| {
                    m.max_ms.saturating_add(60_000) >= t
                        && m.min_ms <= t.saturating_add(ID_WINDOW_MS)
                })
                .collect(),
            // An id of another form (a record moved over from an older store): all.
            None => self.appender.written()?,
        };
        let mut out = Vec::new();
        self.scan(&segments, &mut |sealed| {
            if sealed.0.request_id == request_id && sealed.0.at_ms >= cut {
                out.push(self.open_sealed(sealed)?);
            }
            Ok(true)
        })?;
        out.sort_by_key(|(h, _)| h.at_ms);
        Ok(out)
    }

    /// The segments that may hold decisions at or after `since_ms`, and the bound
    /// reads apply (the later of `since_ms` and the retention's cut).
    fn from(&self, since_ms: u64) -> Result<(Vec<SegmentMeta>, u64), StoreError> {
        let since = since_ms.max(self.cut());
        let segments = self
            .appender
            .written()?
            .into_iter()
            .filter(|m| m.max_ms >= since)
            .collect();
        Ok((segments, since))
    }

    /// Headers of the decisions at or after `since_ms` (of one model, when given), oldest
    /// first, at most `limit`.
    pub fn list(
        &self,
        model: Option<&str>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<Header>, StoreError> {
        Ok(self
            .select(model, since_ms, limit, false)?
            .into_iter()
            .map(|(h, _)| h)
            .collect())
    }

    /// Opens the decisions at or after `since_ms` (of one model, when given), at most
    /// `limit`, for replay and export.
    pub fn open_range(
        &self,
        model: Option<&str>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<(Header, DecisionRecord)>, StoreError> {
        Ok(self
            .select(model, since_ms, limit, true)?
            .into_iter()
            .filter_map(|(h, r)| r.map(|r| (h, r)))
            .collect())
    }

    /// Oldest first: segments follow each other in time but a segment's frames are in
    /// the order they were written, so each segment's picks are sorted before the next.
    fn select(
        &self,
        model: Option<&str>,
        since_ms: u64,
        limit: usize,
        open: bool,
    ) -> Result<Vec<(Header, Option<DecisionRecord>)>, StoreError> {
        let (segments, since) = self.from(since_ms)?;
        let mut out = Vec::new();
        for meta in &segments {
            if out.len() >= limit {
                break;
            }
            let mut picked = Vec::new();
            self.scan(std::slice::from_ref(meta), &mut |sealed| {
                let h = &sealed.0;
                if h.at_ms >= since && model.is_none_or(|m| m == h.model) {
                    picked.push(if open {
                        let (h, r) = self.open_sealed(sealed)?;
                        (h, Some(r))
                    } else {
                        (sealed.0, None)
                    });
                }
                Ok(true)
            })?;
            picked.sort_by(|a, b| (a.0.at_ms, &a.0.request_id).cmp(&(b.0.at_ms, &b.0.request_id)));
            out.extend(picked.into_iter().take(limit - out.len()));
        }
        Ok(out)
    }

    /// Removes the segments whose every decision is older than the retention at
    /// `now_ms`: (how many decisions, the cut).
    pub fn prune(&self, now_ms: u64) -> Result<(u64, u64), StoreError> {
        let cut = now_ms.saturating_sub(self.retention.as_millis() as u64);
        let gone = self.appender.forget(&|m| m.max_ms < cut);
        let mut removed = 0;
        for meta in gone {
            let path = segment::path(&self.dir, meta.seq);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
            self.metas.remove(meta_key(meta.seq))?;
            removed += meta.count;
        }
        self.metas.flush()?;
        Ok((removed, cut))
    }

    /// The model versions unexpired decisions name, with their newest decision's time.
    pub fn referenced(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let cut = self.cut();
        let mut out = BTreeMap::new();
        for meta in self.appender.written()? {
            for (version, newest) in meta.versions {
                if newest >= cut {
                    let at = out.entry(version).or_insert(0);
                    *at = newest.max(*at);
                }
            }
        }
        Ok(out)
    }

    /// Whether decisions that have not expired name `model@version`.
    pub fn references(&self, model: &str, version: &str) -> Result<bool, StoreError> {
        Ok(self
            .referenced()?
            .contains_key(&segment::version_key(model, version)))
    }

    /// Adds a key that seals new records (an admin's request, audited); returns its id.
    pub fn rotate_key(&self) -> Result<String, StoreError> {
        Ok(self.rotation.rotate_now(&self.keyring)?)
    }

    /// The key ids, the current last.
    pub fn key_ids(&self) -> Vec<String> {
        self.ring().ids()
    }

    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// Why decisions cannot be written now (they are refused meanwhile); `None` while
    /// they can.
    pub fn failure(&self) -> Option<String> {
        self.appender.failure()
    }

    /// Waits until every decision recorded so far is written to its segment.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.appender.written()?;
        Ok(())
    }

    /// Writes what is pending, fsyncs and ends the current segment; later decisions
    /// are refused.
    pub fn close(&self) {
        self.appender.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::record::{RecordedTensor, now_ms};
    use crate::decisions::wire::encode_sealed_v1;
    use crate::tensor::{Tensor, TensorData};

    fn record(id: &str, at_ms: u64, model: &str) -> DecisionRecord {
        DecisionRecord {
            request_id: id.into(),
            at_ms,
            model: model.into(),
            version: "1.0.0".into(),
            attributes: Some(serde_json::from_str(r#"{"purpose": ["car (new)"]}"#).unwrap()),
            inputs: vec![RecordedTensor::of(&Tensor {
                name: "features".into(),
                shape: vec![1, 2],
                data: TensorData::F32(vec![0.1, -7.25]),
            })],
            outputs: vec![],
            explanation: None,
        }
    }

    /// A store whose segments end at their first decision (256 bytes at most).
    fn store(dir: &std::path::Path, retention: Duration) -> (sled::Db, DecisionStore) {
        let db = sled::open(dir.join("db")).unwrap();
        let ring = Keyring::open_or_create(&dir.join("keys")).unwrap();
        let rolling = Rolling {
            max_bytes: 256,
            ..Rolling::default()
        };
        let s = DecisionStore::open_with(&db, &dir.join("decisions"), ring, retention, rolling)
            .unwrap();
        (db, s)
    }

    #[test]
    fn a_key_that_sealed_its_share_is_rotated_and_a_restart_keeps_the_count() {
        let tmp = tempfile::tempdir().unwrap();
        let key_of = |s: &DecisionStore, id: &str| s.get(id).unwrap()[0].0.key_id.clone();
        let (db, s) = store(tmp.path(), Duration::from_secs(3600));
        let audit_dir = tmp.path().join("audit");
        let audit =
            crate::audit::AuditLog::open(crate::audit::test_support::settings_for(&audit_dir))
                .map(std::sync::Arc::new)
                .unwrap();
        let s = s.with_rotate_after(3).audited_by(Some(audit.clone()));
        for i in 0..7 {
            s.record(&record(&format!("req-{i}"), now_ms(), "credit-lr").borrowed())
                .unwrap();
        }
        assert_eq!(s.key_ids(), ["k000001", "k000002", "k000003"]);
        let keys: Vec<String> = (0..7).map(|i| key_of(&s, &format!("req-{i}"))).collect();
        assert_eq!(
            keys,
            [
                "k000001", "k000001", "k000001", "k000002", "k000002", "k000002", "k000003"
            ]
        );
        assert_eq!(s.rotate_key().unwrap(), "k000004");
        audit.close();
        let rotations: Vec<_> = crate::audit::test_support::all_records(&audit_dir)
            .into_iter()
            .filter_map(|r| match r.event {
                crate::audit::AuditEvent::DecisionKeyRotated {
                    previous,
                    key_id,
                    sealed,
                    reason,
                } => Some(format!("{previous} {key_id} {sealed} {reason}")),
                _ => None,
            })
            .collect();
        assert_eq!(
            rotations,
            [
                "k000001 k000002 3 limit",
                "k000002 k000003 3 limit",
                "k000003 k000004 1 admin"
            ]
        );
        s.close();
        drop((s, db));
        // The 7 records held count against the current key: the next one rotates it.
        let (_db, s) = store(tmp.path(), Duration::from_secs(3600));
        let s = s.with_rotate_after(3);
        s.record(&record("req-7", now_ms(), "credit-lr").borrowed())
            .unwrap();
        assert_eq!(key_of(&s, "req-7"), "k000004");
        assert_eq!(s.key_ids().len(), 5);
    }

    fn ids(headers: Vec<Header>) -> Vec<String> {
        headers.into_iter().map(|h| h.request_id).collect()
    }

    #[test]
    fn records_round_trip_sealed_across_segments_and_restarts_and_expire() {
        let tmp = tempfile::tempdir().unwrap();
        let now = now_ms();
        let hour = 3_600_000;
        let (db, s) = store(tmp.path(), Duration::from_secs(24 * 3600));
        // Three days ago (past the retention), then an hour ago, then now.
        let a = record("req-a", now - 72 * hour, "credit-lr");
        let sha = s.record(&a.borrowed()).unwrap();
        s.flush().unwrap();
        s.record(&record("req-b", now - hour, "credit-gbdt").borrowed())
            .unwrap();
        s.flush().unwrap();
        let fresh = crate::request_id::new();
        let at = crate::request_id::time_ms(&fresh).unwrap();
        s.record(&record(&fresh, at, "credit-lr").borrowed())
            .unwrap();
        // Past the retention: not read, though its segment is still there.
        assert!(s.get("req-a").unwrap().is_empty());
        assert_eq!(
            ids(s.list(None, 0, 10).unwrap()),
            vec!["req-b".to_string(), fresh.clone()]
        );
        assert_eq!(
            ids(s.list(Some("credit-lr"), 0, 10).unwrap()),
            vec![fresh.clone()]
        );
        assert_eq!(s.list(None, at, 10).unwrap().len(), 1);
        assert_eq!(s.list(None, 0, 1).unwrap().len(), 1);
        let got = s.get(&fresh).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.request_id, fresh);
        assert_eq!(
            got[0].1.inputs[0].tensor().unwrap().data,
            TensorData::F32(vec![0.1, -7.25])
        );
        assert!(s.references("credit-gbdt", "1.0.0").unwrap());
        assert!(!s.references("credit-mlp", "1.0.0").unwrap());
        assert_eq!(s.open_range(None, 0, 10).unwrap().len(), 2);
        drop(s);
        drop(db);

        // After a restart, everything is found again; a longer retention shows req-a.
        let (_db, s) = store(tmp.path(), Duration::from_secs(100 * 24 * 3600));
        let got = s.get("req-a").unwrap();
        assert_eq!((got.len(), &got[0].1, &got[0].0.sha256), (1, &a, &sha));
        assert_eq!(s.list(None, 0, 10).unwrap().len(), 3);
        // Retention at a time 3 days on: segments wholly older than the cut go.
        let (removed, cut) = s.prune(now + 24 * hour).unwrap();
        assert_eq!(cut, now + 24 * hour - 100 * 24 * hour);
        assert_eq!(removed, 0);
        let (removed, _) = s.prune(now + 100 * 24 * hour - 2 * hour).unwrap();
        assert_eq!(removed, 1, "only req-a's segment is wholly past the cut");
        assert!(s.get("req-a").unwrap().is_empty());
        assert_eq!(s.list(None, 0, 10).unwrap().len(), 2);
    }

    #[test]
    fn nothing_personal_is_stored_in_the_clear_and_alterations_are_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let (_db, s) = store(tmp.path(), Duration::from_secs(3600));
        let id = crate::request_id::new();
        s.record(&record(&id, now_ms(), "credit-lr").borrowed())
            .unwrap();
        s.flush().unwrap();
        let seg = segment::path(&tmp.path().join("decisions"), 1);
        let bytes = std::fs::read(&seg).unwrap();
        assert!(!bytes.windows(9).any(|w| w == b"car (new)"));
        assert!(bytes.windows(id.len()).any(|w| w == id.as_bytes()));

        // The last byte (in the GCM tag) flipped, the frame's CRC made to match: the
        // record does not open.
        let mut altered = bytes.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        let body = &altered[segment::MAGIC.len() + segment::FRAME_HEAD..];
        let crc = crc32fast::hash(body).to_le_bytes();
        altered[segment::MAGIC.len() + 4..segment::MAGIC.len() + 8].copy_from_slice(&crc);
        std::fs::write(&seg, &altered).unwrap();
        assert!(matches!(s.get(&id), Err(StoreError::Key(KeyError::Open))));
        // Without the CRC fixed, the segment reads as corrupt.
        altered[segment::MAGIC.len() + 4] ^= 1;
        std::fs::write(&seg, &altered).unwrap();
        assert!(matches!(
            s.get(&id),
            Err(StoreError::Segment(SegmentError::Corrupt { .. }))
        ));
    }

    #[test]
    fn a_store_that_cannot_write_refuses_new_decisions_and_recovers() {
        let tmp = tempfile::tempdir().unwrap();
        let (_db, s) = store(tmp.path(), Duration::from_secs(3600));
        let now = now_ms();
        s.record(&record("req-a", now, "credit-lr").borrowed())
            .unwrap();
        s.flush().unwrap();
        // The directory replaced by a file: the next segment cannot be made.
        let dir = tmp.path().join("decisions");
        std::fs::rename(&dir, tmp.path().join("moved")).unwrap();
        std::fs::write(&dir, b"not a directory").unwrap();
        for i in 0..3 {
            // Each needs a segment of its own: the writer must begin a new one.
            let _ = s.record(&record(&format!("req-{i}"), now, "credit-lr").borrowed());
        }
        assert!(matches!(
            s.flush(),
            Err(StoreError::Append(AppendError::Failed(_)))
        ));
        assert!(matches!(
            s.record(&record("req-refused", now, "credit-lr").borrowed()),
            Err(StoreError::Append(AppendError::Failed(_)))
        ));
        // Back in place: the retry writes what was waiting, and new decisions are kept.
        std::fs::remove_file(&dir).unwrap();
        std::fs::rename(tmp.path().join("moved"), &dir).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s.flush().is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never recovered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(s.failure(), None);
        s.record(&record("req-late", now, "credit-lr").borrowed())
            .unwrap();
        let kept = ids(s.list(None, 0, 100).unwrap());
        for id in ["req-a", "req-0", "req-1", "req-2", "req-late"] {
            assert!(kept.iter().any(|k| k == id), "{id} lost: {kept:?}");
        }
        assert!(!kept.iter().any(|k| k == "req-refused"));
    }

    #[test]
    fn decisions_in_the_old_sled_trees_move_into_a_segment_once() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::open(tmp.path().join("db")).unwrap();
        let ring = Keyring::open_or_create(&tmp.path().join("keys")).unwrap();
        // Written as the sled layout did: the value sealed with (time, id) as its key.
        let now = now_ms();
        let rec = record("0123456789abcdef", now, "credit-lr");
        // The first layout throughout: JSON plaintext, JSON header.
        let plaintext = serde_json::to_vec(&rec).unwrap();
        let key = aad(now, &rec.request_id);
        let (key_id, nonce, sealed) = ring.seal(&key, &plaintext).unwrap();
        let header = Header {
            request_id: rec.request_id.clone(),
            at_ms: now,
            model: rec.model.clone(),
            version: rec.version.clone(),
            key_id,
            sha256: sha256_hex(&plaintext),
        };
        let old = db.open_tree("decisions").unwrap();
        old.insert(&key, encode_sealed_v1(&header, &nonce, &sealed))
            .unwrap();
        db.open_tree("decisions_by_id")
            .unwrap()
            .insert(b"x", b"y")
            .unwrap();
        let dir = tmp.path().join("decisions");
        let s = DecisionStore::open(&db, &dir, ring, Duration::from_secs(3600)).unwrap();
        assert!(!db.tree_names().iter().any(|n| n.as_ref() == b"decisions"));
        assert_eq!(s.get("0123456789abcdef").unwrap()[0].1, rec);
        assert!(s.references("credit-lr", "1.0.0").unwrap());
        drop(s);
        let ring = Keyring::open_or_create(&tmp.path().join("keys")).unwrap();
        let s = DecisionStore::open(&db, &dir, ring, Duration::from_secs(3600)).unwrap();
        assert_eq!(s.list(None, 0, 10).unwrap().len(), 1, "moved once");
    }
}
