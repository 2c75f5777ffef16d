//! The model registry in sled: every installed model version and its state, one active
//! pointer per model name, pins, and the history of every change with who and when.
//! Each change is one sled transaction over the registry's trees, flushed before it
//! returns, so a crash leaves the registry before or after a change, never between.
//!
//! The store's files are the truth for what is installed (`docs/models.md`): start-up
//! reconciles the registry with the store ([`Registry::reconcile`]) instead of refusing.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sled::Transactional as _;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use coffer_models::{Format, Kind};

/// The registry's schema version; [`Registry::open`] migrates older ones.
pub const SCHEMA_VERSION: u32 = 1;

/// Where a version is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Installed and verified, not evaluated yet.
    Staged,
    /// Its evaluation gate is running.
    Evaluating,
    /// Passed its gate; may be activated.
    Ready,
    /// Serves requests for its name.
    Active,
    /// Was active; kept for rollback.
    Retired,
    /// Failed its gate or lost its files; `reason` says why.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Staged => "staged",
            State::Evaluating => "evaluating",
            State::Ready => "ready",
            State::Active => "active",
            State::Retired => "retired",
            State::Failed => "failed",
        }
    }
}

/// One installed model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub format: Format,
    pub state: State,
    /// Why it failed, or the last gate's summary.
    pub reason: Option<String>,
    /// The variant it serves (or would serve) on this host.
    pub variant: Option<String>,
    pub manifest_sha256: String,
    pub bytes: u64,
    /// Unix milliseconds.
    pub installed_at: u64,
    pub updated_at: u64,
    /// Imported with `--allow-schema-change`.
    #[serde(default)]
    pub allow_schema_change: bool,
}

impl VersionRecord {
    pub fn id(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// One change, as the history keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    /// Unix milliseconds.
    pub at: u64,
    /// Who: `uid N` for admin socket callers, `cofferd` for the daemon itself.
    pub actor: String,
    pub action: String,
    pub name: String,
    pub version: Option<String>,
    pub detail: String,
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0} is already installed")]
    Exists(String),
    #[error("{0} is not installed")]
    NotFound(String),
    #[error("{id} is {state}; {what}")]
    WrongState {
        id: String,
        state: &'static str,
        what: String,
    },
    #[error("{name} is pinned to {version}; unpin it first")]
    Pinned { name: String, version: String },
    #[error("{name} has no earlier version to roll back to")]
    NoPrevious { name: String },
    #[error("the registry's schema is version {found}, newer than this cofferd ({known})")]
    SchemaTooNew { found: u32, known: u32 },
    #[error("registry storage failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("registry record {key} is corrupt: {problem}")]
    Corrupt { key: String, problem: String },
}

type TxResult<T> = Result<T, ConflictableTransactionError<RegistryError>>;

