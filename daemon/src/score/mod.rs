//! Scoring in the daemon: the engines, batcher and tensors are `coffer-score`'s
//! (re-exported here); this module ties a loaded version to what the daemon keeps for it
//! ([`LoadedModel`]: its batcher and metrics, drift against the manifest's reference,
//! contained faults, request counters, the `x-coffer-served-by` value) and starts
//! versions with them. [`ScoringModels`] holds what is served and answers lookups by name
//! and version; the Open Inference Protocol routes (`api::oip`) call it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use coffer_models::{Kind, Manifest, VersionDir};

pub use coffer_score::{
    BatchError, BatchLimits, Batcher, EngineError, LoadError, ModelMetrics, ScoreEngine,
    ScoreMetrics, TractEngine, TreesEngine, load_engine, load_engine_file,
};

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
    pub drift: Option<Arc<crate::monitoring::drift::DriftTracker>>,
    /// Panics contained on its batching thread; failing ones make it unready.
    pub faults: Arc<crate::engine_faults::EngineFaults>,
    /// Its `coffer_model_requests_total` counters, once it has served a request.
    pub requests: crate::metrics::VersionRequestsCell,
    /// `name@version`, made once for each response's `x-coffer-served-by` header and
    /// audit record.
    pub id: String,
    pub served_by: Option<http::HeaderValue>,
    /// The feature specification, when the manifest has `[[attributes]]`: clients may
    /// send raw attributes instead of the encoded input.
    pub attributes: Option<Box<coffer_score::AttributeEncoder>>,
    /// Explains its scores, when the manifest has `[explain]`.
    pub explainer: Option<Arc<coffer_score::Explainer>>,
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
    drift: Option<&crate::monitoring::drift::monitor::DriftStore>,
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
    let explainer =
        coffer_score::load_explainer(&version.manifest, &version.dir, &model_file)?.map(Arc::new);
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
        crate::monitoring::drift::DriftTracker::new(&manifest, saved, store.min_rows).map(Arc::new)
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
    let attributes = coffer_score::AttributeEncoder::new(&manifest).map(Box::new);
    Ok(LoadedModel {
        attributes,
        explainer,
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
