//! The key store: key records in sled (tree `keys`, by name), mirrored in memory by
//! token hash so that authentication takes no I/O. Revocation updates both before it
//! returns, so a revoked key fails on its very next request.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use super::scope::Scope;
use super::token::{Token, new_key_id};
use crate::rate_spec::RateSpec;

const TREE: &str = "keys";

/// A stored key: everything but the secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    pub id: String,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub scopes: Vec<Scope>,
    pub rate: Option<RateSpec>,
    /// Unix seconds.
    pub created_at: u64,
    pub revoked_at: Option<u64>,
}

impl KeyRecord {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// What an admin asks for when creating a key.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub rate: Option<RateSpec>,
}

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("a key named {0:?} already exists (names are never reused, also after revocation)")]
    NameTaken(String),
    #[error("no key named {0:?}")]
    NotFound(String),
    #[error("key {0:?} is already revoked")]
    AlreadyRevoked(String),
    #[error("invalid key name {0:?}: use 1-64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    #[error("a key needs at least one scope")]
    NoScopes,
    #[error("key storage failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("stored key record {name:?} is corrupt: {source}")]
    Corrupt {
        name: String,
        source: serde_json::Error,
    },
}

/// Keys in sled plus the in-memory index used on every request.
#[derive(Debug)]
pub struct KeyStore {
    tree: sled::Tree,
    by_hash: RwLock<HashMap<[u8; 32], Arc<KeyRecord>>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl KeyStore {
    /// Opens the key tree and loads every live key into memory.
    pub fn open(db: &sled::Db) -> Result<Self, KeyError> {
        let tree = db.open_tree(TREE)?;
        let store = KeyStore {
            tree,
            by_hash: RwLock::new(HashMap::new()),
        };
        let mut index = HashMap::new();
        for record in store.list()? {
            if record.revoked_at.is_none() {
                if let Some(hash) = decode_hash(&record.hash) {
                    index.insert(hash, Arc::new(record));
                }
            }
        }
        *store.by_hash.write().unwrap_or_else(|e| e.into_inner()) = index;
        Ok(store)
    }

    /// Creates a key and returns its record with the token, which is not kept.
    pub fn create(&self, new: NewKey) -> Result<(KeyRecord, Token), KeyError> {
        if !valid_name(&new.name) {
            return Err(KeyError::BadName(new.name));
        }
        if new.scopes.is_empty() {
            return Err(KeyError::NoScopes);
        }
        let token = Token::generate();
        let hash = token.hash();
        let record = KeyRecord {
            name: new.name.clone(),
            id: new_key_id(),
            hash: hex::encode(hash),
            scopes: new.scopes,
            rate: new.rate,
            created_at: now_secs(),
            revoked_at: None,
        };
        let bytes = serde_json::to_vec(&record).map_err(|source| KeyError::Corrupt {
            name: record.name.clone(),
            source,
        })?;
        let swapped =
            self.tree
                .compare_and_swap(new.name.as_bytes(), None as Option<&[u8]>, Some(bytes))?;
        if swapped.is_err() {
            return Err(KeyError::NameTaken(new.name));
        }
        self.tree.flush()?;
        self.index().insert(hash, Arc::new(record.clone()));
        Ok((record, token))
    }

    /// Every key, live and revoked, sorted by name.
    pub fn list(&self) -> Result<Vec<KeyRecord>, KeyError> {
        self.tree
            .iter()
            .map(|item| {
                let (name, bytes) = item?;
                serde_json::from_slice(&bytes).map_err(|source| KeyError::Corrupt {
                    name: String::from_utf8_lossy(&name).into_owned(),
                    source,
                })
            })
            .collect()
    }

    /// Revokes a key; it is refused from the next request on.
    pub fn revoke(&self, name: &str) -> Result<KeyRecord, KeyError> {
        let bytes = self
            .tree
            .get(name.as_bytes())?
            .ok_or_else(|| KeyError::NotFound(name.to_string()))?;
        let mut record: KeyRecord =
            serde_json::from_slice(&bytes).map_err(|source| KeyError::Corrupt {
                name: name.to_string(),
                source,
            })?;
        if record.revoked_at.is_some() {
            return Err(KeyError::AlreadyRevoked(name.to_string()));
        }
        if let Some(hash) = decode_hash(&record.hash) {
            self.index().remove(&hash);
        }
        record.revoked_at = Some(now_secs());
        let updated = serde_json::to_vec(&record).map_err(|source| KeyError::Corrupt {
            name: name.to_string(),
            source,
        })?;
        self.tree.insert(name.as_bytes(), updated)?;
        self.tree.flush()?;
        Ok(record)
    }

    /// The live key a presented token belongs to, if any.
    pub fn authenticate(&self, presented: &str) -> Option<Arc<KeyRecord>> {
        let hash = Token::from_presented(presented).hash();
        let index = self.by_hash.read().unwrap_or_else(|e| e.into_inner());
        let record = index.get(&hash)?;
        let stored = decode_hash(&record.hash)?;
        bool::from(stored.ct_eq(&hash)).then(|| Arc::clone(record))
    }

    fn index(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<[u8; 32], Arc<KeyRecord>>> {
        self.by_hash.write().unwrap_or_else(|e| e.into_inner())
    }
}

fn decode_hash(hex_hash: &str) -> Option<[u8; 32]> {
    hex::decode(hex_hash).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, sled::Db, KeyStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        let store = KeyStore::open(&db).unwrap();
        (dir, db, store)
    }

    fn new_key(name: &str) -> NewKey {
        NewKey {
            name: name.into(),
            scopes: vec![Scope::Score],
            rate: None,
        }
    }

    #[test]
    fn created_key_authenticates_and_revoked_key_does_not() {
        let (_dir, _db, store) = store();
        let (record, token) = store.create(new_key("app")).unwrap();
        assert_eq!(store.authenticate(token.expose()).unwrap().id, record.id);
        assert!(store.authenticate("coffer_wrong").is_none());
        store.revoke("app").unwrap();
        assert!(store.authenticate(token.expose()).is_none());
        assert!(matches!(
            store.revoke("app"),
            Err(KeyError::AlreadyRevoked(_))
        ));
    }

    #[test]
    fn only_the_hash_is_stored() {
        let (_dir, _db, store) = store();
        let (_, token) = store.create(new_key("app")).unwrap();
        for item in store.tree.iter() {
            let (_, bytes) = item.unwrap();
            let text = String::from_utf8_lossy(&bytes);
            assert!(!text.contains(token.expose()));
        }
    }

    #[test]
    fn names_are_unique_and_validated() {
        let (_dir, _db, store) = store();
        store.create(new_key("app")).unwrap();
        assert!(matches!(
            store.create(new_key("app")),
            Err(KeyError::NameTaken(_))
        ));
        assert!(matches!(
            store.create(new_key("a b")),
            Err(KeyError::BadName(_))
        ));
        let mut none = new_key("x");
        none.scopes.clear();
        assert!(matches!(store.create(none), Err(KeyError::NoScopes)));
    }

    #[test]
    fn keys_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let token = {
            let db = sled::open(dir.path().join("db")).unwrap();
            let store = KeyStore::open(&db).unwrap();
            store.create(new_key("app")).unwrap().1
        };
        let db = crate::testutil::reopen_sled(&dir.path().join("db"));
        let store = KeyStore::open(&db).unwrap();
        assert_eq!(store.authenticate(token.expose()).unwrap().name, "app");
    }
}
