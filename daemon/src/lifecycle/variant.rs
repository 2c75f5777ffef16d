//! Which variant of a model version this host serves: the first in the manifest's order
//! whose needs the hardware meets (a variant without `gpu_memory_mib` fits any host;
//! one with it needs a GPU that is not failed and has that much free memory).

use coffer_models::Manifest;

use crate::monitoring::gpu::{Presence, health::Level};

/// The hardware a variant is chosen for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Hardware {
    /// Free memory of the roomiest usable GPU, in MiB; `None`: no usable GPU.
    pub gpu_free_mib: Option<u64>,
}

impl Hardware {
    /// Reads the GPU monitor's current view.
    pub fn from_presence(presence: &Presence) -> Hardware {
        let gpu_free_mib = match presence {
            Presence::Present(gpus) => gpus
                .iter()
                .filter(|g| g.level != Level::Failed)
                .filter_map(|g| g.memory_free_bytes)
                .max()
                .map(|b| b / (1024 * 1024)),
            _ => None,
        };
        Hardware { gpu_free_mib }
    }

    pub fn describe(&self) -> String {
        match self.gpu_free_mib {
            Some(mib) => format!("a GPU with {mib} MiB free"),
            None => "no usable GPU".into(),
        }
    }
}

/// `Ok(None)`: the version has no variants (its one model file serves). `Err`: none of
/// its variants fits, with the reason.
pub fn choose(manifest: &Manifest, hw: Hardware) -> Result<Option<String>, String> {
    if manifest.variants.is_empty() {
        return Ok(None);
    }
    for v in &manifest.variants {
        match (v.gpu_memory_mib, hw.gpu_free_mib) {
            (None, _) => return Ok(Some(v.name.clone())),
            (Some(need), Some(free)) if free >= need => return Ok(Some(v.name.clone())),
            _ => {}
        }
    }
    let needs: Vec<String> = manifest
        .variants
        .iter()
        .map(|v| match v.gpu_memory_mib {
            Some(mib) => format!("{} needs {mib} MiB of GPU memory", v.name),
            None => format!("{} runs on CPU", v.name),
        })
        .collect();
    Err(format!(
        "no variant of {} fits this host ({}): {}",
        manifest.id(),
        hw.describe(),
        needs.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(variants: &[(&str, Option<u64>)]) -> Manifest {
        let mut files = format!(
            "[[files]]\npath = \"default.gguf\"\nsha256 = \"{}\"\nsize = 1\nrole = \"model\"\n",
            "0".repeat(64)
        );
        let mut vs = String::new();
        for (name, need) in variants {
            files.push_str(&format!(
                "[[files]]\npath = \"{name}.gguf\"\nsha256 = \"{}\"\nsize = 1\nrole = \"model\"\n",
                "0".repeat(64)
            ));
            vs.push_str(&format!(
                "[[variants]]\nname = \"{name}\"\nfile = \"{name}.gguf\"\n"
            ));
            if let Some(n) = need {
                vs.push_str(&format!("gpu_memory_mib = {n}\n"));
            }
        }
        Manifest::parse(&format!(
            "name = \"m\"\nversion = \"1\"\nkind = \"chat\"\nformat = \"gguf\"\n{files}{vs}"
        ))
        .unwrap()
    }

    #[test]
    fn picks_the_first_variant_that_fits() {
        let m = manifest(&[("q8", Some(16000)), ("q4", Some(6000)), ("cpu", None)]);
        let pick = |free| choose(&m, Hardware { gpu_free_mib: free }).unwrap();
        assert_eq!(pick(Some(20000)).as_deref(), Some("q8"));
        assert_eq!(pick(Some(8000)).as_deref(), Some("q4"));
        assert_eq!(pick(Some(1000)).as_deref(), Some("cpu"));
        assert_eq!(pick(None).as_deref(), Some("cpu"));
        let gpu_only = manifest(&[("q8", Some(16000))]);
        let err = choose(&gpu_only, Hardware::default()).unwrap_err();
        assert!(err.contains("q8 needs 16000 MiB"), "{err}");
        assert_eq!(choose(&manifest(&[]), Hardware::default()).unwrap(), None);
    }
}
