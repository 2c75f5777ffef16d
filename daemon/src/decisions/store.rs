//! The decision store in sled: sealed records by time (`decisions`: big-endian ms, then
//! the request id), an index by request id (`decisions_by_id`), and the newest decision
//! of each model version (`decisions_versions`), which keeps a version that unexpired
//! decisions name from being removed. Nothing in the clear but the headers.

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use super::keyring::{KeyError, Keyring};
use super::record::{DecisionRecord, Header, decode_sealed, encode_sealed, sha256_hex};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("decision store: {0}")]
    Sled(#[from] sled::Error),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("decision record {0} is malformed")]
    Malformed(String),
    #[error("decision record {0} does not match its hash: altered")]
    Altered(String),
}

pub struct DecisionStore {
    records: sled::Tree,
    by_id: sled::Tree,
    versions: sled::Tree,
    /// Read-locked to seal and open (both take `&self`); written only to rotate.
    keyring: RwLock<Keyring>,
    retention: Duration,
    /// The newest decision time written to `decisions_versions`, per version: it is
    /// rewritten only when a minute newer, so the hot path rarely touches that key.
    newest: Mutex<std::collections::HashMap<Vec<u8>, u64>>,
}

/// How stale `decisions_versions` may be: a version is kept a minute longer at most.
const NEWEST_STEP_MS: u64 = 60_000;

impl std::fmt::Debug for DecisionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionStore")
            .field("records", &self.records.len())
            .field("retention", &self.retention)
            .finish()
    }
}

fn primary_key(at_ms: u64, request_id: &str) -> Vec<u8> {
    let mut k = at_ms.to_be_bytes().to_vec();
    k.extend(request_id.as_bytes());
    k
}

fn id_key(request_id: &str, at_ms: u64) -> Vec<u8> {
    let mut k = request_id.as_bytes().to_vec();
    k.push(0);
    k.extend(at_ms.to_be_bytes());
    k
}

fn version_key(model: &str, version: &str) -> Vec<u8> {
    format!("{model}@{version}").into_bytes()
}

impl DecisionStore {
    pub fn open(
        db: &sled::Db,
        keyring: Keyring,
        retention: Duration,
    ) -> Result<DecisionStore, StoreError> {
        Ok(DecisionStore {
            records: db.open_tree("decisions")?,
            by_id: db.open_tree("decisions_by_id")?,
            versions: db.open_tree("decisions_versions")?,
            keyring: RwLock::new(keyring),
            retention,
            newest: Mutex::new(std::collections::HashMap::new()),
        })
    }

    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keyring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Seals and stores a decision; returns the plaintext's SHA-256 (hex).
    pub fn record(&self, rec: &DecisionRecord) -> Result<String, StoreError> {
        let plaintext = rec.plaintext();
        let sha256 = sha256_hex(&plaintext);
        let key = primary_key(rec.at_ms, &rec.request_id);
        let (key_id, nonce, sealed) = self.ring().seal(&key, &plaintext)?;
        let header = Header {
            request_id: rec.request_id.clone(),
            at_ms: rec.at_ms,
            model: rec.model.clone(),
            version: rec.version.clone(),
            key_id,
            sha256: sha256.clone(),
        };
        self.records
            .insert(&key, encode_sealed(&header, &nonce, &sealed))?;
        self.by_id
            .insert(id_key(&rec.request_id, rec.at_ms), key.as_slice())?;
        let vkey = version_key(&rec.model, &rec.version);
        {
            let mut newest = self
                .newest
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let last = newest.entry(vkey.clone()).or_insert(0);
            if rec.at_ms <= *last {
                return Ok(sha256);
            }
            *last = rec.at_ms + NEWEST_STEP_MS;
        }
        // Written a minute ahead, so a version stays referenced at least as long as the
        // decisions skipped above.
        let at = rec.at_ms + NEWEST_STEP_MS;
        self.versions.fetch_and_update(&vkey, |old| {
            let newest = old
                .and_then(|o| o.try_into().ok())
                .map_or(0, u64::from_be_bytes)
                .max(at);
            Some(newest.to_be_bytes().to_vec())
        })?;
        Ok(sha256)
    }

    fn open_value(&self, key: &[u8], value: &[u8]) -> Result<(Header, DecisionRecord), StoreError> {
        let name = || String::from_utf8_lossy(key.get(8..).unwrap_or_default()).into_owned();
        let (header, nonce, sealed) =
            decode_sealed(value).ok_or_else(|| StoreError::Malformed(name()))?;
        let plain = self.ring().open(&header.key_id, key, nonce, sealed)?;
        if sha256_hex(&plain) != header.sha256 {
            return Err(StoreError::Altered(name()));
        }
        let rec: DecisionRecord =
            serde_json::from_slice(&plain).map_err(|_| StoreError::Malformed(name()))?;
        Ok((header, rec))
    }

    /// Every decision recorded under a request id, oldest first, opened and checked.
    pub fn get(&self, request_id: &str) -> Result<Vec<(Header, DecisionRecord)>, StoreError> {
        let mut prefix = request_id.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::new();
        for item in self.by_id.scan_prefix(&prefix) {
            let (_, primary) = item?;
            if let Some(value) = self.records.get(&primary)? {
                out.push(self.open_value(&primary, &value)?);
            }
        }
        Ok(out)
    }

