//! The registry's changes, each one sled transaction with its history note, flushed
//! before it returns: import (`add`), state and variant updates, activation and
//! rollback, pins, removal, and history-only notes.

use sled::Transactional as _;
use sled::transaction::TransactionalTree;

use super::tx::{TxResult, abort, encode, unwrap_tx, version_key};
use super::{Registry, RegistryError, State, VersionRecord, now_ms};

impl Registry {
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
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{open, record};
    use super::*;

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
}
