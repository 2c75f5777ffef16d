//! `coffer-score` owns Coffer's scoring engines and what runs beside them (the
//! [`attributes`] encoder that turns raw attributes into a model's input, and the
//! [`explain`]ers that turn a score into per-attribute contributions and reason codes): ONNX credit-risk and AML models behind
//! the [`ScoreEngine`] trait ([`TractEngine`], tract's general runtime; [`TreesEngine`],
//! `coffer-trees`' native evaluator for a lone tree-ensemble graph), chosen per model file
//! by [`load_engine_file`]; the dynamic [`Batcher`] that gives each model version a thread
//! of its own and coalesces concurrent requests into batches; the typed [`tensor`]s they
//! exchange and the [`BatchObserver`] that sees every batch; and the scoring metric
//! families ([`ScoreMetrics`]).
//!
//! tract and `coffer-trees` are dependencies of this crate only. It does not own what
//! ties an engine to the daemon (the served versions, drift tracking, request counters,
//! the HTTP API): cofferd's `score` module does, over these types.

pub mod attributes;
mod batcher;
mod engine;
pub mod explain;
mod metrics;
pub mod tensor;
mod tract_engine;
mod trees_engine;

use std::path::Path;
use std::sync::Arc;

use coffer_models::{Manifest, VersionDir};

pub use attributes::{AttributeEncoder, EncodeError, RawValue};
pub use batcher::{BatchError, BatchLimits, Batcher};
pub use engine::{EngineError, ScoreEngine};
pub use explain::{ExplainError, Explainer, Explanation};
pub use metrics::{ModelMetrics, ScoreMetrics};
pub use tensor::{BatchObserver, Tensor, TensorData};
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
    #[error("{id}: {source}")]
    Explain { id: String, source: ExplainError },
}

/// The explainer of a version's model file (`None` when the manifest has no
/// `[explain]`); the covers and other files are read from the version's directory.
pub fn load_explainer(
    manifest: &Manifest,
    dir: &Path,
    model_file: &Path,
) -> Result<Option<Explainer>, LoadError> {
    if manifest.explain.is_none() {
        return Ok(None);
    }
    let err = |source| LoadError::Explain {
        id: manifest.id(),
        source,
    };
    let bytes = std::fs::read(model_file).map_err(|e| {
        err(ExplainError::File {
            path: model_file.display().to_string(),
            detail: e.to_string(),
        })
    })?;
    Explainer::load(manifest, &bytes, |rel| std::fs::read(dir.join(rel))).map_err(err)
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
