//! Reads of the registry: one record or all, the active and pinned versions, and the
//! history.

use super::tx::{decode, version_key};
use super::{HistoryEntry, Registry, RegistryError, VersionRecord};

impl Registry {
    pub fn get(&self, name: &str, version: &str) -> Result<Option<VersionRecord>, RegistryError> {
        let key = version_key(name, version);
        self.versions
            .get(&key)?
            .map(|b| decode(&key, &b))
            .transpose()
    }

    /// Every version record, by name then version.
    pub fn list(&self) -> Result<Vec<VersionRecord>, RegistryError> {
        self.versions
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(&k, &v)
            })
            .collect()
    }

    /// The active version of a name.
    pub fn active(&self, name: &str) -> Result<Option<String>, RegistryError> {
        Ok(self
            .active
            .get(name.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).to_string()))
    }

    /// Every (name, active version).
    pub fn actives(&self) -> Result<Vec<(String, String)>, RegistryError> {
        self.active
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k).to_string(),
                    String::from_utf8_lossy(&v).to_string(),
                ))
            })
            .collect()
    }

    pub fn pinned(&self, name: &str) -> Result<Option<String>, RegistryError> {
        Ok(self
            .pins
            .get(name.as_bytes())?
            .map(|v| String::from_utf8_lossy(&v).to_string()))
    }

    /// History entries, oldest first, of one name or all; at most the last `limit`.
    pub fn history(
        &self,
        name: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, RegistryError> {
        let mut out = Vec::new();
        for kv in self.history.iter().rev() {
            let (k, v) = kv?;
            let entry: HistoryEntry = decode(&k, &v)?;
            if name.is_none_or(|n| n == entry.name) {
                out.push(entry);
                if out.len() >= limit {
                    break;
                }
            }
        }
        out.reverse();
        Ok(out)
    }
}
