//! The persistence helpers every registry change goes through: sled transaction
//! results and aborts, record keys and their JSON encoding, the history note written
//! inside each transaction, and the flush that makes a change durable.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use super::{HistoryEntry, Registry, RegistryError, VersionRecord, now_ms};

pub(super) type TxResult<T> = Result<T, ConflictableTransactionError<RegistryError>>;

pub(super) fn abort<T>(e: RegistryError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

pub(super) fn unwrap_tx<T>(
    r: Result<T, TransactionError<RegistryError>>,
) -> Result<T, RegistryError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => RegistryError::Storage(e),
    })
}

pub(super) fn version_key(name: &str, version: &str) -> Vec<u8> {
    format!("{name}\0{version}").into_bytes()
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(
    key: &[u8],
    bytes: &[u8],
) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| RegistryError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "@"),
        problem: e.to_string(),
    })
}

pub(super) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Registry {
    pub(super) fn commit(&self) -> Result<(), RegistryError> {
        self.db.flush()?;
        Ok(())
    }

    pub(super) fn note(
        history: &TransactionalTree,
        actor: &str,
        action: &str,
        name: &str,
        version: Option<&str>,
        detail: String,
    ) -> TxResult<()> {
        let seq = history.generate_id()?;
        let entry = HistoryEntry {
            seq,
            at: now_ms(),
            actor: actor.to_string(),
            action: action.to_string(),
            name: name.to_string(),
            version: version.map(str::to_string),
            detail,
        };
        history.insert(&seq.to_be_bytes(), encode(&entry))?;
        Ok(())
    }

    pub(super) fn get_tx(
        versions: &TransactionalTree,
        name: &str,
        version: &str,
    ) -> TxResult<VersionRecord> {
        let key = version_key(name, version);
        match versions.get(&key)? {
            Some(bytes) => decode(&key, &bytes).or_else(abort),
            None => abort(RegistryError::NotFound(format!("{name}@{version}"))),
        }
    }
}
