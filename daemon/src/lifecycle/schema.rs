//! Whether a new scoring version keeps its clients working: every input of the active
//! version must still exist with the same datatype, shape and feature names, no new
//! input may be required, and every output clients read must still be there with the
//! same datatype and shape. A change is refused unless the admin allows it.

use coffer_models::{Kind, Manifest};

/// The breaking differences between the active version and a candidate, in words.
pub fn breaking_changes(active: &Manifest, candidate: &Manifest) -> Vec<String> {
    if active.kind != Kind::Score || candidate.kind != Kind::Score {
        return Vec::new();
    }
    let mut out = Vec::new();
    for old in &active.io.inputs {
        match candidate.io.inputs.iter().find(|n| n.name == old.name) {
            None => out.push(format!("input {:?} is gone", old.name)),
            Some(new) => {
                if new.datatype != old.datatype {
                    out.push(format!(
                        "input {:?} changes datatype {} -> {}",
                        old.name, old.datatype, new.datatype
                    ));
                }
                if new.shape != old.shape {
                    out.push(format!(
                        "input {:?} changes shape {:?} -> {:?}",
                        old.name, old.shape, new.shape
                    ));
                }
                if !old.features.is_empty() && new.features != old.features {
                    out.push(format!("input {:?} changes its feature columns", old.name));
                }
            }
        }
    }
    for new in &candidate.io.inputs {
        if !active.io.inputs.iter().any(|o| o.name == new.name) {
            out.push(format!("new required input {:?}", new.name));
        }
    }
    if candidate.serving.max_batch < active.serving.max_batch {
        out.push(format!(
            "serving.max_batch shrinks from {} to {} (larger requests would be refused)",
            active.serving.max_batch, candidate.serving.max_batch
        ));
    }
    for old in &active.io.outputs {
        match candidate.io.outputs.iter().find(|n| n.name == old.name) {
            None => out.push(format!("output {:?} is gone", old.name)),
            Some(new) if new.datatype != old.datatype || new.shape != old.shape => {
                out.push(format!("output {:?} changes datatype or shape", old.name))
            }
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Manifest {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models/fixtures")
            .join(name)
            .join("1.0.0/manifest.toml");
        Manifest::parse(&std::fs::read_to_string(dir).unwrap()).unwrap()
    }

    #[test]
    fn same_schema_passes_and_a_different_one_is_named() {
        let lr = fixture("credit-lr");
        let mlp = fixture("credit-mlp");
        assert!(
            breaking_changes(&lr, &mlp).is_empty(),
            "same inputs and outputs"
        );
        let aml = fixture("aml-risk");
        let changes = breaking_changes(&lr, &aml);
        assert!(
            changes
                .iter()
                .any(|c| c.contains("input \"features\" is gone")),
            "{changes:?}"
        );
        assert!(
            changes
                .iter()
                .any(|c| c.contains("new required input \"transaction\"")),
            "{changes:?}"
        );
    }
}
