//! The `ScoreEngine` trait: what the batcher needs from a loaded scoring model. Engines
//! accept only validated, batched inputs (one tensor per declared input, in declared
//! order) and return every declared output. They block: callers run them on the model's
//! own thread, never on the async runtime.

use coffer_models::TensorSpec;

use crate::tensor::Tensor;

/// Why an engine could not load or run a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot load {path}: {detail}")]
    Load { path: String, detail: String },
    #[error("the model does not match its manifest: {0}")]
    Schema(String),
    #[error("inference failed: {0}")]
    Run(String),
}

/// A loaded scoring model.
pub trait ScoreEngine: Send + Sync + std::fmt::Debug {
    /// Short platform name for metadata (`onnx-tract`, `onnx-trees`).
    fn platform(&self) -> &'static str;
    fn inputs(&self) -> &[TensorSpec];
    fn outputs(&self) -> &[TensorSpec];
    /// Runs one batch of `rows` rows. `inputs` follow [`Self::inputs`]' order; they are
    /// handed over so that engines can use the buffers without copying.
    fn run(&self, inputs: Vec<Tensor>, rows: usize) -> Result<Vec<Tensor>, EngineError>;
}
