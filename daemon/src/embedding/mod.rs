//! Embedding model versions tied to the daemon: a loaded version ([`LoadedEmbedding`]:
//! its manifest, the llama.cpp embedder, contained panics, request counters) started
//! with the configured settings. The engine itself is `coffer_chat::embed`, re-exported
//! here; the HTTP side is `api::embeddings`.

use std::sync::Arc;

use coffer_models::{Kind, Manifest};

pub use coffer_chat::LoadError;
pub use coffer_chat::embed::{EmbedFailure, EmbedJob, EmbedSettings, EmbedSpec, LlamaEmbedder};

/// One loaded embedding model version.
#[derive(Debug)]
pub struct LoadedEmbedding {
    pub manifest: Manifest,
    /// The variant served (`None`: the version's only model file).
    pub variant: Option<String>,
    pub engine: LlamaEmbedder,
    /// Panics contained on its engine thread; failing ones make it unready.
    pub faults: Arc<crate::engine_faults::EngineFaults>,
    /// Seconds since the epoch when it was loaded (OpenAI's `created`).
    pub created: u64,
    /// Its `coffer_model_requests_total` counters, once it has served a request.
    pub requests: crate::metrics::VersionRequestsCell,
}

impl crate::served::Versioned for LoadedEmbedding {
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

/// Starts the engine of a version: the named variant's GGUF, or the default one.
pub fn start_version(
    version: &coffer_models::VersionDir,
    variant: Option<&str>,
    settings: &EmbedSettings,
    faults: &crate::engine_faults::FaultWatch,
) -> Result<LoadedEmbedding, LoadError> {
    let manifest = version.manifest.clone();
    let spec = match (&manifest.kind, &manifest.embedding) {
        (Kind::Embedding, Some(spec)) => EmbedSpec {
            max_tokens: spec.max_tokens,
            normalize: spec.normalize,
        },
        _ => return Err(LoadError::NotEmbedding(manifest.id())),
    };
    let model_file = manifest
        .variant_file(variant)
        .map(|f| version.path(&f.path))
        .ok_or_else(|| LoadError::Missing(version.dir.join(variant.unwrap_or("<model>"))))?;
    let faults = faults.for_version(&manifest.name, &manifest.version);
    let engine = LlamaEmbedder::start(&model_file, &spec, settings, Arc::clone(&faults))?;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(LoadedEmbedding {
        manifest,
        variant: variant.map(str::to_string),
        engine,
        faults,
        created,
        requests: crate::metrics::VersionRequestsCell::default(),
    })
}