fn abort<T>(e: RegistryError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

fn unwrap_tx<T>(r: Result<T, TransactionError<RegistryError>>) -> Result<T, RegistryError> {
    r.map_err(|e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => RegistryError::Storage(e),
    })
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn version_key(name: &str, version: &str) -> Vec<u8> {
    format!("{name}\0{version}").into_bytes()
}

fn decode<T: for<'de> Deserialize<'de>>(key: &[u8], bytes: &[u8]) -> Result<T, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| RegistryError::Corrupt {
        key: String::from_utf8_lossy(key).replace('\0', "@"),
        problem: e.to_string(),
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// What start-up found when it compared the registry with the store.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Versions whose evaluation was interrupted, back to `staged`.
    pub interrupted: Vec<String>,
    /// Versions whose files are gone, now `failed` (active pointers to them cleared).
    pub missing: Vec<String>,
    /// Store directories without a record: the caller registers them.
    pub orphans: Vec<(String, String)>,
}

/// The registry's trees.
#[derive(Debug, Clone)]
pub struct Registry {
    db: sled::Db,
    meta: sled::Tree,
    versions: sled::Tree,
    active: sled::Tree,
    pins: sled::Tree,
    history: sled::Tree,
}

impl Registry {
    /// Opens the registry, creating or migrating its schema.
    pub fn open(db: &sled::Db) -> Result<Registry, RegistryError> {
        let registry = Registry {
            db: db.clone(),
            meta: db.open_tree("models.meta")?,
            versions: db.open_tree("models.versions")?,
            active: db.open_tree("models.active")?,
            pins: db.open_tree("models.pins")?,
            history: db.open_tree("models.history")?,
        };
        registry.migrate()?;
        Ok(registry)
    }

    fn schema(&self) -> Result<u32, RegistryError> {
        Ok(match self.meta.get("schema")? {
            Some(v) if v.len() == 4 => u32::from_be_bytes([v[0], v[1], v[2], v[3]]),
            Some(_) => {
                return Err(RegistryError::Corrupt {
                    key: "schema".into(),
                    problem: "not a 4-byte version".into(),
                });
            }
            None => 0,
        })
    }

    /// Schema 0 is "no registry yet" (cofferd before the model lifecycle: models came
    /// from configured directories only); 1 is this layout. Each step is one
    /// transaction; a newer schema than this build knows is refused, not guessed at.
    fn migrate(&self) -> Result<(), RegistryError> {
        let mut found = self.schema()?;
        if found > SCHEMA_VERSION {
            return Err(RegistryError::SchemaTooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        while found < SCHEMA_VERSION {
            let next = found + 1;
            // 0 -> 1: the trees exist once opened; record the version.
            self.meta.insert("schema", &next.to_be_bytes())?;
            self.db.flush()?;
            tracing::info!(from = found, to = next, "model registry schema migrated");
            found = next;
        }
        Ok(())
    }

    fn commit(&self) -> Result<(), RegistryError> {
        self.db.flush()?;
        Ok(())
    }

    fn note(
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

    fn get_tx(versions: &TransactionalTree, name: &str, version: &str) -> TxResult<VersionRecord> {
        let key = version_key(name, version);
        match versions.get(&key)? {
            Some(bytes) => decode(&key, &bytes).or_else(abort),
            None => abort(RegistryError::NotFound(format!("{name}@{version}"))),
        }
    }

    /// Registers a newly installed version as `staged`.
    pub fn add(
        &self,
        record: VersionRecord,
        actor: &str,
        detail: String,
    ) -> Result<(), RegistryError> {
        unwrap_tx(
            (&self.versions, &self.history).transaction(|(versions, history)| {
                let key = version_key(&record.name, &record.version);
                if versions.get(&key)?.is_some() {
                    return abort(RegistryError::Exists(record.id()));
                }
                versions.insert(key, encode(&record))?;
                Self::note(
                    history,
                    actor,
                    "import",
                    &record.name,
                    Some(&record.version),
                    detail.clone(),
                )
            }),
        )?;
        self.commit()
    }

    /// Moves a version to `state` (not `active`: see [`Registry::activate`]).
    pub fn set_state(
        &self,
        name: &str,
        version: &str,
        state: State,
        reason: Option<String>,
        actor: &str,
        action: &str,
    ) -> Result<VersionRecord, RegistryError> {
        let record = unwrap_tx((&self.versions, &self.history).transaction(
            |(versions, history)| {
                let mut record = Self::get_tx(versions, name, version)?;
                record.state = state;
                record.reason = reason.clone();
                record.updated_at = now_ms();
                versions.insert(version_key(name, version), encode(&record))?;
                let detail = match &reason {
                    Some(r) => format!("{}: {r}", state.as_str()),
                    None => state.as_str().to_string(),
                };
                Self::note(history, actor, action, name, Some(version), detail)?;
                Ok(record)
            },
        ))?;
        self.commit()?;
        Ok(record)
    }

    /// Records the variant a version's gate ran on.
    pub fn set_variant(
        &self,
        name: &str,
        version: &str,
        variant: Option<String>,
    ) -> Result<(), RegistryError> {
        unwrap_tx(self.versions.transaction(|versions| {
            let mut record = Self::get_tx(versions, name, version)?;
            record.variant = variant.clone();
            versions.insert(version_key(name, version), encode(&record))?;
            Ok(())
        }))?;
        self.commit()
    }

    /// Start-up only: an active version that does not load goes back to `ready` with
    /// the reason, and loses the active pointer (the caller rolls back).
    pub fn demote(
        &self,
        name: &str,
        version: &str,
        reason: String,
        actor: &str,
    ) -> Result<(), RegistryError> {
        unwrap_tx((&self.versions, &self.active, &self.history).transaction(
            |(versions, active, history)| {
                let mut record = Self::get_tx(versions, name, version)?;
                record.state = State::Ready;
                record.reason = Some(reason.clone());
                record.updated_at = now_ms();
                versions.insert(version_key(name, version), encode(&record))?;
                if active
                    .get(name.as_bytes())?
                    .is_some_and(|v| v.as_ref() == version.as_bytes())
                {
                    active.remove(name.as_bytes())?;
                }
                Self::note(
                    history,
                    actor,
                    "start",
                    name,
                    Some(version),
                    format!("not loaded: {reason}"),
                )
            },
        ))?;
        self.commit()
    }

    /// Makes `version` the active one of `name`: the previous active version becomes
    /// `retired`. Refused while the name is pinned to another version, and for versions
    /// that have not passed their gate. Returns the previous active version.
    pub fn activate(
        &self,
        name: &str,
        version: &str,
        variant: Option<String>,
        actor: &str,
        action: &str,
    ) -> Result<Option<String>, RegistryError> {
        let previous = unwrap_tx(
            (&self.versions, &self.active, &self.pins, &self.history).transaction(
                |(versions, active, pins, history)| {
                    if let Some(pinned) = pins.get(name.as_bytes())? {
                        let pinned = String::from_utf8_lossy(&pinned).to_string();
                        if pinned != version {
                            return abort(RegistryError::Pinned {
                                name: name.to_string(),
                                version: pinned,
                            });
                        }
                    }
                    let mut record = Self::get_tx(versions, name, version)?;
                    if !matches!(record.state, State::Ready | State::Retired | State::Active) {
                        return abort(RegistryError::WrongState {
                            id: record.id(),
                            state: record.state.as_str(),
                            what: "only a version that passed its evaluation gate can be activated"
                                .into(),
                        });
                    }
                    let previous = active
                        .get(name.as_bytes())?
                        .map(|v| String::from_utf8_lossy(&v).to_string())
                        .filter(|v| v != version);
                    if let Some(prev) = &previous {
                        let old = Self::get_tx(versions, name, prev).ok();
                        if let Some(mut old) = old.filter(|o| o.state == State::Active) {
                            old.state = State::Retired;
                            old.updated_at = now_ms();
                            versions.insert(version_key(name, prev), encode(&old))?;
                        }
                    }
                    record.state = State::Active;
                    record.variant = variant.clone().or(record.variant.clone());
                    record.updated_at = now_ms();
                    versions.insert(version_key(name, version), encode(&record))?;
                    active.insert(name.as_bytes(), version.as_bytes())?;
                    let detail = format!(
                        "active (was {}; variant {})",
                        previous.as_deref().unwrap_or("none"),
                        record.variant.as_deref().unwrap_or("default")
                    );
                    Self::note(history, actor, action, name, Some(version), detail)?;
                    Ok(previous)
                },
            ),
        )?;
        self.commit()?;
        Ok(previous)
    }

    /// The version a rollback returns to: the most recently retired one of `name`.
    pub fn rollback_target(&self, name: &str) -> Result<String, RegistryError> {
        self.list()?
            .into_iter()
            .filter(|r| r.name == name && r.state == State::Retired)
            .max_by_key(|r| r.updated_at)
            .map(|r| r.version)
            .ok_or_else(|| RegistryError::NoPrevious {
                name: name.to_string(),
            })
    }

    pub fn pin(&self, name: &str, version: &str, actor: &str) -> Result<(), RegistryError> {
        unwrap_tx((&self.versions, &self.pins, &self.history).transaction(
            |(versions, pins, history)| {
                let record = Self::get_tx(versions, name, version)?;
                if record.state != State::Active {
                    return abort(RegistryError::WrongState {
                        id: record.id(),
                        state: record.state.as_str(),
                        what: "only the active version can be pinned (activate it first)".into(),
                    });
                }
                pins.insert(name.as_bytes(), version.as_bytes())?;
                Self::note(history, actor, "pin", name, Some(version), "pinned".into())
            },
        ))?;
        self.commit()
    }

    /// Removes a pin; returns the version it held, if any.
    pub fn unpin(&self, name: &str, actor: &str) -> Result<Option<String>, RegistryError> {
        let was = unwrap_tx((&self.pins, &self.history).transaction(|(pins, history)| {
            let was = pins
                .remove(name.as_bytes())?
                .map(|v| String::from_utf8_lossy(&v).to_string());
            if was.is_some() {
                Self::note(
                    history,
                    actor,
                    "unpin",
                    name,
                    was.as_deref(),
                    "unpinned".into(),
                )?;
            }
            Ok(was)
        }))?;
        self.commit()?;
        Ok(was)
    }

    /// Deletes a version's record. The active or pinned version is refused.
    pub fn remove(
        &self,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<VersionRecord, RegistryError> {
        let record = unwrap_tx(
            (&self.versions, &self.active, &self.pins, &self.history).transaction(
                |(versions, active, pins, history)| {
                    let record = Self::get_tx(versions, name, version)?;
                    let is = |tree: &TransactionalTree| -> TxResult<bool> {
                        Ok(tree
                            .get(name.as_bytes())?
                            .is_some_and(|v| v.as_ref() == version.as_bytes()))
                    };
                    if is(active)? {
                        return abort(RegistryError::WrongState {
                            id: record.id(),
                            state: "active",
                            what: "activate another version (or roll back) before removing it"
                                .into(),
                        });
                    }
                    if is(pins)? {
                        return abort(RegistryError::Pinned {
                            name: name.to_string(),
                            version: version.to_string(),
                        });
                    }
                    versions.remove(version_key(name, version))?;
                    Self::note(
                        history,
                        actor,
                        "remove",
                        name,
                        Some(version),
                        "removed".into(),
                    )?;
                    Ok(record)
                },
            ),
        )?;
        self.commit()?;
        Ok(record)
    }

    /// Records an action that changes no state (verify, gc) in the history.
    pub fn note_action(
        &self,
        actor: &str,
        action: &str,
        name: &str,
        version: Option<&str>,
        detail: String,
    ) -> Result<(), RegistryError> {
        unwrap_tx(self.history.transaction(|history| {
            Self::note(history, actor, action, name, version, detail.clone())
        }))?;
        self.commit()
    }

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

    /// Start-up repair against what the store holds (`installed`: every version
    /// directory present): interrupted evaluations go back to `staged`; records whose
    /// directory is gone become `failed` and lose their active pointer and pin; store
    /// directories without a record are returned for the caller to register.
    pub fn reconcile(&self, installed: &[(String, String)]) -> Result<Reconciled, RegistryError> {
        let mut out = Reconciled::default();
        let records = self.list()?;
        for r in &records {
            let present = installed
                .iter()
                .any(|(n, v)| *n == r.name && *v == r.version);
            if !present && r.state != State::Failed {
                out.missing.push(r.id());
                unwrap_tx(
                    (&self.versions, &self.active, &self.pins, &self.history).transaction(
                        |(versions, active, pins, history)| {
                            let mut rec = r.clone();
                            rec.state = State::Failed;
                            rec.reason = Some("its files are missing from the model store".into());
                            rec.updated_at = now_ms();
                            versions.insert(version_key(&r.name, &r.version), encode(&rec))?;
                            for tree in [active, pins] {
                                if tree
                                    .get(r.name.as_bytes())?
                                    .is_some_and(|v| v.as_ref() == r.version.as_bytes())
                                {
                                    tree.remove(r.name.as_bytes())?;
                                }
                            }
                            Self::note(
                                history,
                                "cofferd",
                                "reconcile",
                                &r.name,
                                Some(&r.version),
                                "failed: files missing from the store".into(),
                            )
                        },
                    ),
                )?;
            } else if present && r.state == State::Evaluating {
                out.interrupted.push(r.id());
                self.set_state(
                    &r.name,
                    &r.version,
                    State::Staged,
                    Some("evaluation interrupted by a restart".into()),
                    "cofferd",
                    "reconcile",
                )?;
            }
        }
        for (name, version) in installed {
            if !records
                .iter()
                .any(|r| r.name == *name && r.version == *version)
            {
                out.orphans.push((name.clone(), version.clone()));
            }
        }
        // An active pointer must name an active record.
        for (name, version) in self.actives()? {
            match self.get(&name, &version)? {
                Some(r) if r.state == State::Active => {}
                _ => {
                    self.active.remove(name.as_bytes())?;
                    out.missing
                        .push(format!("{name}@{version} (active pointer)"));
                }
            }
        }
        self.commit()?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, version: &str) -> VersionRecord {
        VersionRecord {
            name: name.into(),
            version: version.into(),
            kind: Kind::Score,
            format: Format::Onnx,
            state: State::Staged,
            reason: None,
            variant: None,
            manifest_sha256: "0".repeat(64),
            bytes: 1,
            installed_at: now_ms(),
            updated_at: now_ms(),
            allow_schema_change: false,
        }
    }

    fn open() -> (tempfile::TempDir, Registry) {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(tmp.path().join("db"))
            .open()
            .unwrap();
        (tmp, Registry::open(&db).unwrap())
    }

    #[test]
    fn activation_retires_the_previous_and_rollback_finds_it() {
        let (_tmp, reg) = open();
        for v in ["1", "2"] {
            reg.add(record("m", v), "uid 0", "test".into()).unwrap();
        }
        assert!(matches!(
            reg.activate("m", "1", None, "uid 0", "activate"),
            Err(RegistryError::WrongState {
                state: "staged",
                ..
            })
        ));
        for v in ["1", "2"] {
            reg.set_state("m", v, State::Ready, None, "uid 0", "gate")
                .unwrap();
        }
        assert_eq!(
            reg.activate("m", "1", None, "uid 0", "activate").unwrap(),
            None
        );
        assert_eq!(
            reg.activate("m", "2", None, "uid 0", "activate")
                .unwrap()
                .as_deref(),
            Some("1")
        );
        assert_eq!(reg.get("m", "1").unwrap().unwrap().state, State::Retired);
        assert_eq!(reg.active("m").unwrap().as_deref(), Some("2"));
        assert_eq!(reg.rollback_target("m").unwrap(), "1");
        // Pins win; the active version cannot be removed.
        reg.pin("m", "2", "uid 0").unwrap();
        assert!(matches!(
            reg.activate("m", "1", None, "uid 0", "rollback"),
            Err(RegistryError::Pinned { .. })
        ));
        assert!(matches!(
            reg.remove("m", "2", "uid 0"),
            Err(RegistryError::WrongState { .. })
        ));
        assert_eq!(reg.unpin("m", "uid 0").unwrap().as_deref(), Some("2"));
        reg.activate("m", "1", None, "uid 0", "rollback").unwrap();
        reg.remove("m", "2", "uid 0").unwrap();
        let actions: Vec<String> = reg
            .history(Some("m"), 100)
            .unwrap()
            .into_iter()
            .map(|h| h.action)
            .collect();
        assert_eq!(
            actions,
            [
                "import", "import", "gate", "gate", "activate", "activate", "pin", "unpin",
                "rollback", "remove"
            ]
        );
    }

    #[test]
    fn reconcile_repairs_against_the_store() {
        let (_tmp, reg) = open();
        for v in ["1", "2", "3"] {
            reg.add(record("m", v), "cofferd", "test".into()).unwrap();
        }
        reg.set_state("m", "1", State::Ready, None, "cofferd", "gate")
            .unwrap();
        reg.activate("m", "1", None, "cofferd", "activate").unwrap();
        reg.set_state("m", "2", State::Evaluating, None, "cofferd", "gate")
            .unwrap();
        let installed = vec![
            ("m".to_string(), "2".to_string()),
            ("m".to_string(), "3".to_string()),
            ("x".to_string(), "9".to_string()),
        ];
        let found = reg.reconcile(&installed).unwrap();
        assert_eq!(found.missing, ["m@1"]);
        assert_eq!(found.interrupted, ["m@2"]);
        assert_eq!(found.orphans, [("x".to_string(), "9".to_string())]);
        assert_eq!(reg.active("m").unwrap(), None);
        assert_eq!(reg.get("m", "1").unwrap().unwrap().state, State::Failed);
        assert_eq!(reg.get("m", "2").unwrap().unwrap().state, State::Staged);
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let db = sled::Config::new()
            .path(tmp.path().join("db"))
            .open()
            .unwrap();
        Registry::open(&db).unwrap();
        db.open_tree("models.meta")
            .unwrap()
            .insert("schema", &9u32.to_be_bytes())
            .unwrap();
        assert!(matches!(
            Registry::open(&db),
            Err(RegistryError::SchemaTooNew { found: 9, .. })
        ));
    }
}
