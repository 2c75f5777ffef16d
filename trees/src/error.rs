//! Errors of loading and evaluating a tree-ensemble model.

use std::path::PathBuf;

/// Why a model could not be loaded or a batch could not be evaluated.
///
/// Loading never panics: a truncated, hostile or merely unusual file gives one of these.
/// [`TreeError::is_not_applicable`] tells the two families apart: the model is fine but not
/// something this crate evaluates (the caller should fall back to a general ONNX runtime), or
/// the model is broken.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that was read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// The bytes are not a protobuf-encoded ONNX `ModelProto`.
    #[error("not a decodable ONNX model: {0}")]
    Decode(String),

    /// The model has no graph.
    #[error("the ONNX model has no graph")]
    MissingGraph,

    /// The graph is not one `TreeEnsembleClassifier` / `TreeEnsembleRegressor` node (optionally
    /// followed by no-op nodes): the caller should use a general ONNX runtime instead.
    #[error("the graph is not a lone ai.onnx.ml tree ensemble (ops: {ops:?}): {detail}")]
    NotALoneTreeEnsemble {
        /// `domain:op_type` of every node in the graph, in graph order.
        ops: Vec<String>,
        /// What exactly did not fit.
        detail: String,
    },

    /// A lone tree ensemble, but using a feature this crate does not implement (string class
    /// labels, non-float input, external data, ...): the caller should fall back.
    #[error("unsupported tree ensemble: {0}")]
    Unsupported(String),

    /// An attribute of the tree-ensemble node is missing, of the wrong type, or inconsistent
    /// with the others.
    #[error("invalid attribute {name}: {detail}")]
    InvalidAttribute {
        /// The attribute name.
        name: String,
        /// What is wrong with it.
        detail: String,
    },

    /// The node arrays do not describe a set of finite trees (unknown child, cycle, duplicate
    /// node id, feature index out of range, ...).
    #[error("invalid tree structure: {0}")]
    InvalidTree(String),

    /// `predict` was called with a buffer whose length is not `n_rows * n_features`.
    #[error("input has {got} values, expected {n_rows} rows x {n_features} features")]
    InputShape {
        /// Rows requested.
        n_rows: usize,
        /// Features the model takes.
        n_features: usize,
        /// Values given.
        got: usize,
    },
}

impl TreeError {
    /// True when the model is not something this crate evaluates but may well be a valid ONNX
    /// model (another op, string labels, ...): evaluate it with a general ONNX runtime instead.
    /// False when the file or the call is broken.
    pub fn is_not_applicable(&self) -> bool {
        matches!(
            self,
            TreeError::NotALoneTreeEnsemble { .. } | TreeError::Unsupported(_)
        )
    }
}
