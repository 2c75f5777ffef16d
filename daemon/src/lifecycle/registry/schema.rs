//! Opening the registry: its sled trees, and the schema version with its migrations.

use super::{Registry, RegistryError, SCHEMA_VERSION};

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
}

#[cfg(test)]
mod tests {
    use super::*;

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
