//! Scoring: ONNX credit-risk and AML models behind the [`ScoreEngine`] trait, each model
//! version with its own dynamic batcher thread. [`ScoringModels`] holds what is served
//! and answers lookups by name and version; the Open Inference Protocol routes
//! (`api::oip`) call it.

mod batcher;
mod engine;
mod metrics;
mod tract_engine;
mod trees_engine;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coffer_models::{Kind, Manifest, VersionDir};

pub use batcher::{BatchError, BatchLimits, Batcher};
pub use engine::{EngineError, ScoreEngine};
pub use metrics::{ModelMetrics, ScoreMetrics};
pub use tract_engine::TractEngine;
pub use trees_engine::TreesEngine;

/// Why a model version could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Verify(#[from] coffer_models::VerifyError),
    #[error("{0}: not a scoring model (kind is chat)")]
    NotScoring(String),
    #[error("{id}: {source}")]
    Engine { id: String, source: EngineError },
    #[error("{0}: cannot start its batching thread: {1}")]
    Thread(String, std::io::Error),
    #[error("{0} is loaded twice")]
    Duplicate(String),
    #[error("{0} has no variant {1:?}")]
    NoVariant(String, String),
}

/// One served model version.
#[derive(Debug)]
pub struct LoadedModel {
    pub manifest: Manifest,
    pub dir: PathBuf,
    /// The variant served (`None`: the version's only model file).
    pub variant: Option<String>,
    pub engine: Arc<dyn ScoreEngine>,
    pub batcher: Batcher,
    pub metrics: ModelMetrics,
    /// Drift against the manifest's `[drift]` reference, when it has one.
    pub drift: Option<Arc<crate::drift::DriftTracker>>,
    /// Panics contained on its batching thread; failing ones make it unready.
    pub faults: Arc<crate::engine_faults::EngineFaults>,
    /// Its `coffer_model_requests_total` counters, once it has served a request.
    pub requests: crate::metrics::VersionRequestsCell,
    /// `name@version`, made once for each response's `x-coffer-served-by` header and
    /// audit record.
    pub id: String,
    pub served_by: Option<http::HeaderValue>,
}

/// Loads the engine for a verified version directory (its default model file).
pub fn load_engine(version: &VersionDir) -> Result<Arc<dyn ScoreEngine>, LoadError> {
    let model_file = version
        .manifest
        .model_file()
        .map(|f| version.path(&f.path))
        .unwrap_or_default();
    load_engine_file(&version.manifest, &model_file)
}

/// Loads an engine for `model_file` (one of the version's model files) against the
/// manifest's I/O schema: a new instance, independent of any serving one.
pub fn load_engine_file(
    manifest: &Manifest,
    model_file: &Path,
) -> Result<Arc<dyn ScoreEngine>, LoadError> {
    let id = manifest.id();
    let (inputs, outputs) = (&manifest.io.inputs, &manifest.io.outputs);
    let engine_err = |source| LoadError::Engine {
        id: id.clone(),
        source,
    };
    // Tree ensembles get the native evaluator, one thread per batch: the batcher already
    // keeps a thread per model busy, and the API runtime needs the other cores.
    if let Some(trees) = TreesEngine::load(model_file, inputs, outputs, 1).map_err(engine_err)? {
        return Ok(Arc::new(trees));
    }
    let engine = TractEngine::load(model_file, inputs, outputs, manifest.serving.max_batch)
        .map_err(engine_err)?;
    Ok(Arc::new(engine))
}

/// Verifies and loads one version directory and starts its batcher.
pub fn load_version(
    dir: &Path,
    metrics: &ScoreMetrics,
    queue_capacity: usize,
) -> Result<LoadedModel, LoadError> {
    let faults = crate::engine_faults::FaultWatch::default();
    start_version(
        VersionDir::open(dir)?,
        None,
        metrics,
        queue_capacity,
        None,
        &faults,
    )
}

/// Loads a version (the named variant's model file, or the default one) and starts
/// its batcher.
pub fn start_version(
    version: VersionDir,
    variant: Option<&str>,
    metrics: &ScoreMetrics,
    queue_capacity: usize,
    drift: Option<&crate::drift::monitor::DriftStore>,
    faults: &crate::engine_faults::FaultWatch,
) -> Result<LoadedModel, LoadError> {
    if version.manifest.kind != Kind::Score {
        return Err(LoadError::NotScoring(version.manifest.id()));
    }
    let model_file = version
        .manifest
        .variant_file(variant)
        .map(|f| version.path(&f.path))
        .ok_or_else(|| LoadError::NoVariant(version.manifest.id(), variant.unwrap_or("").into()))?;
    let engine = load_engine_file(&version.manifest, &model_file)?;
    let dir = version.dir;
    let manifest = version.manifest;
    let model_metrics = metrics.for_model(&manifest.name, &manifest.version);
    let limits = BatchLimits {
        max_batch: manifest.serving.max_batch,
        max_delay: Duration::from_micros(manifest.serving.max_queue_delay_us),
        queue_capacity,
    };
    let tracker = drift.and_then(|store| {
        let saved = store.load(&manifest.name, &manifest.version);
        crate::drift::DriftTracker::new(&manifest, saved, store.min_rows).map(Arc::new)
    });
    let faults = faults.for_version(&manifest.name, &manifest.version);
    let batcher = Batcher::spawn(
        &manifest.name,
        Arc::clone(&engine),
        limits,
        model_metrics.clone(),
        tracker
            .clone()
            .map(|t| t as Arc<dyn crate::tensor::BatchObserver>),
        Arc::clone(&faults),
    )
    .map_err(|e| LoadError::Thread(manifest.id(), e))?;
    let id = manifest.id();
    Ok(LoadedModel {
        served_by: http::HeaderValue::from_str(&id).ok(),
        id,
        manifest,
        dir,
        variant: variant.map(str::to_string),
        engine,
        batcher,
        metrics: model_metrics,
        drift: tracker,
        faults,
        requests: crate::metrics::VersionRequestsCell::default(),
    })
}

impl crate::served::Versioned for LoadedModel {
    fn manifest(&self) -> &coffer_models::Manifest {
        &self.manifest
    }

    fn requests_cell(&self) -> &crate::metrics::VersionRequestsCell {
        &self.requests
    }

    fn faults(&self) -> &crate::engine_faults::EngineFaults {
        &self.faults
    }
}

/// The versions of one scoring model name.
pub type ModelVersions = crate::served::ModelVersions<LoadedModel>;

/// Every served scoring model.
pub type ScoringModels = crate::served::Served<LoadedModel>;
