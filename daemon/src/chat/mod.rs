//! Chat in the daemon: the engine is `coffer-chat`'s (GGUF models through llama.cpp, the
//! [`ChatEngine`] trait, jobs and events, prompts, grammars, the evaluation gate;
//! re-exported here). This module ties a loaded version to what the daemon keeps for it
//! ([`LoadedChat`]: contained faults, request counters, OpenAI's `created`) and starts
//! versions with the configured [`ChatSettings`], their layers placed on the GPUs
//! ([`placement`]), and the prefix store under the state directory. [`ChatModels`] (the shared `served` registry) holds the loaded versions by
//! name; the last configured version of a name answers requests that name no version
//! (`name@version` picks one). The HTTP side is `api::chat`.

pub mod placement;

use std::path::Path;
use std::sync::Arc;

use coffer_models::{Kind, Manifest};

pub use coffer_chat::{
    ChatEngine, ChatMetrics, ChatSettings, LoadError, SubmitError, eval, grammar, job, llama,
    metrics, prefix, prefix_store, prompt, text,
};

/// A loaded chat model version.
#[derive(Debug)]
pub struct LoadedChat {
    pub manifest: Manifest,
    /// The variant served (`None`: the version's only model file).
    pub variant: Option<String>,
    pub engine: Box<dyn ChatEngine>,
    /// Panics contained on its decode thread; failing ones make it unready.
    pub faults: Arc<crate::engine_faults::EngineFaults>,
    /// Seconds since the epoch when it was loaded (OpenAI's `created`).
    pub created: u64,
    /// Its `coffer_model_requests_total` counters, once it has served a request.
    pub requests: crate::metrics::VersionRequestsCell,
}

/// Where a version's variant keeps its saved prompt prefixes under `chat.prefix_dir`,
/// less the chunk size (`-b<n_batch>`) that ends the directory's name: the model file's
/// sha256 is in it, so a changed version never loads another's state.
fn prefix_key(manifest: &Manifest, variant: Option<&str>) -> String {
    format!(
        "{}@{}{}-{}",
        manifest.name,
        manifest.version,
        variant.map(|v| format!("+{v}")).unwrap_or_default(),
        manifest
            .variant_file(variant)
            .map(|f| f.sha256.chars().take(16).collect::<String>())
            .unwrap_or_default(),
    )
}

/// Removes the saved prompt prefixes of a chat version that is being removed: every
/// variant's, whatever chunk size saved them. Returns the bytes removed.
pub fn forget_prefixes(prefix_dir: &Path, manifest: &Manifest) -> std::io::Result<u64> {
    let keys: Vec<String> = std::iter::once(None)
        .chain(manifest.variants.iter().map(|v| Some(v.name.as_str())))
        .map(|variant| prefix_key(manifest, variant))
        .collect();
    let entries = match std::fs::read_dir(prefix_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = keys.iter().any(|k| {
            name.strip_prefix(k.as_str())
                .and_then(|rest| rest.strip_prefix("-b"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        });
        if ours && entry.file_type()?.is_dir() {
            for file in std::fs::read_dir(entry.path())?.flatten() {
                removed += file.metadata().map_or(0, |m| m.len());
            }
            std::fs::remove_dir_all(entry.path())?;
        }
    }
    Ok(removed)
}

/// Starts the engine of a version: the named variant's GGUF, or the default one, with
/// its layers placed on the host's GPUs as configured ([`placement`]).
pub fn start_version(
    version: &coffer_models::VersionDir,
    variant: Option<&str>,
    settings: &ChatSettings,
    metrics: &ChatMetrics,
    faults: &crate::engine_faults::FaultWatch,
    gpu: placement::GpuSite<'_>,
) -> Result<LoadedChat, LoadError> {
    let manifest = version.manifest.clone();
    if manifest.kind != Kind::Chat {
        return Err(LoadError::NotChat(manifest.id()));
    }
    let model_file = manifest
        .variant_file(variant)
        .map(|f| version.path(&f.path))
        .ok_or_else(|| LoadError::Missing(version.dir.join(variant.unwrap_or("<model>"))))?;
    let template = manifest.chat.as_ref().and_then(|c| c.template.clone());
    let faults = faults.for_version(&manifest.name, &manifest.version);
    // The chunk size is part of the key: saved KV is reused only as it was chunked.
    let version_key = format!("{}-b{}", prefix_key(&manifest, variant), settings.n_batch);
    let prefixes = prefix_store::PrefixStore::new(
        &settings.prefix_dir,
        &version_key,
        settings.prefix_cache_bytes,
    );
    let placed = placement::place(&model_file, settings, gpu);
    let model_metrics = metrics.for_model(&manifest.name, &manifest.version);
    let engine = llama::LlamaEngine::start(
        &model_file,
        template,
        prefixes,
        &placed.settings,
        model_metrics.clone(),
        Arc::clone(&faults),
    )?;
    placed.publish(&manifest.name, &manifest.version, gpu, &model_metrics);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(LoadedChat {
        manifest,
        variant: variant.map(str::to_string),
        engine: Box::new(engine),
        faults,
        created,
        requests: crate::metrics::VersionRequestsCell::default(),
    })
}

impl crate::served::Versioned for LoadedChat {
    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    fn requests_cell(&self) -> &crate::metrics::VersionRequestsCell {
        &self.requests
    }

    fn faults(&self) -> &crate::engine_faults::EngineFaults {
        &self.faults
    }
}

/// The chat model versions being served.
pub type ChatModels = crate::served::Served<LoadedChat>;

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str) -> Manifest {
        Manifest::parse(&format!(
            "name = \"assistant\"\nversion = \"{version}\"\nkind = \"chat\"\nformat = \"gguf\"\n\n\
             [[files]]\npath = \"model.gguf\"\nsha256 = \"{}\"\nsize = 1\nrole = \"model\"\n",
            "ab".repeat(32)
        ))
        .unwrap()
    }

    #[test]
    fn a_removed_version_takes_its_saved_prefixes_and_no_other() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("chat-prefix");
        let sha = "abababababababab";
        let ours = [
            format!("assistant@1.0.0-{sha}-b512"),
            format!("assistant@1.0.0-{sha}-b64"),
        ];
        let others = [
            // Another version whose name starts alike, another model, not a chunk size.
            format!("assistant@1.0.0-rc1-{sha}-b512"),
            format!("helper@1.0.0-{sha}-b512"),
            format!("assistant@1.0.0-{sha}-bx"),
        ];
        for d in ours.iter().chain(&others) {
            std::fs::create_dir_all(root.join(d)).unwrap();
            std::fs::write(root.join(d).join("p.kv"), b"12345").unwrap();
        }
        assert_eq!(forget_prefixes(&root, &manifest("1.0.0")).unwrap(), 10);
        for d in &ours {
            assert!(!root.join(d).exists(), "{d} removed");
        }
        for d in &others {
            assert!(root.join(d).exists(), "{d} kept");
        }
        // Nothing saved yet (no directory): nothing to do.
        assert_eq!(
            forget_prefixes(&tmp.path().join("none"), &manifest("2.0.0")).unwrap(),
            0
        );
    }
}
