//! The telemetry spool: a bounded queue of [`Record`]s in sled, oldest first. When it is
//! full the oldest records are dropped and counted (the count survives restarts). The
//! agent reads a batch (named by its first and last sequence number) and acknowledges it
//! after the sink accepted it; an unacknowledged batch is served again, so delivery is
//! at least once and the sequence numbers let a sink drop repeats.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use coffer_privacy::telemetry::{Record, RecordBody};

/// Spool errors.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("telemetry spool storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("a spooled record is unreadable: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("'{0}' is not a batch id (FIRST-LAST)")]
    BadBatchId(String),
}

const DROPPED_KEY: &[u8] = b"dropped";

/// The spool.
#[derive(Debug)]
pub struct Spool {
    db: sled::Db,
    records: sled::Tree,
    meta: sled::Tree,
    capacity: usize,
    /// Serialises pushes and acks so the count and the bound stay exact.
    state: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    len: usize,
    dropped: u64,
}

pub use coffer_admin_api::telemetry::Batch;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Spool {
    pub fn open(db: &sled::Db, capacity: usize) -> Result<Spool, SpoolError> {
        let records = db.open_tree("telemetry_spool")?;
        let meta = db.open_tree("telemetry_meta")?;
        let dropped = meta
            .get(DROPPED_KEY)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_be_bytes)
            .unwrap_or(0);
        let len = records.len();
        Ok(Spool {
            db: db.clone(),
            records,
            meta,
            capacity: capacity.max(1),
            state: Mutex::new(Counts { len, dropped }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a record (its strings redacted), dropping the oldest when full.
    pub fn push(&self, body: RecordBody) -> Result<u64, SpoolError> {
        let seq = self.db.generate_id()?;
        let record = Record {
            seq,
            at_ms: now_ms(),
            body,
        }
        .sanitized();
        let value = serde_json::to_vec(&record)?;
        let mut counts = self.lock();
        self.records.insert(seq.to_be_bytes(), value)?;
        counts.len += 1;
        let mut dropped_now = 0u64;
        while counts.len > self.capacity {
            if self.records.pop_min()?.is_none() {
                break;
            }
            counts.len -= 1;
            dropped_now += 1;
        }
        if dropped_now > 0 {
            counts.dropped += dropped_now;
            self.meta
                .insert(DROPPED_KEY, &counts.dropped.to_be_bytes())?;
        }
        Ok(seq)
    }

    /// Records dropped because the spool was full, since it was created.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    pub fn len(&self) -> usize {
        self.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The oldest `max` records.
    pub fn batch(&self, max: usize) -> Result<Batch, SpoolError> {
        let counts = self.lock();
        let mut records = Vec::new();
        for item in self.records.iter().take(max.max(1)) {
            let (_, value) = item?;
            records.push(serde_json::from_slice::<Record>(&value)?);
        }
        let batch_id = match (records.first(), records.last()) {
            (Some(a), Some(b)) => format!("{}-{}", a.seq, b.seq),
            _ => String::new(),
        };
        Ok(Batch {
            batch_id,
            records,
            dropped_total: counts.dropped,
            pending: counts.len,
        })
    }

    /// Removes the records of an acknowledged batch; returns how many were still there
    /// (a repeated acknowledgement removes nothing).
    pub fn ack(&self, batch_id: &str) -> Result<usize, SpoolError> {
        let bad = || SpoolError::BadBatchId(batch_id.to_string());
        let (first, last) = batch_id.split_once('-').ok_or_else(bad)?;
        let first: u64 = first.parse().map_err(|_| bad())?;
        let last: u64 = last.parse().map_err(|_| bad())?;
        if first > last {
            return Err(bad());
        }
        let mut counts = self.lock();
        let keys: Vec<sled::IVec> = self
            .records
            .range(first.to_be_bytes()..=last.to_be_bytes())
            .keys()
            .collect::<Result<_, _>>()?;
        for key in &keys {
            if self.records.remove(key)?.is_some() {
                counts.len -= 1;
            }
        }
        Ok(keys.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        (dir, db)
    }

    fn body(n: u64) -> RecordBody {
        RecordBody::SpoolDropped { count: n }
    }

    #[test]
    fn full_spool_drops_oldest_first_and_counts() {
        let (_dir, db) = db();
        let spool = Spool::open(&db, 3).unwrap();
        for n in 0..5 {
            spool.push(body(n)).unwrap();
        }
        assert_eq!(spool.len(), 3);
        assert_eq!(spool.dropped(), 2);
        let batch = spool.batch(10).unwrap();
        let kept: Vec<_> = batch.records.iter().map(|r| r.body.clone()).collect();
        assert_eq!(kept, vec![body(2), body(3), body(4)]);
        assert_eq!(batch.dropped_total, 2);
    }

    #[test]
    fn ack_removes_only_the_batch_and_survives_reopen() {
        let (dir, db) = db();
        let spool = Spool::open(&db, 100).unwrap();
        for n in 0..5 {
            spool.push(body(n)).unwrap();
        }
        let first = spool.batch(2).unwrap();
        // Not acknowledged: the same records come again.
        assert_eq!(spool.batch(2).unwrap().batch_id, first.batch_id);
        assert_eq!(spool.ack(&first.batch_id).unwrap(), 2);
        assert_eq!(
            spool.ack(&first.batch_id).unwrap(),
            0,
            "repeat ack is harmless"
        );
        assert!(matches!(spool.ack("x"), Err(SpoolError::BadBatchId(_))));
        assert!(matches!(spool.ack("9-1"), Err(SpoolError::BadBatchId(_))));
        drop(spool);
        db.flush().unwrap();
        drop(db);
        let db = crate::testutil::reopen_sled(dir.path());
        let spool = Spool::open(&db, 100).unwrap();
        assert_eq!(spool.len(), 3);
        let rest = spool.batch(10).unwrap();
        assert_eq!(rest.records[0].body, body(2));
        assert!(rest.records.windows(2).all(|w| w[0].seq < w[1].seq));
    }

    #[test]
    fn strings_are_redacted_before_they_are_stored() {
        let (_dir, db) = db();
        let spool = Spool::open(&db, 10).unwrap();
        spool
            .push(RecordBody::ActiveModel {
                model: "m13812345678".into(),
                version: "1".into(),
                engine: "tract".into(),
            })
            .unwrap();
        let json = serde_json::to_string(&spool.batch(1).unwrap()).unwrap();
        assert!(!json.contains("13812345678"), "{json}");
    }
}