    /// Headers of the decisions at or after `since_ms` (of one model, when given), oldest
    /// first, at most `limit`.
    pub fn list(
        &self,
        model: Option<&str>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<Header>, StoreError> {
        let mut out = Vec::new();
        for item in self.records.range(since_ms.to_be_bytes()..) {
            let (key, value) = item?;
            let (header, _, _) = decode_sealed(&value).ok_or_else(|| {
                StoreError::Malformed(String::from_utf8_lossy(&key[8..]).into_owned())
            })?;
            if model.is_none_or(|m| m == header.model) {
                out.push(header);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Opens the decisions at or after `since_ms` (of one model, when given), at most
    /// `limit`, for replay and export.
    pub fn open_range(
        &self,
        model: Option<&str>,
        since_ms: u64,
        limit: usize,
    ) -> Result<Vec<(Header, DecisionRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.records.range(since_ms.to_be_bytes()..) {
            let (key, value) = item?;
            let Some((header, _, _)) = decode_sealed(&value) else {
                return Err(StoreError::Malformed(
                    String::from_utf8_lossy(&key[8..]).into_owned(),
                ));
            };
            if model.is_none_or(|m| m == header.model) {
                out.push(self.open_value(&key, &value)?);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Removes the decisions older than the retention at `now_ms`: (how many, the cut).
    pub fn prune(&self, now_ms: u64) -> Result<(u64, u64), StoreError> {
        let cut = now_ms.saturating_sub(self.retention.as_millis() as u64);
        let mut removed = 0;
        for item in self.records.range(..cut.to_be_bytes()) {
            let (key, value) = item?;
            if let Some((header, _, _)) = decode_sealed(&value) {
                self.by_id
                    .remove(id_key(&header.request_id, header.at_ms))?;
            }
            self.records.remove(&key)?;
            removed += 1;
        }
        for item in self.versions.iter() {
            let (k, v) = item?;
            let newest = v.as_ref().try_into().map_or(0, u64::from_be_bytes);
            if newest < cut {
                self.versions.remove(k)?;
            }
        }
        Ok((removed, cut))
    }

    /// The model versions unexpired decisions name, with their newest decision's time.
    pub fn referenced(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut out = BTreeMap::new();
        for item in self.versions.iter() {
            let (k, v) = item?;
            let newest = v.as_ref().try_into().map_or(0, u64::from_be_bytes);
            out.insert(String::from_utf8_lossy(&k).into_owned(), newest);
        }
        Ok(out)
    }

    /// Whether decisions that have not expired name `model@version`.
    pub fn references(&self, model: &str, version: &str) -> Result<bool, StoreError> {
        Ok(self.versions.contains_key(version_key(model, version))?)
    }

    /// Adds a key that seals new records; returns its id.
    pub fn rotate_key(&self) -> Result<String, StoreError> {
        let mut ring = self
            .keyring
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(ring.rotate()?)
    }

    /// The key ids, the current last.
    pub fn key_ids(&self) -> Vec<String> {
        self.ring().ids()
    }

    pub fn retention(&self) -> Duration {
        self.retention
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.records.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decisions::record::RecordedTensor;
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

    fn store(dir: &std::path::Path) -> DecisionStore {
        let db = sled::open(dir.join("db")).unwrap();
        let ring = Keyring::open_or_create(&dir.join("keys")).unwrap();
        DecisionStore::open(&db, ring, Duration::from_secs(100)).unwrap()
    }

    #[test]
    fn records_round_trip_sealed_and_expire() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        let a = record("req-a", 1_000, "credit-lr");
        let sha = s.record(&a).unwrap();
        s.record(&record("req-b", 50_000, "credit-gbdt")).unwrap();
        s.record(&record("req-c", 150_000, "credit-lr")).unwrap();
        let got = s.get("req-a").unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, a);
        assert_eq!(got[0].0.sha256, sha);
        assert_eq!(
            got[0].1.inputs[0].tensor().unwrap().data,
            TensorData::F32(vec![0.1, -7.25])
        );
        let lr: Vec<String> = s
            .list(Some("credit-lr"), 0, 10)
            .unwrap()
            .into_iter()
            .map(|h| h.request_id)
            .collect();
        assert_eq!(lr, vec!["req-a", "req-c"]);
        assert_eq!(s.list(None, 40_000, 10).unwrap().len(), 2);
        assert!(s.references("credit-gbdt", "1.0.0").unwrap());
        // Retention 100 s at t = 215 s: everything before 115 s goes (a version is kept
        // up to a minute past its newest decision).
        assert_eq!(s.prune(215_000).unwrap(), (2, 115_000));
        assert!(s.get("req-a").unwrap().is_empty());
        assert!(!s.references("credit-gbdt", "1.0.0").unwrap());
        assert!(s.references("credit-lr", "1.0.0").unwrap());
    }

    #[test]
    fn nothing_personal_is_stored_in_the_clear_and_alterations_are_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path());
        s.record(&record("req-a", 1_000, "credit-lr")).unwrap();
        let (key, value) = s.records.iter().next().unwrap().unwrap();
        assert!(!value.windows(9).any(|w| w == b"car (new)"));
        let mut altered = value.to_vec();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        s.records.insert(&key, altered).unwrap();
        assert!(matches!(
            s.get("req-a"),
            Err(StoreError::Key(KeyError::Open))
        ));
    }
}
