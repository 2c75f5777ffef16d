//! Start-up repair of the registry against what the model store holds.

use sled::Transactional as _;

use super::tx::{encode, unwrap_tx, version_key};
use super::{Reconciled, Registry, RegistryError, State, now_ms};

impl Registry {
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
    use super::super::test_support::{open, record};
    use super::*;

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
}
